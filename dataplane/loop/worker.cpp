#include "dataplane/loop/worker.hpp"

#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mbuf_dyn.h>
#include <rte_random.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>

#include <cstring>
#include <exception>
#include <string>

#include "crypto/hp_ipsec_mb.hpp"
#include "dataplane/edge/edge_peer.hpp"
#include "dataplane/tables/flow_tracking.hpp"
#include "packet/headers.hpp"
#include "proto/stun.hpp"

namespace dptun {

int register_handoff_field() {
  static const rte_mbuf_dynfield desc = {"dptun_handoff", sizeof(HandoffMeta), alignof(HandoffMeta), 0};
  return rte_mbuf_dynfield_register(&desc);
}

Dataplane::Dataplane(uint16_t max_tunnels) : tunnels(max_tunnels) {}
Dataplane::~Dataplane() = default;

HandoffMeta& Dataplane::meta(rte_mbuf* m) const { return *RTE_MBUF_DYNFIELD(m, handoff_offset, HandoffMeta*); }

std::unique_ptr<Worker> Worker::create(Dataplane& dp, uint16_t id, unsigned lcore, std::string& error) {
  const unsigned socket = rte_lcore_to_socket_id(lcore);
  const std::string name = "handoff_" + std::to_string(id);
  rte_ring* ring = rte_ring_create(name.c_str(), 4096, int(socket), RING_F_SC_DEQ);
  if (!ring) {
    error = "worker " + std::to_string(id) + ": cannot create its handoff ring on NUMA socket " +
            std::to_string(socket) + ": " + rte_strerror(rte_errno);
    return nullptr;
  }
  try {
    return std::unique_ptr<Worker>(new Worker(dp, id, lcore, ring));
  } catch (const std::exception& e) {  // memory for its tables (bad_alloc), a flow table size out of range
    rte_ring_free(ring);
    error = "worker " + std::to_string(id) + ": " + e.what();
    return nullptr;
  }
}

WorkerContext::WorkerContext(Dataplane& d, uint16_t worker)
    : dp(d),
      id(worker),
      port_stats(d.ports.size()),
      tunnel_stats(d.tunnels.capacity()),
      trace(d.tracer.get(), worker, d.clock),
      max_frame_ip(uint32_t(rte_pktmbuf_data_room_size(d.pool) - RTE_PKTMBUF_HEADROOM - kEthHeaderLen)),
      ip_id_(uint16_t(rte_rand())),  // workers' outer IPv4 ids start apart (fragment reassembly at the agent)
      frag_step_(uint16_t(d.cfg->workers ? d.cfg->workers : 1)) {
  frag_id_ = uint16_t(uint16_t(rte_rand()) / frag_step_ * frag_step_ + worker);
}

__attribute__((noinline, cold)) void WorkerContext::trace_drop(const rte_mbuf* m, Drop why) {
  WorkerContext& ctx_ = *this;
  DPTUN_TRACE(m, Drop) tr->code = uint8_t(why);
}

void WorkerContext::drop(rte_mbuf* m, Drop why) {
  if (__builtin_expect(trace.on(), 0)) trace_drop(m, why);
  stats.drops[size_t(why)].add();
  rte_pktmbuf_free(m);
}

namespace {

// RFC 7983: a datagram to a port STUN shares with another protocol is STUN when its first byte is at most
// `max_first` and the magic cookie is at 4..7 (proto/stun.hpp; the reasons for each port: worker.cpp's classify).
inline bool shared_port_stun(const rte_mbuf* m, const PacketInfo& pi, uint8_t max_first) {
  const uint8_t* p = rte_pktmbuf_mtod(m, const uint8_t*) + pi.l4_offset + kUdpHeaderLen;
  return pi.l4_len >= kUdpHeaderLen + kStunHeaderLen && p[0] <= max_first && load_be32(p + 4) == kStunMagicCookie;
}

// A pair frame (proto/relay_frame.hpp, kFlagPair): a relay frame v1 whose flags byte has the pair flag. (Shorter than
// a relay frame's header and tag, it is dropped as frame_malformed by pair relay, as tunnel input would.)
inline bool pair_frame(const rte_mbuf* m, const PacketInfo& pi) {
  const uint8_t* p = rte_pktmbuf_mtod(m, const uint8_t*) + pi.l4_offset + kUdpHeaderLen;
  return pi.l4_len >= kUdpHeaderLen + 3 && p[0] == kRelayVersion && (p[2] & kFlagPair);
}

}  // namespace

Worker::Worker(Dataplane& dp, uint16_t id, unsigned lcore, rte_ring* handoff)
    : ctx_(dp, id), lcore_(lcore), handoff_(handoff), idle_(dp.cfg->idle), flows_(dp.cfg->flow.table_size, uint8_t(id)) {}

Worker::~Worker() { rte_ring_free(handoff_); }

void Worker::flush() {
  encap_.flush();  // packets dpgw made for agents (delayed binding) go out with the rest
  tx_.flush();
}

int Worker::run() {
  if (ctx_.dp.rcu) {
    rte_rcu_qsbr_thread_register(ctx_.dp.rcu, ctx_.id);
    rte_rcu_qsbr_thread_online(ctx_.dp.rcu, ctx_.id);
  }
  while (!ctx_.dp.stop.load(std::memory_order_relaxed)) {
    unsigned work = poll_once();
    if (ctx_.dp.rcu) rte_rcu_qsbr_quiescent(ctx_.dp.rcu, ctx_.id);
    if (idle_.after_poll(work)) ctx_.stats.idle_sleeps.add();
  }
  flush();
  if (ctx_.dp.rcu) {
    rte_rcu_qsbr_thread_offline(ctx_.dp.rcu, ctx_.id);
    rte_rcu_qsbr_thread_unregister(ctx_.dp.rcu, ctx_.id);
  }
  return 0;
}

unsigned Worker::poll_once() {
  ctx_.now_ns = ctx_.dp.clock.now_ns();
  ctx_.fresh_floor = uint64_t(int64_t(ctx_.now_ns) + ctx_.dp.realtime_offset_ns.load(std::memory_order_relaxed)) - kClockFreshnessNs;
  ctx_.stats.polls.add();
  ctx_.trace.poll(ctx_.now_ns);
  unsigned work = 0;
  rte_mbuf* pkts[kBurst];
  for (uint8_t p = 0; p < ctx_.dp.ports.size(); ++p) {
    uint16_t n = rte_eth_rx_burst(ctx_.dp.ports[p].port_id, ctx_.id, pkts, kBurst);
    if (n) {
      process_burst(p, pkts, n);
      work += n;
    }
  }
  void* objs[kBurst];
  unsigned n = rte_ring_sc_dequeue_burst(handoff_, objs, kBurst, nullptr);
  if (n) {
    ctx_.stats.handoff_rx.add(n);
    handle_handoffs(reinterpret_cast<rte_mbuf**>(objs), n);
    work += n;
  }
  edge_in_.tick();  // the edge role's keepalive, when due (out with this flush)
  if (quic_in_.acks_owed()) quic_in_.send_owed_acks();  // QUIC ACKs the cadence held back, now due (this flush too)
  flush();
  // Housekeeping, as much as the time since the last poll asks for, whatever the poll rate.
  frags_.expire();
  if (ctx_.now_ns - sweep_asked_ns_ >= kSweepTickNs) sweep_tables(ctx_.now_ns);
  return work;
}

// What is due of each sweep: usually nothing or a few slots (a table of 65536 flows swept once a second owes one
// slot every 15 us), a whole table only after the worker stalled for a period. Out of line: it runs at most every
// 10 us, and profiles and bench/instructions.sh find it by name.
__attribute__((noinline)) void Worker::sweep_tables(uint64_t now) {
  sweep_asked_ns_ = now;
  if (const uint32_t n = flow_sweep_.due(now)) setup_.expire(n);
  if (const uint32_t n = binding_sweep_.due(now)) binding_.sweep(n);
  if (const uint32_t n = quic_sweep_.due(now)) quic_.sweep(n);
  if (const uint32_t n = name_sweep_.due(now)) names_.sweep(n, now);
}

void Worker::process_burst(uint8_t port, rte_mbuf** pkts, uint16_t n, bool count_rx) {
  if (__builtin_expect(ctx_.trace.on(), 0))
    classify_burst<true>(port, pkts, n, count_rx);
  else
    classify_burst<false>(port, pkts, n, count_rx);
}

template <bool kTrace>
void Worker::classify_burst(uint8_t port, rte_mbuf** pkts, uint16_t n, bool count_rx) {
  rte_mbuf* entry_pkts[kBurst];
  PacketInfo entry_info[kBurst];
  const EntryPoint* entry_of[kBurst];
  // One snapshot of the entry table for the whole burst (it stays valid until this poll's quiescent state).
  const EntryTable* entries = ctx_.dp.entries.load(std::memory_order_acquire);
  uint16_t n_entry = 0;
  rte_mbuf* tun_pkts[kBurst];
  PacketInfo tun_info[kBurst];
  uint16_t n_tun = 0;
  // The edge role (nullptr: none): frames from the concentrator, and targets' packets to translated sources.
  const EdgePeer* edge = ctx_.dp.edge.get();
  rte_mbuf* edge_pkts[kBurst];
  PacketInfo edge_info[kBurst];
  uint16_t n_edge = 0;
  const uint32_t my_addr = ctx_.dp.ports[port].address;
  const uint16_t tunnel_port = ctx_.dp.cfg->tunnel_port;
  const uint16_t quic_port = ctx_.dp.cfg->quic_port;
  const uint16_t stun_port = ctx_.dp.cfg->stun_port;  // 0: none
  rte_mbuf* stun_pkts[kBurst];
  PacketInfo stun_info[kBurst];
  uint16_t n_stun = 0;
  rte_mbuf* quic_pkts[kBurst];
  PacketInfo quic_info[kBurst];
  uint16_t n_quic = 0;
  rte_mbuf* pair_pkts[kBurst];
  PacketInfo pair_info[kBurst];
  uint16_t n_pair = 0;
  PortStats& ps = ctx_.port_stats[port];

  for (uint16_t i = 0; i < n; ++i) {
    if (i + 2 < n) rte_prefetch0(rte_pktmbuf_mtod(pkts[i + 2], void*));
    rte_mbuf* m = pkts[i];
    if (count_rx) {
      if (kTrace) ctx_.trace.rx(port, m);
      ps.rx_packets.add();
      ps.rx_bytes.add(m->pkt_len);
      ctx_.stats.rx_packets.add();
      ctx_.stats.rx_bytes.add(m->pkt_len);
    }
    if (m->nb_segs != 1) {
      ctx_.drop(m, Drop::Multiseg);
      continue;
    }
    PacketInfo pi;
    ParseStatus st = parse_ethernet({rte_pktmbuf_mtod(m, const uint8_t*), m->data_len}, pi);
    if (st != ParseStatus::Ok) {
      ctx_.stats.parse_errors[size_t(st)].add();
      ctx_.drop(m, Drop::ParseError);
      continue;
    }
    if (pi.vlan_count) {
      ctx_.drop(m, Drop::Vlan);
      continue;
    }
    switch (pi.l3) {
      case L3Kind::Arp:
        local_.input(port, m, pi);
        continue;
      case L3Kind::Ipv6:
        ctx_.drop(m, Drop::Ipv6);
        continue;
      case L3Kind::Other:
        ctx_.drop(m, Drop::UnsupportedProto);
        continue;
      case L3Kind::Ipv4:
        break;
    }
    if (pi.dst_ip != my_addr) {
      if (edge && edge->to_snat(port, pi.dst_ip)) {  // a target's packet to a translated source
        if (pi.is_fragment)
          frags_.client_fragment(port, m, pi);  // put together first; the datagram comes to edge output
        else if (pi.l4_proto == kIpProtoIcmp)
          edge_out_.icmp(port, m, pi);
        else if (pi.l4_proto == kIpProtoTcp || pi.l4_proto == kIpProtoUdp)
          edge_pkts[n_edge] = m, edge_info[n_edge++] = pi;
        else
          ctx_.drop(m, Drop::UnsupportedProto);
        continue;
      }
      ctx_.drop(m, Drop::NotForUs);
      continue;
    }
    if (pi.l4_proto == kIpProtoIcmp) {
      local_.input(port, m, pi);
      continue;
    }
    if (pi.l4_proto != kIpProtoTcp && pi.l4_proto != kIpProtoUdp) {
      ctx_.drop(m, Drop::UnsupportedProto);  // GRE, ESP, ...: not for the gateway, nor for its kernel path
      continue;
    }
    if (pi.is_fragment) {  // reassembled first (fragments.cpp); whole datagrams come back through datagram_input
      frags_.client_fragment(port, m, pi);
      continue;
    }
    if (edge && pi.l4_proto == kIpProtoUdp && edge->from_concentrator(port, pi.src_ip, pi.src_port, pi.dst_port)) {
      edge_pkts[n_edge] = m;  // (a burst from one port holds frames or LAN packets, never both: the ports differ)
      edge_info[n_edge++] = pi;
      continue;
    }
    // STUN (dataplane/nat/stun_input.hpp): whatever comes to the STUN port; on the tunnel port a Binding request
    // (first byte 0x00) with the magic cookie, never a relay frame (version 0x01 first; its bytes 4..7, the receiver
    // index, may well equal the cookie); on the QUIC port (below) a first byte 0x00..0x03 with the cookie, never a
    // QUIC packet (the fixed bit 0x40 is set in both header forms, RFC 9000 17).
    if (pi.l4_proto == kIpProtoUdp &&
        ((stun_port && pi.dst_port == stun_port) || (pi.dst_port == tunnel_port && shared_port_stun(m, pi, 0x00)))) {
      DPTUN_TRACE_IF(kTrace, m, Classify) tr->code = uint8_t(TraceClass::Stun);
      stun_pkts[n_stun] = m;
      stun_info[n_stun++] = pi;
      continue;
    }
    if (pi.l4_proto == kIpProtoUdp && pi.dst_port == tunnel_port) {
      if (pair_frame(m, pi)) {  // a pair frame: relayed unopened to its pair's other end (relay/pair_relay.hpp)
        DPTUN_TRACE_IF(kTrace, m, Classify) tr->code = uint8_t(TraceClass::PairFrame);
        pair_pkts[n_pair] = m;
        pair_info[n_pair++] = pi;
        continue;
      }
      DPTUN_TRACE_IF(kTrace, m, Classify) tr->code = uint8_t(TraceClass::TunnelFrame);
      tun_pkts[n_tun] = m;
      tun_info[n_tun++] = pi;
      continue;
    }
    const EntryPoint* ep = entries ? entries->find(pi.l4_proto, pi.dst_ip, pi.dst_port) : nullptr;
    if (!ep && pi.l4_proto == kIpProtoUdp && pi.dst_port == quic_port) {  // entry points on the port come first
      if (shared_port_stun(m, pi, 0x03)) {
        DPTUN_TRACE_IF(kTrace, m, Classify) tr->code = uint8_t(TraceClass::Stun);
        stun_pkts[n_stun] = m;
        stun_info[n_stun++] = pi;
        continue;
      }
      DPTUN_TRACE_IF(kTrace, m, Classify) tr->code = uint8_t(TraceClass::TunnelFrame);
      quic_pkts[n_quic] = m;
      quic_info[n_quic++] = pi;
      continue;
    }
    if (!ep) {
      local_.closed_port(port, m, pi);
      continue;
    }
    DPTUN_TRACE_IF(kTrace, m, Classify) {
      tr->code = uint8_t(TraceClass::EntryPoint);
      tr->proto = ep->proto;
      tr->dst_port = ep->port;
      tr->tunnel = ep->tunnel;
    }
    entry_pkts[n_entry] = m;
    entry_info[n_entry] = pi;
    entry_of[n_entry++] = ep;
  }
  if (n_entry) entry_.input(port, entry_pkts, entry_info, entry_of, n_entry);
  if (n_tun) tunnel_.input(port, tun_pkts, tun_info, n_tun);
  if (n_quic) quic_in_.input(port, quic_pkts, quic_info, n_quic);
  if (n_stun) stun_.input(port, stun_pkts, stun_info, n_stun);
  if (n_pair) pairs_.input(port, pair_pkts, pair_info, n_pair);
  if (n_edge) {
    if (port == edge->underlay_port)
      edge_in_.input(port, edge_pkts, edge_info, n_edge);
    else
      edge_out_.input(port, edge_pkts, edge_info, n_edge);
  }
}

void Worker::handle_handoffs(rte_mbuf** objs, unsigned n) {
  // Frames handed over for decryption are gathered per port and run as bursts (one AEAD call per key).
  rte_mbuf* raw[8][kBurst];
  uint16_t n_raw[8] = {};
  for (unsigned i = 0; i < n; ++i) {
    rte_mbuf* m = objs[i];
    HandoffMeta& hm = ctx_.dp.meta(m);
    DPTUN_TRACE(m, HandoffIn) tr->code = hm.stage;
    switch (hm.stage) {
      case HandoffMeta::RawFrame:
        if (hm.port < ctx_.dp.ports.size())
          raw[hm.port][n_raw[hm.port]++] = m;
        else
          ctx_.drop(m, Drop::HandoffFull);
        break;
      case HandoffMeta::InnerPacket: {
        TunnelSession* s = ctx_.dp.sessions.find(hm.session);
        if (!s)
          ctx_.drop(m, Drop::UnknownSession);
        else
          tunnel_.deliver_to_client(m, hm.flow_id, *s);
        break;
      }
      case HandoffMeta::Transmit:
        tx_.send(hm.port, m);
        break;
      case HandoffMeta::QuicSend: {  // the control lcore's QUIC frames for a session of this worker's
        TunnelSession* s = ctx_.dp.sessions.find(hm.session);
        QuicSendHeader h;
        if (m->data_len < sizeof h) {
          ctx_.drop(m, Drop::HandoffFull);
          break;
        }
        std::memcpy(&h, rte_pktmbuf_mtod(m, const void*), sizeof h);
        rte_pktmbuf_adj(m, uint16_t(sizeof h));
        if (!s || s->serial != h.serial || !s->quic)
          ctx_.drop(m, Drop::UnknownSession);
        else
          encap_.quic_frames(*s, m, h.to);
        break;
      }
      case HandoffMeta::MasqueInject: {  // a UDP payload dpctld carried for a capsule session of this worker's
        TunnelSession* s = ctx_.dp.sessions.find(hm.session);
        MasqueInjectHeader h;
        if (m->data_len < sizeof h) {
          ctx_.drop(m, Drop::HandoffFull);
          break;
        }
        std::memcpy(&h, rte_pktmbuf_mtod(m, const void*), sizeof h);
        rte_pktmbuf_adj(m, uint16_t(sizeof h));
        if (!s || s->serial != h.serial || !s->masque || !s->masque->request_id)  // gone since
          ctx_.drop(m, Drop::UnknownSession);
        else
          masque_.inject(m, *s);
        break;
      }
      case HandoffMeta::Reassembled:
        if (hm.port < ctx_.dp.ports.size())
          frags_.datagram_input(hm.port, m);
        else
          ctx_.drop(m, Drop::HandoffFull);
        break;
      default:
        ctx_.drop(m, Drop::HandoffFull);
        break;
    }
  }
  for (uint8_t p = 0; p < ctx_.dp.ports.size(); ++p)
    if (n_raw[p]) process_burst(p, raw[p], n_raw[p], false);
}

}  // namespace dptun
