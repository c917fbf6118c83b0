// An ethdev backed by two rte_rings (RX we fill, TX we drain): lets the benchmark and the pipeline tests run
// dpgw's real Worker on synthetic traffic in one process. Needs an initialised EAL.
#pragma once
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

namespace dptun::test {

struct RingPort {
  rte_ring* rx = nullptr;
  rte_ring* tx = nullptr;
  uint16_t port_id = 0;
  std::string name;  // the ethdev name, for PortConfig::device

  // Copies `frame` into a new mbuf from `pool` and queues it for the port's RX.
  void inject(rte_mempool* pool, std::span<const uint8_t> frame) const {
    rte_mbuf* m = rte_pktmbuf_alloc(pool);
    if (!m) abort();
    std::memcpy(rte_pktmbuf_append(m, uint16_t(frame.size())), frame.data(), frame.size());
    if (rte_ring_enqueue(rx, m) != 0) abort();
  }
  // Takes every frame the port transmitted, as byte vectors (the mbufs are freed).
  std::vector<std::vector<uint8_t>> drain() const {
    std::vector<std::vector<uint8_t>> out;
    void* m;
    while (rte_ring_dequeue(tx, &m) == 0) {
      rte_mbuf* mb = static_cast<rte_mbuf*>(m);
      const uint8_t* p = rte_pktmbuf_mtod(mb, const uint8_t*);
      out.emplace_back(p, p + mb->data_len);
      rte_pktmbuf_free(mb);
    }
    return out;
  }
};

inline RingPort make_ring_port(const std::string& name) {
  RingPort p;
  p.rx = rte_ring_create((name + "_rx").c_str(), 4096, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
  p.tx = rte_ring_create((name + "_tx").c_str(), 4096, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
  int id = p.rx && p.tx ? rte_eth_from_rings(name.c_str(), &p.rx, 1, &p.tx, 1, 0) : -1;
  if (id < 0) {
    fprintf(stderr, "cannot create ring port %s\n", name.c_str());
    exit(1);
  }
  p.port_id = uint16_t(id);
  char dev[RTE_ETH_NAME_MAX_LEN];
  rte_eth_dev_get_name_by_port(p.port_id, dev);
  p.name = dev;
  return p;
}

}  // namespace dptun::test
