#include "dataplane/kernel_path.hpp"

#include <rte_mbuf.h>
#include <rte_ring.h>

#include <cerrno>
#include <cstring>

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
    auto tap = std::make_unique<TunDevice>();
    if (!tap->open(pc.kernel_interface, pc.address, pi.mtu, error, pi.mac)) {
      error = "port " + pi.name + ": kernel path: " + error;
      return false;
    }
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

void KernelPath::poll(const std::function<void(uint8_t port, rte_mbuf* m)>& transmit) {
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
      // dpgw answers ARP for its addresses itself; the kernel's answers would only duplicate them.
      if (len < kEthHeaderLen || len > max_frame ||
          (load_be16(buf + 12) == kEtherTypeArp && len >= kEthHeaderLen + 8 &&
           load_be16(buf + kEthHeaderLen + 6) == kArpReply)) {
        st.dropped.add();
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
      st.from_kernel_packets.add();
      st.from_kernel_bytes.add(len);
      transmit(p, m);
    }
  }
}

}  // namespace dptun
