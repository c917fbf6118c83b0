// Fragments dpgw makes, copied into fresh mbufs: inner fragments of a datagram too big for one relay frame
// (relay/encap.cpp) and IPv4 fragments of one too big for the link to the client (loop/fragments.cpp).
#pragma once
#include <rte_mbuf.h>

#include <cstdint>
#include <cstring>
#include <span>

#include "packet/headers.hpp"
#include "packet/ipv4_fragment.hpp"

namespace dptun {

inline constexpr uint32_t kMaxFragmentsOut = 128;  // 65535 bytes in fragments of >= 520: any MTU we run on

// Appends `prefix` + fragment header + payload [offset, offset + len) of the packet in `src` (its header is
// `header`) + `suffix` to the empty mbuf `out`. Returns where the prefix starts (the header follows it), or nullptr
// when `out` has no room or `src` is shorter than that.
inline uint8_t* build_fragment(rte_mbuf* out, const rte_mbuf* src, std::span<const uint8_t> header, uint16_t id,
                               uint32_t offset, uint32_t len, bool more, uint32_t prefix, uint32_t suffix) {
  const uint32_t fh = offset == 0 ? uint32_t(header.size()) : uint32_t(kIpv4HeaderLen);
  uint8_t* p = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(out, uint16_t(prefix + fh + len + suffix)));
  if (!p) return nullptr;
  write_ipv4_fragment_header(p + prefix, header, id, offset, len, more);
  uint8_t* data = p + prefix + fh;
  const void* from = rte_pktmbuf_read(src, uint32_t(header.size()) + offset, len, data);
  if (!from) return nullptr;
  if (from != data) std::memcpy(data, from, len);
  return p;
}

}  // namespace dptun
