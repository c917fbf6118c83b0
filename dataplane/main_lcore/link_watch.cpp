#include "dataplane/main_lcore/link_watch.hpp"

#include <net/if.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "common/clock.hpp"
#include "common/log.hpp"
#include "dataplane/main_lcore/socket_drops.hpp"

namespace dptun {

namespace {
constexpr uint64_t kPollNs = 250'000'000;
}  // namespace

LinkWatch::LinkWatch(Dataplane& dp, const std::vector<std::string>& devices)
    : dp_(dp), ioctl_fd_(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) {
  for (size_t p = 0; p < dp.ports.size() && p < dp.link.size(); ++p)
    ports_.push_back({dp.ports[p].name, dp.ports[p].port_id,
                      p < devices.size() ? SocketDrops::socket_interface(devices[p]) : std::string()});
}

bool LinkWatch::read(Port& port, PortLink& link) {
  if (!port.iface.empty()) {
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, port.iface.c_str(), IFNAMSIZ - 1);
    if (!ioctl_fd_ || ioctl(ioctl_fd_.get(), SIOCGIFFLAGS, &ifr) != 0) {
      if (!port.unreadable)
        LOG_WARN("port %s: cannot read the link state of interface %s (%s); shown as up", port.name.c_str(),
                 port.iface.c_str(), ioctl_fd_ ? strerror(errno) : "no socket");
      port.unreadable = true;
      return false;
    }
    // IFF_RUNNING: the kernel's operstate is up (or unknown, for devices that do not report a carrier).
    link.up = (ifr.ifr_flags & IFF_UP) && (ifr.ifr_flags & IFF_RUNNING);
    return true;
  }
  rte_eth_link l{};
  if (const int rc = rte_eth_link_get_nowait(port.port_id, &l); rc != 0) {
    if (!port.unreadable)
      LOG_WARN("port %s: DPDK cannot say its link state (%s); shown as up", port.name.c_str(), rte_strerror(-rc));
    port.unreadable = true;
    return false;
  }
  link.up = l.link_status == RTE_ETH_LINK_UP;
  link.speed_mbps = link.up && l.link_speed != RTE_ETH_SPEED_NUM_UNKNOWN ? l.link_speed : 0;
  return true;
}

void LinkWatch::poll(uint64_t now_ns) {
  if (!first_ && now_ns - last_ns_ < kPollNs) return;
  last_ns_ = now_ns;
  for (size_t p = 0; p < ports_.size(); ++p) {
    PortLink& was = dp_.link[p];
    PortLink now = was;
    if (!read(ports_[p], now)) continue;  // (stays as it was: up unless a reading said otherwise)
    const char* name = ports_[p].name.c_str();
    if (first_) {
      now.since_ns = now_ns;
      if (!now.up) LOG_WARN("port %s: link down at start", name);
    } else if (now.up != was.up) {
      if (now.up) {
        const std::string speed = now.speed_mbps ? ", " + std::to_string(now.speed_mbps) + " Mbit/s" : "";
        LOG_WARN("port %s: link up%s (down for %.1f s)", name, speed.c_str(), seconds_since(now_ns, was.since_ns));
      } else {
        LOG_WARN("port %s: link down (what dpgw sends there is lost until it comes back)", name);
      }
      now.changes = was.changes + 1;
      now.since_ns = now_ns;
    }
    was = now;
  }
  first_ = false;
}

}  // namespace dptun
