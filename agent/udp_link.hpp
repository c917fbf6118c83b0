// The agent's UDP socket to its gateway: connected (only the gateway's datagrams arrive), non-blocking,
// with batched receive and send (recvmmsg / sendmmsg).
#pragma once
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/inet.hpp"
#include "common/unix_socket.hpp"

namespace dptun {

class UdpLink {
 public:
  static constexpr unsigned kBatch = 32;
  static constexpr size_t kMaxDatagram = 9216;  // a 9000-byte underlay MTU's frame fits

  UdpLink() = default;
  UdpLink(const UdpLink&) = delete;  // the batch headers point into this object
  UdpLink& operator=(const UdpLink&) = delete;

  bool open(Endpoint gateway, std::optional<Endpoint> bind_to, std::string& error);
  int fd() const { return fd_.get(); }
  Endpoint local() const;

  // Receives up to kBatch datagrams; returns the count (0 when none are waiting). Negative errno on errors
  // such as ECONNREFUSED (the gateway's host answered "port unreachable").
  int receive_batch();
  uint8_t* rx_data(unsigned i) { return rx_buf_[i].data(); }
  size_t rx_len(unsigned i) const { return rx_msgs_[i].msg_len; }

  // Queues a datagram (copied); sends when the batch is full. flush() sends the rest.
  // Both return a negative errno on a send error, else 0.
  uint8_t* tx_slot() { return tx_buf_[tx_count_].data(); }
  int queue(size_t len);
  int flush();
  uint64_t send_errors() const { return send_errors_; }

 private:
  Fd fd_;
  std::vector<std::array<uint8_t, kMaxDatagram>> rx_buf_ = std::vector<std::array<uint8_t, kMaxDatagram>>(kBatch);
  std::vector<std::array<uint8_t, kMaxDatagram>> tx_buf_ = std::vector<std::array<uint8_t, kMaxDatagram>>(kBatch);
  std::array<mmsghdr, kBatch> rx_msgs_{};
  std::array<iovec, kBatch> rx_iov_{};
  std::array<mmsghdr, kBatch> tx_msgs_{};
  std::array<iovec, kBatch> tx_iov_{};
  std::array<size_t, kBatch> tx_len_{};
  unsigned tx_count_ = 0;
  uint64_t send_errors_ = 0;
};

}  // namespace dptun
