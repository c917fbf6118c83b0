// The far end's NAT without state (docs/protocol.md, inner header): a flow's tag (the low 30 bits of its gateway
// flow id: worker | slot) names the source address:port the target sees, inside a /16 (dpagent: its TUN's subnet;
// an edge dpgw: edge.snat_net), and that address:port names the tag again. Any agent attached to the same TUN, or
// a restarted edge, translates any flow in both directions, so a restarted far end, or another agent of the pool
// taking over a flow, keeps the flow's source unchanged at the target. Addresses in host order.
//   address = network + 2 + (tag >> 15)      port = 32768 + (tag & 0x7fff)
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "common/inet.hpp"

namespace dptun {

class SnatCodec {
 public:
  static constexpr unsigned kTagBits = 30;
  static constexpr uint32_t kTagMask = (1u << kTagBits) - 1;

  // The subnet must be a /16 or larger and the address it is written with (the TUN's own, for dpagent) must lie
  // outside the mapped range; `why` says what is wrong.
  static bool valid_subnet(Ipv4Prefix net, std::string& why);
  explicit SnatCodec(Ipv4Prefix net) : base_(net.addr.value & net.mask()) {}

  Endpoint encode(uint32_t tag) const {
    tag &= kTagMask;
    return Endpoint{Ipv4{base_ + 2 + (tag >> 15)}, uint16_t(32768 + (tag & 0x7fff))};
  }
  // The tag an endpoint names, or nullopt for one outside the mapping (any IPv6 one: the subnet is IPv4).
  std::optional<uint32_t> decode(const Endpoint& e) const {
    if (!e.ip.is_v4()) return std::nullopt;
    const uint32_t ip = e.ip.v4();
    if (ip < base_ + 2 || ip - base_ - 2 >= (1u << 15) || e.port < 32768) return std::nullopt;
    return (ip - base_ - 2) << 15 | (e.port - 32768u);
  }

 private:
  uint32_t base_;
};

}  // namespace dptun
