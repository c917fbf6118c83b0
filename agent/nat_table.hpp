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
  bool confirmed = false;    // the target has answered at least once
  uint64_t last_seen_ns = 0;
};

class NatTable {
 public:
  static constexpr uint16_t kFirstPort = 1024;

  // pool: the TUN subnet with the TUN's own address (never handed out); at most max_bindings flows.
  explicit NatTable(Ipv4Prefix pool, size_t max_bindings = size_t(1) << 20);

  // The binding of a flow, created on first use (`created` set). nullptr when the table is full or no free
  // address:port was found.
  NatBinding* bind(uint32_t session, uint64_t flow_id, uint8_t proto, uint32_t client_ip, uint16_t client_port,
                   uint64_t now_ns, bool& created);
  NatBinding* find_reply(uint8_t proto, uint32_t dst_ip, uint16_t dst_port);
  // Removes idle and closed flows, and flows the target never answered after unconfirmed_ns (so a flood of
  // one-way flows cannot fill the table); returns how many.
  size_t expire(uint64_t now_ns, uint64_t udp_idle_ns, uint64_t tcp_idle_ns, uint64_t closed_ns,
                uint64_t unconfirmed_ns = ~uint64_t(0));
  size_t capacity() const { return max_bindings_; }
  size_t size() const { return by_flow_.size(); }
  bool in_pool(uint32_t ip) const { return ip > first_ && ip < last_ && ip != own_; }

 private:
  static uint64_t mix(uint64_t x);
  static uint64_t reply_key(uint8_t proto, uint32_t ip, uint16_t port) {
    return uint64_t(proto) << 48 | uint64_t(ip) << 16 | port;
  }
  struct FlowKeyHash {
    size_t operator()(const std::pair<uint32_t, uint64_t>& k) const { return mix(k.second ^ uint64_t(k.first) << 40); }
  };

  Ipv4Prefix pool_;
  uint32_t first_, last_;  // network and broadcast address: usable addresses lie strictly between
  uint32_t own_;           // the TUN's address
  size_t max_bindings_;
  std::unordered_map<std::pair<uint32_t, uint64_t>, NatBinding, FlowKeyHash> by_flow_;
  std::unordered_map<uint64_t, std::pair<uint32_t, uint64_t>> by_reply_;
};

}  // namespace dptun
