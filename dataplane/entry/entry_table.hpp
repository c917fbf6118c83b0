// Public entry points by (protocol, destination port): one array load per packet. Immutable once published;
// the control lcore builds a new table for every change.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/inet.hpp"
#include "proto/gateway_specs.hpp"

namespace dptun {

struct EntryPoint {
  std::string label;       // "tcp/5201" for logs and stats
  uint8_t proto = 0;       // 6 or 17
  uint16_t port = 0;
  EntryRoute route = EntryRoute::Fixed;  // by hostname: tunnel and target come from the ingress rules
  std::optional<Ipv4> listen;  // only this local address (default: every port address)
  uint16_t tunnel = 0;         // TunnelTable slot
  uint32_t tunnel_generation = 0;
  Endpoint target;         // address as the agent reaches it
  bool keepalive = false;  // UDP: keep the flow while traffic flows (else one exchange per ttl)
  uint64_t udp_ttl_ns = 0;
};

class EntryTable {
 public:
  explicit EntryTable(std::vector<EntryPoint> entries)
      : entries_(std::move(entries)), tcp_(new uint16_t[65536]()), udp_(new uint16_t[65536]()) {
    for (size_t i = 0; i < entries_.size(); ++i)
      (entries_[i].proto == 6 ? tcp_ : udp_)[entries_[i].port] = uint16_t(i + 1);
  }

  // The entry point for a packet to dst_ip:dst_port, or nullptr.
  const EntryPoint* find(uint8_t proto, uint32_t dst_ip, uint16_t dst_port) const {
    if (proto != 6 && proto != 17) return nullptr;
    uint16_t slot = (proto == 6 ? tcp_ : udp_)[dst_port];
    if (!slot) return nullptr;
    const EntryPoint& e = entries_[slot - 1];
    if (e.listen && e.listen->value != dst_ip) return nullptr;
    return &e;
  }
  const std::vector<EntryPoint>& all() const { return entries_; }
  size_t size() const { return entries_.size(); }

 private:
  std::vector<EntryPoint> entries_;
  std::unique_ptr<uint16_t[]> tcp_, udp_;
};

}  // namespace dptun
