#include "proto/masque_datagram.hpp"

#include "proto/quic_varint.hpp"

namespace dptun {

const char* http_datagram_error_name(HttpDatagramError e) {
  switch (e) {
    case HttpDatagramError::Truncated: return "truncated";
    case HttpDatagramError::QuarterStreamIdTooBig: return "quarter_stream_id_too_big";
    case HttpDatagramError::Count: break;
  }
  return "?";
}

std::optional<UdpProxyingPayload> parse_udp_proxying_payload(std::span<const uint8_t> in, HttpDatagramError* why) {
  const uint8_t* p = in.data();
  const uint8_t* end = p + in.size();
  UdpProxyingPayload out;
  if (!quic_read_varint(p, end, out.context_id)) {
    if (why) *why = HttpDatagramError::Truncated;
    return std::nullopt;
  }
  out.payload = in.subspan(size_t(p - in.data()));
  return out;
}

std::optional<H3Datagram> parse_h3_datagram(std::span<const uint8_t> in, HttpDatagramError* why) {
  const uint8_t* p = in.data();
  const uint8_t* end = p + in.size();
  uint64_t quarter = 0;
  if (!quic_read_varint(p, end, quarter)) {
    if (why) *why = HttpDatagramError::Truncated;
    return std::nullopt;
  }
  if (quarter > kMaxQuarterStreamId) {
    if (why) *why = HttpDatagramError::QuarterStreamIdTooBig;
    return std::nullopt;
  }
  auto udp = parse_udp_proxying_payload(in.subspan(size_t(p - in.data())), why);
  if (!udp) return std::nullopt;
  return H3Datagram{quarter * 4, *udp};
}

size_t h3_datagram_header_len(uint64_t stream_id, uint64_t context_id) {
  return quic_varint_len(stream_id / 4) + quic_varint_len(context_id);
}

size_t write_h3_datagram_header(std::span<uint8_t> out, uint64_t stream_id, uint64_t context_id) {
  if (stream_id % 4 != 0 || stream_id / 4 > kMaxQuarterStreamId || context_id > kQuicVarintMax) return 0;
  const size_t len = h3_datagram_header_len(stream_id, context_id);
  if (out.size() < len) return 0;
  size_t n = quic_write_varint(out.data(), stream_id / 4);
  n += quic_write_varint(out.data() + n, context_id);
  return n;
}

}  // namespace dptun
