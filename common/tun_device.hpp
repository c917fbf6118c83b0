// A kernel TUN (layer 3: IP packets) or TAP (layer 2: Ethernet frames with a MAC we choose) interface without
// packet info header, configured with an address, prefix and MTU, and up; reads and writes never block.
// dpagent's tunnel interface (TUN, multi-queue: opening a name that exists attaches another queue) and dpgw's
// kernel path (TAP).
#pragma once
#include <cstdint>
#include <span>
#include <string>

#include <array>
#include <optional>

#include "common/inet.hpp"
#include "common/unix_socket.hpp"

namespace dptun {

class TunDevice {
 public:
  // Creates (or attaches to) the interface and configures it. Returns false with a message an operator can act
  // on (missing CAP_NET_ADMIN, no /dev/net/tun, ...).
  // With `tap_mac` the interface is a TAP with that MAC, otherwise a TUN.
  bool open(const std::string& name, Ipv4Prefix address, uint16_t mtu, std::string& error,
            std::optional<std::array<uint8_t, 6>> tap_mac = std::nullopt);
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
