// Internet checksum: csum_add against a plain word-by-word reference (any length, any alignment), RFC 1624
// incremental updates against full recomputation, and NAT rewrites (ipv4_rewrite_src/dst) producing exactly
// the frame the builder makes from scratch, including UDP's "0 means no checksum" and "computed 0 is 0xffff".
#include <random>

#include "tests/unit/cmocka.hpp"
#include "tests/unit/packet_builder.hpp"

#include "packet/checksum.hpp"
#include "packet/ipv4_rewrite.hpp"

using namespace dptun;
using namespace dptun::test;

// Reference: big-endian 16-bit words, a trailing odd byte is the high byte of a last word, end-around carry.
static uint16_t ref_sum(const uint8_t* p, size_t n) {
  uint64_t s = 0;
  for (size_t i = 0; i + 1 < n; i += 2) s += uint64_t(p[i]) << 8 | p[i + 1];
  if (n % 2) s += uint64_t(p[n - 1]) << 8;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return uint16_t(s);
}

// write_ipv4_header sums its checksum from the values it writes: the header it leaves verifies (to 0), equals the
// textbook header's bytes for the same fields, and stays valid where the sum carries (all-ones addresses, big ids).
static void written_ipv4_header_verifies(void**) {
  uint8_t h[20];
  write_ipv4_header(h, 0x73, 0, kIpProtoUdp, 0xc0a80001, 0xc0a800c7);
  auto want = from_hex("450000730000000040110000c0a80001c0a800c7");
  store_be16(want.data() + 10, ipv4_header_checksum(want));
  assert_memory_equal(h, want.data(), 20);
  std::mt19937 rng(7);
  for (int i = 0; i < 10000; ++i) {
    const uint32_t src = i < 2 ? 0xffffffffu : uint32_t(rng()), dst = i < 1 ? 0xffffffffu : uint32_t(rng());
    const uint16_t len = uint16_t(i < 3 ? 0xffff : 20 + rng() % 65516), id = uint16_t(i < 3 ? 0xffff : rng());
    const uint8_t proto = uint8_t(i < 3 ? 0xff : rng());
    write_ipv4_header(h, len, id, proto, src, dst);
    assert_int_equal(ipv4_header_checksum({h, 20}), 0);
    assert_int_equal(load_be32(h + 12), src);
    assert_int_equal(load_be32(h + 16), dst);
    assert_int_equal(load_be16(h + 2), len);
    assert_int_equal(load_be16(h + 4), id);
    assert_int_equal(h[9], proto);
  }
}

static void known_answers(void**) {
  // RFC 1071 section 3 example: 0001 f203 f4f5 f6f7 sums to ddf2.
  const uint8_t rfc[] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  assert_int_equal(csum_fold(csum_add(rfc)), 0xddf2);
  assert_int_equal(csum_finish(csum_add(rfc)), uint16_t(~0xddf2));
  // A textbook IPv4 header (192.168.0.1 -> 192.168.0.199, UDP, DF): checksum b861.
  auto hdr = from_hex("450000730000400040110000c0a80001c0a800c7");
  assert_int_equal(ipv4_header_checksum(hdr), 0xb861);
  store_be16(hdr.data() + 10, 0xb861);
  assert_int_equal(ipv4_header_checksum(hdr), 0);  // a valid header verifies to 0
  assert_int_equal(csum_fold(csum_add(hdr)), 0xffff);
  // Empty data adds nothing; odd trailing byte is the high byte.
  assert_int_equal(csum_add({}), 0);
  assert_int_equal(csum_add({}, 0x1234), 0x1234);
  const uint8_t one[] = {0xab};
  assert_int_equal(csum_fold(csum_add(one)), 0xab00);
  const uint8_t three[] = {0x12, 0x34, 0x56};
  assert_int_equal(csum_fold(csum_add(three)), 0x1234 + 0x5600);
  // End-around carry: ffff + 0001 = 0001 (not 0000).
  const uint8_t carry[] = {0xff, 0xff, 0x00, 0x01};
  assert_int_equal(csum_fold(csum_add(carry)), 0x0001);
  // Pseudo header sum.
  assert_int_equal(ipv4_pseudo_sum(0x0a000001, 0x0a000002, kIpProtoUdp, 30), 0x0a00 + 1 + 0x0a00 + 2 + 17 + 30);
}

