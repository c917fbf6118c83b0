// dpagent's reassembly with copies: a 65507-byte UDP datagram cut into the fragments the gateway (or the kernel)
// sends comes back byte for byte in any order, with its checksum intact; a first fragment's IP options stay;
// interleaved datagrams and scopes stay apart; a reused buffer holds nothing of its previous datagram; overlaps,
// timeouts and floods are counted by reason, and memory stays bounded.
#include <algorithm>
#include <random>

#include "tests/unit/cmocka.hpp"
#include "tests/unit/packet_builder.hpp"

#include "agent/datagram_reassembler.hpp"
#include "packet/ipv4_fragment.hpp"
#include "packet/parser.hpp"

using namespace dptun;
using namespace dptun::test;

namespace {

ReassemblyLimits limits() {
  ReassemblyLimits l;
  l.datagrams = 8;
  l.fragments = 512;
  l.fragments_per_datagram = 128;
  l.max_size = 65535;
  l.timeout_ns = 1'000'000;
  return l;
}

// A UDP datagram (an IP packet) with `payload` bytes and a valid checksum.
std::vector<uint8_t> udp_packet(size_t payload, uint16_t id, std::vector<uint8_t> options = {}) {
  FrameSpec s;
  s.proto = kIpProtoUdp;
  s.payload = payload;
  s.ip_options = std::move(options);
  auto f = build_ipv4_frame(s);
  std::vector<uint8_t> ip(f.begin() + 14, f.end());
  store_be16(ip.data() + 4, id);
  store_be16(ip.data() + 10, 0);
  store_be16(ip.data() + 10, ipv4_header_checksum({ip.data(), size_t(ip[0] & 15) * 4}));
  return ip;
}

// Its fragments, each at most `max_packet` bytes, as a sender of ours writes them.
std::vector<std::vector<uint8_t>> fragments(const std::vector<uint8_t>& ip, uint32_t max_packet) {
  const uint32_t hl = uint32_t(ip[0] & 15) * 4;
  const uint32_t payload = uint32_t(ip.size()) - hl;
  const FragmentPlan plan = plan_ipv4_fragments(hl, payload, max_packet);
  std::vector<std::vector<uint8_t>> out;
  for (uint32_t k = 0; k < plan.count; ++k) {
    const uint32_t off = k * plan.chunk;
    const uint32_t len = std::min(plan.chunk, payload - off);
    std::vector<uint8_t> f(60 + len);
    const size_t fh = write_ipv4_fragment_header(f.data(), {ip.data(), hl}, load_be16(ip.data() + 4), off, len,
                                                 k + 1 < plan.count);
    std::memcpy(f.data() + fh, ip.data() + hl + off, len);
    f.resize(fh + len);
    PacketInfo pi;
    assert_int_equal(parse_ip(f, pi), ParseStatus::Ok);  // what the agent checks before add()
    assert_true(pi.is_fragment);
    assert_true(f.size() <= max_packet);
    out.push_back(std::move(f));
  }
  return out;
}

void assert_same_datagram(std::span<const uint8_t> got, const std::vector<uint8_t>& want) {
  assert_int_equal(got.size(), want.size());
  const size_t hl = size_t(want[0] & 15) * 4;
  assert_int_equal(load_be16(got.data() + 6), 0);  // a whole datagram again
  assert_int_equal(ipv4_header_checksum({got.data(), hl}), 0);
  assert_memory_equal(got.data() + 12, want.data() + 12, 8);  // addresses
  assert_memory_equal(got.data() + hl, want.data() + hl, want.size() - hl);
  if (hl > 20) assert_memory_equal(got.data() + 20, want.data() + 20, hl - 20);  // options
  assert_true(ipv4_checksums_ok(got.data()));
  PacketInfo pi;
  assert_true(parse_tunnel_packet(got, pi));
}

}  // namespace

