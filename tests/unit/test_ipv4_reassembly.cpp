// IPv4 fragments: splitting a packet (plan, fragment headers), reading a fragment's place, the reassembled header,
// the head-only parse of a reassembled datagram, and the reassembly table's bookkeeping and bounds: every order,
// duplicates, overlaps, oversize, too many fragments, disagreeing ends, timeouts, eviction under a flood, scopes,
// and (randomised) that every fragment handed in comes back exactly once whatever happens.
#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "tests/unit/cmocka.hpp"
#include "tests/unit/packet_builder.hpp"

#include "packet/ipv4_fragment.hpp"
#include "packet/ipv4_reassembly.hpp"
#include "packet/parser.hpp"

using namespace dptun;
using namespace dptun::test;

namespace {

using Table = Ipv4Reassembly<int>;  // fragments named by a number

// Records what the table gives back, and checks nothing comes back twice.
struct Sink {
  std::map<int, FragDrop> dropped;
  std::vector<FragDrop> datagrams;
  void fragment_dropped(int f, FragDrop why) {
    assert_true(dropped.emplace(f, why).second);
  }
  void datagram_dropped(FragDrop why) { datagrams.push_back(why); }
};

const FragmentKey kKey{0x0a000001, 0x0a000002, 0x1234, 17, 0};

FragmentInfo piece(uint32_t offset, uint32_t len, bool more, uint16_t hl = 20) {
  return FragmentInfo{offset, len, hl, more};
}

Table::Result add(Table& t, Sink& s, const FragmentKey& k, const FragmentInfo& fi, int frag, uint64_t now = 0,
                  FragDrop* why_out = nullptr) {
  FragDrop why;
  uint32_t slot;
  const Table::Result r = t.add(k, fi, frag, now, s, why, slot);
  if (why_out) *why_out = why;
  if (r != Table::Result::Dropped) assert_int_not_equal(slot, Table::kNone);
  return r;
}

ReassemblyLimits limits(uint32_t datagrams = 16, uint32_t fragments = 256, uint32_t per = 128,
                        uint32_t max_size = 65535) {
  ReassemblyLimits l;
  l.datagrams = datagrams;
  l.fragments = fragments;
  l.fragments_per_datagram = per;
  l.max_size = max_size;
  l.timeout_ns = 1000;
  return l;
}

}  // namespace

static void plan_and_fragment_headers(void**) {
  // 3000 bytes of UDP in a 1428-byte budget: 1408 + 1408 + 184.
  FragmentPlan p = plan_ipv4_fragments(20, 3008, 1428);
  assert_int_equal(p.chunk, 1408);
  assert_int_equal(p.count, 3);
  // The largest UDP datagram in a 1500-byte MTU: 45 fragments of 1480.
  p = plan_ipv4_fragments(20, 65515, 1500);
  assert_int_equal(p.chunk, 1480);
  assert_int_equal(p.count, 45);
  assert_int_equal(plan_ipv4_fragments(60, 100, 67).count, 0);  // not even 8 bytes fit
  assert_int_equal(plan_ipv4_fragments(60, 100, 68).chunk, 8);

  // A header with options: the first fragment copies it all, the others the 20 fixed bytes.
  FrameSpec spec;
  spec.proto = kIpProtoUdp;
  spec.ip_options = {0x94, 0x04, 0, 0};  // router alert (copied flag set)
  spec.payload = 100;
  spec.frag = kIpv4FlagDf;
  auto frame = build_ipv4_frame(spec);
  const uint8_t* ip = frame.data() + 14;
  uint8_t out[60];
  size_t hl = write_ipv4_fragment_header(out, {ip, 24}, 0xbeef, 0, 64, true);
  assert_int_equal(hl, 24);
  assert_int_equal(out[0], 0x46);
  assert_int_equal(load_be16(out + 2), 24 + 64);
  assert_int_equal(load_be16(out + 4), 0xbeef);
  assert_int_equal(load_be16(out + 6), kIpv4FlagMf);  // DF cleared, MF set, offset 0
  assert_int_equal(ipv4_header_checksum({out, 24}), 0);
  FragmentInfo fi = ipv4_fragment_info(out);
  assert_int_equal(fi.offset, 0);
  assert_int_equal(fi.len, 64);
  assert_int_equal(fi.header_len, 24);
  assert_true(fi.more);
  assert_true(ipv4_is_fragment(out));
  hl = write_ipv4_fragment_header(out, {ip, 24}, 0xbeef, 64, 44, false);
  assert_int_equal(hl, 20);
  assert_int_equal(out[0], 0x45);
  assert_int_equal(load_be16(out + 6), 64 / 8);
  assert_int_equal(ipv4_header_checksum({out, 20}), 0);
  fi = ipv4_fragment_info(out);
  assert_int_equal(fi.offset, 64);
  assert_int_equal(fi.len, 44);
  assert_false(fi.more);
  assert_true(ipv4_is_fragment(out));
  assert_false(ipv4_is_fragment(ip));  // DF alone is not a fragment
  // Back to one datagram: offset 0, no MF, DF clear, the total length of everything.
  write_ipv4_fragment_header(out, {ip, 24}, 0xbeef, 0, 64, true);
  finish_reassembled_header(out, 108);
  assert_int_equal(load_be16(out + 2), 24 + 108);
  assert_int_equal(load_be16(out + 6), 0);
  assert_int_equal(ipv4_header_checksum({out, 24}), 0);
}

