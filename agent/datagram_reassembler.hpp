// dpagent's IPv4 reassembly (the bookkeeping of packet/ipv4_reassembly.hpp, with copies): each fragment's payload
// is copied into its datagram's buffer as it arrives, so receive buffers can be reused at once, and a completed
// datagram comes back contiguous (the first fragment's header, then the payload), ready to parse, rewrite and
// write. Memory: at most `datagrams` buffers of 60 + max_size bytes, each allocated when first used.
#pragma once
#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "common/counter.hpp"
#include "packet/ipv4_reassembly.hpp"

namespace dptun {

class DatagramReassembler {
 public:
  // Written by the reassembler's thread, read by any (common/counter.hpp).
  struct Stats {
    StatCounter fragments = 0;     // taken in
    StatCounter reassembled = 0;   // datagrams completed
    StatCounter timeouts = 0;      // datagrams given up after the timeout
    StatCounter evictions = 0;     // datagrams given up for newer ones
    std::array<StatCounter, size_t(FragDrop::Count)> drops{};  // fragments, by reason
    StatCounter in_progress = 0;   // datagrams being put together (as of the last add or expire)
  };

  DatagramReassembler(const ReassemblyLimits& limits, uint64_t seed);

  // `ip` is one IPv4 fragment whose header parse_ip accepted (its length is the header's total length); `scope`
  // keeps datagrams of different origins apart. Returns the whole datagram when this fragment completed it (valid
  // until the next call), else an empty span (held, or dropped and counted).
  std::span<uint8_t> add(std::span<const uint8_t> ip, uint64_t scope, uint64_t now_ns);
  // Gives up datagrams older than the timeout.
  void expire(uint64_t now_ns);

  const Stats& stats() const { return stats_; }
  uint32_t datagrams() const { return table_.datagrams(); }

 private:
  static constexpr size_t kHeadroom = 60;  // the longest IPv4 header, in front of the payload
  struct NoFrag {};
  struct Sink {
    Stats& stats;
    void fragment_dropped(NoFrag, FragDrop why) { stats.drops[size_t(why)]++; }
    void datagram_dropped(FragDrop why) { (why == FragDrop::Timeout ? stats.timeouts : stats.evictions)++; }
  };

  Ipv4Reassembly<NoFrag> table_;
  std::vector<std::vector<uint8_t>> buffers_;  // per datagram slot of table_
  Stats stats_;
};

}  // namespace dptun
