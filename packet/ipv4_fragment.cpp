#include "packet/ipv4_fragment.hpp"

#include <cstring>

#include "packet/checksum.hpp"
#include "packet/ipv4_reassembly.hpp"

namespace dptun {

FragmentInfo ipv4_fragment_info(const uint8_t* ip) {
  const uint16_t hl = uint16_t((ip[0] & 0x0f) * 4);
  const uint16_t frag = load_be16(ip + kIpv4OffFrag);
  const uint32_t total = load_be16(ip + kIpv4OffTotalLen);
  return FragmentInfo{uint32_t(frag & kIpv4FragOffsetMask) * 8, total > hl ? total - hl : 0, hl,
                      (frag & kIpv4FlagMf) != 0};
}

FragmentPlan plan_ipv4_fragments(uint32_t header_len, uint32_t payload, uint32_t max_packet) {
  if (max_packet < header_len + 8) return FragmentPlan{0, 0};
  const uint32_t chunk = (max_packet - header_len) & ~7u;
  return FragmentPlan{chunk, payload ? (payload + chunk - 1) / chunk : 1};
}

size_t write_ipv4_fragment_header(uint8_t* out, std::span<const uint8_t> header, uint16_t id, uint32_t offset,
                                  uint32_t len, bool more) {
  const size_t hl = offset == 0 ? header.size() : kIpv4HeaderLen;
  std::memcpy(out, header.data(), hl);
  out[0] = uint8_t(0x40 | (hl / 4));
  store_be16(out + kIpv4OffTotalLen, uint16_t(hl + len));
  store_be16(out + kIpv4OffId, id);
  store_be16(out + kIpv4OffFrag, uint16_t((more ? kIpv4FlagMf : 0) | (offset / 8)));
  store_be16(out + kIpv4OffChecksum, 0);
  store_be16(out + kIpv4OffChecksum, ipv4_header_checksum({out, hl}));
  return hl;
}

void finish_reassembled_header(uint8_t* ip, uint32_t payload) {
  const size_t hl = size_t(ip[0] & 0x0f) * 4;
  store_be16(ip + kIpv4OffTotalLen, uint16_t(hl + payload));
  store_be16(ip + kIpv4OffFrag, 0);
  store_be16(ip + kIpv4OffChecksum, 0);
  store_be16(ip + kIpv4OffChecksum, ipv4_header_checksum({ip, hl}));
}

const char* frag_drop_name(FragDrop d) {
  switch (d) {
    case FragDrop::Malformed: return "frag_malformed";
    case FragDrop::Duplicate: return "frag_duplicate";
    case FragDrop::Overlap: return "frag_overlap";
    case FragDrop::Oversize: return "frag_oversize";
    case FragDrop::TooMany: return "frag_too_many";
    case FragDrop::Timeout: return "frag_timeout";
    case FragDrop::Evicted: return "frag_evicted";
    case FragDrop::Count: break;
  }
  return "unknown";
}

}  // namespace dptun
