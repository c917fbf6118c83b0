#include "agent/udp_link.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log.hpp"
#include "common/udp_socket.hpp"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

namespace dptun {

sockaddr_in to_sockaddr(Endpoint ep) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(ep.port);
  sin.sin_addr.s_addr = htonl(ep.ip.v4());
  return sin;
}

bool UdpLink::open(Endpoint gateway, std::optional<Endpoint> bind_to, std::string& error, UdpOffloads want) {
  Fd fd(socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    error = std::string("socket: ") + strerror(errno);
    return false;
  }
  set_udp_buffers(fd.get(), 4 << 20);
  int one = 1, zero = 0;
  // Where the kernel lacks one, it is left off (the caller logs offloads()).
  on_.gro = want.gro && setsockopt(fd.get(), SOL_UDP, UDP_GRO, &one, sizeof one) == 0;
  // UDP_SEGMENT with size 0 sets no default segment size: it only asks whether the kernel knows the option (each
  // send names its own size).
  on_.gso = want.gso && setsockopt(fd.get(), SOL_UDP, UDP_SEGMENT, &zero, sizeof zero) == 0;
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
  for (unsigned i = 0; i < kBatch; ++i) rx_iov_[i] = iovec{rx_buf_[i].data(), kMaxRxBuffer};
  fd_ = std::move(fd);
  last_rx_drops_ = 0;
  return true;
}

Endpoint UdpLink::local() const {
  sockaddr_in sin{};
  socklen_t len = sizeof sin;
  getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&sin), &len);
  return Endpoint{Ipv4{ntohl(sin.sin_addr.s_addr)}, ntohs(sin.sin_port)};
}

int UdpLink::receive_batch() {
  for (unsigned i = 0; i < kBatch; ++i) {
    rx_msgs_[i] = mmsghdr{};
    rx_msgs_[i].msg_hdr.msg_iov = &rx_iov_[i];
    rx_msgs_[i].msg_hdr.msg_iovlen = 1;
    rx_msgs_[i].msg_hdr.msg_control = rx_cmsg_[i].data();
    rx_msgs_[i].msg_hdr.msg_controllen = kCmsgSpace;
    rx_msgs_[i].msg_hdr.msg_name = &rx_names_[i];
    rx_msgs_[i].msg_hdr.msg_namelen = sizeof rx_names_[i];
  }
  int n = recvmmsg(socket_fd(), rx_msgs_.data(), kBatch, MSG_DONTWAIT, nullptr);
  if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
  for (int i = 0; i < n; ++i) {
    rx_gso_[i] = 0;
    msghdr& h = rx_msgs_[i].msg_hdr;
    for (cmsghdr* c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(&h, c)) {
      if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
        int seg = 0;
        std::memcpy(&seg, CMSG_DATA(c), sizeof seg);
        if (seg > 0 && size_t(seg) < rx_msgs_[i].msg_len) rx_gso_[i] = size_t(seg);
      } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
        uint32_t drops = 0;
        std::memcpy(&drops, CMSG_DATA(c), sizeof drops);
        // The kernel's count of drops since the socket opened, as of this datagram (32 bits, wrapping).
        stats_.rx_socket_drops += uint32_t(drops - last_rx_drops_);
        last_rx_drops_ = drops;
      }
    }
    stats_.rx_datagrams++;
    if (rx_gso_[i]) stats_.rx_gro_datagrams++;
  }
  return n;
}

void UdpLink::use_socket(int fd, UdpOffloads want) {
  int one = 1, zero = 0;
  borrowed_fd_ = fd;
  on_.gro = want.gro && setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) == 0;
  on_.gso = want.gso && setsockopt(fd, SOL_UDP, UDP_SEGMENT, &zero, sizeof zero) == 0;
  for (unsigned i = 0; i < kBatch; ++i) rx_iov_[i] = iovec{rx_buf_[i].data(), kMaxRxBuffer};
}

