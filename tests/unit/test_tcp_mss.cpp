// TCP MSS clamping: SYN MSS options above the limit are lowered with a checksum that still verifies (the
// option at even and odd offsets); everything else (lower MSS, non-SYN, no option, malformed option lists) is
// left byte-for-byte alone, and the option walk never reads past the header it is given.
#include <random>

#include "tests/unit/cmocka.hpp"
#include "tests/unit/packet_builder.hpp"

#include "packet/tcp_mss.hpp"

using namespace dptun;
using namespace dptun::test;

namespace {

struct Segment {
  std::vector<uint8_t> frame;
  size_t l3 = 0;
  size_t tcp_len = 0;
  uint8_t* ip() { return frame.data() + l3; }
  uint8_t* tcp() { return frame.data() + l3 + 20; }
};

Segment make(std::vector<uint8_t> options, uint8_t flags = kTcpSyn, size_t payload = 0) {
  FrameSpec s;
  s.tcp_flags = flags;
  s.tcp_options = std::move(options);
  s.payload = payload;
  Segment g;
  g.frame = build_ipv4_frame(s, &g.l3);
  g.tcp_len = 20 + s.tcp_options.size();
  return g;
}

// Runs the clamp on an exact-size copy of the TCP header (so a read past it is a heap overflow that
// AddressSanitizer reports), then copies the result back into the frame.
bool clamp(Segment& g, uint16_t max_mss) {
  std::vector<uint8_t> hdr(g.tcp(), g.tcp() + g.tcp_len);
  bool changed = tcp_clamp_mss(hdr.data(), hdr.size(), max_mss);
  std::copy(hdr.begin(), hdr.end(), g.tcp());
  return changed;
}

uint16_t find(Segment& g) {
  std::vector<uint8_t> hdr(g.tcp(), g.tcp() + g.tcp_len);
  return tcp_find_mss(hdr.data(), hdr.size());
}

// Asserts the clamp leaves a segment with these options alone.
void expect_untouched(std::vector<uint8_t> options, uint8_t flags = kTcpSyn, uint16_t max_mss = 1388) {
  Segment g = make(std::move(options), flags);
  auto before = g.frame;
  assert_false(clamp(g, max_mss));
  assert_true(g.frame == before);
}

}  // namespace

static void syn_mss_is_clamped(void**) {
  Segment g = make({2, 4, 0x05, 0xb4});  // MSS 1460
  assert_int_equal(find(g), 1460);
  auto before = g.frame;
  assert_true(clamp(g, 1388));
  assert_int_equal(find(g), 1388);
  assert_int_equal(load_be16(g.tcp() + 22), 1388);
  assert_true(ipv4_checksums_ok(g.ip()));
  // Only the MSS value and the checksum changed.
  for (size_t i = 0; i < g.frame.size(); ++i) {
    const size_t t = i - g.l3 - 20;  // offset in the TCP header (wraps for bytes before it)
    const bool expected_change = t == 16 || t == 17 || t == 22 || t == 23;
    if (!expected_change) assert_int_equal(g.frame[i], before[i]);
  }
  // The result is what a sender announcing 1388 would have built.
  Segment want = make({2, 4, 0x05, 0x6c});
  assert_true(g.frame == want.frame);
  // Clamping again changes nothing.
  before = g.frame;
  assert_false(clamp(g, 1388));
  assert_true(g.frame == before);
}

static void syn_ack_is_clamped(void**) {
  Segment g = make({2, 4, 0x05, 0xb4}, kTcpSyn | kTcpAck, 20);
  assert_true(clamp(g, 1388));
  assert_int_equal(find(g), 1388);
  assert_true(ipv4_checksums_ok(g.ip()));
}

