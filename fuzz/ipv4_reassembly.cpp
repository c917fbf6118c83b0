// IPv4 reassembly (packet/ipv4_reassembly.hpp: the table dpgw keeps mbufs in; agent/datagram_reassembler.hpp:
// dpagent's, with copies) fed sequences of fragments from outside: overlapping, duplicated, out of order, with
// and without options, disagreeing about the end, too big, too many, too slow. Small limits (3 datagrams,
// 8 fragments, 6 per datagram, 4000 bytes, 2 s) so that eviction and timeout paths are reached; dpgw's table
// also with fewer fragments in all than one datagram may have (2 datagrams, 4 fragments, 8 per datagram), which
// dpgw's config allows.
// Input: fragments, each [u8: datagram 0-3 (bits 0-1), MF (bit 2), options 0/4/8/40 bytes (bits 3-4), time
// step 0/1 ms/0.5 s/3 s (bits 6-7)][u16 offset in 8-byte units][u16 payload length, at most 4095]. The payload
// byte at datagram offset o is a function of the datagram and o, so a reassembled datagram can be checked.
// Properties: the table returns every fragment it was given exactly once (dropped at once, given to the sink, or
// in a completed datagram's pieces) and holds exactly the rest, so dpgw neither leaks nor double-frees an mbuf;
// completed pieces are in order and cover the datagram; dpagent's datagrams parse as whole IPv4 packets from the
// first fragment's addresses, with every payload byte where it belongs.
#include <map>
#include <set>
#include <vector>

#include "agent/datagram_reassembler.hpp"
#include "fuzz/fuzz.hpp"
#include "packet/checksum.hpp"
#include "packet/ipv4_fragment.hpp"
#include "packet/ipv4_reassembly.hpp"
#include "packet/parser.hpp"

using namespace dptun;