static void head_parse_of_a_reassembled_datagram(void**) {
  FrameSpec spec;
  spec.proto = kIpProtoUdp;
  spec.payload = 3000;
  auto frame = build_ipv4_frame(spec);
  const uint8_t* ip = frame.data() + 14;
  PacketInfo pi;
  // Only the first 28 bytes at hand (IP + UDP header) of 3028.
  assert_int_equal(parse_ipv4_head({ip, 28}, 3028, pi), ParseStatus::Ok);
  assert_int_equal(pi.ip_total_len, 3028);
  assert_int_equal(pi.l4_len, 3008);
  assert_int_equal(pi.dst_port, 80);
  assert_false(pi.is_fragment);
  assert_int_equal(parse_ipv4_head({ip, 27}, 3028, pi), ParseStatus::Truncated);  // UDP header cut
  assert_int_equal(parse_ipv4_head({ip, 19}, 3028, pi), ParseStatus::Truncated);
  assert_int_equal(parse_ipv4_head({ip, 28}, 27, pi), ParseStatus::Truncated);  // packet shorter than the head
  // TCP: the options must be at hand too.
  spec.proto = kIpProtoTcp;
  spec.tcp_options = {2, 4, 5, 0xb4, 1, 1, 1, 0};
  frame = build_ipv4_frame(spec);
  ip = frame.data() + 14;
  assert_int_equal(parse_ipv4_head({ip, 20 + 28}, 20 + 28 + 3000, pi), ParseStatus::Ok);
  assert_int_equal(pi.tcp_header_len, 28);
  assert_int_equal(parse_ipv4_head({ip, 20 + 24}, 20 + 28 + 3000, pi), ParseStatus::Truncated);
  assert_int_equal(parse_ipv4_head({ip, 20 + 12}, 20 + 28 + 3000, pi), ParseStatus::Truncated);
  // A broken header checksum still fails.
  frame[14 + 10] ^= 1;
  assert_int_equal(parse_ipv4_head({ip, 60}, 20 + 28 + 3000, pi), ParseStatus::BadIpChecksum);
}