static void odd_offset_mss_is_clamped(void**) {
  // NOP, MSS 1460, NOPs: the MSS value sits at TCP offset 23, straddling two checksum words.
  Segment g = make({1, 2, 4, 0x05, 0xb4, 1, 1, 1});
  assert_int_equal(find(g), 1460);
  assert_true(clamp(g, 1388));
  assert_int_equal(find(g), 1388);
  assert_int_equal(load_be16(g.tcp() + 23), 1388);
  assert_true(ipv4_checksums_ok(g.ip()));
  Segment want = make({1, 2, 4, 0x05, 0x6c, 1, 1, 1});
  assert_true(g.frame == want.frame);

  // SACK-permitted then NOP then MSS: value at offset 25, with real option bytes around it.
  g = make({4, 2, 1, 2, 4, 0x23, 0x28, 0});  // MSS 9000, then end of list
  assert_int_equal(find(g), 9000);
  assert_true(clamp(g, 1400));
  assert_int_equal(find(g), 1400);
  assert_true(ipv4_checksums_ok(g.ip()));
  assert_int_equal(g.tcp()[20], 4);
  assert_int_equal(g.tcp()[21], 2);
  assert_int_equal(g.tcp()[22], 1);
  assert_int_equal(g.tcp()[23], 2);
  assert_int_equal(g.tcp()[24], 4);
  assert_int_equal(g.tcp()[27], 0);
}

static void mss_after_other_options(void**) {
  // Window scale (3 bytes) + NOP, then MSS; timestamps before MSS.
  Segment g = make({3, 3, 7, 1, 2, 4, 0x05, 0xb4});
  assert_true(clamp(g, 1200));
  assert_int_equal(find(g), 1200);
  assert_true(ipv4_checksums_ok(g.ip()));
  assert_int_equal(g.tcp()[22], 7);
  g = make({1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 2, 4, 0x05, 0xb4});
  assert_true(clamp(g, 1200));
  assert_int_equal(find(g), 1200);
  assert_true(ipv4_checksums_ok(g.ip()));
}

static void random_values_keep_checksum_valid(void**) {
  std::mt19937 rng(7);
  for (int round = 0; round < 20000; ++round) {
    uint16_t mss = uint16_t(rng());
    uint16_t max = uint16_t(rng());
    const size_t lead = round % 4;  // NOPs before the option: even and odd offsets
    std::vector<uint8_t> opt(lead, 1);
    opt.insert(opt.end(), {2, 4, uint8_t(mss >> 8), uint8_t(mss)});
    while (opt.size() % 4) opt.push_back(1);
    Segment g = make(opt, kTcpSyn, rng() % 30);
    auto before = g.frame;
    bool changed = clamp(g, max);
    assert_int_equal(changed, mss > max);
    assert_int_equal(find(g), mss > max ? max : mss);
    assert_true(ipv4_checksums_ok(g.ip()));
    if (!changed) assert_true(g.frame == before);
  }
}

static void lower_or_equal_mss_untouched(void**) {
  expect_untouched({2, 4, 0x05, 0x00});                // 1280 < 1388
  expect_untouched({2, 4, 0x05, 0x6c});                // exactly 1388
  expect_untouched({1, 2, 4, 0x05, 0x00, 1, 1, 1});    // odd offset, lower
  expect_untouched({2, 4, 0x00, 0x00});                // 0
}

static void non_syn_untouched(void**) {
  expect_untouched({2, 4, 0x05, 0xb4}, kTcpAck);
  expect_untouched({2, 4, 0x05, 0xb4}, kTcpAck | kTcpPsh);
  expect_untouched({2, 4, 0x05, 0xb4}, kTcpRst);
  expect_untouched({2, 4, 0x05, 0xb4}, kTcpFin | kTcpAck);
  expect_untouched({2, 4, 0x05, 0xb4}, 0);
}

static void no_mss_option_untouched(void**) {
  expect_untouched({});
  expect_untouched({1, 1, 1, 1});
  expect_untouched({1, 1, 1, 0});
  expect_untouched({1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8});  // timestamps only
  expect_untouched({0, 0, 0, 0, 2, 4, 0x05, 0xb4});         // MSS after end of option list: not an option
  Segment g = make({1, 1, 1, 1});
  assert_int_equal(find(g), 0);
}