static void csum_add_matches_reference(void**) {
  std::mt19937 rng(1);
  std::vector<uint8_t> buf(300 + 16);
  for (int round = 0; round < 20; ++round) {
    for (auto& b : buf) b = uint8_t(rng());
    if (round == 1) std::fill(buf.begin(), buf.end(), 0xff);  // maximal carries
    if (round == 2) std::fill(buf.begin(), buf.end(), 0x00);
    for (size_t start = 0; start < 8; ++start) {
      for (size_t len = 0; len <= 300; ++len) {
        const uint8_t* p = buf.data() + start;
        uint16_t ref = ref_sum(p, len);
        uint32_t got = csum_add({p, len});
        assert_true(got <= 0xffff);  // folded when no initial sum is given
        if (got != ref) fail_msg("csum_add len %zu start %zu: got %04x want %04x", len, start, got, ref);
        // With an initial (non-folded) sum: same ones-complement value.
        uint32_t init = rng() & 0x3ffff;
        uint16_t want = csum_fold(uint32_t(ref) + init);
        if (csum_fold(csum_add({p, len}, init)) != want)
          fail_msg("csum_add len %zu start %zu init %x", len, start, init);
      }
    }
  }
}

static void csum_add_chains(void**) {
  // Summing an even-length prefix and then the rest equals summing the whole.
  std::mt19937 rng(2);
  std::vector<uint8_t> buf(301);
  for (auto& b : buf) b = uint8_t(rng());
  for (size_t cut = 0; cut <= buf.size(); cut += 2) {
    uint32_t a = csum_add({buf.data() + cut, buf.size() - cut}, csum_add({buf.data(), cut}));
    assert_int_equal(csum_fold(a), ref_sum(buf.data(), buf.size()));
  }
}

// A buffer whose 16-bit checksum at `csum_off` covers the whole buffer.
static void set_checksum(std::vector<uint8_t>& b, size_t csum_off) {
  store_be16(b.data() + csum_off, 0);
  store_be16(b.data() + csum_off, csum_finish(csum_add(b)));
}

static void csum_replace_equals_recompute(void**) {
  std::mt19937 rng(3);
  for (int round = 0; round < 20000; ++round) {
    std::vector<uint8_t> b(40);
    for (auto& x : b) x = uint8_t(rng());
    const size_t csum_off = 16;
    set_checksum(b, csum_off);
    assert_int_equal(csum_fold(csum_add(b)), 0xffff);
    // 16-bit field at a word-aligned offset other than the checksum.
    size_t off16 = (rng() % 20) * 2;
    if (off16 == csum_off) off16 = 0;
    uint16_t new16 = uint16_t(rng());
    if (round % 7 == 0) new16 = 0;
    if (round % 7 == 1) new16 = 0xffff;
    uint16_t old16 = load_be16(b.data() + off16);
    store_be16(b.data() + off16, new16);
    csum_replace16(b.data() + csum_off, old16, new16);
    uint16_t incremental = load_be16(b.data() + csum_off);
    set_checksum(b, csum_off);
    if (incremental != load_be16(b.data() + csum_off))
      fail_msg("csum_replace16 round %d: %04x vs recomputed %04x", round, incremental, load_be16(b.data() + csum_off));
    // 32-bit field at a word-aligned offset not overlapping the checksum.
    size_t off32 = (rng() % 19) * 2;
    if (off32 + 4 > csum_off && off32 < csum_off + 2) off32 = 20;
    uint32_t new32 = uint32_t(rng());
    if (round % 5 == 0) new32 = 0;
    if (round % 5 == 1) new32 = 0xffffffff;
    uint32_t old32 = load_be32(b.data() + off32);
    store_be32(b.data() + off32, new32);
    csum_replace32(b.data() + csum_off, old32, new32);
    incremental = load_be16(b.data() + csum_off);
    set_checksum(b, csum_off);
    if (incremental != load_be16(b.data() + csum_off))
      fail_msg("csum_replace32 round %d: %04x vs recomputed %04x", round, incremental, load_be16(b.data() + csum_off));
  }
}

static uint8_t* ip_of(std::vector<uint8_t>& f) { return f.data() + kEthHeaderLen; }
static uint8_t* l4_of(std::vector<uint8_t>& f) { return f.data() + kEthHeaderLen + (f[kEthHeaderLen] & 15) * 4; }

