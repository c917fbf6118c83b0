// HTTP Datagrams of UDP proxying (RFC 9297 2.1, RFC 9298 5): in a QUIC DATAGRAM frame's payload (RFC 9221 4)
// a Quarter Stream ID varint (the request stream's ID / 4, at most 2^60 - 1), then the HTTP Datagram Payload;
// in a DATAGRAM capsule (RFC 9297 3.5) the capsule's value is that payload alone. For CONNECT-UDP the payload
// is a Context ID varint then the UDP payload when the context ID is 0 (RFC 9298 4: other IDs are extensions
// dptun has not registered; the receiver drops and counts them). Varints are RFC 9000 16 (proto/quic_varint.hpp).
// Allocation-free: the fast path reads and writes these.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace dptun {

inline constexpr uint64_t kMaxQuarterStreamId = (uint64_t(1) << 60) - 1;
inline constexpr uint64_t kUdpPayloadContextId = 0;  // RFC 9298 4

enum class HttpDatagramError : uint8_t {
  Truncated,              // a varint cut short (an empty payload included)
  QuarterStreamIdTooBig,  // over kMaxQuarterStreamId: a connection error H3_DATAGRAM_ERROR (RFC 9297 2.1)
  Count
};
const char* http_datagram_error_name(HttpDatagramError e);

// The HTTP Datagram Payload of UDP proxying: its context ID and what follows (a UDP payload when it is 0).
struct UdpProxyingPayload {
  uint64_t context_id = 0;
  std::span<const uint8_t> payload;  // points into the input
};

// One QUIC DATAGRAM frame's payload read as an HTTP/3 datagram of UDP proxying.
struct H3Datagram {
  uint64_t stream_id = 0;  // the request stream: Quarter Stream ID * 4
  UdpProxyingPayload udp;
};

std::optional<UdpProxyingPayload> parse_udp_proxying_payload(std::span<const uint8_t> in, HttpDatagramError* why = nullptr);
std::optional<H3Datagram> parse_h3_datagram(std::span<const uint8_t> in, HttpDatagramError* why = nullptr);

// Bytes before the UDP payload in an HTTP/3 datagram for request stream `stream_id` (a client-initiated
// bidirectional stream: a multiple of 4) and `context_id`.
size_t h3_datagram_header_len(uint64_t stream_id, uint64_t context_id);
// Writes that header at the start of `out`; returns its length, or 0 when `out` is shorter or stream_id is not a
// client-initiated bidirectional stream (not a multiple of 4, or over 2^62 - 1).
size_t write_h3_datagram_header(std::span<uint8_t> out, uint64_t stream_id, uint64_t context_id);

}  // namespace dptun
