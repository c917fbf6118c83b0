// The far end's NAT without state (docs/protocol.md, inner header): a flow's tag (the low 30 bits of its gateway
// flow id: worker | slot) names the source address:port the target sees, inside a /16 (dpagent: its TUN's subnet;
// an edge dpgw: edge.snat_net), and that address:port names the tag again. Any agent attached to the same TUN, or
// a restarted edge, translates any flow in both directions, so a restarted far end, or another agent of the pool
// taking over a flow, keeps the flow's source unchanged at the target. Addresses in host order.
//   address = network + 2 + (tag >> 15)      port = 32768 + (tag & 0x7fff)
// Pair flows (docs/nat-traversal.md "The pair's data": a visitor's flows that travel in pair frames, never through
// dpgw's flow table) have tags of their own above dpgw's: pair_tag(block, index) = 2^30 | block << 15 | index, one
// block (kPairBlockFlows flows) per visitor, given by dpctld, so one address per visitor: network + 2 + 32768 + block.
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
  static constexpr uint32_t kPairTagBit = 1u << kTagBits;
  static constexpr uint32_t kPairBlocks = 1u << 14;      // visitors with pair data at once (dpctld's blocks)
  static constexpr uint32_t kPairBlockFlows = 1u << 15;  // flows of one visitor at once
  static constexpr uint32_t pair_tag(uint32_t block, uint32_t index) {
    return kPairTagBit | (block % kPairBlocks) << 15 | (index % kPairBlockFlows);
  }
  static constexpr bool is_pair_tag(uint32_t tag) { return tag >= kPairTagBit; }
  static constexpr uint32_t pair_block(uint32_t tag) { return (tag - kPairTagBit) >> 15; }
  static constexpr uint32_t pair_index(uint32_t tag) { return tag & (kPairBlockFlows - 1); }

  explicit SnatCodec(Ipv4Prefix net) : base_(net.addr.value & net.mask()) {}
  // A pair flow's translated source (`tag` from pair_tag()).
  Endpoint encode_pair(uint32_t tag) const {
    return Endpoint{Ipv4{base_ + 2 + (1u << 15) + pair_block(tag)}, uint16_t(32768 + pair_index(tag))};
  }
  // Whether `ip` (host order) is one of the pair flows' addresses (whatever the port).
  bool is_pair_address(uint32_t ip) const { return ip - (base_ + 2 + (1u << 15)) < kPairBlocks; }
  // The pair tag an endpoint names, or nullopt (decode() reads dpgw's range).
  std::optional<uint32_t> decode_pair(const Endpoint& e) const {
    if (!e.ip.is_v4()) return std::nullopt;
    const uint32_t ip = e.ip.v4();
    if (ip < base_ + 2 + (1u << 15) || ip - base_ - 2 - (1u << 15) >= kPairBlocks || e.port < 32768)
      return std::nullopt;
    return pair_tag(ip - base_ - 2 - (1u << 15), e.port - 32768u);
  }

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
