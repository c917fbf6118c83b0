#include "packet/icmp_error.hpp"

#include "common/bytes.hpp"
#include "packet/checksum.hpp"
#include "packet/headers.hpp"

namespace dptun {

const char* icmp_error_reason_name(IcmpErrorReason r) {
  switch (r) {
    case IcmpErrorReason::NetUnreachable: return "net_unreachable";
    case IcmpErrorReason::HostUnreachable: return "host_unreachable";
    case IcmpErrorReason::ProtoUnreachable: return "proto_unreachable";
    case IcmpErrorReason::PortUnreachable: return "port_unreachable";
    case IcmpErrorReason::FragNeeded: return "frag_needed";
    case IcmpErrorReason::AdminProhibited: return "admin_prohibited";
    case IcmpErrorReason::TimeExceeded: return "time_exceeded";
    case IcmpErrorReason::Other: return "other";
    case IcmpErrorReason::Count: break;
  }
  return "other";
}

IcmpErrorReason icmp_error_reason(uint8_t type, uint8_t code) {
  if (type == kIcmpTimeExceeded) return IcmpErrorReason::TimeExceeded;
  if (type != kIcmpDestUnreachable) return IcmpErrorReason::Other;
  switch (code) {
    case 0: case 6: case 11: return IcmpErrorReason::NetUnreachable;
    case 1: case 7: case 8: case 12: return IcmpErrorReason::HostUnreachable;
    case 2: return IcmpErrorReason::ProtoUnreachable;
    case 3: return IcmpErrorReason::PortUnreachable;
    case 4: return IcmpErrorReason::FragNeeded;
    case 9: case 10: case 13: case 14: case 15: return IcmpErrorReason::AdminProhibited;
    default: return IcmpErrorReason::Other;
  }
}

bool parse_icmp_error(std::span<const uint8_t> packet, IcmpError& out) {
  constexpr size_t kIcmpAt = kIpv4HeaderLen;
  constexpr size_t kQuoteAt = kIcmpAt + kIcmpHeaderLen;
  const uint8_t* p = packet.data();
  if (packet.size() < kQuoteAt + kIpv4HeaderLen + 8 || p[0] != 0x45) return false;
  const size_t total = load_be16(p + kIpv4OffTotalLen);
  if (total > packet.size() || total < kQuoteAt + kIpv4HeaderLen + 8) return false;
  if (p[kIpv4OffProto] != kIpProtoIcmp || (load_be16(p + kIpv4OffFrag) & (kIpv4FlagMf | kIpv4FragOffsetMask)))
    return false;
  const uint8_t* icmp = p + kIcmpAt;
  if (icmp[0] != kIcmpDestUnreachable && icmp[0] != kIcmpTimeExceeded) return false;
  if (csum_fold(csum_add({icmp, total - kIcmpAt})) != 0xffff) return false;
  const uint8_t* q = p + kQuoteAt;
  const size_t qhl = size_t(q[0] & 0x0f) * 4;
  if ((q[0] >> 4) != 4 || qhl < kIpv4HeaderLen || kQuoteAt + qhl + 8 > total) return false;
  if (load_be16(q + kIpv4OffFrag) & kIpv4FragOffsetMask) return false;  // not a first fragment: no ports
  if (q[kIpv4OffProto] != kIpProtoTcp && q[kIpv4OffProto] != kIpProtoUdp) return false;
  out = IcmpError{};
  out.type = icmp[0];
  out.code = icmp[1];
  out.mtu = icmp[0] == kIcmpDestUnreachable && icmp[1] == kIcmpFragNeeded ? load_be16(icmp + 6) : 0;
  out.from = load_be32(p + kIpv4OffSrc);
  out.to = load_be32(p + kIpv4OffDst);
  out.proto = q[kIpv4OffProto];
  out.src_ip = load_be32(q + kIpv4OffSrc);
  out.dst_ip = load_be32(q + kIpv4OffDst);
  out.src_port = load_be16(q + qhl);
  out.dst_port = load_be16(q + qhl + 2);
  out.quote_offset = uint16_t(kQuoteAt);
  out.quote_header_len = uint16_t(qhl);
  return true;
}

size_t icmp_error_rewrite(std::span<uint8_t> packet, const IcmpError& e, uint32_t from, uint32_t to,
                          uint32_t quoted_src, uint16_t quoted_src_port, uint32_t quoted_dst,
                          uint16_t quoted_dst_port) {
  uint8_t* p = packet.data();
  uint8_t* q = p + e.quote_offset;
  uint8_t* l4 = q + e.quote_header_len;
  // The quoted UDP checksum covers the pseudo header's addresses and the ports: follow them (RFC 1624), as the
  // datagram itself was rewritten on its way. (A quoted TCP checksum lies beyond the 8 bytes kept.)
  if (e.proto == kIpProtoUdp && load_be16(l4 + kUdpOffChecksum) != 0) {
    uint8_t* c = l4 + kUdpOffChecksum;
    csum_replace32(c, e.src_ip, quoted_src);
    csum_replace32(c, e.dst_ip, quoted_dst);
    csum_replace16(c, e.src_port, quoted_src_port);
    csum_replace16(c, e.dst_port, quoted_dst_port);
    if (load_be16(c) == 0) store_be16(c, 0xffff);
  }
  store_be16(l4, quoted_src_port);
  store_be16(l4 + 2, quoted_dst_port);
  store_be32(q + kIpv4OffSrc, quoted_src);
  store_be32(q + kIpv4OffDst, quoted_dst);
  store_be16(q + kIpv4OffChecksum, 0);
  store_be16(q + kIpv4OffChecksum, ipv4_header_checksum({q, e.quote_header_len}));

  const size_t len = size_t(e.quote_offset) + e.quote_header_len + 8;
  store_be16(p + kIpv4OffTotalLen, uint16_t(len));
  p[kIpv4OffTtl] = 64;
  store_be32(p + kIpv4OffSrc, from);
  store_be32(p + kIpv4OffDst, to);
  store_be16(p + kIpv4OffChecksum, 0);
  store_be16(p + kIpv4OffChecksum, ipv4_header_checksum({p, kIpv4HeaderLen}));
  uint8_t* icmp = p + kIpv4HeaderLen;
  store_be16(icmp + kIcmpOffChecksum, 0);
  store_be16(icmp + kIcmpOffChecksum, csum_finish(csum_add({icmp, len - kIpv4HeaderLen})));
  return len;
}

}  // namespace dptun
