// dpagent's NAT without state: a flow's tag (the low 30 bits of its gateway flow id: worker | slot) names the
// source address:port the target sees, inside the TUN's subnet, and that address:port names the tag again.
// Any agent attached to the same TUN translates any flow in both directions, so a restarted agent, or another
// agent of the pool taking over a flow, keeps the flow's source unchanged at the target.
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

  // The subnet must be a /16 or larger and the TUN's own address must lie outside the mapped range.
  static bool valid_subnet(Ipv4Prefix tun_net, std::string& why);
  explicit SnatCodec(Ipv4Prefix tun_net) : base_(tun_net.addr.value & tun_net.mask()) {}

  Endpoint encode(uint32_t tag) const {
    tag &= kTagMask;
    return Endpoint{Ipv4{base_ + 2 + (tag >> 15)}, uint16_t(32768 + (tag & 0x7fff))};
  }
  // The tag an endpoint names, or nullopt for one outside the mapping (any IPv6 one: the TUN's subnet is IPv4).
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
