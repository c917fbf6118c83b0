// A layer-3 TUN interface (no packet info header, multi-queue), configured with an address, prefix, MTU and up.
// Opening a name that exists attaches another queue to it.
#pragma once
#include <cstdint>
#include <span>
#include <string>

#include "common/inet.hpp"
#include "common/unix_socket.hpp"

namespace dptun {

class TunDevice {
 public:
  // Creates (or attaches to) the interface and configures it. Returns false with a message an operator can act
  // on (missing CAP_NET_ADMIN, no /dev/net/tun, ...).
  bool open(const std::string& name, Ipv4Prefix address, uint16_t mtu, std::string& error);
  int fd() const { return fd_.get(); }
  const std::string& name() const { return name_; }
  // One packet per call; false on EAGAIN / error.
  ssize_t read_packet(std::span<uint8_t> buf) const;
  bool write_packet(std::span<const uint8_t> pkt) const;

 private:
  Fd fd_;
  std::string name_;
};

}  // namespace dptun
