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
  rte_ring* rx = nullptr;  // queue 0
  rte_ring* tx = nullptr;
  std::vector<rte_ring*> rxq, txq;  // every queue pair (one per worker)
  uint16_t port_id = 0;
  std::string name;  // the ethdev name, for PortConfig::device

  // Copies `frame` into a new mbuf from `pool` and queues it for the port's RX queue `queue`.
  void inject(rte_mempool* pool, std::span<const uint8_t> frame, size_t queue = 0) const {
    rte_mbuf* m = rte_pktmbuf_alloc(pool);
    if (!m) abort();
    std::memcpy(rte_pktmbuf_append(m, uint16_t(frame.size())), frame.data(), frame.size());
    if (rte_ring_enqueue(rxq.at(queue), m) != 0) abort();
  }
  // Takes every frame the port transmitted (on any queue), as byte vectors (the mbufs are freed).
  std::vector<std::vector<uint8_t>> drain() const {
    std::vector<std::vector<uint8_t>> out;
    void* m;
    for (rte_ring* r : txq) {
      while (rte_ring_dequeue(r, &m) == 0) {
        rte_mbuf* mb = static_cast<rte_mbuf*>(m);
        std::vector<uint8_t> bytes(mb->pkt_len);
        const void* d = rte_pktmbuf_read(mb, 0, mb->pkt_len, bytes.data());
        if (d != bytes.data()) std::memcpy(bytes.data(), d, mb->pkt_len);
        out.push_back(std::move(bytes));
        rte_pktmbuf_free(mb);
      }
    }
    return out;
  }
};

inline RingPort make_ring_port(const std::string& name, unsigned queues = 1) {
  RingPort p;
  bool ok = true;
  for (unsigned q = 0; q < queues; ++q) {
    const std::string n = name + "_" + std::to_string(q);
    p.rxq.push_back(rte_ring_create((n + "_rx").c_str(), 4096, 0, RING_F_SP_ENQ | RING_F_SC_DEQ));
    p.txq.push_back(rte_ring_create((n + "_tx").c_str(), 4096, 0, RING_F_SP_ENQ | RING_F_SC_DEQ));
    ok = ok && p.rxq.back() && p.txq.back();
  }
  p.rx = p.rxq[0];
  p.tx = p.txq[0];
  int id = ok ? rte_eth_from_rings(name.c_str(), p.rxq.data(), queues, p.txq.data(), queues, 0) : -1;
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
