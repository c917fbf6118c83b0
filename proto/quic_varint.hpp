// QUIC variable-length integers (RFC 9000 16): 1, 2, 4 or 8 bytes, big-endian, the two high bits of the first byte
// giving the length; values up to 2^62 - 1. The one place that reads and writes them (the QUIC Initial reader, the
// short-header framing).
#pragma once
#include <cstddef>
#include <cstdint>

namespace dptun {

inline constexpr uint64_t kQuicVarintMax = (uint64_t(1) << 62) - 1;

// Reads one at `p` (advanced past it); false, `p` unchanged, when fewer bytes than its length remain before `end`.
inline bool quic_read_varint(const uint8_t*& p, const uint8_t* end, uint64_t& v) {
  if (p >= end) return false;
  const size_t len = size_t(1) << (p[0] >> 6);
  if (size_t(end - p) < len) return false;
  v = p[0] & 0x3f;
  for (size_t i = 1; i < len; ++i) v = v << 8 | p[i];
  p += len;
  return true;
}

// Bytes the shortest encoding of `v` takes (v <= kQuicVarintMax).
inline constexpr size_t quic_varint_len(uint64_t v) { return v < 64 ? 1 : v < 16384 ? 2 : v < (1u << 30) ? 4 : 8; }

// Writes the shortest encoding of `v` (<= kQuicVarintMax) at `out`, which must hold quic_varint_len(v) bytes;
// returns the bytes written.
inline size_t quic_write_varint(uint8_t* out, uint64_t v) {
  const size_t len = quic_varint_len(v);
  const uint8_t prefix = len == 1 ? 0x00 : len == 2 ? 0x40 : len == 4 ? 0x80 : 0xc0;
  for (size_t i = 0; i < len; ++i) out[i] = uint8_t(v >> (8 * (len - 1 - i)));
  out[0] |= prefix;
  return len;
}

// Gathers two varints that arrive a byte at a time (the Type and Length in front of an HTTP/3 frame, RFC 9114 7.1,
// or of a capsule, RFC 9297 3.2) in `buf`, of which `len` bytes are filled. True when `byte` completes the pair:
// then `first` and `second` hold them and `len` is 0 again.
inline bool quic_varint_pair_push(uint8_t (&buf)[16], size_t& len, uint8_t byte, uint64_t& first, uint64_t& second) {
  buf[len++] = byte;
  // The first byte of each varint gives its length.
  const size_t first_len = size_t(1) << (buf[0] >> 6);
  if (len <= first_len) return false;
  if (len < first_len + (size_t(1) << (buf[first_len] >> 6))) return false;
  const uint8_t* p = buf;
  quic_read_varint(p, buf + len, first);
  quic_read_varint(p, buf + len, second);
  len = 0;
  return true;
}

}  // namespace dptun