// Sends frames [0, count) of the slots: with UDP_SEGMENT, each run of frames of one length (the last of a run may
// be shorter) is one sendmmsg entry whose iovecs the kernel joins and cuts again at that length.
int UdpLink::send_all(unsigned count) {
  const bool addressed = !fd_;  // use_socket(): each frame has its address
  unsigned msgs = 0;
  std::array<unsigned, kBatch> first{};  // first frame of each entry
  for (unsigned i = 0; i < count; ++i) tx_iov_[i] = iovec{tx_buf_[i].data(), tx_len_[i]};
  for (unsigned i = 0; i < count;) {
    unsigned j = i + 1;
    size_t bytes = tx_len_[i];
    if (on_.gso) {
      while (j < count && tx_len_[j] <= tx_len_[i] && j - i < kMaxGsoSegments && bytes + tx_len_[j] <= kMaxGsoBytes &&
             (!addressed || (tx_to_[j].sin_addr.s_addr == tx_to_[i].sin_addr.s_addr &&
                             tx_to_[j].sin_port == tx_to_[i].sin_port))) {
        bytes += tx_len_[j];
        if (tx_len_[j++] < tx_len_[i]) break;
      }
    }
    mmsghdr& m = tx_msgs_[msgs];
    m = mmsghdr{};
    m.msg_hdr.msg_iov = &tx_iov_[i];
    m.msg_hdr.msg_iovlen = j - i;
    if (addressed) {
      m.msg_hdr.msg_name = &tx_to_[i];
      m.msg_hdr.msg_namelen = sizeof(sockaddr_in);
    }
    if (j - i > 1) {
      m.msg_hdr.msg_control = tx_cmsg_[msgs].data();
      m.msg_hdr.msg_controllen = CMSG_SPACE(sizeof(uint16_t));
      cmsghdr* c = CMSG_FIRSTHDR(&m.msg_hdr);
      c->cmsg_level = SOL_UDP;
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      const uint16_t seg = uint16_t(tx_len_[i]);
      std::memcpy(CMSG_DATA(c), &seg, sizeof seg);
    }
    first[msgs++] = i;
    i = j;
  }
  unsigned sent = 0;
  while (sent < msgs) {
    int r = sendmmsg(socket_fd(), tx_msgs_.data() + sent, msgs - sent, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      if (on_.gso && (err == EIO || err == EINVAL || err == EOPNOTSUPP) && tx_msgs_[sent].msg_hdr.msg_iovlen > 1) {
        // The path cannot segment (a device without checksum offload on an old kernel): plain datagrams from now on,
        // the unsent frames again.
        LOG_WARN("UDP segmentation offload refused by the kernel (%s): sending one datagram per frame from now on",
                 strerror(err));
        on_.gso = false;
        const unsigned from = first[sent];
        for (unsigned k = from; k < count; ++k)
          tx_len_[k - from] = tx_len_[k], tx_to_[k - from] = tx_to_[k], std::swap(tx_buf_[k - from], tx_buf_[k]);
        return send_all(count - from);
      }
      stats_.tx_dropped += count - first[sent];  // the rest is lost; the inner protocols retransmit
      return -err;
    }
    for (int k = 0; k < r; ++k) {
      stats_.tx_frames += tx_msgs_[sent + k].msg_hdr.msg_iovlen;
      stats_.tx_sends++;
    }
    sent += unsigned(r);
  }
  return 0;
}

unsigned UdpLink::drop_wiped() {
  static constexpr uint8_t kZero[16] = {};
  unsigned n = 0;
  for (unsigned i = 0; i < tx_count_; ++i)
    if (tx_len_[i] >= sizeof kZero && std::memcmp(tx_buf_[i].data(), kZero, sizeof kZero) == 0) {
      tx_len_[i] = 0;
      ++n;
    }
  return n;
}

int UdpLink::flush() {
  // Slots given up (len 0) are left out.
  unsigned kept = 0;
  for (unsigned i = 0; i < tx_count_; ++i) {
    if (!tx_len_[i]) continue;
    if (kept != i) {
      std::swap(tx_buf_[kept], tx_buf_[i]);
      tx_len_[kept] = tx_len_[i];
      tx_to_[kept] = tx_to_[i];
    }
    ++kept;
  }
  tx_count_ = kept;
  if (!tx_count_) return 0;
  const int err = send_all(tx_count_);
  tx_count_ = 0;
  return err;
}

}  // namespace dptun
