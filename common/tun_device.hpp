// A kernel TUN (layer 3: IP packets) or TAP (layer 2: Ethernet frames with a MAC we choose) interface without
// packet info header, configured with an address, prefix and MTU, and up; reads and writes never block.
// dpagent's tunnel interface (TUN, multi-queue: opening a name that exists attaches another queue) and dpgw's
// kernel path (TAP).
//
// A TUN opened with `vnet_hdr` carries a virtio-net header (packet/gso.hpp) before every packet, both ways; with
// offloads set (TUNSETOFFLOAD) the kernel hands over TCP/UDP super-packets of up to 64 KiB with partial checksums
// (TSO/USO: the reader segments them), and a writer may pass coalesced ones (GRO) in one write.
#pragma once
#include <linux/if_tun.h>
#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <string>

#include <array>
#include <optional>

#include "common/inet.hpp"
#include "common/unix_socket.hpp"
#include "packet/gso.hpp"

// UDP segmentation offload flags of Linux 6.2, missing from older userspace headers.
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#define TUN_F_USO6 0x40
#endif

namespace dptun {

class TunDevice {
 public:
  // Creates (or attaches to) the interface and configures it. Returns false with a message an operator can act
  // on (missing CAP_NET_ADMIN, no /dev/net/tun, ...).
  // With `tap_mac` the interface is a TAP with that MAC, otherwise a TUN.
  // `vnet_hdr`: ask for virtio-net headers (TUN only; granted when the kernel has IFF_VNET_HDR: see vnet_hdr()).
  bool open(const std::string& name, Ipv4Prefix address, uint16_t mtu, std::string& error,
            std::optional<std::array<uint8_t, 6>> tap_mac = std::nullopt, bool vnet_hdr = false);
  int fd() const { return fd_.get(); }
  const std::string& name() const { return name_; }
  bool vnet_hdr() const { return vnet_hdr_; }

  // Offloads (TUN_F_* of linux/if_tun.h) the kernel may use on packets it hands us. Tries `wanted`, then without
  // the UDP segmentation flags (kernels before 6.2), then without TCP segmentation, then checksum only; returns
  // the set the kernel took (0 when none, or without a virtio-net header).
  unsigned set_offloads(unsigned wanted);

  // One packet per call; -1 (errno EAGAIN) when none is waiting. With a virtio-net header, `vnet` receives it
  // (without, it is left zeroed) and the packet alone lands in `buf`.
  ssize_t read_packet(std::span<uint8_t> buf, VnetHeader* vnet = nullptr) const;
  // One packet per call (a zeroed virtio-net header in front when the device has them). False on error.
  bool write_packet(std::span<const uint8_t> pkt) const;
  // A packet in at most kMaxWritePieces pieces behind the given virtio-net header (the device must have them): one
  // write.
  static constexpr size_t kMaxWritePieces = 128;
  bool write_packet(const VnetHeader& vnet, std::span<const iovec> pieces) const;

 private:
  Fd fd_;
  std::string name_;
  bool vnet_hdr_ = false;
};

}  // namespace dptun
