// The rewriting of a spliced TCP connection (delayed binding). dpgw answered the client's SYN itself (its ISN
// is the SYN cookie, its timestamps its own clock, its window scale its choice), then opened the server side
// with the client's own ISN, MSS and window scale. Afterwards each segment is rewritten in place, with
// incremental checksum updates:
//   client -> server: seq + client_seq_delta, ack and SACK edges + seq_delta, TSecr + ts_delta, window rescaled
//   server -> client: seq - seq_delta, ack and SACK edges - client_seq_delta, TSval - ts_delta, window rescaled
// (client_seq_delta is non-zero when dpgw sent the server bytes of its own first, e.g. a PROXY protocol header.)
// While dpgw still holds first bytes of the client's that it acknowledged itself (hold_acks), the server's
// acknowledgments below ack_floor reach the client as ack_floor, the window shrunk by as much (same right edge).
// All arithmetic is modulo 2^32, so sequence numbers wrap as TCP's do.
#pragma once
#include <cstddef>
#include <cstdint>

namespace dptun {

struct TcpSplice {
  uint32_t seq_delta = 0;     // server's ISN - the ISN we gave the client
  uint32_t ts_delta = 0;      // server's first TSval - the TSval we gave the client
  uint8_t our_wscale = 0;     // the shift our SYN-ACK told the client (0: no scaling)
  uint8_t server_wscale = 0;  // the shift the server's SYN-ACK told us (0: no scaling)
  uint32_t client_seq_delta = 0;  // bytes dpgw inserted before the client's own towards the server
  uint8_t client_window_shift = 0;  // the client scales windows but the server does not: shift them up
  bool hold_acks = false;   // raise the server's acknowledgments to ack_floor (see above)
  uint32_t ack_floor = 0;   // in the client's sequence space: what dpgw acknowledged to the client itself

  // `tcp` points at a TCP header of `header_len` bytes (options included; a multiple of 4, <= 60) whose checksum
  // is valid; it stays valid. Malformed option lists are left as they are (the segment still gets its sequence
  // numbers rewritten). Returns false when the header is too short to be TCP.
  bool to_server(uint8_t* tcp, size_t header_len) const;
  bool to_client(uint8_t* tcp, size_t header_len) const;

  // A window the server advertised (scaled by server_wscale) in our scale towards the client, never shrinking a
  // non-zero window to zero.
  uint16_t window_to_client(uint16_t server_window) const;
  // A window of `bytes` in our scale towards the client (saturated; never 0 when bytes > 0).
  uint16_t window_bytes_to_client(uint64_t bytes) const;
};

}  // namespace dptun