static void every_order_completes_once(void**) {
  // 45 fragments of a 65507-byte UDP datagram, in order, reversed and shuffled.
  const uint32_t payload = 65515, chunk = 1480;
  const uint32_t n = (payload + chunk - 1) / chunk;
  std::vector<uint32_t> order(n);
  std::mt19937 rng(7);
  for (int round = 0; round < 6; ++round) {
    for (uint32_t i = 0; i < n; ++i) order[i] = i;
    if (round == 1) std::reverse(order.begin(), order.end());
    if (round >= 2) std::shuffle(order.begin(), order.end(), rng);
    Table t(limits());
    Sink s;
    for (uint32_t k = 0; k < n; ++k) {
      const uint32_t i = order[k];
      const uint32_t off = i * chunk;
      const uint32_t len = std::min(chunk, payload - off);
      Table::Result r = add(t, s, kKey, piece(off, len, i + 1 < n), int(i));
      assert_int_equal(r, k + 1 < n ? Table::Result::Held : Table::Result::Complete);
    }
    assert_int_equal(t.pieces().size(), n);
    for (uint32_t i = 0; i < n; ++i) {
      assert_int_equal(t.pieces()[i].frag, int(i));
      assert_int_equal(t.pieces()[i].offset, i * chunk);
    }
    assert_int_equal(t.payload_len(), payload);
    assert_int_equal(t.first_header_len(), 20);
    assert_int_equal(t.datagrams(), 0);
    assert_int_equal(t.fragments(), 0);
    assert_true(s.dropped.empty());
  }
}

static void duplicates_and_overlaps(void**) {
  Table t(limits());
  Sink s;
  FragDrop why;
  assert_int_equal(add(t, s, kKey, piece(0, 1480, true), 1), Table::Result::Held);
  // The same range again: dropped alone, the datagram goes on.
  assert_int_equal(add(t, s, kKey, piece(0, 1480, true), 2, 0, &why), Table::Result::Dropped);
  assert_int_equal(why, FragDrop::Duplicate);
  assert_int_equal(add(t, s, kKey, piece(1480, 100, false), 3), Table::Result::Complete);

  // A fragment reaching into another: the whole datagram goes, and its later fragments follow it.
  FragmentKey k2 = kKey;
  k2.id = 2;
  assert_int_equal(add(t, s, k2, piece(0, 1480, true), 10), Table::Result::Held);
  assert_int_equal(add(t, s, k2, piece(1472, 16, true), 11, 0, &why), Table::Result::Dropped);
  assert_int_equal(why, FragDrop::Overlap);
  assert_int_equal(s.dropped.at(10), FragDrop::Overlap);  // the one it held
  assert_int_equal(t.fragments(), 0);
  assert_int_equal(add(t, s, k2, piece(1480, 8, false), 12, 0, &why), Table::Result::Dropped);
  assert_int_equal(why, FragDrop::Overlap);
  // Same start, other length: an overlap, not a duplicate.
  FragmentKey k3 = kKey;
  k3.id = 3;
  add(t, s, k3, piece(8, 16, true), 20);
  assert_int_equal(add(t, s, k3, piece(8, 24, true), 21, 0, &why), Table::Result::Dropped);
  assert_int_equal(why, FragDrop::Overlap);
  // A fragment covering two others.
  FragmentKey k4 = kKey;
  k4.id = 4;
  add(t, s, k4, piece(8, 8, true), 30);
  add(t, s, k4, piece(24, 8, true), 31);
  assert_int_equal(add(t, s, k4, piece(0, 40, true), 32, 0, &why), Table::Result::Dropped);
  assert_int_equal(why, FragDrop::Overlap);
  assert_int_equal(s.dropped.at(30), FragDrop::Overlap);
  assert_int_equal(s.dropped.at(31), FragDrop::Overlap);
  // Adjacent is fine.
  FragmentKey k5 = kKey;
  k5.id = 5;
  assert_int_equal(add(t, s, k5, piece(16, 8, false), 40), Table::Result::Held);
  assert_int_equal(add(t, s, k5, piece(0, 16, true), 41), Table::Result::Complete);
}

