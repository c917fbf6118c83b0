// dpgw's kernel path: for each port with a kernel_interface, a TAP interface with the port's MAC, address and
// MTU. Packets for the port's address that dpgw does not serve itself go up to the kernel (so local daemons
// such as dpctld are reachable on the address DPDK owns); frames the kernel sends on the TAP go out the port
// as they are. Runs on the control lcore; workers never make a syscall for it.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "common/tun_device.hpp"
#include "dataplane/tables/dataplane.hpp"

struct rte_mbuf;

namespace dptun {

class KernelPath {
 public:
  explicit KernelPath(Dataplane& dp) : dp_(dp) {}
  // Creates the TAP of every port that has a kernel_interface (and marks the port in dp.ports).
  bool open(std::string& error);
  bool enabled(uint8_t port) const { return port < taps_.size() && taps_[port]; }
  // Writes a copy of the frame to the port's TAP; the mbuf stays the caller's.
  void deliver(uint8_t port, const rte_mbuf* m);
  // Drains the workers' ring to the TAPs, then reads what the kernel sent (a bounded number of frames per port)
  // and passes each frame that may leave, in a fresh mbuf, to `transmit` (false: it was not taken, and freed).
  void poll(const std::function<bool(uint8_t port, rte_mbuf* m)>& transmit);

 private:
  bool from_port_itself(uint8_t port, std::span<const uint8_t> frame) const;
  Dataplane& dp_;
  std::array<std::unique_ptr<TunDevice>, 8> taps_;
};

}  // namespace dptun