static void malformed_options_untouched(void**) {
  const std::vector<std::vector<uint8_t>> bad = {
      {3, 0, 1, 1, 2, 4, 0x05, 0xb4},  // length 0 before the MSS option
      {3, 1, 1, 1, 2, 4, 0x05, 0xb4},  // length 1
      {8, 0, 2, 4, 0x05, 0xb4, 1, 1},  // length 0 then MSS
      {2, 0, 0x05, 0xb4},              // MSS with length 0
      {2, 1, 0x05, 0xb4},              // MSS with length 1
      {2, 2, 0x05, 0xb4},              // MSS with length 2
      {2, 3, 0x05, 0xb4},              // MSS with length 3
      {2, 6, 0x05, 0xb4, 0, 0, 1, 1},  // MSS with length 6
      {2, 8, 0x05, 0xb4, 0, 0, 0, 0},  // MSS with length 8, fits the header
      {1, 1, 3, 10, 2, 4, 0x05, 0xb4}, // option length running past the header
      {1, 1, 1, 1, 1, 1, 2, 4},        // MSS option whose value would be past the header
      {1, 1, 1, 1, 1, 1, 1, 2},        // MSS kind as the last byte: no length byte
      {1, 1, 1, 3},                    // another kind as the last byte
      {1, 1, 2, 4},                    // MSS option cut by the header end after its length byte
      {1, 2, 255, 0x05, 0xb4, 1, 1, 1},// MSS length 255
  };
  for (const auto& opt : bad) {
    Segment g = make(opt);
    auto before = g.frame;
    assert_false(clamp(g, 536));
    assert_true(g.frame == before);
    assert_int_equal(find(g), 0);
  }
}

static void exact_header_lengths(void**) {
  // The option walk is bounded by header_len, not by the data offset in the header: hand it cut headers.
  Segment g = make({1, 1, 1, 1, 2, 4, 0x05, 0xb4});
  for (size_t len = 0; len < 28; ++len) {
    std::vector<uint8_t> hdr(g.tcp(), g.tcp() + len);
    assert_int_equal(tcp_find_mss(hdr.data(), hdr.size()), 0);
    auto copy = hdr;
    assert_false(tcp_clamp_mss(hdr.data(), hdr.size(), 536));
    assert_true(hdr == copy);
  }
  std::vector<uint8_t> hdr(g.tcp(), g.tcp() + 28);
  assert_int_equal(tcp_find_mss(hdr.data(), hdr.size()), 1460);
  assert_true(tcp_clamp_mss(hdr.data(), hdr.size(), 536));
  assert_int_equal(tcp_find_mss(hdr.data(), hdr.size()), 536);
}

static void random_options_never_overrun(void**) {
  // Random option bytes on exact-size headers: no crash or sanitizer report, and the clamp only ever changes
  // the segment when tcp_find_mss reports an MSS above the limit, leaving a valid checksum.
  std::mt19937 rng(8);
  for (int round = 0; round < 50000; ++round) {
    size_t n = (rng() % 11) * 4;
    std::vector<uint8_t> opt(n);
    for (auto& b : opt) {
      uint32_t r = rng() % 8;
      b = r < 3 ? uint8_t(r) : uint8_t(rng());  // plenty of 0/1/2 kinds
    }
    Segment g = make(opt);
    uint16_t mss = find(g);
    auto before = g.frame;
    bool changed = clamp(g, 1000);
    assert_int_equal(changed, mss > 1000);
    if (changed) {
      assert_int_equal(find(g), 1000);
    } else {
      assert_true(g.frame == before);
    }
    assert_true(ipv4_checksums_ok(g.ip()));
  }
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(syn_mss_is_clamped),
      cmocka_unit_test(syn_ack_is_clamped),
      cmocka_unit_test(odd_offset_mss_is_clamped),
      cmocka_unit_test(mss_after_other_options),
      cmocka_unit_test(random_values_keep_checksum_valid),
      cmocka_unit_test(lower_or_equal_mss_untouched),
      cmocka_unit_test(non_syn_untouched),
      cmocka_unit_test(no_mss_option_untouched),
      cmocka_unit_test(malformed_options_untouched),
      cmocka_unit_test(exact_header_lengths),
      cmocka_unit_test(random_options_never_overrun),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
