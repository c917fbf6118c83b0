// TCP MSS clamping: lowers the MSS option of SYN segments so encapsulated packets fit the underlay MTU.
#pragma once
#include <cstddef>
#include <cstdint>

namespace dptun {

// `tcp` points at a TCP header of `header_len` bytes (options included). If the segment carries SYN and an
// MSS option above `max_mss`, the option is lowered and the TCP checksum fixed incrementally.
// Malformed option lists are left untouched. Returns true when the segment was changed.
bool tcp_clamp_mss(uint8_t* tcp, size_t header_len, uint16_t max_mss);

// The MSS option value of a segment, or 0 when there is none (or the options are malformed).
uint16_t tcp_find_mss(const uint8_t* tcp, size_t header_len);

}  // namespace dptun
