#include "packet/gso.hpp"

#include <cstring>

#include "packet/checksum.hpp"
#include "packet/headers.hpp"

namespace dptun {

namespace {
constexpr size_t kTcpOffSeq = 4;
constexpr size_t kTcpOffAck = 8;
constexpr size_t kTcpOffFlags = 13;
constexpr size_t kTcpOffWindow = 14;
constexpr uint8_t kTcpCwr = 0x80;

// The IPv4 and L4 header lengths of a TCP/UDP super-packet the header describes; false when they do not fit.
bool header_lengths(std::span<const uint8_t> p, const VnetHeader& h, size_t& l3, size_t& l4, uint8_t& proto) {
  if (p.size() < kIpv4HeaderLen || (p[0] >> 4) != 4) return false;
  l3 = size_t(p[0] & 0x0f) * 4;
  if (l3 < kIpv4HeaderLen || p.size() < l3 + kUdpHeaderLen) return false;
  if (load_be16(p.data() + kIpv4OffFrag) & 0x3fff) return false;  // a fragment cannot be a super-packet
  proto = p[kIpv4OffProto];
  const uint8_t type = h.gso_type & ~kVnetGsoEcn;
  if (type == kVnetGsoTcpV4) {
    if (proto != kIpProtoTcp || p.size() < l3 + kTcpHeaderLen) return false;
    l4 = size_t(p[l3 + 12] >> 4) * 4;
    if (l4 < kTcpHeaderLen || p.size() < l3 + l4) return false;
  } else if (type == kVnetGsoUdpL4) {
    if (proto != kIpProtoUdp) return false;
    l4 = kUdpHeaderLen;
  } else {
    return false;
  }
  return h.gso_size > 0;
}

uint16_t l4_checksum(const uint8_t* ip, std::span<const uint8_t> l4, uint8_t proto) {
  return ipv4_l4_checksum(load_be32(ip + kIpv4OffSrc), load_be32(ip + kIpv4OffDst), proto, l4);
}
}  // namespace

bool complete_checksum(std::span<uint8_t> packet, const VnetHeader& h) {
  const size_t start = h.csum_start, field = size_t(h.csum_start) + h.csum_offset;
  if (start >= packet.size() || field + 2 > packet.size()) return false;
  uint16_t c = csum_finish(csum_add(packet.subspan(start)));
  const bool udp = packet.size() >= kIpv4HeaderLen && (packet[0] >> 4) == 4 && packet[kIpv4OffProto] == kIpProtoUdp &&
                   h.csum_offset == kUdpOffChecksum;
  if (udp && c == 0) c = 0xffff;
  store_be16(packet.data() + field, c);
  return true;
}

uint32_t gso_segment_count(std::span<const uint8_t> p, const VnetHeader& h) {
  size_t l3, l4;
  uint8_t proto;
  if (!header_lengths(p, h, l3, l4, proto)) return 0;
  const size_t total = load_be16(p.data() + kIpv4OffTotalLen);
  // The IPv4 total length must cover the headers and agree with what was read (a TUN hands over whole packets).
  if (total != p.size() || total <= l3 + l4) return 0;
  const size_t payload = total - l3 - l4;
  return uint32_t((payload + h.gso_size - 1) / h.gso_size);
}

size_t gso_write_segment(std::span<const uint8_t> p, const VnetHeader& h, uint32_t index, std::span<uint8_t> out) {
  size_t l3, l4;
  uint8_t proto;
  if (!header_lengths(p, h, l3, l4, proto)) return 0;
  const size_t payload = p.size() - l3 - l4;
  const size_t off = size_t(index) * h.gso_size;
  if (off >= payload) return 0;
  const size_t chunk = payload - off < h.gso_size ? payload - off : h.gso_size;
  const bool last = off + chunk == payload;
  const size_t len = l3 + l4 + chunk;
  if (out.size() < len) return 0;
  uint8_t* o = out.data();
  std::memcpy(o, p.data(), l3 + l4);
  std::memcpy(o + l3 + l4, p.data() + l3 + l4 + off, chunk);
  store_be16(o + kIpv4OffTotalLen, uint16_t(len));
  store_be16(o + kIpv4OffId, uint16_t(load_be16(p.data() + kIpv4OffId) + index));
  store_be16(o + kIpv4OffChecksum, 0);
  store_be16(o + kIpv4OffChecksum, ipv4_header_checksum({o, l3}));
  uint8_t* t = o + l3;
  if (proto == kIpProtoTcp) {
    store_be32(t + kTcpOffSeq, load_be32(p.data() + l3 + kTcpOffSeq) + uint32_t(off));
    uint8_t flags = t[kTcpOffFlags];
    if (!last) flags &= uint8_t(~(kTcpFin | kTcpPsh));
    if (index) flags &= uint8_t(~kTcpCwr);
    t[kTcpOffFlags] = flags;
    store_be16(t + kTcpOffChecksum, 0);
    store_be16(t + kTcpOffChecksum, l4_checksum(o, {t, l4 + chunk}, kIpProtoTcp));
  } else {
    store_be16(t + kUdpOffLength, uint16_t(l4 + chunk));
    store_be16(t + kUdpOffChecksum, 0);
    uint16_t c = l4_checksum(o, {t, l4 + chunk}, kIpProtoUdp);
    store_be16(t + kUdpOffChecksum, c ? c : 0xffff);
  }
  return len;
}

CoalesceInfo coalesce_info(std::span<const uint8_t> p, bool udp) {
  CoalesceInfo ci;
  if (p.size() < kIpv4HeaderLen + kUdpHeaderLen || p[0] != 0x45) return ci;  // IPv4, no options
  const size_t total = load_be16(p.data() + kIpv4OffTotalLen);
  if (total != p.size() || (load_be16(p.data() + kIpv4OffFrag) & 0x3fff)) return ci;
  const uint8_t proto = p[kIpv4OffProto];
  const uint8_t* t = p.data() + kIpv4HeaderLen;
  size_t l4;
  if (proto == kIpProtoTcp) {
    if (total < kIpv4HeaderLen + kTcpHeaderLen) return ci;
    l4 = size_t(t[12] >> 4) * 4;
    if (l4 < kTcpHeaderLen || total <= kIpv4HeaderLen + l4) return ci;
    const uint8_t flags = t[kTcpOffFlags];
    if ((flags & ~kTcpPsh) != kTcpAck) return ci;  // SYN, FIN, RST, URG, ECE, CWR: as they are
    ci.seq = load_be32(t + kTcpOffSeq);
    ci.push = flags & kTcpPsh;
  } else if (proto == kIpProtoUdp && udp) {
    l4 = kUdpHeaderLen;
    if (load_be16(t + kUdpOffLength) != total - kIpv4HeaderLen || total <= kIpv4HeaderLen + l4) return ci;
    if (load_be16(t + kUdpOffChecksum) == 0) return ci;  // no checksum: nothing to vouch for, left to the kernel
  } else {
    return ci;
  }
  // Only segments whose checksum verifies are merged: the merged packet's checksum is one we state is complete.
  if (ipv4_header_checksum(p.first(kIpv4HeaderLen)) != 0) return ci;
  if (csum_finish(csum_add(p.subspan(kIpv4HeaderLen),
                           ipv4_pseudo_sum(load_be32(p.data() + kIpv4OffSrc), load_be32(p.data() + kIpv4OffDst), proto,
                                           uint16_t(total - kIpv4HeaderLen)))) != 0)
    return ci;
  ci.proto = proto;
  ci.l3_len = kIpv4HeaderLen;
  ci.l4_len = uint16_t(l4);
  ci.payload = uint16_t(total - kIpv4HeaderLen - l4);
  return ci;
}

bool can_follow(std::span<const uint8_t> head, const CoalesceInfo& hi, const CoalesceInfo& last,
                std::span<const uint8_t> next, const CoalesceInfo& ni, uint32_t bytes) {
  if (ni.proto != hi.proto || ni.l4_len != hi.l4_len) return false;
  if (last.payload != hi.payload || ni.payload > hi.payload || last.push) return false;
  if (size_t(hi.l3_len) + hi.l4_len + bytes + ni.payload > kMaxSuperPacket) return false;
  const uint8_t* a = head.data();
  const uint8_t* b = next.data();
  // TOS, DF, TTL, protocol, addresses; then ports.
  if (a[1] != b[1] || ((a[kIpv4OffFrag] ^ b[kIpv4OffFrag]) & 0x40) || a[kIpv4OffTtl] != b[kIpv4OffTtl] ||
      std::memcmp(a + kIpv4OffSrc, b + kIpv4OffSrc, 8) != 0 || std::memcmp(a + 20, b + 20, 4) != 0)
    return false;
  if (hi.proto == kIpProtoTcp) {
    if (ni.seq != last.seq + last.payload) return false;
    const uint8_t* ta = a + hi.l3_len;
    const uint8_t* tb = b + hi.l3_len;
    if (std::memcmp(ta + kTcpOffAck, tb + kTcpOffAck, 4) != 0 || std::memcmp(ta + kTcpOffWindow, tb + kTcpOffWindow, 2))
      return false;
    if (std::memcmp(ta + kTcpHeaderLen, tb + kTcpHeaderLen, hi.l4_len - kTcpHeaderLen) != 0) return false;
  }
  return true;
}

VnetHeader make_coalesced(std::span<uint8_t> head, const CoalesceInfo& hi, uint32_t payload_total, bool last_push) {
  uint8_t* ip = head.data();
  uint8_t* t = ip + hi.l3_len;
  const uint16_t l4_total = uint16_t(hi.l4_len + payload_total);
  store_be16(ip + kIpv4OffTotalLen, uint16_t(hi.l3_len + l4_total));
  store_be16(ip + kIpv4OffChecksum, 0);
  store_be16(ip + kIpv4OffChecksum, ipv4_header_checksum({ip, hi.l3_len}));
  // The L4 checksum field holds the pseudo-header sum (folded, not complemented): the receiver adds the segment's
  // bytes from csum_start (kVnetNeedsCsum, as a kernel's CHECKSUM_PARTIAL packet).
  const uint16_t pseudo =
      csum_fold(ipv4_pseudo_sum(load_be32(ip + kIpv4OffSrc), load_be32(ip + kIpv4OffDst), hi.proto, l4_total));
  VnetHeader h{};
  h.flags = kVnetNeedsCsum;
  h.hdr_len = uint16_t(hi.l3_len + hi.l4_len);
  h.gso_size = hi.payload;
  h.csum_start = hi.l3_len;
  if (hi.proto == kIpProtoTcp) {
    if (last_push) t[kTcpOffFlags] |= kTcpPsh;
    h.gso_type = kVnetGsoTcpV4;
    h.csum_offset = kTcpOffChecksum;
  } else {
    store_be16(t + kUdpOffLength, l4_total);
    h.gso_type = kVnetGsoUdpL4;
    h.csum_offset = kUdpOffChecksum;
  }
  store_be16(t + h.csum_offset, pseudo);
  return h;
}

}  // namespace dptun
