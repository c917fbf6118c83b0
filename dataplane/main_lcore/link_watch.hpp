// Each port's link state, watched on the main lcore (every 250 ms): a change is logged ("port underlay: link down",
// "port underlay: link up, 10000 Mbit/s full duplex") and counted, and `dpgw stats` and the metrics show it. Ports
// whose device is a kernel socket (net_af_packet, net_af_xdp) are read from their interface's operstate in sysfs
// (DPDK 22.11's af_xdp PMD reports its link up whatever the interface does); every other port from
// rte_eth_link_get_nowait(). While a link is down what dpgw sends there is lost: net_af_packet counts it as
// hw_tx_errors, net_af_xdp nowhere, so the state and the log are how an operator knows.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "dataplane/tables/dataplane.hpp"

namespace dptun {

class LinkWatch {
 public:
  // `port_ids` and `names`: dpgw's ports in order; `devices`: their device strings (for the kernel interface).
  LinkWatch(std::vector<uint16_t> port_ids, std::vector<std::string> names, const std::vector<std::string>& devices);
  // Reads every port's link when due (every 250 ms) and logs what changed; the first call logs a port that starts
  // down.
  void poll(uint64_t now_ns);
  const PortLink& link(uint8_t p) const { return links_[p]; }
  size_t ports() const { return links_.size(); }

 private:
  PortLink read(size_t p) const;
  std::vector<uint16_t> port_ids_;
  std::vector<std::string> names_;
  std::vector<std::string> operstate_paths_;  // "" for a port DPDK reports on
  std::vector<PortLink> links_;
  uint64_t last_ns_ = 0;
  bool first_ = true;
};

}  // namespace dptun
