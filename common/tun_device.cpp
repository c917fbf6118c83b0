#include "common/tun_device.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_arp.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

namespace dptun {

static bool set_addr(int sock, const std::string& name, unsigned long req, uint32_t value, std::string& error,
                     const char* what) {
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(value);
  std::memcpy(&ifr.ifr_addr, &sin, sizeof sin);
  if (ioctl(sock, req, &ifr) != 0) {
    error = "cannot set " + std::string(what) + " on " + name + ": " + strerror(errno);
    return false;
  }
  return true;
}

bool TunDevice::open(const std::string& name, Ipv4Prefix address, uint16_t mtu, std::string& error,
                     std::optional<std::array<uint8_t, 6>> tap_mac, bool vnet_hdr) {
  const char* kind = tap_mac ? "TAP" : "TUN";
  if (name.empty() || name.size() >= IFNAMSIZ) {
    error = std::string(kind) + " name '" + name + "' must be 1.." + std::to_string(IFNAMSIZ - 1) + " characters";
    return false;
  }
  Fd fd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK));
  if (!fd) {
    int e = errno;
    error = "cannot open /dev/net/tun: " + std::string(strerror(e)) +
            (e == ENOENT ? " (load the tun kernel module: modprobe tun)"
                         : e == EACCES || e == EPERM ? " (this needs CAP_NET_ADMIN: run as root or grant the capability)"
                                                     : "");
    return false;
  }
  ifreq ifr{};
  // Multi-queue: several agents on one host may attach to the same TUN (each reads its own queue); with the
  // stateless NAT any of them can carry any flow.
  // A TAP is ours alone: it must not exist already (IFF_TUN_EXCL), and has one queue, so no other process can
  // read what it carries or write into it.
  ifr.ifr_flags = short(tap_mac ? IFF_TAP | IFF_NO_PI | IFF_TUN_EXCL : IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE);
  unsigned features = 0;
  if (vnet_hdr && !tap_mac && ioctl(fd.get(), TUNGETFEATURES, &features) == 0 && (features & IFF_VNET_HDR))
    ifr.ifr_flags = short(ifr.ifr_flags | IFF_VNET_HDR);
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (ioctl(fd.get(), TUNSETIFF, &ifr) != 0) {
    int e = errno;
    error = "cannot create " + std::string(kind) + " device '" + name + "': " + strerror(e) +
            (e == EPERM || e == EACCES ? " (this needs CAP_NET_ADMIN: run as root or grant the capability)"
             : e == EBUSY || e == EEXIST ? " (it exists already, or another process holds it)"
                                       : "");
    return false;
  }
  name_ = ifr.ifr_name;
  vnet_hdr_ = ifr.ifr_flags & IFF_VNET_HDR;
  // No IPv6 on the tunnel interface: nothing but our own IPv4 traffic should appear on it.
  std::ofstream(std::string("/proc/sys/net/ipv6/conf/") + name_ + "/disable_ipv6") << "1";

  Fd sock(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock) {
    error = std::string("socket: ") + strerror(errno);
    return false;
  }
  if (tap_mac) {
    ifreq hw{};
    std::strncpy(hw.ifr_name, name_.c_str(), IFNAMSIZ - 1);
    hw.ifr_hwaddr.sa_family = ARPHRD_ETHER;
    std::memcpy(hw.ifr_hwaddr.sa_data, tap_mac->data(), 6);
    if (ioctl(sock.get(), SIOCSIFHWADDR, &hw) != 0) {
      error = "cannot set the MAC address of " + name_ + ": " + strerror(errno);
      return false;
    }
  }
  if (!set_addr(sock.get(), name_, SIOCSIFADDR, address.addr.value, error, "address") ||
      !set_addr(sock.get(), name_, SIOCSIFNETMASK, address.mask(), error, "netmask"))
    return false;
  ifreq req{};
  std::strncpy(req.ifr_name, name_.c_str(), IFNAMSIZ - 1);
  req.ifr_mtu = mtu;
  if (ioctl(sock.get(), SIOCSIFMTU, &req) != 0) {
    error = "cannot set MTU " + std::to_string(mtu) + " on " + name_ + ": " + strerror(errno);
    return false;
  }
  if (ioctl(sock.get(), SIOCGIFFLAGS, &req) != 0) {
    error = "cannot read flags of " + name_ + ": " + strerror(errno);
    return false;
  }
  req.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(sock.get(), SIOCSIFFLAGS, &req) != 0) {
    error = "cannot bring " + name_ + " up: " + strerror(errno);
    return false;
  }
  fd_ = std::move(fd);
  return true;
}

unsigned TunDevice::set_offloads(unsigned wanted) {
  if (!vnet_hdr_) return 0;
  const unsigned uso = TUN_F_USO4 | TUN_F_USO6;
  const unsigned tso = TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;  // uso: both or neither (Linux's tun)
  for (unsigned flags : {wanted, wanted & ~uso, wanted & ~(uso | tso), 0u}) {
    if (ioctl(fd_.get(), TUNSETOFFLOAD, (unsigned long)flags) == 0) return flags;
  }
  return 0;
}

ssize_t TunDevice::read_packet(std::span<uint8_t> buf, VnetHeader* vnet) const {
  if (!vnet_hdr_) {
    if (vnet) *vnet = VnetHeader{};
    return ::read(fd_.get(), buf.data(), buf.size());
  }
  VnetHeader scratch;
  iovec iov[2] = {{vnet ? vnet : &scratch, sizeof(VnetHeader)}, {buf.data(), buf.size()}};
  const ssize_t n = ::readv(fd_.get(), iov, 2);
  if (n < 0) return n;
  if (size_t(n) < sizeof(VnetHeader)) {
    errno = EPROTO;
    return -1;
  }
  return n - ssize_t(sizeof(VnetHeader));
}

bool TunDevice::write_packet(std::span<const uint8_t> pkt) const {
  if (!vnet_hdr_) return ::write(fd_.get(), pkt.data(), pkt.size()) == ssize_t(pkt.size());
  const iovec piece{const_cast<uint8_t*>(pkt.data()), pkt.size()};
  return write_packet(VnetHeader{}, {&piece, 1});
}

bool TunDevice::write_packet(const VnetHeader& vnet, std::span<const iovec> pieces) const {
  iovec iov[kMaxWritePieces + 1];
  if (!vnet_hdr_ || pieces.size() > kMaxWritePieces) {
    errno = EINVAL;
    return false;
  }
  iov[0] = iovec{const_cast<VnetHeader*>(&vnet), sizeof vnet};
  size_t total = sizeof vnet;
  for (size_t i = 0; i < pieces.size(); ++i) {
    iov[i + 1] = pieces[i];
    total += pieces[i].iov_len;
  }
  return ::writev(fd_.get(), iov, int(pieces.size() + 1)) == ssize_t(total);
}

}  // namespace dptun