static void rewrite_matches_rebuild(void**) {
  std::mt19937 rng(4);
  for (uint8_t proto : {kIpProtoTcp, kIpProtoUdp}) {
    for (int round = 0; round < 5000; ++round) {
      FrameSpec s;
      s.proto = proto;
      s.src_ip = rng(), s.dst_ip = rng();
      s.src_port = uint16_t(rng()), s.dst_port = uint16_t(rng());
      s.payload = rng() % 64;
      if (round % 3 == 0) s.ip_options = {1, 1, 1, 0};
      if (round % 4 == 0) s.tcp_options = {2, 4, 0x05, 0xb4};
      auto f = build_ipv4_frame(s);
      assert_true(ipv4_checksums_ok(ip_of(f)));
      FrameSpec t = s;
      const bool src = round % 2;
      uint32_t new_ip = round % 5 == 0 ? (src ? s.src_ip : s.dst_ip) : uint32_t(rng());
      uint16_t new_port = round % 6 == 0 ? (src ? s.src_port : s.dst_port) : uint16_t(rng());
      if (src) {
        ipv4_rewrite_src(ip_of(f), l4_of(f), proto, new_ip, new_port);
        t.src_ip = new_ip, t.src_port = new_port;
      } else {
        ipv4_rewrite_dst(ip_of(f), l4_of(f), proto, new_ip, new_port);
        t.dst_ip = new_ip, t.dst_port = new_port;
      }
      assert_true(ipv4_checksums_ok(ip_of(f)));
      // Byte for byte what the builder makes with the new addresses (its checksums are full recomputations).
      auto want = build_ipv4_frame(t);
      assert_int_equal(f.size(), want.size());
      if (f != want) fail_msg("proto %u round %d: rewritten frame differs from a rebuilt one", proto, round);
    }
  }
}

static void rewrite_both_directions(void**) {
  // SNAT then DNAT on the same packet (what the gateway does to a returning packet) keeps everything valid.
  for (uint8_t proto : {kIpProtoTcp, kIpProtoUdp}) {
    FrameSpec s;
    s.proto = proto;
    auto f = build_ipv4_frame(s);
    ipv4_rewrite_src(ip_of(f), l4_of(f), proto, 0xc0a80101, 1234);
    ipv4_rewrite_dst(ip_of(f), l4_of(f), proto, 0x08080808, 53);
    assert_true(ipv4_checksums_ok(ip_of(f)));
    assert_int_equal(load_be32(ip_of(f) + kIpv4OffSrc), 0xc0a80101);
    assert_int_equal(load_be32(ip_of(f) + kIpv4OffDst), 0x08080808);
    assert_int_equal(load_be16(l4_of(f)), 1234);
    assert_int_equal(load_be16(l4_of(f) + 2), 53);
    // Undo: back to the original frame exactly.
    ipv4_rewrite_src(ip_of(f), l4_of(f), proto, s.src_ip, s.src_port);
    ipv4_rewrite_dst(ip_of(f), l4_of(f), proto, s.dst_ip, s.dst_port);
    assert_true(f == build_ipv4_frame(s));
  }
}

static void udp_zero_checksum_stays_zero(void**) {
  std::mt19937 rng(5);
  for (int round = 0; round < 1000; ++round) {
    FrameSpec s;
    s.proto = kIpProtoUdp;
    s.payload = rng() % 40;
    auto f = build_ipv4_frame(s);
    store_be16(l4_of(f) + kUdpOffChecksum, 0);  // sender did not compute a checksum
    if (round % 2)
      ipv4_rewrite_src(ip_of(f), l4_of(f), kIpProtoUdp, uint32_t(rng()), uint16_t(rng()));
    else
      ipv4_rewrite_dst(ip_of(f), l4_of(f), kIpProtoUdp, uint32_t(rng()), uint16_t(rng()));
    assert_int_equal(load_be16(l4_of(f) + kUdpOffChecksum), 0);
    assert_true(ipv4_checksums_ok(ip_of(f)));  // the IP header checksum is still fixed
  }
}

// UDP checksum the segment would have if computed from scratch (0 not yet mapped to 0xffff).
static uint16_t raw_udp_checksum(std::vector<uint8_t> f) {
  uint8_t* ip = ip_of(f);
  uint8_t* l4 = l4_of(f);
  store_be16(l4 + kUdpOffChecksum, 0);
  size_t l4_len = load_be16(ip + 2) - size_t(ip[0] & 15) * 4;
  return ipv4_l4_checksum(load_be32(ip + 12), load_be32(ip + 16), kIpProtoUdp, {l4, l4_len});
}

