// What a QUIC 1-RTT packet adds around a DATAGRAM frame's data as dpagent's QUIC stack (ngtcp2) writes it, and so
// how big an inner packet may be for one packet to carry it (docs/protocol.md "MTU" and "QUIC framing"). Sizes in
// bytes. ngtcp2 writes DATAGRAM frames with a Length field (type 0x31, RFC 9221 section 4) and packet numbers of
// 1..4 bytes (RFC 9000 section 17.1); counted here at their longest. When an ACK frame shares the packet and the
// DATAGRAM no longer fits, ngtcp2 sends the ACK alone first, so ACKs need no room here.
#pragma once
#include <cstddef>
#include <cstdint>

#include "crypto/aead.hpp"
#include "proto/frame_codec.hpp"
#include "proto/quic_short_header.hpp"
#include "proto/quic_varint.hpp"

namespace dptun {

inline constexpr size_t kIpv4UdpHeaders = 20 + 8;  // the outer IPv4 header without options, and UDP
inline constexpr size_t kQuicMaxPnLen = 4;

// The bytes of one short-header packet around `data_len` bytes of DATAGRAM data: first byte, dptun's 8-byte DCID,
// the packet number, the frame's type and Length, the AEAD tag.
inline constexpr size_t quic_datagram_packet_overhead(size_t data_len) {
  return 1 + kQuicCidLen + kQuicMaxPnLen + 1 + quic_varint_len(data_len) + kAeadTagLen;
}

// The most DATAGRAM data (an inner plaintext: inner header, packet, name trailer) one UDP payload of
// `max_udp_payload` bytes carries; 0 when none fits.
inline constexpr size_t quic_max_datagram_data(size_t max_udp_payload) {
  size_t n = max_udp_payload > quic_datagram_packet_overhead(0) ? max_udp_payload - quic_datagram_packet_overhead(0)
                                                                : 0;
  // A longer Length field for bigger data takes from the data itself.
  while (n && n + quic_datagram_packet_overhead(n) > max_udp_payload) --n;
  return n;
}

// What the underlay MTU loses per inner packet in DATAGRAM frames from dpagent: outer IPv4 and UDP, the packet
// around the data, the inner header. 72 while the data is under 16384 bytes (underlay MTUs up to 9000), as with
// relay frames (proto/relay_frame.hpp kUnderlayOverhead).
inline constexpr size_t quic_underlay_overhead(size_t underlay_mtu) {
  return underlay_mtu - quic_max_datagram_data(underlay_mtu - kIpv4UdpHeaders) + inner_plaintext_overhead();
}
inline constexpr size_t kQuicUnderlayOverhead = quic_underlay_overhead(9000);
static_assert(kQuicUnderlayOverhead == 72);

}  // namespace dptun
