#include "dataplane/main_lcore/kernel_path.hpp"

#include <rte_mbuf.h>
#include <rte_ring.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "common/bytes.hpp"
#include "common/log.hpp"
#include "packet/headers.hpp"

namespace dptun {

namespace {
constexpr unsigned kRingBudget = 1024;  // frames from the workers per poll
constexpr unsigned kTapBudget = 256;    // frames from each TAP per poll
}  // namespace

bool KernelPath::open(std::string& error) {
  for (size_t p = 0; p < dp_.ports.size() && p < taps_.size(); ++p) {
    const PortConfig& pc = dp_.cfg->ports[p];
    if (pc.kernel_interface.empty()) continue;
    PortInfo& pi = dp_.ports[p];
    // The kernel's frames must fit one mbuf: a smaller MTU on the TAP, so its TCP negotiates segments that do.
    const unsigned room = rte_pktmbuf_data_room_size(dp_.pool) - RTE_PKTMBUF_HEADROOM - kEthHeaderLen;
    const uint16_t mtu = uint16_t(std::min<unsigned>(pi.mtu, room));
    auto tap = std::make_unique<TunDevice>();
    if (!tap->open(pc.kernel_interface, pc.address, mtu, error, pi.mac)) {
      error = "port " + pi.name + ": kernel path: " + error;
      return false;
    }
    // The TAP is an endpoint, never a router: no forwarding, no redirects, strict reverse-path filtering.
    for (const char* knob : {"forwarding=0", "accept_redirects=0", "send_redirects=0", "accept_source_route=0",
                             "rp_filter=1"}) {
      const std::string k(knob);
      const size_t eq = k.find('=');
      std::ofstream("/proc/sys/net/ipv4/conf/" + tap->name() + "/" + k.substr(0, eq)) << k.substr(eq + 1);
    }
    if (pc.gateway)
      LOG_INFO("port %s: for kernel-path peers beyond %s (remote agents), route the kernel's replies through the "
               "TAP: ip rule add from %s table 51900; ip route add default via %s dev %s table 51900",
               pi.name.c_str(), pc.address.str().c_str(), Ipv4{pi.address}.str().c_str(), pc.gateway->str().c_str(),
               tap->name().c_str());
    LOG_INFO("port %s: kernel path on %s (%s): packets for %s that dpgw does not serve go to the kernel",
             pi.name.c_str(), tap->name().c_str(), pc.address.str().c_str(), Ipv4{pi.address}.str().c_str());
    taps_[p] = std::move(tap);
    pi.kernel_path = true;
  }
  return true;
}

void KernelPath::deliver(uint8_t port, const rte_mbuf* m) {
  KernelPathStats& st = dp_.kernel_stats[port];
  // Workers hand over single-segment frames only (multi-segment mbufs are dropped at RX).
  if (!enabled(port) ||
      !taps_[port]->write_packet({rte_pktmbuf_mtod(m, const uint8_t*), rte_pktmbuf_data_len(m)})) {
    st.write_errors.add();
    return;
  }
  st.to_kernel_packets.add();
  st.to_kernel_bytes.add(rte_pktmbuf_data_len(m));
}

// Only what the host itself says on the port's address leaves through the port: IPv4 from the port's MAC and
// address, and ARP requests for them. Forwarded, spoofed or bridged traffic, IPv6 and the kernel's ARP replies
// (dpgw answers ARP itself) stay behind.
bool KernelPath::from_port_itself(uint8_t port, std::span<const uint8_t> f) const {
  const PortInfo& pi = dp_.ports[port];
  if (f.size() < kEthHeaderLen || std::memcmp(f.data() + 6, pi.mac.data(), 6) != 0) return false;
  const uint8_t* l3 = f.data() + kEthHeaderLen;
  switch (load_be16(f.data() + 12)) {
    case kEtherTypeIpv4:
      return f.size() >= kEthHeaderLen + kIpv4HeaderLen && (l3[0] >> 4) == 4 && load_be32(l3 + kIpv4OffSrc) == pi.address;
    case kEtherTypeArp:
      return f.size() >= kEthHeaderLen + 28 && load_be16(l3 + 6) == kArpRequest &&
             std::memcmp(l3 + 8, pi.mac.data(), 6) == 0 && load_be32(l3 + 14) == pi.address;
    default:
      return false;
  }
}

void KernelPath::poll(const std::function<bool(uint8_t port, rte_mbuf* m)>& transmit) {
  void* objs[64];
  for (unsigned done = 0; done < kRingBudget;) {
    unsigned n = rte_ring_sc_dequeue_burst(dp_.kernel_ring, objs, 64, nullptr);
    if (!n) break;
    for (unsigned i = 0; i < n; ++i) {
      rte_mbuf* m = static_cast<rte_mbuf*>(objs[i]);
      deliver(dp_.meta(m).port, m);
      rte_pktmbuf_free(m);
    }
    done += n;
  }
  uint8_t buf[9600 + kEthHeaderLen + 4];
  for (uint8_t p = 0; p < taps_.size(); ++p) {
    if (!taps_[p]) continue;
    KernelPathStats& st = dp_.kernel_stats[p];
    const size_t max_frame = size_t(dp_.ports[p].mtu) + kEthHeaderLen;
    for (unsigned i = 0; i < kTapBudget; ++i) {
      ssize_t n = taps_[p]->read_packet(buf);
      if (n <= 0) break;  // EAGAIN: nothing more now
      const size_t len = size_t(n);
      if (len > max_frame) {
        st.dropped.add();
        continue;
      }
      if (!from_port_itself(p, {buf, len})) {
        st.refused.add();
        continue;
      }
      rte_mbuf* m = rte_pktmbuf_alloc(dp_.pool);
      char* out = m ? rte_pktmbuf_append(m, uint16_t(len)) : nullptr;
      if (!out) {
        if (m) rte_pktmbuf_free(m);
        st.dropped.add();
        continue;
      }
      std::memcpy(out, buf, len);
      if (!transmit(p, m)) {
        st.dropped.add();
        continue;
      }
      st.from_kernel_packets.add();
      st.from_kernel_bytes.add(len);
    }
  }
}

}  // namespace dptun
