#include "packet/parser.hpp"

#include <algorithm>

#include "common/bytes.hpp"
#include "packet/checksum.hpp"
#include "packet/headers.hpp"

namespace dptun {

const char* parse_status_name(ParseStatus s) {
  switch (s) {
    case ParseStatus::Ok: return "ok";
    case ParseStatus::Truncated: return "truncated";
    case ParseStatus::BadIpVersion: return "bad_ip_version";
    case ParseStatus::BadIpHeaderLength: return "bad_ip_header_length";
    case ParseStatus::BadIpTotalLength: return "bad_ip_total_length";
    case ParseStatus::BadIpChecksum: return "bad_ip_checksum";
    case ParseStatus::BadL4Header: return "bad_l4_header";
    case ParseStatus::BadArp: return "bad_arp";
    case ParseStatus::TooManyHeaders: return "too_many_headers";
    case ParseStatus::Count: break;
  }
  return "unknown";
}

static ParseStatus parse_l4(const uint8_t* base, size_t l4_offset, size_t l4_avail, uint8_t proto,
                            PacketInfo& out) {
  out.l4_proto = proto;
  out.l4_offset = uint16_t(l4_offset);
  out.l4_len = uint16_t(l4_avail);
  const uint8_t* l4 = base + l4_offset;
  switch (proto) {
    case kIpProtoTcp: {
      if (l4_avail < kTcpHeaderLen) return ParseStatus::Truncated;
      size_t hl = size_t(l4[12] >> 4) * 4;
      if (hl < kTcpHeaderLen || hl > l4_avail) return ParseStatus::BadL4Header;
      out.src_port = load_be16(l4);
      out.dst_port = load_be16(l4 + 2);
      out.tcp_flags = l4[13];
      out.tcp_header_len = uint8_t(hl);
      break;
    }
    case kIpProtoUdp: {
      if (l4_avail < kUdpHeaderLen) return ParseStatus::Truncated;
      uint16_t ulen = load_be16(l4 + kUdpOffLength);
      if (ulen < kUdpHeaderLen || ulen > l4_avail) return ParseStatus::BadL4Header;
      out.src_port = load_be16(l4);
      out.dst_port = load_be16(l4 + 2);
      out.l4_len = ulen;
      break;
    }
    case kIpProtoIcmp:
    case kIpProtoIcmpv6:
      if (l4_avail < 4) return ParseStatus::Truncated;
      out.icmp_type = l4[0];
      out.icmp_code = l4[1];
      break;
    default:
      break;
  }
  out.has_l4 = true;
  return ParseStatus::Ok;
}

static ParseStatus parse_ipv4(const uint8_t* base, size_t off, size_t avail, PacketInfo& out) {
  if (avail < kIpv4HeaderLen) return ParseStatus::Truncated;
  const uint8_t* ip = base + off;
  if (ip[0] >> 4 != 4) return ParseStatus::BadIpVersion;
  size_t hl = size_t(ip[0] & 0x0f) * 4;
  if (hl < kIpv4HeaderLen || hl > avail) return ParseStatus::BadIpHeaderLength;
  size_t total = load_be16(ip + kIpv4OffTotalLen);
  if (total < hl) return ParseStatus::BadIpTotalLength;
  if (total > avail) return ParseStatus::Truncated;
  if (ipv4_header_checksum({ip, hl}) != 0) return ParseStatus::BadIpChecksum;
  out.l3 = L3Kind::Ipv4;
  out.l3_offset = uint16_t(off);
  out.ip_header_len = uint16_t(hl);
  out.ip_total_len = uint16_t(total);
  out.src_ip = load_be32(ip + kIpv4OffSrc);
  out.dst_ip = load_be32(ip + kIpv4OffDst);
  out.ttl = ip[kIpv4OffTtl];
  uint16_t frag = load_be16(ip + kIpv4OffFrag);
  out.dont_fragment = frag & kIpv4FlagDf;
  out.is_fragment = (frag & (kIpv4FlagMf | kIpv4FragOffsetMask)) != 0;
  out.is_first_fragment = (frag & kIpv4FragOffsetMask) == 0;
  uint8_t proto = ip[kIpv4OffProto];
  out.l4_proto = proto;
  if (!out.is_first_fragment) return ParseStatus::Ok;  // no L4 header in later fragments
  if (out.is_fragment) {
    // First fragment: the L4 header is here but the UDP length / payload is not complete.
    out.l4_offset = uint16_t(off + hl);
    out.l4_len = uint16_t(total - hl);
    return ParseStatus::Ok;
  }
  return parse_l4(base, off + hl, total - hl, proto, out);
}

static ParseStatus parse_ipv6(const uint8_t* base, size_t off, size_t avail, PacketInfo& out) {
  if (avail < kIpv6HeaderLen) return ParseStatus::Truncated;
  const uint8_t* ip = base + off;
  if (ip[0] >> 4 != 6) return ParseStatus::BadIpVersion;
  size_t payload = load_be16(ip + 4);
  if (kIpv6HeaderLen + payload > avail) return ParseStatus::Truncated;
  out.l3 = L3Kind::Ipv6;
  out.l3_offset = uint16_t(off);
  out.ip_header_len = uint16_t(kIpv6HeaderLen);
  out.ip_total_len = uint16_t(kIpv6HeaderLen + payload);
  out.ttl = ip[7];
  uint8_t next = ip[6];
  size_t pos = kIpv6HeaderLen;
  size_t end = kIpv6HeaderLen + payload;
  for (int hops = 0;; ++hops) {
    if (hops > 8) return ParseStatus::TooManyHeaders;
    if (next == 0 || next == 43 || next == 60) {  // hop-by-hop, routing, destination options
      if (end - pos < 8) return ParseStatus::Truncated;
      size_t len = (size_t(ip[pos + 1]) + 1) * 8;
      if (len > end - pos) return ParseStatus::Truncated;
      next = ip[pos];
      pos += len;
    } else if (next == 44) {  // fragment header
      if (end - pos < 8) return ParseStatus::Truncated;
      uint16_t fo = load_be16(ip + pos + 2);
      out.is_fragment = true;
      out.is_first_fragment = (fo & 0xfff8) == 0;
      next = ip[pos];
      pos += 8;
      if (!out.is_first_fragment) {
        out.l4_proto = next;
        return ParseStatus::Ok;
      }
    } else if (next == 51) {  // AH: length in 4-byte units minus 2
      if (end - pos < 8) return ParseStatus::Truncated;
      size_t len = (size_t(ip[pos + 1]) + 2) * 4;
      if (len > end - pos) return ParseStatus::Truncated;
      next = ip[pos];
      pos += len;
    } else {
      break;
    }
  }
  if (out.is_fragment) {
    out.l4_proto = next;
    out.l4_offset = uint16_t(off + pos);
    out.l4_len = uint16_t(end - pos);
    return ParseStatus::Ok;
  }
  return parse_l4(base, off + pos, end - pos, next, out);
}

static ParseStatus parse_arp(const uint8_t* base, size_t off, size_t avail, PacketInfo& out) {
  if (avail < kArpIpv4Len) return ParseStatus::Truncated;
  const uint8_t* a = base + off;
  if (load_be16(a) != 1 || load_be16(a + 2) != kEtherTypeIpv4 || a[4] != 6 || a[5] != 4)
    return ParseStatus::BadArp;
  out.l3 = L3Kind::Arp;
  out.l3_offset = uint16_t(off);
  out.src_ip = load_be32(a + 14);
  out.dst_ip = load_be32(a + 24);
  return ParseStatus::Ok;
}

ParseStatus parse_ethernet(std::span<const uint8_t> frame, PacketInfo& out) {
  out = PacketInfo{};
  const uint8_t* p = frame.data();
  size_t n = frame.size();
  if (n < kEthHeaderLen) return ParseStatus::Truncated;
  size_t off = 12;
  uint16_t type = load_be16(p + off);
  while (type == kEtherTypeVlan || type == kEtherTypeQinQ) {
    if (out.vlan_count == 2) return ParseStatus::TooManyHeaders;
    if (n < off + 2 + kVlanTagLen) return ParseStatus::Truncated;
    if (out.vlan_count == 0) out.vlan_tci = load_be16(p + off + 2);
    out.vlan_count++;
    off += kVlanTagLen;
    type = load_be16(p + off);
  }
  off += 2;
  out.ethertype = type;
  switch (type) {
    case kEtherTypeIpv4: return parse_ipv4(p, off, n - off, out);
    case kEtherTypeIpv6: return parse_ipv6(p, off, n - off, out);
    case kEtherTypeArp: return parse_arp(p, off, n - off, out);
    default: out.l3_offset = uint16_t(off); return ParseStatus::Ok;
  }
}

ParseStatus parse_ipv4_head(std::span<const uint8_t> head, size_t packet_len, PacketInfo& out) {
  out = PacketInfo{};
  if (head.size() < kIpv4HeaderLen || packet_len < head.size()) return ParseStatus::Truncated;
  if (head[0] >> 4 != 4) return ParseStatus::BadIpVersion;
  const size_t hl = size_t(head[0] & 0x0f) * 4;
  size_t need = hl;
  if (head[kIpv4OffProto] == kIpProtoUdp) need = hl + kUdpHeaderLen;
  if (head[kIpv4OffProto] == kIpProtoIcmp) need = hl + 4;
  if (head[kIpv4OffProto] == kIpProtoTcp) {
    need = hl + kTcpHeaderLen;
    if (head.size() >= need) need = hl + std::max<size_t>(kTcpHeaderLen, size_t(head[hl + 12] >> 4) * 4);
  }
  if (head.size() < need) return ParseStatus::Truncated;
  // parse_ipv4 and parse_l4 read headers only, and those are all in `head`: the rest need not be at hand.
  out.ethertype = kEtherTypeIpv4;
  return parse_ipv4(head.data(), 0, packet_len, out);
}

ParseStatus parse_ip(std::span<const uint8_t> packet, PacketInfo& out) {
  out = PacketInfo{};
  if (packet.empty()) return ParseStatus::Truncated;
  switch (packet[0] >> 4) {
    case 4: out.ethertype = kEtherTypeIpv4; return parse_ipv4(packet.data(), 0, packet.size(), out);
    case 6: out.ethertype = kEtherTypeIpv6; return parse_ipv6(packet.data(), 0, packet.size(), out);
    default: return ParseStatus::BadIpVersion;
  }
}

}  // namespace dptun
