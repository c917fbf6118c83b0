#include "packet/checksum.hpp"

#include <cstring>

namespace dptun {

uint32_t csum_add(std::span<const uint8_t> data, uint32_t sum) {
  // Sum native (little-endian) words with end-around carry; byte-swap the folded result at the end
  // (RFC 1071 section 2(B): the sum is byte-order independent up to a final swap).
  const uint8_t* p = data.data();
  size_t n = data.size();
  uint64_t acc = 0;
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    acc += w;
    acc += acc < w;
    p += 8;
    n -= 8;
  }
  if (n >= 4) {
    uint32_t w;
    std::memcpy(&w, p, 4);
    acc += w;
    acc += acc < w;
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    uint16_t w;
    std::memcpy(&w, p, 2);
    acc += w;
    acc += acc < w;
    p += 2;
    n -= 2;
  }
  if (n) {
    acc += p[0];  // low byte in little-endian == high byte of the big-endian word after the swap
    acc += acc < p[0];
  }
  uint32_t folded = uint32_t(acc >> 32) + uint32_t(acc);
  if (folded < uint32_t(acc)) folded++;
  uint16_t le = csum_fold(folded);
  return uint32_t(__builtin_bswap16(le)) + sum;
}

}  // namespace dptun
