// IPv4 fragments (RFC 791 section 3.2): reading a fragment's place in its datagram, splitting a packet into
// fragments, and the header of a datagram put back together. Offsets and lengths are in bytes of the IP payload;
// headers are big-endian as on the wire.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>

#include "common/bytes.hpp"
#include "packet/headers.hpp"

namespace dptun {

// True when the IPv4 header at `ip` (at least 8 bytes) is a fragment's: MF set or a non-zero offset.
inline bool ipv4_is_fragment(const uint8_t* ip) {
  return (load_be16(ip + kIpv4OffFrag) & (kIpv4FlagMf | kIpv4FragOffsetMask)) != 0;
}

// Where a fragment belongs, read from its (already validated) IPv4 header.
struct FragmentInfo {
  uint32_t offset;       // of its payload in the datagram's payload, a multiple of 8
  uint32_t len;          // payload bytes it carries
  uint16_t header_len;   // its own header's length (options included)
  bool more;             // MF: more fragments follow
};
FragmentInfo ipv4_fragment_info(const uint8_t* ip);

// How a packet of `header_len` + `payload` bytes splits into fragments of at most `max_packet` bytes each
// (header included). Every fragment but the last carries `chunk` bytes (a multiple of 8); `count` is 0 when
// `max_packet` cannot hold the header and 8 bytes.
struct FragmentPlan {
  uint32_t chunk;
  uint32_t count;
};
FragmentPlan plan_ipv4_fragments(uint32_t header_len, uint32_t payload, uint32_t max_packet);

// Writes the header of the fragment carrying payload bytes [offset, offset + len) of the packet whose header is
// `header`: the first fragment (offset 0) copies the whole header, later ones its 20 fixed bytes (the receiver
// rebuilds the datagram from the first fragment's header, RFC 791). DF cleared, MF as `more`, the given id,
// checksum. Returns the header length written.
size_t write_ipv4_fragment_header(uint8_t* out, std::span<const uint8_t> header, uint16_t id, uint32_t offset,
                                  uint32_t len, bool more);

// Turns the first fragment's header at `ip` into the reassembled datagram's: total length header + `payload`,
// no MF, offset 0, DF clear, checksum. `payload` + header length must be <= 65535.
void finish_reassembled_header(uint8_t* ip, uint32_t payload);

}  // namespace dptun
