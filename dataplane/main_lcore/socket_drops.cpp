#include "dataplane/main_lcore/socket_drops.hpp"

#include <dirent.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/log.hpp"

namespace dptun {

std::string SocketDrops::socket_interface(const std::string& device) {
  if (device.rfind("net_af_packet", 0) != 0 && device.rfind("net_af_xdp", 0) != 0) return "";
  const size_t at = device.find(",iface=");
  if (at == std::string::npos) return "";
  const size_t from = at + 7;
  return device.substr(from, device.find(',', from) - from);
}

SocketDrops::SocketDrops(const std::vector<std::string>& devices) : ports_(devices.size()) {
  for (size_t p = 0; p < devices.size(); ++p) {
    const std::string iface = socket_interface(devices[p]);
    if (iface.empty()) continue;
    Port& port = ports_[p];
    port.ifindex = if_nametoindex(iface.c_str());
    port.xdp = devices[p].rfind("net_af_xdp", 0) == 0;
    if (port.ifindex && port.xdp) {
      port.rx_dropped_path = "/sys/class/net/" + iface + "/statistics/rx_dropped";
      if (!read_counter(port.rx_dropped_path, port.rx_dropped_base)) port.ifindex = 0;
      port.rx_dropped = port.rx_dropped_base;
    }
    if (!port.ifindex) LOG_WARN("port %zu: cannot read interface %s: its socket's drops are not counted", p, iface.c_str());
  }
}

bool SocketDrops::read_counter(const std::string& path, uint64_t& value) {
  FILE* f = fopen(path.c_str(), "re");
  if (!f) return false;
  unsigned long long v = 0;
  const bool ok = fscanf(f, "%llu", &v) == 1;
  fclose(f);
  if (ok) value = v;
  return ok;
}

void SocketDrops::refresh() {
  bool any_packet = false;
  for (Port& port : ports_) {
    if (port.ifindex && port.xdp) read_counter(port.rx_dropped_path, port.rx_dropped);
    any_packet |= port.ifindex && !port.xdp;
  }
  if (!any_packet) return;
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return;
  while (const dirent* e = readdir(dir)) {
    char* end = nullptr;
    const long fd = strtol(e->d_name, &end, 10);
    if (*end || fd < 0 || fd == dirfd(dir)) continue;
    struct stat st;
    if (fstat(int(fd), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (getsockname(int(fd), reinterpret_cast<sockaddr*>(&addr), &len) != 0) continue;
    if (addr.ss_family != AF_PACKET) continue;
    const unsigned ifindex = unsigned(reinterpret_cast<const sockaddr_ll*>(&addr)->sll_ifindex);
    for (Port& port : ports_) {
      if (!port.ifindex || port.xdp || port.ifindex != ifindex) continue;
      tpacket_stats_v3 s{};
      socklen_t sl = sizeof s;
      if (getsockopt(int(fd), SOL_PACKET, PACKET_STATISTICS, &s, &sl) == 0) port.packet_drops += s.tp_drops;
      break;
    }
  }
  closedir(dir);
}

}  // namespace dptun
