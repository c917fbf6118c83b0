// Each port's link state, watched on the main lcore (every 250 ms; a flap shorter than that may go unseen): a change
// is logged ("port underlay: link down", "port underlay: link up, 10000 Mbit/s (down for 2.0 s)") and counted, and
// `dpgw stats` and the metrics show it. Ports whose device is a kernel socket (net_af_packet, net_af_xdp) are read
// from their interface's flags (SIOCGIFFLAGS in dpgw's own network namespace: up and running, i.e. operstate up or
// unknown), since DPDK 22.11's af_xdp PMD reports its link up whatever the interface does; every other port from
// rte_eth_link_get_nowait(). A link that cannot be read is logged once and shown as up (no false alarms). While a
// link is down what dpgw sends there is lost and no counter reliably says so: the state and the log are the record.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/unix_socket.hpp"  // Fd
#include "dataplane/tables/dataplane.hpp"

namespace dptun {

class LinkWatch {
 public:
  // Writes dp.link (what `dpgw stats` shows) for dp.ports; `devices`: their device strings, for a kernel socket's
  // interface.
  LinkWatch(Dataplane& dp, const std::vector<std::string>& devices);
  // Reads every port's link when due (every 250 ms; the first call at once) and logs what changed.
  void poll(uint64_t now_ns);

 private:
  struct Port {
    std::string name;
    uint16_t port_id = 0;
    std::string iface;        // a kernel socket's interface, or "" (DPDK says)
    bool unreadable = false;  // logged once
  };
  bool read(Port& port, PortLink& link);  // false: cannot tell
  Dataplane& dp_;
  std::vector<Port> ports_;  // (dp_.link's first ports_.size() entries)
  Fd ioctl_fd_;  // a datagram socket for SIOCGIFFLAGS
  uint64_t last_ns_ = 0;
  bool first_ = true;
};

}  // namespace dptun
