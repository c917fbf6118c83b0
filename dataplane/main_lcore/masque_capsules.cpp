// MASQUE clients whose capsules dpctld carries: their payloads to the workers, the targets' replies to dpctld
// (dataplane/main_lcore/masque_capsules.hpp).
#include "dataplane/main_lcore/masque_capsules.hpp"

#include <rte_mbuf.h>
#include <rte_ring.h>

#include <cstring>

#include "dataplane/loop/worker.hpp"
#include "packet/headers.hpp"

namespace dptun {

void MasqueCapsules::inject(const MasqueDatagrams& d) {
  MasqueControlStats& st = dp_.masque_control;
  auto it = state_.sessions().find(d.index);
  const TunnelSession* s = it == state_.sessions().end() ? nullptr : it->second;
  if (!s || !s->masque || !s->masque->request_id || s->masque->request_id != d.request_id) {
    st.unknown.add(d.datagrams.size());
    return;
  }
  if (s->rx_worker >= dp_.workers.size()) {  // (never: GatewayState picks one of them)
    st.send_full.add(d.datagrams.size());
    return;
  }
  rte_ring* ring = dp_.workers[s->rx_worker]->handoff_ring();
  // Where a received frame's IPv4 header would begin, less the headers the worker writes and ours: the payload then
  // sits where a frame's UDP payload would, with as much room in front of it for the encapsulation.
  constexpr uint32_t kPayloadAt = RTE_PKTMBUF_HEADROOM + uint32_t(kEthHeaderLen + kIpv4HeaderLen + kUdpHeaderLen);
  static_assert(kPayloadAt >= sizeof(MasqueInjectHeader));
  const uint32_t room = rte_pktmbuf_data_room_size(dp_.pool);
  for (const std::vector<uint8_t>& p : d.datagrams) {
    if (kPayloadAt + p.size() > room) {
      st.too_large.add();
      continue;
    }
    rte_mbuf* m = rte_pktmbuf_alloc(dp_.pool);
    if (!m) {
      st.send_full.add();
      continue;
    }
    m->data_off = uint16_t(kPayloadAt - sizeof(MasqueInjectHeader));
    char* out = rte_pktmbuf_append(m, uint16_t(sizeof(MasqueInjectHeader) + p.size()));
    if (!out) {  // (never: the size was checked against the data room)
      rte_pktmbuf_free(m);
      st.too_large.add();
      continue;
    }
    const MasqueInjectHeader h{s->serial};
    std::memcpy(out, &h, sizeof h);
    if (!p.empty()) std::memcpy(out + sizeof h, p.data(), p.size());
    dp_.meta(m) = HandoffMeta{0, s->index, HandoffMeta::MasqueInject, 0};
    if (rte_ring_mp_enqueue(ring, m) != 0) {
      rte_pktmbuf_free(m);
      st.send_full.add();
      continue;
    }
    st.rx.add();
  }
}

void MasqueCapsules::send(MasqueDatagrams& d, const Pusher& push) {
  if (d.datagrams.empty()) return;
  MasqueControlStats& st = dp_.masque_control;
  switch (push(encode_masque_datagrams(d).dump() + "\n")) {
    case Push::Queued: st.tx.add(d.datagrams.size()); break;
    case Push::Backlog: st.backlog.add(d.datagrams.size()); break;
    case Push::NoController: st.no_controller.add(d.datagrams.size()); break;
  }
  d.datagrams.clear();
}

unsigned MasqueCapsules::drain(const Pusher& push) {
  void* objs[kDrainPerTick];
  const unsigned n = rte_ring_sc_dequeue_burst(dp_.masque_ring, objs, kDrainPerTick, nullptr);
  MasqueDatagrams d;
  for (unsigned i = 0; i < n; ++i) {
    rte_mbuf* m = static_cast<rte_mbuf*>(objs[i]);
    MasqueReplyHeader h;
    if (m->data_len < sizeof h) {  // (never: MasqueInput::deliver wrote it in the first segment)
      rte_pktmbuf_free(m);
      continue;
    }
    std::memcpy(&h, rte_pktmbuf_mtod(m, const void*), sizeof h);
    if (!d.datagrams.empty() && (h.index != d.index || h.request_id != d.request_id ||
                                 d.datagrams.size() == MasqueDatagrams::kMaxMasqueDatagrams))
      send(d, push);
    d.index = h.index;
    d.request_id = h.request_id;
    // The payload, read across the segments of a reply the agent sent in fragments.
    std::vector<uint8_t>& p = d.datagrams.emplace_back(m->pkt_len - sizeof h);
    if (!p.empty()) {
      const void* at = rte_pktmbuf_read(m, uint32_t(sizeof h), uint32_t(p.size()), p.data());
      if (at != p.data()) std::memcpy(p.data(), at, p.size());
    }
    rte_pktmbuf_free(m);
  }
  send(d, push);
  return n;
}

}  // namespace dptun