static void malformed_oversize_and_too_many(void**) {
  Table t(limits(16, 256, 4, 65535));
  Sink s;
  FragDrop why;
  assert_int_equal(add(t, s, kKey, piece(0, 0, true), 1, 0, &why), Table::Result::Dropped);  // empty
  assert_int_equal(why, FragDrop::Malformed);
  assert_int_equal(add(t, s, kKey, piece(0, 1001, true), 2, 0, &why), Table::Result::Dropped);  // not x8 before last
  assert_int_equal(why, FragDrop::Malformed);
  assert_int_equal(t.datagrams(), 0);  // nothing remembered for those
  // Ping of death: an offset near 65528 with enough bytes to pass 65535.
  assert_int_equal(add(t, s, kKey, piece(65528, 16, false), 3, 0, &why), Table::Result::Dropped);
  assert_int_equal(why, FragDrop::Oversize);
  // ... and the datagram's other fragments are refused for the same reason.
  assert_int_equal(add(t, s, kKey, piece(0, 1480, true), 4, 0, &why), Table::Result::Dropped);
  assert_int_equal(why, FragDrop::Oversize);
  // The exact limit passes: 20 + 65515.
  FragmentKey k = kKey;
  k.id = 9;
  assert_int_equal(add(t, s, k, piece(65512, 3, false), 5), Table::Result::Held);
  // A first fragment whose long header pushes the known end past the limit.
  assert_int_equal(add(t, s, k, piece(0, 8, true, 60), 6, 0, &why), Table::Result::Dropped);
  assert_int_equal(why, FragDrop::Oversize);
  assert_int_equal(s.dropped.at(5), FragDrop::Oversize);

  // Two last fragments that disagree; a fragment past the known end; a last one before a held fragment.
  k.id = 10;
  add(t, s, k, piece(16, 8, false), 10);
  assert_int_equal(add(t, s, k, piece(32, 8, false), 11, 0, &why), Table::Result::Dropped);
  assert_int_equal(why, FragDrop::Malformed);
  k.id = 11;
  add(t, s, k, piece(16, 8, false), 12);
  assert_int_equal(add(t, s, k, piece(24, 8, true), 13, 0, &why), Table::Result::Dropped);
  assert_int_equal(why, FragDrop::Malformed);
  k.id = 12;
  add(t, s, k, piece(40, 8, true), 14);
  assert_int_equal(add(t, s, k, piece(16, 8, false), 15, 0, &why), Table::Result::Dropped);
  assert_int_equal(why, FragDrop::Malformed);

  // At most 4 fragments per datagram here.
  k.id = 13;
  for (int i = 0; i < 4; ++i) assert_int_equal(add(t, s, k, piece(uint32_t(i) * 8, 8, true), 20 + i), Table::Result::Held);
  assert_int_equal(add(t, s, k, piece(32, 8, false), 24, 0, &why), Table::Result::Dropped);
  assert_int_equal(why, FragDrop::TooMany);
  for (int i = 0; i < 4; ++i) assert_int_equal(s.dropped.at(20 + i), FragDrop::TooMany);
  assert_int_equal(t.fragments(), 0);

  // A smaller max_size (an operator's choice) bounds it the same way.
  Table small(limits(16, 256, 128, 1500));
  assert_int_equal(add(small, s, kKey, piece(1480, 8, false), 50, 0, &why), Table::Result::Dropped);
  assert_int_equal(why, FragDrop::Oversize);
}

static void timeouts(void**) {
  Table t(limits());  // 1000 ns
  Sink s;
  FragDrop why;
  add(t, s, kKey, piece(0, 8, true), 1, 100);
  add(t, s, kKey, piece(16, 8, false), 2, 500);
  assert_int_equal(t.expire(1099, 64, s), 0);  // counted from the first fragment
  assert_int_equal(t.datagrams(), 1);
  assert_int_equal(t.expire(1100, 64, s), 1);
  assert_int_equal(s.dropped.at(1), FragDrop::Timeout);
  assert_int_equal(s.dropped.at(2), FragDrop::Timeout);
  assert_int_equal(s.datagrams.size(), 1);
  assert_int_equal(s.datagrams[0], FragDrop::Timeout);
  assert_int_equal(t.datagrams(), 0);
  assert_int_equal(t.fragments(), 0);
  // A late fragment starts over; and a datagram found stale by add() is given up there.
  assert_int_equal(add(t, s, kKey, piece(8, 8, true), 3, 2000), Table::Result::Held);
  assert_int_equal(add(t, s, kKey, piece(0, 8, true), 4, 3000), Table::Result::Held);
  assert_int_equal(s.dropped.at(3), FragDrop::Timeout);
  assert_int_equal(s.datagrams.size(), 2);
  assert_int_equal(add(t, s, kKey, piece(8, 8, false), 5, 3500), Table::Result::Complete);
  // A ruined datagram is forgotten at its timeout, silently.
  add(t, s, kKey, piece(0, 16, true), 6, 4000);
  add(t, s, kKey, piece(8, 16, true), 7, 4000, &why);
  assert_int_equal(why, FragDrop::Overlap);
  assert_int_equal(t.datagrams(), 1);
  assert_int_equal(t.expire(5000, 64, s), 0);
  assert_int_equal(t.datagrams(), 0);
  assert_int_equal(s.datagrams.size(), 2);
}

