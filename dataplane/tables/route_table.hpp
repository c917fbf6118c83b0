// Where a destination leaves the gateway: connected subnets of the ports, then their default gateways. Ports have
// IPv4 addresses today; an IPv6 destination has no route (counted no_route) until they have IPv6 ones.
#pragma once
#include <cstdint>
#include <vector>

#include "common/inet.hpp"

namespace dptun {

struct Route {
  uint8_t port = 0;        // index into the gateway's port list
  IpAddr next_hop;         // the destination itself when directly connected
  bool valid = false;
};

class RouteTable {
 public:
  struct Interface {
    Ipv4Prefix address;
    uint32_t gateway = 0;  // 0: none
  };
  explicit RouteTable(std::vector<Interface> ifaces) : ifaces_(std::move(ifaces)) {}

  // Longest connected prefix first, otherwise the first port that has a gateway.
  Route lookup(const IpAddr& to) const {
    Route best;
    if (!to.is_v4()) return best;
    const uint32_t dst = to.v4();
    int best_len = -1;
    for (size_t i = 0; i < ifaces_.size(); ++i) {
      const Ipv4Prefix& p = ifaces_[i].address;
      if (p.contains(Ipv4{dst}) && p.len > best_len) {
        best = Route{uint8_t(i), to, true};
        best_len = p.len;
      }
    }
    if (best.valid) return best;
    for (size_t i = 0; i < ifaces_.size(); ++i)
      if (ifaces_[i].gateway) return Route{uint8_t(i), Ipv4{ifaces_[i].gateway}, true};
    return best;
  }

  // The way to `to` out of `port` only: directly when the port's subnet holds it, else through the port's gateway;
  // invalid when the port has neither (the edge role keeps its LAN and underlay traffic on their own ports).
  Route lookup_on(uint8_t port, const IpAddr& to) const {
    if (!to.is_v4() || port >= ifaces_.size()) return Route{};
    const Interface& i = ifaces_[port];
    if (i.address.contains(Ipv4{to.v4()})) return Route{port, to, true};
    if (i.gateway) return Route{port, Ipv4{i.gateway}, true};
    return Route{};
  }

  // The port index owning `addr` as its own address, or -1.
  int local_port(uint32_t addr) const {
    for (size_t i = 0; i < ifaces_.size(); ++i)
      if (ifaces_[i].address.addr.value == addr) return int(i);
    return -1;
  }
  uint32_t address(uint8_t port) const { return ifaces_[port].address.addr.value; }
  size_t size() const { return ifaces_.size(); }

 private:
  std::vector<Interface> ifaces_;
};

}  // namespace dptun
