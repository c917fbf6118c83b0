// Output side of the worker pipeline: next-hop resolution, TX buffering, handoff.
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <algorithm>
#include <cstring>

#include "common/bytes.hpp"
#include "dataplane/loop/tx.hpp"
#include "dataplane/loop/worker.hpp"
#include "packet/checksum.hpp"
#include "packet/headers.hpp"
#include "packet/tcp_segment.hpp"

namespace dptun {

Tx::Tx(WorkerContext& ctx) : ctx_(ctx), tx_(ctx.dp.ports.size()), handoff_out_(ctx.dp.cfg->workers) {}

bool Tx::resolve_next_hop(const IpAddr& dst, uint8_t& port, MacAddr& mac, Drop& why) {
  const Route r = ctx_.dp.routes->lookup(dst);
  port = r.port;
  return neighbor(r, mac, why);
}

bool Tx::resolve_next_hop_on(uint8_t port, const IpAddr& dst, MacAddr& mac, Drop& why) {
  return neighbor(ctx_.dp.routes->lookup_on(port, dst), mac, why);
}

bool Tx::neighbor(const Route& r, MacAddr& mac, Drop& why) {
  if (!r.valid) {
    why = Drop::NoRoute;
    return false;
  }
  why = Drop::NoNeighbor;
  const uint32_t hop = r.next_hop.v4();  // (routes lead to IPv4 next hops only: ARP, not yet NDP)
  if (ctx_.dp.neighbors.lookup(r.port, hop, mac)) return true;
  // Ask the control lcore to ARP for it, at most every 100 ms per next hop.
  uint64_t key = uint64_t(r.port) << 32 | hop;
  size_t slot = (hop ^ r.port) % resolve_key_.size();
  if (resolve_key_[slot] != key || ctx_.now_ns - resolve_ns_[slot] > 100'000'000ull) {
    resolve_key_[slot] = key;
    resolve_ns_[slot] = ctx_.now_ns;
    if (rte_ring_mp_enqueue_elem(ctx_.dp.resolve_ring, &key, sizeof key) != 0) ctx_.stats.drops[size_t(Drop::ControlFull)].add();
  }
  mac = MacAddr{};
  return false;
}

bool Tx::prepend_ethernet(rte_mbuf* m, uint8_t port, const MacAddr& to) {
  uint8_t* eth = reinterpret_cast<uint8_t*>(rte_pktmbuf_prepend(m, kEthHeaderLen));
  if (!eth) {
    ctx_.drop(m, Drop::NoRoom);
    return false;
  }
  write_ethernet(eth, port, to.data());
  return true;
}

void Tx::send(uint8_t port, rte_mbuf* m) {
  if (__builtin_expect(ctx_.trace.on(), 0)) trace_tx(port, m);
  Buffer& b = tx_[port];
  b.pkts[b.n++] = m;
  if (b.n == kBurst) tx_burst(port);
}

// (Out of line: send() stays small without a trace.)
__attribute__((noinline, cold)) void Tx::trace_tx(uint8_t port, const rte_mbuf* m) {
  DPTUN_TRACE(m, Tx) {
    tr->port = port;
    tr->len = uint16_t(std::min<uint32_t>(m->pkt_len, 0xffff));
  }
}

void Tx::tx_burst(uint8_t port) {
  Buffer& b = tx_[port];
  uint64_t bytes = 0;
  for (uint16_t i = 0; i < b.n; ++i) bytes += b.pkts[i]->pkt_len;
  uint16_t sent = rte_eth_tx_burst(ctx_.dp.ports[port].port_id, ctx_.id, b.pkts.data(), b.n);
  PortStats& ps = ctx_.port_stats[port];
  for (uint16_t i = sent; i < b.n; ++i) {
    bytes -= b.pkts[i]->pkt_len;
    ps.tx_dropped.add();
    ctx_.drop(b.pkts[i], Drop::TxFull);
  }
  ps.tx_packets.add(sent);
  ps.tx_bytes.add(bytes);
  ctx_.stats.tx_packets.add(sent);
  ctx_.stats.tx_bytes.add(bytes);
  b.n = 0;
}

void Tx::flush() {
  for (uint8_t p = 0; p < tx_.size(); ++p)
    if (tx_[p].n) tx_burst(p);
  flush_handoffs();
}

void Tx::handoff(uint16_t to, rte_mbuf* m, HandoffMeta meta) {
  DPTUN_TRACE(m, HandoffOut) {
    tr->aux = to;
    tr->code = meta.stage;
  }
  ctx_.dp.meta(m) = meta;
  Buffer& b = handoff_out_[to];
  b.pkts[b.n++] = m;
  if (b.n == kBurst) flush_handoffs();
}

void Tx::flush_handoffs() {
  for (uint16_t w = 0; w < handoff_out_.size(); ++w) {
    Buffer& b = handoff_out_[w];
    if (!b.n) continue;
    unsigned done = rte_ring_mp_enqueue_burst(ctx_.dp.workers[w]->handoff_ring(), reinterpret_cast<void**>(b.pkts.data()),
                                              b.n, nullptr);
    ctx_.stats.handoff_tx.add(done);
    for (unsigned i = done; i < b.n; ++i) ctx_.drop(b.pkts[i], Drop::HandoffFull);
    b.n = 0;
  }
}

void Tx::send_tcp_segment(uint8_t port, const uint8_t* mac, const TcpSegmentSpec& spec) {
  rte_mbuf* m = rte_pktmbuf_alloc(ctx_.dp.pool);
  if (!m) {
    ctx_.stats.drops[size_t(Drop::NoMbuf)].add();
    return;
  }
  const size_t room = rte_pktmbuf_tailroom(m);
  uint8_t* eth = rte_pktmbuf_mtod(m, uint8_t*);
  const size_t n = room > kEthHeaderLen ? tcp_write_packet({eth + kEthHeaderLen, room - kEthHeaderLen}, spec) : 0;
  if (!n) {
    ctx_.drop(m, Drop::NoRoom);
    return;
  }
  rte_pktmbuf_append(m, uint16_t(kEthHeaderLen + n));
  write_ethernet(eth, port, mac);
  send(port, m);
}

}  // namespace dptun