static void udp_computed_zero_is_sent_as_ffff(void**) {
  for (int which = 0; which < 2; ++which) {
    FrameSpec s;
    s.proto = kIpProtoUdp;
    s.payload = 10;
    auto base = build_ipv4_frame(s);
    // Search the port that makes the full checksum compute to 0.
    int found = -1;
    for (int port = 0; port < 65536 && found < 0; ++port) {
      auto g = base;
      store_be16(l4_of(g) + (which ? 2 : 0), uint16_t(port));
      if (raw_udp_checksum(g) == 0) found = port;
    }
    assert_true(found >= 0);
    auto f = base;
    if (which)
      ipv4_rewrite_dst(ip_of(f), l4_of(f), kIpProtoUdp, s.dst_ip, uint16_t(found));
    else
      ipv4_rewrite_src(ip_of(f), l4_of(f), kIpProtoUdp, s.src_ip, uint16_t(found));
    assert_int_equal(load_be16(l4_of(f) + kUdpOffChecksum), 0xffff);
    assert_true(ipv4_checksums_ok(ip_of(f)));
    // The same through the 32-bit (address) path: find an address giving a computed 0.
    int found_ip = -1;
    for (int low = 0; low < 65536 && found_ip < 0; ++low) {
      auto g = base;
      uint32_t a = (which ? s.dst_ip : s.src_ip) & 0xffff0000u;
      store_be32(ip_of(g) + (which ? kIpv4OffDst : kIpv4OffSrc), a | uint32_t(low));
      if (raw_udp_checksum(g) == 0) found_ip = low;
    }
    assert_true(found_ip >= 0);
    f = base;
    uint32_t a = ((which ? s.dst_ip : s.src_ip) & 0xffff0000u) | uint32_t(found_ip);
    if (which)
      ipv4_rewrite_dst(ip_of(f), l4_of(f), kIpProtoUdp, a, s.dst_port);
    else
      ipv4_rewrite_src(ip_of(f), l4_of(f), kIpProtoUdp, a, s.src_port);
    assert_int_equal(load_be16(l4_of(f) + kUdpOffChecksum), 0xffff);
    assert_true(ipv4_checksums_ok(ip_of(f)));
  }
}

static void udp_checksum_never_becomes_zero(void**) {
  std::mt19937 rng(6);
  int hit_ffff = 0;
  for (int round = 0; round < 1000000; ++round) {
    FrameSpec s;
    s.proto = kIpProtoUdp;
    s.payload = 4;
    s.src_ip = rng(), s.dst_ip = rng(), s.src_port = uint16_t(rng()), s.dst_port = uint16_t(rng());
    auto f = build_ipv4_frame(s);
    assert_int_not_equal(load_be16(l4_of(f) + kUdpOffChecksum), 0);
    // About 1 rewrite in 65535 hits the computed-0 case (a dozen or so here).
    if (round % 2)
      ipv4_rewrite_src(ip_of(f), l4_of(f), kIpProtoUdp, s.src_ip, uint16_t(rng()));
    else
      ipv4_rewrite_dst(ip_of(f), l4_of(f), kIpProtoUdp, uint32_t(rng()), uint16_t(rng()));
    uint16_t c = load_be16(l4_of(f) + kUdpOffChecksum);
    if (c == 0) fail_msg("round %d: UDP checksum rewritten to 0", round);
    hit_ffff += c == 0xffff;
    assert_true(ipv4_checksums_ok(ip_of(f)));
  }
  assert_true(hit_ffff > 0);  // the interesting case did occur
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(known_answers),
      cmocka_unit_test(written_ipv4_header_verifies),
      cmocka_unit_test(csum_add_matches_reference),
      cmocka_unit_test(csum_add_chains),
      cmocka_unit_test(csum_replace_equals_recompute),
      cmocka_unit_test(rewrite_matches_rebuild),
      cmocka_unit_test(rewrite_both_directions),
      cmocka_unit_test(udp_zero_checksum_stays_zero),
      cmocka_unit_test(udp_computed_zero_is_sent_as_ffff),
      cmocka_unit_test(udp_checksum_never_becomes_zero),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
