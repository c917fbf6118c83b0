#include "agent/udp_link.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace dptun {

static sockaddr_in to_sockaddr(Endpoint ep) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(ep.port);
  sin.sin_addr.s_addr = htonl(ep.ip.v4());
  return sin;
}

bool UdpLink::open(Endpoint gateway, std::optional<Endpoint> bind_to, std::string& error) {
  Fd fd(socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    error = std::string("socket: ") + strerror(errno);
    return false;
  }
  int size = 4 << 20;
  if (setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
    setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  if (setsockopt(fd.get(), SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) != 0)
    setsockopt(fd.get(), SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  if (bind_to) {
    sockaddr_in local = to_sockaddr(*bind_to);
    if (bind(fd.get(), reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
      error = "cannot bind " + bind_to->str() + ": " + strerror(errno);
      return false;
    }
  }
  sockaddr_in remote = to_sockaddr(gateway);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&remote), sizeof remote) != 0) {
    error = "cannot reach gateway " + gateway.str() + ": " + strerror(errno) + " (check routes to it)";
    return false;
  }
  for (unsigned i = 0; i < kBatch; ++i) {
    rx_iov_[i] = iovec{rx_buf_[i].data(), kMaxDatagram};
    rx_msgs_[i].msg_hdr.msg_iov = &rx_iov_[i];
    rx_msgs_[i].msg_hdr.msg_iovlen = 1;
  }
  fd_ = std::move(fd);
  return true;
}

Endpoint UdpLink::local() const {
  sockaddr_in sin{};
  socklen_t len = sizeof sin;
  getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&sin), &len);
  return Endpoint{Ipv4{ntohl(sin.sin_addr.s_addr)}, ntohs(sin.sin_port)};
}

int UdpLink::receive_batch() {
  for (unsigned i = 0; i < kBatch; ++i) rx_msgs_[i].msg_len = 0;
  int n = recvmmsg(fd_.get(), rx_msgs_.data(), kBatch, MSG_DONTWAIT, nullptr);
  if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
  return n;
}

int UdpLink::queue(size_t len) {
  tx_len_[tx_count_++] = len;
  return tx_count_ == kBatch ? flush() : 0;
}

int UdpLink::flush() {
  int err = 0;
  unsigned sent = 0;
  while (sent < tx_count_) {
    unsigned n = tx_count_ - sent;
    for (unsigned i = 0; i < n; ++i) {
      tx_iov_[i] = iovec{tx_buf_[sent + i].data(), tx_len_[sent + i]};
      tx_msgs_[i] = mmsghdr{};
      tx_msgs_[i].msg_hdr.msg_iov = &tx_iov_[i];
      tx_msgs_[i].msg_hdr.msg_iovlen = 1;
    }
    int r = sendmmsg(fd_.get(), tx_msgs_.data(), n, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      err = -errno;
      send_errors_ += n;  // the batch's remainder is lost; the inner protocols retransmit
      break;
    }
    sent += unsigned(r);
  }
  tx_count_ = 0;
  return err;
}

}  // namespace dptun
