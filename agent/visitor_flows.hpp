// A visitor's flows (dpagent visit, docs/nat-traversal.md "The pair's data"): which way each flow of a program here
// goes, chosen once when the flow starts and kept for its life, so no flow changes its source at the target:
// - through dpgw (a visitor frame: dpgw opens the flow and keeps its state), when the flow starts without a direct
//   path to use; such flows are remembered only to keep them there;
// - on the pair (pair frames to the agent, straight or through dpgw), when it starts while the pair's path is direct:
//   the flow gets an index in the visitor's block of flow tags (SnatCodec::pair_tag), which names it in both
//   directions, and its source at the target (the agent's stateless translation of the tag).
// A flow is keyed by protocol and the program's address and port (the destination is always the visitor's --local
// address). Flows end after an idle time: kUdpIdleNs, kTcpIdleNs, kClosingIdleNs once a FIN or RST was seen.
// Main loop only. No allocation per packet once a flow exists.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "common/counter.hpp"
#include "proto/snat_codec.hpp"

namespace dptun {

class VisitorFlows {
 public:
  static constexpr uint64_t kUdpIdleNs = 60'000'000'000ull;
  static constexpr uint64_t kTcpIdleNs = 7200'000'000'000ull;  // as dpgw's established TCP flows
  static constexpr uint64_t kClosingIdleNs = 30'000'000'000ull;
  static constexpr size_t kMaxGatewayFlows = 65536;  // remembered; beyond, new ones are not (counted)
  static constexpr uint32_t kNone = ~uint32_t(0);

  struct Stats {
    StatCounter pair_flows = 0, gateway_flows = 0;  // flows started each way
    StatCounter expired = 0;
    StatCounter pair_full = 0;     // flows that would have gone on the pair, but all its indexes were taken
    StatCounter gateway_full = 0;  // flows through dpgw not remembered (the table was full)
  };

  VisitorFlows();
  // The flow of a packet from a program here (`proto`, its address and port, its TCP flags): found, or started on the
  // pair when `pair_ok` (an index is free), else through dpgw. Returns the flow's index on the pair, or kNone (dpgw).
  uint32_t from_program(uint8_t proto, uint32_t ip, uint16_t port, uint8_t tcp_flags, bool pair_ok, uint64_t now_ns);
  // A reply on the pair flow with index `index`: the program's address and port, or nullopt when no flow has it.
  struct Program {
    uint8_t proto;
    uint32_t ip;
    uint16_t port;
  };
  std::optional<Program> reply(uint32_t index, uint8_t proto, uint8_t tcp_flags, uint64_t now_ns);
  // Ends idle flows; call about once a second.
  void expire(uint64_t now_ns);
  // Forgets the flows on the pair (a new registration: a new block of tags, which the old flows cannot use).
  void forget_pair_flows();
  size_t pair_flows() const { return pair_count_; }
  size_t gateway_flows() const { return flows_.size() - pair_count_; }
  const Stats& stats() const { return stats_; }

 private:
  struct Flow {
    uint32_t index = kNone;  // on the pair, or kNone: through dpgw
    uint64_t last_ns = 0;
    bool closing = false;
  };
  static uint64_t key(uint8_t proto, uint32_t ip, uint16_t port) {
    return uint64_t(proto) << 48 | uint64_t(ip) << 16 | port;
  }
  static uint64_t idle_limit(uint8_t proto, const Flow& f);
  void track(Flow& f, uint8_t tcp_flags, uint64_t now_ns);

  std::unordered_map<uint64_t, Flow> flows_;
  std::vector<uint64_t> by_index_;  // pair index -> key + 1 (0: free)
  uint32_t next_index_ = 0;
  size_t pair_count_ = 0;
  Stats stats_;
};

}  // namespace dptun
