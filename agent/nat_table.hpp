// The agent's NAT: every gateway flow (session, flow id) gets a source address:port from the TUN subnet, so
// the target's replies route back into the TUN. The binding is a hash of the flow, so a restarted agent gives
// an ongoing flow the same binding again and the target's connection survives the restart.
#pragma once
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "common/inet.hpp"

namespace dptun {

struct NatBinding {
  uint32_t session = 0;
  uint64_t flow_id = 0;
  uint8_t proto = 0;
  uint32_t client_ip = 0;    // the source the gateway wrote; restored on replies
  uint16_t client_port = 0;
  uint32_t snat_ip = 0;
  uint16_t snat_port = 0;
  uint8_t fin_seen = 0;      // bit 0 from the gateway side, bit 1 from the target
  bool reset = false;
  uint64_t last_seen_ns = 0;
};

class NatTable {
 public:
  static constexpr uint16_t kFirstPort = 1024;

  // pool: the TUN subnet; its first host is the TUN's own address and is never handed out.
  explicit NatTable(Ipv4Prefix pool);

  // The binding of a flow, created on first use (`created` set). nullptr when no free binding was found.
  NatBinding* bind(uint32_t session, uint64_t flow_id, uint8_t proto, uint32_t client_ip, uint16_t client_port,
                   uint64_t now_ns, bool& created);
  NatBinding* find_reply(uint8_t proto, uint32_t dst_ip, uint16_t dst_port);
  // Removes idle and closed flows; returns how many.
  size_t expire(uint64_t now_ns, uint64_t udp_idle_ns, uint64_t tcp_idle_ns, uint64_t closed_ns);
  size_t size() const { return by_flow_.size(); }
  bool in_pool(uint32_t ip) const { return pool_.contains(Ipv4{ip}) && ip > first_ && ip < last_; }

 private:
  static uint64_t mix(uint64_t x);
  static uint64_t reply_key(uint8_t proto, uint32_t ip, uint16_t port) {
    return uint64_t(proto) << 48 | uint64_t(ip) << 16 | port;
  }
  struct FlowKeyHash {
    size_t operator()(const std::pair<uint32_t, uint64_t>& k) const { return mix(k.second ^ uint64_t(k.first) << 40); }
  };

  Ipv4Prefix pool_;
  uint32_t first_, last_;  // first usable = first_ + 1, last usable = last_ - 1
  std::unordered_map<std::pair<uint32_t, uint64_t>, NatBinding, FlowKeyHash> by_flow_;
  std::unordered_map<uint64_t, std::pair<uint32_t, uint64_t>> by_reply_;
};

}  // namespace dptun
