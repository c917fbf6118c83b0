// Address/port rewriting for NAT with incremental IPv4 and TCP/UDP checksum updates (RFC 1624).
#pragma once
#include <cstdint>

#include "common/bytes.hpp"
#include "packet/checksum.hpp"
#include "packet/headers.hpp"

namespace dptun {

namespace detail {
inline uint8_t* l4_checksum_field(uint8_t* l4, uint8_t proto) {
  return l4 + (proto == kIpProtoTcp ? kTcpOffChecksum : kUdpOffChecksum);
}
// UDP over IPv4 may carry no checksum (0); it must stay 0, and a computed 0 is sent as 0xffff.
inline void l4_update32(uint8_t* l4, uint8_t proto, uint32_t old_v, uint32_t new_v) {
  uint8_t* f = l4_checksum_field(l4, proto);
  if (proto == kIpProtoUdp && load_be16(f) == 0) return;
  csum_replace32(f, old_v, new_v);
  if (proto == kIpProtoUdp && load_be16(f) == 0) store_be16(f, 0xffff);
}
inline void l4_update16(uint8_t* l4, uint8_t proto, uint16_t old_v, uint16_t new_v) {
  uint8_t* f = l4_checksum_field(l4, proto);
  if (proto == kIpProtoUdp && load_be16(f) == 0) return;
  csum_replace16(f, old_v, new_v);
  if (proto == kIpProtoUdp && load_be16(f) == 0) store_be16(f, 0xffff);
}
}  // namespace detail

// `ip` is an IPv4 header, `l4` its TCP or UDP header (proto says which). Addresses/ports in host order.
inline void ipv4_rewrite_src(uint8_t* ip, uint8_t* l4, uint8_t proto, uint32_t new_ip, uint16_t new_port) {
  uint32_t old_ip = load_be32(ip + kIpv4OffSrc);
  uint16_t old_port = load_be16(l4);
  if (old_ip != new_ip) {
    store_be32(ip + kIpv4OffSrc, new_ip);
    csum_replace32(ip + kIpv4OffChecksum, old_ip, new_ip);
    detail::l4_update32(l4, proto, old_ip, new_ip);
  }
  if (old_port != new_port) {
    store_be16(l4, new_port);
    detail::l4_update16(l4, proto, old_port, new_port);
  }
}

inline void ipv4_rewrite_dst(uint8_t* ip, uint8_t* l4, uint8_t proto, uint32_t new_ip, uint16_t new_port) {
  uint32_t old_ip = load_be32(ip + kIpv4OffDst);
  uint16_t old_port = load_be16(l4 + 2);
  if (old_ip != new_ip) {
    store_be32(ip + kIpv4OffDst, new_ip);
    csum_replace32(ip + kIpv4OffChecksum, old_ip, new_ip);
    detail::l4_update32(l4, proto, old_ip, new_ip);
  }
  if (old_port != new_port) {
    store_be16(l4 + 2, new_port);
    detail::l4_update16(l4, proto, old_port, new_port);
  }
}

}  // namespace dptun