static void largest_datagram_in_any_order(void**) {
  const auto ip = udp_packet(65507, 0x4242);
  auto frags = fragments(ip, 1428);  // a 1500-byte underlay's frames
  assert_int_equal(frags.size(), 47);
  std::mt19937 rng(3);
  for (int round = 0; round < 4; ++round) {
    if (round == 1) std::reverse(frags.begin(), frags.end());
    if (round > 1) std::shuffle(frags.begin(), frags.end(), rng);
    DatagramReassembler r(limits(), 99);
    std::span<uint8_t> whole;
    for (size_t i = 0; i < frags.size(); ++i) {
      whole = r.add(frags[i], 5, 0);
      assert_true(whole.empty() == (i + 1 < frags.size()));
    }
    assert_same_datagram(whole, ip);
    assert_int_equal(r.stats().fragments, 47);
    assert_int_equal(r.stats().reassembled, 1);
    assert_int_equal(r.datagrams(), 0);
  }
}

static void options_interleaving_scopes_and_reuse(void**) {
  DatagramReassembler r(limits(), 1);
  const auto a = udp_packet(3000, 1, {0x94, 0x04, 0, 0});  // router alert: a 24-byte header
  const auto b = udp_packet(9000, 2);
  const auto fa = fragments(a, 1428), fb = fragments(b, 1428);
  // Interleaved, b's under two scopes (two flows' datagrams with the same addresses and id).
  std::span<uint8_t> done_a, done_b0, done_b1;
  for (size_t i = 0; i < std::max(fa.size(), fb.size()); ++i) {
    if (i < fa.size()) {
      auto w = r.add(fa[i], 0, 0);
      if (!w.empty()) {
        assert_same_datagram(w, a);
        done_a = w;
      }
    }
    if (i < fb.size()) {
      auto w0 = r.add(fb[i], 10, 0);
      if (!w0.empty()) assert_same_datagram(w0, b), done_b0 = w0;
      auto w1 = r.add(fb[fb.size() - 1 - i], 11, 0);
      if (!w1.empty()) assert_same_datagram(w1, b), done_b1 = w1;
    }
  }
  assert_false(done_a.empty());
  assert_false(done_b0.empty());
  assert_false(done_b1.empty());
  assert_int_equal(r.stats().reassembled, 3);
  // A smaller datagram in a reused buffer: only its own bytes.
  const auto c = udp_packet(2000, 3);
  std::span<uint8_t> done;
  for (const auto& f : fragments(c, 1000)) done = r.add(f, 0, 0);
  assert_same_datagram(done, c);
}

static void hostile_fragments_are_counted(void**) {
  DatagramReassembler r(limits(), 2);
  const auto ip = udp_packet(5000, 7);
  auto frags = fragments(ip, 1428);
  // An overlapping fragment: the datagram is dropped, and counted.
  auto bad = frags[1];
  store_be16(bad.data() + 6, uint16_t(kIpv4FlagMf | ((load_be16(bad.data() + 6) & kIpv4FragOffsetMask) - 1)));
  store_be16(bad.data() + 10, 0);
  store_be16(bad.data() + 10, ipv4_header_checksum({bad.data(), 20}));
  assert_true(r.add(frags[0], 0, 0).empty());
  assert_true(r.add(bad, 0, 0).empty());
  for (size_t i = 1; i < frags.size(); ++i) assert_true(r.add(frags[i], 0, 0).empty());
  assert_int_equal(r.stats().drops[size_t(FragDrop::Overlap)], 1 + 1 + (frags.size() - 1));
  assert_int_equal(r.stats().reassembled, 0);
  // A flood of datagrams that never complete: at most 8 at a time; the oldest are evicted.
  for (uint16_t id = 100; id < 400; ++id) assert_true(r.add(fragments(udp_packet(2000, id), 1428)[0], 0, 1).empty());
  assert_true(r.datagrams() <= 8);
  assert_true(r.stats().evictions >= 290);
  // ... and time out.
  r.expire(1'000'000 + 1);
  assert_int_equal(r.datagrams(), 0);
  assert_true(r.stats().timeouts >= 7);
  // A datagram whose fragments all come still completes.
  std::span<uint8_t> done;
  for (const auto& f : fragments(udp_packet(1800, 9), 1428)) done = r.add(f, 0, 2'000'000);
  assert_false(done.empty());
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(largest_datagram_in_any_order),
      cmocka_unit_test(options_interleaving_scopes_and_reuse),
      cmocka_unit_test(hostile_fragments_are_counted),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
