#include "ingress/tcp_splice.hpp"

#include "common/bytes.hpp"
#include "packet/checksum.hpp"

namespace dptun {

namespace {

constexpr size_t kOffSeq = 4, kOffAck = 8, kOffWindow = 14, kOffChecksum = 16;
constexpr uint8_t kFlagAck = 0x10;
constexpr uint8_t kOptEol = 0, kOptNop = 1, kOptSack = 5, kOptTimestamps = 8;

// Replaces the 32-bit big-endian field at `off` (any alignment) and updates the checksum over the 16-bit words
// it touches.
void replace32(uint8_t* tcp, size_t off, uint32_t value) {
  const size_t first = off & ~size_t(1), last = (off + 4 + 1) & ~size_t(1);  // aligned words covering the field
  uint16_t old_words[3];
  for (size_t w = first, i = 0; w < last; w += 2, ++i) old_words[i] = load_be16(tcp + w);
  store_be32(tcp + off, value);
  for (size_t w = first, i = 0; w < last; w += 2, ++i) csum_replace16(tcp + kOffChecksum, old_words[i], load_be16(tcp + w));
}

// Calls fn(kind, offset of the option's data, data length) for each well-formed option; stops at a malformed one.
template <typename Fn>
void for_each_option(uint8_t* tcp, size_t header_len, Fn fn) {
  size_t i = 20;
  while (i < header_len) {
    const uint8_t kind = tcp[i];
    if (kind == kOptEol) return;
    if (kind == kOptNop) {
      ++i;
      continue;
    }
    if (i + 1 >= header_len) return;
    const uint8_t len = tcp[i + 1];
    if (len < 2 || i + len > header_len) return;
    fn(kind, i + 2, size_t(len - 2));
    i += len;
  }
}

}  // namespace

bool TcpSplice::to_server(uint8_t* tcp, size_t header_len) const {
  if (header_len < 20 || header_len > 60) return false;
  if (client_seq_delta) replace32(tcp, kOffSeq, load_be32(tcp + kOffSeq) + client_seq_delta);
  replace32(tcp, kOffAck, load_be32(tcp + kOffAck) + seq_delta);
  if (client_window_shift) {
    const uint16_t win = load_be16(tcp + kOffWindow);
    const uint64_t w = uint64_t(win) << client_window_shift;
    const uint16_t scaled = uint16_t(w > 0xffff ? 0xffff : w);
    store_be16(tcp + kOffWindow, scaled);
    csum_replace16(tcp + kOffChecksum, win, scaled);
  }
  for_each_option(tcp, header_len, [&](uint8_t kind, size_t off, size_t len) {
    if (kind == kOptSack && len % 8 == 0) {
      for (size_t e = 0; e < len; e += 4) replace32(tcp, off + e, load_be32(tcp + off + e) + seq_delta);
    } else if (kind == kOptTimestamps && len == 8 && load_be32(tcp + off + 4) != 0) {
      replace32(tcp, off + 4, load_be32(tcp + off + 4) + ts_delta);  // TSecr: the server's clock again
    }
  });
  return true;
}

bool TcpSplice::to_client(uint8_t* tcp, size_t header_len) const {
  if (header_len < 20 || header_len > 60) return false;
  replace32(tcp, kOffSeq, load_be32(tcp + kOffSeq) - seq_delta);
  const uint32_t raw_ack = load_be32(tcp + kOffAck);
  uint32_t ack = raw_ack - client_seq_delta;
  const uint16_t win = load_be16(tcp + kOffWindow);
  uint16_t scaled = window_to_client(win);
  if (hold_acks && (tcp[13] & kFlagAck) && int32_t(ack - ack_floor) < 0) {
    // dpgw acknowledged the client's first bytes itself: the client never sees them acknowledged less, and the
    // window keeps the server's right edge.
    const uint32_t gap = ack_floor - ack;
    const uint64_t bytes = uint64_t(win) << server_wscale;
    scaled = window_bytes_to_client(bytes > gap ? bytes - gap : 0);
    ack = ack_floor;
  }
  if (ack != raw_ack) replace32(tcp, kOffAck, ack);
  if (scaled != win) {
    store_be16(tcp + kOffWindow, scaled);
    csum_replace16(tcp + kOffChecksum, win, scaled);
  }
  for_each_option(tcp, header_len, [&](uint8_t kind, size_t off, size_t len) {
    if (kind == kOptTimestamps && len == 8) {
      replace32(tcp, off, load_be32(tcp + off) - ts_delta);  // TSval
    } else if (kind == kOptSack && len % 8 == 0 && client_seq_delta) {
      for (size_t e = 0; e < len; e += 4) replace32(tcp, off + e, load_be32(tcp + off + e) - client_seq_delta);
    }
  });
  return true;
}

uint16_t TcpSplice::window_bytes_to_client(uint64_t bytes) const {
  uint64_t w = bytes >> our_wscale;
  if (w > 0xffff) w = 0xffff;
  if (w == 0 && bytes) w = 1;
  return uint16_t(w);
}

uint16_t TcpSplice::window_to_client(uint16_t server_window) const {
  if (server_wscale == our_wscale) return server_window;
  return window_bytes_to_client(uint64_t(server_window) << server_wscale);
}

}  // namespace dptun
