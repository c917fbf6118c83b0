// Frames the kernel dropped in front of dpgw on ports whose device is a kernel socket (net_af_packet, net_af_xdp):
// the socket's receive ring was full, so the frame never reached the PMD, and DPDK 22.11 counts it nowhere
// (af_packet's imissed stays 0; af_xdp's imissed is XDP_STATISTICS.rx_dropped, not rx_ring_full). Read on the main
// lcore:
//   net_af_packet: getsockopt(PACKET_STATISTICS).tp_drops of the PMD's own sockets, found among this process's
//              descriptors by the interface they are bound to (packet(7); the kernel resets it on every read, so it
//              is summed here: nothing else in dpgw reads it);
//   net_af_xdp: the interface's rx_dropped (sysfs) since dpgw started: the driver counts a frame its XDP program
//              could not hand to the socket. (An XDP socket does not say its interface to getsockname, and the
//              per-socket view, sock_diag's XDP_DIAG_STATS, needs xsk_diag, which kernels may lack.)
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace dptun {

class SocketDrops {
 public:
  // `devices`: each port's device string ("net_af_packet0,iface=eth1", ...), by port number (at most 8).
  explicit SocketDrops(const std::vector<std::string>& devices);
  // Whether port `p` is a kernel socket whose drops this counts.
  bool counted(uint8_t p) const { return p < ports_.size() && ports_[p].ifindex != 0; }
  // Reads every socket's statistics again; cheap enough for a few times a second (a scan of /proc/self/fd).
  void refresh();
  // Frames dropped in front of port `p` since dpgw started.
  uint64_t dropped(uint8_t p) const { return p < ports_.size() ? ports_[p].total() : 0; }

  // The interface a vdev string names (iface=...), or "" when it is no kernel-socket vdev.
  static std::string socket_interface(const std::string& device);

 private:
  struct Port {
    unsigned ifindex = 0;
    bool xdp = false;
    uint64_t packet_drops = 0;  // net_af_packet: summed over reads
    std::string rx_dropped_path;  // net_af_xdp: /sys/class/net/IFACE/statistics/rx_dropped
    uint64_t rx_dropped_base = 0, rx_dropped = 0;  // at start, latest
    uint64_t total() const { return packet_drops + (rx_dropped > rx_dropped_base ? rx_dropped - rx_dropped_base : 0); }
  };
  static bool read_counter(const std::string& path, uint64_t& value);
  std::vector<Port> ports_;
};

}  // namespace dptun
