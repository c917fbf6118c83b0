#include "packet/tcp_mss.hpp"

#include "common/bytes.hpp"
#include "packet/checksum.hpp"
#include "packet/headers.hpp"

namespace dptun {

// Returns the offset of the MSS option's value inside the header, or 0.
static size_t find_mss_value(const uint8_t* tcp, size_t header_len) {
  size_t i = kTcpHeaderLen;
  while (i < header_len) {
    uint8_t kind = tcp[i];
    if (kind == 0) return 0;  // end of option list
    if (kind == 1) {          // no-op
      ++i;
      continue;
    }
    if (i + 1 >= header_len) return 0;
    uint8_t len = tcp[i + 1];
    if (len < 2 || i + len > header_len) return 0;  // malformed: leave the segment alone
    if (kind == 2) return len == 4 ? i + 2 : 0;
    i += len;
  }
  return 0;
}

uint16_t tcp_find_mss(const uint8_t* tcp, size_t header_len) {
  size_t at = find_mss_value(tcp, header_len);
  return at ? load_be16(tcp + at) : 0;
}

bool tcp_clamp_mss(uint8_t* tcp, size_t header_len, uint16_t max_mss) {
  if (header_len < kTcpHeaderLen || !(tcp[13] & kTcpSyn)) return false;
  size_t at = find_mss_value(tcp, header_len);
  if (!at) return false;
  uint16_t mss = load_be16(tcp + at);
  if (mss <= max_mss) return false;
  // The checksum works on 16-bit words aligned to the header start: the MSS value is at an even offset only
  // when the option starts at an even offset; handle both by replacing the aligned words that contain it.
  if (at % 2 == 0) {
    store_be16(tcp + at, max_mss);
    csum_replace16(tcp + kTcpOffChecksum, mss, max_mss);
  } else {
    uint16_t w1_old = load_be16(tcp + at - 1), w2_old = load_be16(tcp + at + 1);
    store_be16(tcp + at, max_mss);
    csum_replace16(tcp + kTcpOffChecksum, w1_old, load_be16(tcp + at - 1));
    csum_replace16(tcp + kTcpOffChecksum, w2_old, load_be16(tcp + at + 1));
  }
  return true;
}

}  // namespace dptun
