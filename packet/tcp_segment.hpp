// TCP segments dpgw reads and writes itself (delayed binding): the options of a handshake segment, and whole
// IPv4 TCP packets built from parts with correct checksums.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>

namespace dptun {

struct TcpHandshakeOptions {
  uint16_t mss = 0;        // 0: none
  uint8_t wscale = 0xff;   // 0xff: none
  bool sack_ok = false;
  bool has_ts = false;
  uint32_t tsval = 0, tsecr = 0;
};

// The options of a TCP header (`header_len` bytes, options included). Malformed lists end the reading.
TcpHandshakeOptions tcp_read_options(const uint8_t* tcp, size_t header_len);

// Writes the options a SYN or SYN-ACK carries (MSS, SACK-permitted, timestamps, window scale, as present in
// `o`), NOP-padded to a multiple of 4; returns their length (at most 20). `out` needs 20 bytes.
size_t tcp_write_handshake_options(uint8_t* out, const TcpHandshakeOptions& o);
// Writes a timestamps option (NOP NOP TS, 12 bytes).
size_t tcp_write_timestamps(uint8_t* out, uint32_t tsval, uint32_t tsecr);

struct TcpSegmentSpec {
  uint32_t src_ip, dst_ip;  // host order
  uint16_t src_port, dst_port;
  uint32_t seq, ack;
  uint8_t flags;
  uint16_t window;
  std::span<const uint8_t> options;  // a multiple of 4 bytes, at most 40
  std::span<const uint8_t> payload;
  uint16_t ip_id;
};

// Writes an IPv4 (no options) + TCP packet into `out` and returns its length, or 0 when `out` is too
// small. IP and TCP checksums are filled in.
size_t tcp_write_packet(std::span<uint8_t> out, const TcpSegmentSpec& s);

}  // namespace dptun