static void eviction_keeps_new_datagrams_coming(void**) {
  // 4 datagrams, 8 fragments held at most.
  Table t(limits(4, 8, 8));
  Sink s;
  FragmentKey k = kKey;
  for (uint16_t id = 0; id < 4; ++id) {
    k.id = id;
    add(t, s, k, piece(0, 8, true), id, id);
  }
  // A fifth datagram: the oldest goes.
  k.id = 4;
  assert_int_equal(add(t, s, k, piece(0, 8, true), 4, 10), Table::Result::Held);
  assert_int_equal(s.dropped.at(0), FragDrop::Evicted);
  assert_int_equal(t.datagrams(), 4);
  // Held fragments at their limit: the oldest holders go, never the datagram being added to.
  k.id = 4;
  for (int i = 1; i < 8; ++i) add(t, s, k, piece(uint32_t(i) * 8, 8, true), 10 + i, 20);
  assert_int_equal(t.fragments(), 8);
  assert_int_equal(t.datagrams(), 1);
  for (int id = 1; id < 4; ++id) assert_int_equal(s.dropped.at(id), FragDrop::Evicted);
  // It now holds 8 of its 8: the next is one too many.
  FragDrop why;
  assert_int_equal(add(t, s, k, piece(64, 8, false), 30, 20, &why), Table::Result::Dropped);
  assert_int_equal(why, FragDrop::TooMany);
  assert_int_equal(t.fragments(), 0);

  // A flood of first fragments that never complete cannot keep a datagram out: it completes in between.
  Table big(limits(64, 128, 64));
  Sink fs;
  FragmentKey flood = kKey;
  flood.src = 0x0b000001;
  int name = 1000;
  for (uint32_t i = 0; i < 10000; ++i) {
    flood.id = uint16_t(i);
    flood.scope = i >> 16;
    add(big, fs, flood, piece(0, 1480, true), name++, i);
    assert_true(big.datagrams() <= 64);
    assert_true(big.fragments() <= 128);
    // A legitimate datagram's two fragments, 30 flood datagrams apart (fewer than the table holds).
    if (i == 5000) assert_int_equal(add(big, fs, kKey, piece(1480, 100, false), 1, i), Table::Result::Held);
    if (i == 5030) assert_int_equal(add(big, fs, kKey, piece(0, 1480, true), 2, i), Table::Result::Complete);
  }
  assert_true(fs.datagrams.size() >= 10000 - 64);
}

static void scopes_and_addresses_keep_datagrams_apart(void**) {
  Table t(limits());
  Sink s;
  FragmentKey a = kKey, b = kKey, c = kKey, d = kKey;
  b.scope = 7;
  c.dst = 0x0a000003;
  d.proto = 6;
  for (const FragmentKey* k : {&a, &b, &c, &d}) assert_int_equal(add(t, s, *k, piece(0, 8, true), 0), Table::Result::Held);
  assert_int_equal(t.datagrams(), 4);
  int n = 1;
  for (const FragmentKey* k : {&d, &c, &b, &a})
    assert_int_equal(add(t, s, *k, piece(8, 8, false), n++), Table::Result::Complete);
  assert_true(s.dropped.empty());
}

