#include "proto/snat_codec.hpp"

namespace dptun {

bool SnatCodec::valid_subnet(Ipv4Prefix net, std::string& why) {
  if (net.len > 16) {
    why = "the subnet must be a /16 or larger (it holds one source address:port per gateway flow)";
    return false;
  }
  const uint32_t base = net.addr.value & net.mask();
  const uint32_t own = net.addr.value;
  if (own >= base + 2 && own - base - 2 < (1u << 15) + kPairBlocks) {  // dpgw's flows, then pair flows
    why = "its address " + net.addr.str() + " lies in the translated range; use the subnet's first address (" +
          Ipv4{base + 1}.str() + ")";
    return false;
  }
  return true;
}

}  // namespace dptun