namespace {

constexpr ReassemblyLimits kLimits{3, 8, 6, 4000, 2'000'000'000ull};
constexpr uint32_t kSrc[4] = {0x0a630102, 0x0a630102, 0x0a630102, 0x0a630109};
constexpr uint16_t kId[4] = {0x1111, 0x2222, 0x3333, 0x1111};

// An experimental protocol (RFC 3692): the payload is the pattern below, not a UDP or TCP header to validate.
constexpr uint8_t kProto = 253;
constexpr uint32_t kOptionLen[4] = {0, 4, 8, 40};
constexpr uint64_t kTimeStep[4] = {0, 1'000'000ull, 500'000'000ull, 3'000'000'000ull};

uint8_t pattern(unsigned k, uint32_t o) { return uint8_t((o * 131 + k * 29 + (o >> 8)) ^ 0x5a); }

// The table's side: which fragment ids it holds; every one must come back once.
struct Sink {
  std::set<uint32_t>& held;
  void fragment_dropped(uint32_t id, FragDrop why) {
    FUZZ_CHECK(why < FragDrop::Count);
    FUZZ_CHECK(held.erase(id) == 1);
  }
  void datagram_dropped(FragDrop why) { FUZZ_CHECK(why == FragDrop::Timeout || why == FragDrop::Evicted); }
};

constexpr ReassemblyLimits kFewFragments{2, 4, 8, 65535, 2'000'000'000ull};

// dpgw's table with fragment ids for mbufs, and the ids it holds.
struct Table {
  explicit Table(const ReassemblyLimits& l) : limits(l), table(l, 7) {}
  ReassemblyLimits limits;
  Ipv4Reassembly<uint32_t> table;
  std::set<uint32_t> held;
  Sink sink{held};

  void add(const FragmentKey& key, const FragmentInfo& fi, uint32_t id, uint64_t now) {
    FragDrop why;
    uint32_t slot;
    held.insert(id);
    switch (table.add(key, fi, id, now, sink, why, slot)) {
      case Ipv4Reassembly<uint32_t>::Result::Held:
        FUZZ_CHECK(slot < limits.datagrams);
        break;
      case Ipv4Reassembly<uint32_t>::Result::Dropped:
        FUZZ_CHECK(why < FragDrop::Count && frag_drop_name(why) != nullptr);
        FUZZ_CHECK(held.erase(id) == 1);
        break;
      case Ipv4Reassembly<uint32_t>::Result::Complete: {
        uint32_t expect = 0;
        for (const auto& p : table.pieces()) {
          FUZZ_CHECK(p.offset == expect && p.len > 0);
          FUZZ_CHECK(held.erase(p.frag) == 1);
          expect += p.len;
        }
        FUZZ_CHECK(expect == table.payload_len());
        FUZZ_CHECK(table.first_header_len() >= 20 && table.first_header_len() + expect <= limits.max_size);
        break;
      }
    }
    FUZZ_CHECK(table.fragments() == held.size() && held.size() <= limits.fragments);
    FUZZ_CHECK(table.datagrams() <= limits.datagrams);
  }
  // Later than any timeout: everything is given back.
  void finish(uint64_t now) {
    table.expire(now + 10'000'000'000ull, 1000, sink);
    FUZZ_CHECK(held.empty() && table.fragments() == 0 && table.datagrams() == 0);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in({data, size});
  Table tables[2] = {Table(kLimits), Table(kFewFragments)};
  DatagramReassembler agent(kLimits, 7);
  uint64_t now = 1'000'000'000ull;
  std::vector<uint8_t> pkt;
  for (uint32_t id = 1; id <= 64 && in.left(); ++id) {
    const uint8_t b = in.u8();
    const unsigned k = b & 3;
    const bool more = b & 4;
    const uint32_t opt_len = kOptionLen[(b >> 3) & 3];
    now += kTimeStep[b >> 6];
    const uint32_t offset = (in.u16() & 0x1fff) * 8u;
    const uint32_t len = in.u16() & 0xfff;

    // The fragment as it arrives: an IPv4 header with options (NOPs) and a valid checksum.
    const uint32_t hl = 20 + opt_len;
    pkt.assign(hl + len, 0);
    pkt[0] = uint8_t(0x40 | hl / 4);
    store_be16(&pkt[2], uint16_t(hl + len));
    store_be16(&pkt[4], kId[k]);
    store_be16(&pkt[6], uint16_t((more ? 0x2000 : 0) | offset / 8));
    pkt[8] = 64;
    pkt[9] = kProto;
    store_be32(&pkt[12], kSrc[k]);
    store_be32(&pkt[16], 0x0a000a0a);
    for (uint32_t i = 20; i < hl; ++i) pkt[i] = 1;
    store_be16(&pkt[10], ipv4_header_checksum({pkt.data(), hl}));
    for (uint32_t i = 0; i < len; ++i) pkt[hl + i] = pattern(k, offset + i);
    PacketInfo pi;
    if (parse_ip(pkt, pi) != ParseStatus::Ok || !pi.is_fragment) continue;  // what both callers check first

    const FragmentInfo fi = ipv4_fragment_info(pkt.data());
    FUZZ_CHECK(fi.offset == offset && fi.len == len && fi.header_len == hl && fi.more == more);
    const FragmentKey key{kSrc[k], 0x0a000a0a, kId[k], kProto, 0};
    for (Table& t : tables) t.add(key, fi, id, now);

    const std::span<uint8_t> whole = agent.add(pkt, 0, now);
    if (!whole.empty()) {
      PacketInfo w;
      FUZZ_CHECK(parse_ip(whole, w) == ParseStatus::Ok);
      FUZZ_CHECK(!w.is_fragment && w.ip_total_len == whole.size() && whole.size() <= kLimits.max_size);
      FUZZ_CHECK(w.src_ip == kSrc[k] && load_be16(whole.data() + 4) == kId[k]);
      for (uint32_t i = 0; i + w.ip_header_len < whole.size(); ++i) FUZZ_CHECK(whole[w.ip_header_len + i] == pattern(k, i));
      FUZZ_LOG("datagram %u complete: %zu bytes\n", k, whole.size());
    }
    if (b == 0xff) {  // now and then, the periodic expiry
      for (Table& t : tables) t.table.expire(now, 256, t.sink);
      agent.expire(now);
    }
  }
  for (Table& t : tables) t.finish(now);
  agent.expire(now + 10'000'000'000ull);
  FUZZ_CHECK(agent.datagrams() == 0);
  FUZZ_LOG("%llu fragments, %llu datagrams reassembled\n", (unsigned long long)agent.stats().fragments,
           (unsigned long long)agent.stats().reassembled);
  return 0;
}
