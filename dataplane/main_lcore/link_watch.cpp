#include "dataplane/main_lcore/link_watch.hpp"

#include <rte_ethdev.h>

#include <cstdio>
#include <cstring>

#include "common/log.hpp"
#include "dataplane/main_lcore/socket_drops.hpp"

namespace dptun {

namespace {
constexpr uint64_t kPollNs = 250'000'000;
}  // namespace

LinkWatch::LinkWatch(std::vector<uint16_t> port_ids, std::vector<std::string> names,
                     const std::vector<std::string>& devices)
    : port_ids_(std::move(port_ids)), names_(std::move(names)), links_(port_ids_.size()) {
  for (size_t p = 0; p < port_ids_.size(); ++p) {
    const std::string iface = p < devices.size() ? SocketDrops::socket_interface(devices[p]) : "";
    operstate_paths_.push_back(iface.empty() ? "" : "/sys/class/net/" + iface + "/operstate");
  }
}

PortLink LinkWatch::read(size_t p) const {
  PortLink l;
  if (!operstate_paths_[p].empty()) {
    // "up", or "down" / "lowerlayerdown" / "dormant"...; "unknown" for devices without carrier reporting (tun,
    // loopback): taken as up, as the kernel itself sends on them.
    char state[32] = "";
    if (FILE* f = fopen(operstate_paths_[p].c_str(), "re")) {
      if (fscanf(f, "%31s", state) != 1) state[0] = 0;
      fclose(f);
    }
    l.up = std::strcmp(state, "up") == 0 || std::strcmp(state, "unknown") == 0;
    return l;
  }
  rte_eth_link link{};
  if (rte_eth_link_get_nowait(port_ids_[p], &link) == 0) {
    l.up = link.link_status == RTE_ETH_LINK_UP;
    if (l.up && link.link_speed != RTE_ETH_SPEED_NUM_UNKNOWN) l.speed_mbps = link.link_speed;
  }
  return l;
}

void LinkWatch::poll(uint64_t now_ns) {
  if (!first_ && now_ns - last_ns_ < kPollNs) return;
  last_ns_ = now_ns;
  for (size_t p = 0; p < links_.size(); ++p) {
    PortLink now = read(p);
    PortLink& was = links_[p];
    if (first_) {
      now.since_ns = now_ns;
      if (!now.up) LOG_WARN("port %s: link down at start", names_[p].c_str());
      was = now;
      continue;
    }
    if (now.up == was.up) {
      was.speed_mbps = now.speed_mbps;
      continue;
    }
    const double after_s = double(now_ns - was.since_ns) / 1e9;
    if (now.up) {
      const std::string speed = now.speed_mbps ? ", " + std::to_string(now.speed_mbps) + " Mbit/s" : "";
      LOG_INFO("port %s: link up%s (down for %.1f s)", names_[p].c_str(), speed.c_str(), after_s);
    } else {
      LOG_WARN("port %s: link down (what dpgw sends there is lost until it comes back)", names_[p].c_str());
    }
    now.changes = was.changes + 1;
    now.since_ns = now_ns;
    was = now;
  }
  first_ = false;
}

}  // namespace dptun