static void randomised_fragments_come_back_exactly_once(void**) {
  // Datagrams cut into random fragments sent in random order, with resent duplicates, shifted (overlapping),
  // misaligned and oversized fragments, too many small ones, and time jumps, on a small table: whatever the table
  // does, every fragment handed in comes back exactly once (dropped at once, given up later, or in a completed
  // datagram, contiguous and in order), and the bounds hold.
  std::mt19937 rng(12345);
  size_t total_completed = 0;
  std::set<FragDrop> reasons;
  struct Plan {
    uint32_t chunk = 0, payload = 0;
    std::vector<uint32_t> order;  // the fragments, in the order they are sent
    size_t next = 0;
  };
  ReassemblyLimits lim = limits(8, 64, 16, 4096);
  lim.timeout_ns = 20000;
  for (int round = 0; round < 20; ++round) {
    Table t(lim);
    Sink s;
    std::set<int> completed, rejected;
    std::vector<Plan> plans(7);
    int name = 0;
    uint64_t now = 0;
    for (int i = 0; i < 4000; ++i) {
      const uint16_t id = uint16_t(rng() % plans.size());
      Plan& p = plans[id];
      if (p.next == p.order.size()) {  // a new datagram under this id
        p.chunk = 8u << (1 + rng() % 6);
        p.payload = 8 + uint32_t(rng() % 3000);
        p.order.resize((p.payload + p.chunk - 1) / p.chunk);
        for (uint32_t k = 0; k < p.order.size(); ++k) p.order[k] = k;
        std::shuffle(p.order.begin(), p.order.end(), rng);
        p.next = 0;
      }
      const uint32_t count = uint32_t(p.order.size());
      const bool resend = p.next > 0 && rng() % 10 == 0;  // the previous fragment again: a duplicate
      const uint32_t k = p.order[resend ? p.next - 1 : p.next++];
      uint32_t off = k * p.chunk;
      uint32_t len = std::min(p.chunk, p.payload - off);
      bool more = k + 1 < count;
      switch (rng() % 50) {
        case 0: off += 8; break;                      // shifted: overlaps (or runs past the end)
        case 1: if (more) len -= 1; break;            // misaligned
        case 2: off = 4096 - 8, more = false; break;  // past max_size
        case 3: if (rng() % 8 == 0) now += 20000; break;  // now and then a pause as long as the timeout
        default: break;
      }
      now += rng() % 20;
      FragmentKey key = kKey;
      key.id = id;
      FragDrop why;
      uint32_t slot;
      const int f = name++;
      const Table::Result r = t.add(key, piece(off, len, more), f, now, s, why, slot);
      if (r == Table::Result::Dropped) {
        rejected.insert(f);
        reasons.insert(why);
      }
      if (r == Table::Result::Complete) {
        uint32_t expect = 0;
        for (const auto& pc : t.pieces()) {
          assert_int_equal(pc.offset, expect);  // contiguous, in order
          expect += pc.len;
          assert_true(completed.insert(pc.frag).second);
        }
        assert_int_equal(expect, t.payload_len());
      }
      assert_true(t.fragments() <= 64);
      assert_true(t.datagrams() <= 8);
      if (rng() % 100 == 0) t.expire(now, 4, s);
    }
    t.clear(s);
    assert_int_equal(t.fragments(), 0);
    assert_int_equal(t.datagrams(), 0);
    for (int f = 0; f < name; ++f) {
      const int returned = int(completed.count(f)) + int(rejected.count(f)) + int(s.dropped.count(f));
      assert_int_equal(returned, 1);
    }
    for (const auto& [f, why] : s.dropped) reasons.insert(why);
    total_completed += completed.size();
  }
  // (The mix exercises every path: datagrams complete, and every reason occurs.)
  assert_true(total_completed > 300);
  assert_int_equal(reasons.size(), size_t(FragDrop::Count));
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(plan_and_fragment_headers),
      cmocka_unit_test(head_parse_of_a_reassembled_datagram),
      cmocka_unit_test(every_order_completes_once),
      cmocka_unit_test(duplicates_and_overlaps),
      cmocka_unit_test(malformed_oversize_and_too_many),
      cmocka_unit_test(timeouts),
      cmocka_unit_test(eviction_keeps_new_datagrams_coming),
      cmocka_unit_test(scopes_and_addresses_keep_datagrams_apart),
      cmocka_unit_test(randomised_fragments_come_back_exactly_once),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
