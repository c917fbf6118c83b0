// Internet checksum (RFC 1071) and incremental updates (RFC 1624). Values are network-order numbers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>

#include "common/bytes.hpp"

namespace dptun {

// Ones-complement sum of data as big-endian 16-bit words, added to `sum`; not complemented, folded to 16 bits.
uint32_t csum_add(std::span<const uint8_t> data, uint32_t sum = 0);

inline uint16_t csum_fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return uint16_t(sum);
}
// Final checksum value to store: complement of the folded sum.
inline uint16_t csum_finish(uint32_t sum) { return uint16_t(~csum_fold(sum)); }

// Sum of a 20-byte IPv4 header (no options): five 32-bit loads, the common case on the fast path.
inline uint32_t csum_add_ipv4_header20(const uint8_t* h) {
  uint64_t acc = 0;
  for (int i = 0; i < 5; ++i) {
    uint32_t w;
    __builtin_memcpy(&w, h + 4 * i, 4);
    acc += w;
  }
  acc = (acc >> 32) + (acc & 0xffffffff);
  acc = (acc >> 16) + (acc & 0xffff);
  acc = (acc >> 16) + (acc & 0xffff);
  acc = (acc >> 16) + (acc & 0xffff);
  return __builtin_bswap16(uint16_t(acc));  // native-order sum -> big-endian words (RFC 1071 2(B))
}

// Checksum of an IPv4 header whose checksum field is zero or already set (it verifies to 0 when valid).
inline uint16_t ipv4_header_checksum(std::span<const uint8_t> header) {
  return csum_finish(header.size() == 20 ? csum_add_ipv4_header20(header.data()) : csum_add(header));
}

// Writes a 20-byte IPv4 header (no options, DF clear, TTL 64) with its checksum. Addresses in host order.
// The checksum is summed from the values, not read back: loads of a header just written in narrower stores wait
// for those stores to reach the cache (no store-to-load forwarding), which cost the encap path ~12 cycles a packet.
inline void write_ipv4_header(uint8_t* ip, uint16_t total_len, uint16_t id, uint8_t proto, uint32_t src, uint32_t dst) {
  const uint32_t sum = 0x4500u + total_len + id + (64u << 8 | proto) + (src >> 16) + (src & 0xffff) + (dst >> 16) +
                       (dst & 0xffff);
  ip[0] = 0x45;
  ip[1] = 0;
  store_be16(ip + 2, total_len);
  store_be16(ip + 4, id);
  store_be16(ip + 6, 0);
  ip[8] = 64;
  ip[9] = proto;
  store_be16(ip + 10, csum_finish(sum));
  store_be32(ip + 12, src);
  store_be32(ip + 16, dst);
}

// Sum of the IPv4 pseudo header for a TCP/UDP checksum.
inline uint32_t ipv4_pseudo_sum(uint32_t src, uint32_t dst, uint8_t proto, uint16_t l4_len) {
  return (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + proto + l4_len;
}

// Full TCP/UDP checksum over pseudo header + segment (checksum field must be zeroed by the caller).
inline uint16_t ipv4_l4_checksum(uint32_t src, uint32_t dst, uint8_t proto, std::span<const uint8_t> segment) {
  return csum_finish(csum_add(segment, ipv4_pseudo_sum(src, dst, proto, uint16_t(segment.size()))));
}

// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), applied to the checksum field at `field`.
inline void csum_replace16(uint8_t* field, uint16_t old_value, uint16_t new_value) {
  uint32_t sum = uint16_t(~load_be16(field)) + uint32_t(uint16_t(~old_value)) + new_value;
  store_be16(field, uint16_t(~csum_fold(sum)));
}
inline void csum_replace32(uint8_t* field, uint32_t old_value, uint32_t new_value) {
  uint32_t sum = uint16_t(~load_be16(field)) + uint32_t(uint16_t(~(old_value >> 16))) +
                 uint32_t(uint16_t(~old_value)) + (new_value >> 16) + (new_value & 0xffff);
  store_be16(field, uint16_t(~csum_fold(sum)));
}

}  // namespace dptun
