// Segmentation of TCP/UDP super-packets as a TUN with virtio-net headers hands them over (sizes, sequence numbers,
// flags, ids and checksums checked against a from-scratch sum), partial checksums completed, and coalescing: which
// segments may become one, and that a coalesced packet segments back into exactly the segments it was made of.
#include <cstring>
#include <random>
#include <vector>

#include "tests/unit/cmocka.hpp"

#include "common/bytes.hpp"
#include "packet/checksum.hpp"
#include "packet/gso.hpp"
#include "packet/headers.hpp"

using namespace dptun;

namespace {

constexpr uint32_t kSrc = 0x0a000001, kDst = 0x64400007;

// Ones-complement sum over the pseudo header and the L4 bytes, written out here rather than with the helpers under
// test: 0xffff when the checksum in the bytes is right.
uint16_t verify_l4(const std::vector<uint8_t>& p) {
  const size_t l3 = size_t(p[0] & 0x0f) * 4;
  const size_t len = p.size() - l3;
  uint32_t sum = 0;
  for (int i = 0; i < 8; i += 2) sum += uint32_t(p[12 + i]) << 8 | p[13 + i];
  sum += p[9] + uint32_t(len);
  for (size_t i = 0; i < len; i += 2) sum += uint32_t(p[l3 + i]) << 8 | (i + 1 < len ? p[l3 + i + 1] : 0);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return uint16_t(sum);
}
uint16_t verify_ip(const std::vector<uint8_t>& p) {
  uint32_t sum = 0;
  for (int i = 0; i < 20; i += 2) sum += uint32_t(p[i]) << 8 | p[i + 1];
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return uint16_t(sum);
}

// An IPv4 packet with a TCP header (32 bytes: NOP NOP timestamp) or a UDP header and `payload` bytes; its L4 checksum
// complete (`partial` false) or, as the kernel hands super-packets over, the pseudo-header sum only.
std::vector<uint8_t> make_packet(uint8_t proto, size_t payload, uint32_t seq, uint8_t flags, bool partial,
                                 uint32_t seed = 1, uint16_t sport = 5201) {
  const size_t l4 = proto == kIpProtoTcp ? 32 : 8;
  std::vector<uint8_t> p(20 + l4 + payload);
  write_ipv4_header(p.data(), uint16_t(p.size()), 100, proto, kSrc, kDst);
  p[6] = 0x40;  // DF
  store_be16(p.data() + 10, 0);
  store_be16(p.data() + 10, ipv4_header_checksum({p.data(), 20}));
  uint8_t* t = p.data() + 20;
  store_be16(t, sport);
  store_be16(t + 2, 40000);
  if (proto == kIpProtoTcp) {
    store_be32(t + 4, seq);
    store_be32(t + 8, 777);
    t[12] = uint8_t(8 << 4);
    t[13] = flags;
    store_be16(t + 14, 501);
    t[20] = 1, t[21] = 1, t[22] = 8, t[23] = 10;
    store_be32(t + 24, 0x11223344);
    store_be32(t + 28, 0x55667788);
  } else {
    store_be16(t + 4, uint16_t(l4 + payload));
  }
  std::mt19937 rng(seed);
  for (size_t i = 0; i < payload; ++i) p[20 + l4 + i] = uint8_t(rng());
  const size_t field = proto == kIpProtoTcp ? 16 : 6;
  const uint32_t pseudo = ipv4_pseudo_sum(kSrc, kDst, proto, uint16_t(l4 + payload));
  if (partial) {
    store_be16(t + field, csum_fold(pseudo));
  } else {
    const uint16_t c = ipv4_l4_checksum(kSrc, kDst, proto, {t, l4 + payload});
    store_be16(t + field, proto == kIpProtoUdp && c == 0 ? 0xffff : c);
  }
  return p;
}

VnetHeader gso_header(uint8_t type, uint16_t size, uint8_t proto) {
  VnetHeader h{};
  h.flags = kVnetNeedsCsum;
  h.gso_type = type;
  h.gso_size = size;
  h.hdr_len = proto == kIpProtoTcp ? 52 : 28;
  h.csum_start = 20;
  h.csum_offset = proto == kIpProtoTcp ? 16 : 6;
  return h;
}

std::vector<std::vector<uint8_t>> segment_all(const std::vector<uint8_t>& super, const VnetHeader& h) {
  std::vector<std::vector<uint8_t>> out;
  const uint32_t n = gso_segment_count(super, h);
  for (uint32_t i = 0; i < n; ++i) {
    std::vector<uint8_t> seg(2048);
    const size_t len = gso_write_segment(super, h, i, seg);
    assert_true(len > 0);
    seg.resize(len);
    out.push_back(seg);
  }
  return out;
}

void tcp_super_packet_segments(void**) {
  const auto super = make_packet(kIpProtoTcp, 5000, 0xfffff000, kTcpAck | kTcpPsh, true);
  const VnetHeader h = gso_header(kVnetGsoTcpV4, 1400, kIpProtoTcp);
  assert_int_equal(gso_segment_count(super, h), 4);
  const auto segs = segment_all(super, h);
  size_t off = 0;
  for (size_t i = 0; i < segs.size(); ++i) {
    const auto& s = segs[i];
    const size_t chunk = i < 3 ? 1400 : 800;
    assert_int_equal(s.size(), 20 + 32 + chunk);
    assert_int_equal(load_be16(s.data() + 2), s.size());
    assert_int_equal(load_be16(s.data() + 4), 100 + i);
    assert_int_equal(verify_ip(s), 0xffff);
    assert_int_equal(verify_l4(s), 0xffff);
    assert_int_equal(load_be32(s.data() + 24), uint32_t(0xfffff000 + off));  // wraps past 2^32
    assert_int_equal(s[33], i < 3 ? kTcpAck : (kTcpAck | kTcpPsh));
    assert_memory_equal(s.data() + 28, super.data() + 28, 4);   // ack,
    assert_memory_equal(s.data() + 34, super.data() + 34, 2);   // window,
    assert_memory_equal(s.data() + 40, super.data() + 40, 12);  // options unchanged
    assert_memory_equal(s.data() + 52, super.data() + 52 + off, chunk);
    off += chunk;
  }
}

void udp_super_packet_segments(void**) {
  const auto super = make_packet(kIpProtoUdp, 3000, 0, 0, true);
  const VnetHeader h = gso_header(kVnetGsoUdpL4, 1200, kIpProtoUdp);
  const auto segs = segment_all(super, h);
  assert_int_equal(segs.size(), 3);
  for (size_t i = 0; i < segs.size(); ++i) {
    const size_t chunk = i < 2 ? 1200 : 600;
    assert_int_equal(segs[i].size(), 28 + chunk);
    assert_int_equal(load_be16(segs[i].data() + 24), 8 + chunk);
    assert_int_equal(verify_ip(segs[i]), 0xffff);
    assert_int_equal(verify_l4(segs[i]), 0xffff);
    assert_memory_equal(segs[i].data() + 28, super.data() + 28 + i * 1200, chunk);
  }
}

void malformed_super_packets(void**) {
  auto super = make_packet(kIpProtoTcp, 3000, 1, kTcpAck, true);
  VnetHeader h = gso_header(kVnetGsoTcpV4, 1400, kIpProtoTcp);
  std::vector<uint8_t> out(2048);
  VnetHeader zero = h;
  zero.gso_size = 0;
  assert_int_equal(gso_segment_count(super, zero), 0);
  VnetHeader v6 = h;
  v6.gso_type = 4;  // TCPV6: never asked for
  assert_int_equal(gso_segment_count(super, v6), 0);
  VnetHeader udp = h;
  udp.gso_type = kVnetGsoUdpL4;  // the packet is TCP
  assert_int_equal(gso_segment_count(super, udp), 0);
  auto cut = super;
  cut.resize(cut.size() - 1);  // IPv4 total length no longer matches
  assert_int_equal(gso_segment_count(cut, h), 0);
  auto doff = super;
  doff[32] = 0xf0;  // a 60-byte TCP header: fits, still fine
  assert_int_equal(gso_segment_count(doff, h), 3);
  doff[32] = 0x40;  // 16 bytes: less than a TCP header
  assert_int_equal(gso_segment_count(doff, h), 0);
  auto frag = super;
  frag[6] = 0x20;  // MF
  assert_int_equal(gso_segment_count(frag, h), 0);
  auto v6hdr = super;
  v6hdr[0] = 0x60;
  assert_int_equal(gso_segment_count(v6hdr, h), 0);
  assert_int_equal(gso_write_segment(super, h, 3, out), 0);                       // past the last
  assert_int_equal(gso_write_segment(super, h, 0, {out.data(), 100}), 0);         // no room
  assert_int_equal(gso_segment_count({super.data(), 10}, h), 0);                  // shorter than a header
}

void partial_checksums_are_completed(void**) {
  for (uint8_t proto : {kIpProtoTcp, kIpProtoUdp}) {
    auto p = make_packet(proto, 333, 5, kTcpAck, true);
    VnetHeader h = gso_header(kVnetGsoNone, 0, proto);
    assert_true(complete_checksum(p, h));
    assert_int_equal(verify_l4(p), 0xffff);
    assert_memory_equal(p.data(), make_packet(proto, 333, 5, kTcpAck, false).data(), p.size());
    h.csum_offset = 4000;
    assert_false(complete_checksum(p, h));
    h.csum_start = 9999;
    assert_false(complete_checksum(p, h));
  }
}

// Segments -> coalesced packet (what the TUN writer writes) -> segments again: byte for byte what went in.
void coalesced_packets_segment_back(void**) {
  for (uint8_t proto : {kIpProtoTcp, kIpProtoUdp}) {
    const auto super = make_packet(proto, 9000, 42, kTcpAck | kTcpPsh, true);
    const VnetHeader h = gso_header(proto == kIpProtoTcp ? kVnetGsoTcpV4 : kVnetGsoUdpL4, 1300, proto);
    auto segs = segment_all(super, h);
    assert_int_equal(segs.size(), 7);
    const auto originals = segs;
    std::vector<CoalesceInfo> info;
    for (auto& s : segs) {
      info.push_back(coalesce_info(s, true));
      assert_int_equal(info.back().proto, proto);
    }
    uint32_t bytes = info[0].payload;
    for (size_t i = 1; i < segs.size(); ++i) {
      assert_true(can_follow(segs[0], info[0], info[i - 1], segs[i], info[i], bytes));
      bytes += info[i].payload;
    }
    const VnetHeader ch = make_coalesced(segs[0], info[0], bytes, info.back().push);
    assert_int_equal(ch.gso_size, 1300);
    assert_int_equal(ch.flags, kVnetNeedsCsum);
    std::vector<uint8_t> merged = segs[0];
    for (size_t i = 1; i < segs.size(); ++i)
      merged.insert(merged.end(), segs[i].begin() + info[i].l3_len + info[i].l4_len, segs[i].end());
    assert_int_equal(merged.size(), super.size());
    assert_int_equal(verify_ip(merged), 0xffff);
    // The same segments again, ids included (the first's id, then one more each).
    const auto again = segment_all(merged, ch);
    assert_int_equal(again.size(), originals.size());
    for (size_t i = 0; i < again.size(); ++i) {
      assert_int_equal(again[i].size(), originals[i].size());
      assert_memory_equal(again[i].data(), originals[i].data(), again[i].size());
    }
  }
}

void what_may_not_be_coalesced(void**) {
  const auto a = make_packet(kIpProtoTcp, 1000, 1000, kTcpAck, false);
  const CoalesceInfo ai = coalesce_info(a, false);
  assert_int_equal(ai.proto, kIpProtoTcp);
  assert_int_equal(ai.payload, 1000);
  auto follows = [&](std::vector<uint8_t> b) {
    const CoalesceInfo bi = coalesce_info(b, true);
    return bi.proto && can_follow(a, ai, ai, b, bi, ai.payload);
  };
  assert_true(follows(make_packet(kIpProtoTcp, 1000, 2000, kTcpAck, false)));
  assert_true(follows(make_packet(kIpProtoTcp, 10, 2000, kTcpAck | kTcpPsh, false)));   // shorter last, PSH
  assert_false(follows(make_packet(kIpProtoTcp, 1000, 2001, kTcpAck, false)));          // a gap
  assert_false(follows(make_packet(kIpProtoTcp, 1001, 2000, kTcpAck, false)));          // longer than the first
  assert_false(follows(make_packet(kIpProtoTcp, 1000, 2000, kTcpAck, false, 1, 5202))); // another flow
  auto b = make_packet(kIpProtoTcp, 1000, 2000, kTcpAck, false);
  auto rechecksum = [](std::vector<uint8_t>& p) {
    store_be16(p.data() + 36, 0);
    store_be16(p.data() + 36, ipv4_l4_checksum(kSrc, kDst, kIpProtoTcp, {p.data() + 20, p.size() - 20}));
  };
  auto ack = b;
  store_be32(ack.data() + 28, 778), rechecksum(ack);
  assert_false(follows(ack));
  auto win = b;
  store_be16(win.data() + 34, 502), rechecksum(win);
  assert_false(follows(win));
  auto ts = b;
  store_be32(ts.data() + 44, 0x11223345), rechecksum(ts);  // another timestamp
  assert_false(follows(ts));
  auto ttl = b;
  ttl[8] = 63;
  store_be16(ttl.data() + 10, 0);
  store_be16(ttl.data() + 10, ipv4_header_checksum({ttl.data(), 20}));
  assert_false(follows(ttl));
  // After a PSH or a shorter segment nothing follows.
  const auto pushed = make_packet(kIpProtoTcp, 1000, 1000, kTcpAck | kTcpPsh, false);
  CoalesceInfo pi = coalesce_info(pushed, false);
  assert_false(can_follow(a, ai, pi, b, coalesce_info(b, false), ai.payload));
  // Too big for one IPv4 packet.
  assert_false(can_follow(a, ai, ai, b, coalesce_info(b, false), 65000));

  // Not candidates at all.
  assert_int_equal(coalesce_info(make_packet(kIpProtoTcp, 0, 1, kTcpAck, false), true).proto, 0);          // bare ACK
  assert_int_equal(coalesce_info(make_packet(kIpProtoTcp, 10, 1, kTcpAck | kTcpFin, false), true).proto, 0);
  assert_int_equal(coalesce_info(make_packet(kIpProtoTcp, 10, 1, kTcpSyn, false), true).proto, 0);
  assert_int_equal(coalesce_info(make_packet(kIpProtoUdp, 10, 0, 0, false), false).proto, 0);  // UDP not asked
  assert_int_equal(coalesce_info(make_packet(kIpProtoUdp, 10, 0, 0, false), true).proto, kIpProtoUdp);
  auto bad = make_packet(kIpProtoTcp, 100, 1, kTcpAck, false);
  bad[60] ^= 1;  // a payload bit flipped: the checksum no longer verifies
  assert_int_equal(coalesce_info(bad, true).proto, 0);
  auto nosum = make_packet(kIpProtoUdp, 10, 0, 0, false);
  store_be16(nosum.data() + 26, 0);  // UDP without a checksum
  assert_int_equal(coalesce_info(nosum, true).proto, 0);
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(tcp_super_packet_segments),   cmocka_unit_test(udp_super_packet_segments),
      cmocka_unit_test(malformed_super_packets),     cmocka_unit_test(partial_checksums_are_completed),
      cmocka_unit_test(coalesced_packets_segment_back), cmocka_unit_test(what_may_not_be_coalesced),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
