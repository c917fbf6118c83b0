// The agent's UDP socket to its gateway: connected (only the gateway's datagrams arrive), non-blocking, with batched
// receive and send (recvmmsg / sendmmsg), and the kernel's UDP offloads where it has them (probed in open()):
// - UDP_SEGMENT (Linux 4.18): frames of one length queued back to back go out as one super-datagram per sendmmsg
//   entry; the kernel (or the NIC) cuts it into the frames again.
// - UDP_GRO (Linux 5.0): the kernel may hand over several frames of one length from the gateway in one buffer; the
//   receiver walks them with each_frame().
// - SO_RXQ_OVFL: the count of datagrams the kernel dropped because the socket's receive buffer was full.
#pragma once
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/counter.hpp"
#include "common/inet.hpp"
#include "common/unix_socket.hpp"

namespace dptun {

// An IPv4 endpoint as the socket calls take it.
sockaddr_in to_sockaddr(Endpoint ep);

// Written by the thread that receives (rx_*) or sends (tx_*); any thread may read them (common/counter.hpp).
struct UdpLinkStats {
  StatCounter rx_datagrams = 0;       // receive buffers filled (one per datagram, or one per GRO super-datagram)
  StatCounter rx_gro_datagrams = 0;   // of which held more than one frame
  StatCounter rx_socket_drops = 0;    // SO_RXQ_OVFL: datagrams the kernel dropped for a full receive buffer
  StatCounter tx_frames = 0;          // frames the kernel took
  StatCounter tx_sends = 0;           // sendmmsg entries (fewer than tx_frames when segmenting)
  StatCounter tx_dropped = 0;         // frames lost to a send error (counted per frame)
};

struct UdpOffloads {
  bool gso = true;  // UDP_SEGMENT on send
  bool gro = true;  // UDP_GRO on receive
};

class UdpLink {
 public:
  static constexpr unsigned kBatch = 32;
  static constexpr size_t kMaxDatagram = 9216;      // a 9000-byte underlay MTU's frame fits
  static constexpr size_t kMaxRxBuffer = 65535;     // a GRO super-datagram fits
  static constexpr unsigned kMaxGsoSegments = 64;   // UDP_MAX_SEGMENTS of older kernels
  static constexpr size_t kMaxGsoBytes = 65000;     // below the 65507-byte UDP payload limit

  UdpLink() = default;
  UdpLink(const UdpLink&) = delete;  // the batch headers point into this object
  UdpLink& operator=(const UdpLink&) = delete;

  // `want`: the offloads to try; offloads() says which the kernel took.
  bool open(Endpoint gateway, std::optional<Endpoint> bind_to, std::string& error, UdpOffloads want = {});
  // Sends and receives on someone else's unconnected socket `fd` (which must outlive this object): the direct-path
  // socket. Each frame is sent to its own address (queue_to); rx_from() says where each received one came from.
  // UDP_SEGMENT and UDP_GRO where the kernel has them.
  void use_socket(int fd, UdpOffloads want = {});
  int fd() const { return fd_.get(); }
  Endpoint local() const;
  UdpOffloads offloads() const { return on_; }
  const UdpLinkStats& stats() const { return stats_; }  // since the object was made (across reopening)

  // Receives up to kBatch datagrams; returns the count (0 when none are waiting). Negative errno on errors
  // such as ECONNREFUSED (the gateway's host answered "port unreachable").
  int receive_batch();
  uint8_t* rx_data(unsigned i) { return rx_buf_[i].data(); }
  Endpoint rx_from(unsigned i) const {
    return Endpoint{Ipv4{ntohl(rx_names_[i].sin_addr.s_addr)}, ntohs(rx_names_[i].sin_port)};
  }
  size_t rx_len(unsigned i) const { return rx_msgs_[i].msg_len; }
  // Hands `f` each frame of buffer i (a std::span<uint8_t>, writable): with UDP_GRO a buffer may hold several of one
  // length back to back (the last may be shorter).
  template <class F>
  void each_frame(unsigned i, F&& f) {
    const std::span<uint8_t> buffer{rx_data(i), rx_len(i)};
    const size_t step = rx_gso_[i] ? rx_gso_[i] : buffer.size();
    for (size_t off = 0; off < buffer.size(); off += step) f(buffer.subspan(off, std::min(step, buffer.size() - off)));
  }

  // Queues a frame built in tx_slot() (`len` 0: the slot is given up). The caller flushes when full() (before the
  // next tx_slot()); flush() returns a negative errno on a send error (the frames it lost are counted in
  // stats().tx_dropped), else 0.
  uint8_t* tx_slot() { return tx_buf_[tx_count_].data(); }
  void queue(size_t len) { tx_len_[tx_count_++] = len; }
  // use_socket(): a frame for `to` (only runs of frames to one address are segmented together).
  void queue_to(size_t len, Endpoint to) {
    tx_to_[tx_count_] = to_sockaddr(to);
    tx_len_[tx_count_++] = len;
  }
  bool full() const { return tx_count_ == kBatch; }
  // Gives up the queued frames whose first 16 bytes are zero (frames the sealer wiped); returns how many.
  unsigned drop_wiped();
  int flush();

 private:
  int send_all(unsigned count);
  int socket_fd() const { return fd_ ? fd_.get() : borrowed_fd_; }
  Fd fd_;
  int borrowed_fd_ = -1;  // use_socket()
  UdpOffloads on_{false, false};
  UdpLinkStats stats_;
  uint32_t last_rx_drops_ = 0;
  std::vector<std::array<uint8_t, kMaxRxBuffer>> rx_buf_ = std::vector<std::array<uint8_t, kMaxRxBuffer>>(kBatch);
  std::vector<std::array<uint8_t, kMaxDatagram>> tx_buf_ = std::vector<std::array<uint8_t, kMaxDatagram>>(kBatch);
  static constexpr size_t kCmsgSpace = 64;  // room for UDP_GRO / UDP_SEGMENT (an int or a u16) and SO_RXQ_OVFL
  std::array<mmsghdr, kBatch> rx_msgs_{};
  std::array<iovec, kBatch> rx_iov_{};
  std::array<sockaddr_in, kBatch> rx_names_{};
  std::array<std::array<uint64_t, kCmsgSpace / 8>, kBatch> rx_cmsg_{};
  std::array<size_t, kBatch> rx_gso_{};
  std::array<mmsghdr, kBatch> tx_msgs_{};
  std::array<iovec, kBatch> tx_iov_{};
  std::array<std::array<uint64_t, kCmsgSpace / 8>, kBatch> tx_cmsg_{};
  std::array<size_t, kBatch> tx_len_{};
  std::array<sockaddr_in, kBatch> tx_to_{};  // use_socket(): each frame's address
  unsigned tx_count_ = 0;
};

}  // namespace dptun
