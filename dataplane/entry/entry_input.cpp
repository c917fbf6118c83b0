// Client -> agent: a packet to a public entry point finds or creates its flow, is pinned to a tunnel session,
// NAT-ed to the target, wrapped in a relay frame, encrypted in one AEAD call per burst and sent to the agent.
#include <rte_mbuf.h>

#include <algorithm>
#include <cstring>

#include "dataplane/tables/flow_tracking.hpp"
#include "dataplane/entry/entry_input.hpp"
#include "packet/checksum.hpp"
#include "packet/ipv4_rewrite.hpp"
#include "packet/tcp_mss.hpp"

namespace dptun {

void EntryInput::input(uint8_t in_port, rte_mbuf** pkts, const PacketInfo* info, const EntryPoint* const* entry,
                       uint16_t n) {
  if (__builtin_expect(ctx_.trace.on(), 0))
    burst<true>(in_port, pkts, info, entry, n);
  else
    burst<false>(in_port, pkts, info, entry, n);
}

template <bool kTrace>
void EntryInput::burst(uint8_t in_port, rte_mbuf** pkts, const PacketInfo* info, const EntryPoint* const* entry,
                       uint16_t n) {
  const FlowConfig& fc = ctx_.dp.cfg->flow;
  IpAddr hop_ip;
  bool hop_ok = false;
  uint8_t out_port = 0;
  MacAddr mac{};
  Drop why = Drop::NoRoute;

  // The burst's flow lookups overlap their cache misses: every key's index entry is requested, then every flow
  // those entries name, before the first lookup waits for one.
  uint32_t hashes[kBurst];
  for (uint16_t i = 0; i < n; ++i) {
    const PacketInfo& pi = info[i];
    hashes[i] = FlowTable::hash(FlowKey::v4(pi.src_ip, pi.dst_ip, pi.src_port, pi.dst_port, pi.l4_proto, 0));
    flows_.prefetch_index(hashes[i]);
  }
  for (uint16_t i = 0; i < n; ++i) flows_.prefetch_flow(hashes[i]);

  for (uint16_t i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    const PacketInfo& pi = info[i];
    const EntryPoint& ep = *entry[i];
    // Who reads a new flow's hostname (proto/entry_route.hpp): nobody (fixed), TCP binding, or the QUIC holds.
    bool tcp_binding = false, quic = false;
    switch (entry_route_kind(ep.route).source) {
      case NameSource::None: break;
      case NameSource::TlsClientHello:
      case NameSource::HttpRequestHead: tcp_binding = true; break;
      case NameSource::QuicInitial: quic = true; break;
    }
    const bool fixed = !tcp_binding && !quic;
    const FlowKey key = FlowKey::v4(pi.src_ip, pi.dst_ip, pi.src_port, pi.dst_port, pi.l4_proto, 0);
    const uint32_t h = hashes[i];

    Flow* f = flows_.find(key, h);
    if (tcp_binding) {
      // Until a connection is spliced, dpgw itself is its peer (SYN cookie, reading the hostname).
      const bool new_syn = (pi.tcp_flags & (kTcpSyn | kTcpAck)) == kTcpSyn;
      // A SYN on a live spliced connection is a blind attempt to reset it (RFC 5961): only a closed one may
      // start over on the same ports.
      if (f && f->binding == Binding::Spliced && new_syn && f->deadline_ns > ctx_.now_ns &&
          f->tcp_state == TcpState::Established) {
        ctx_.drop(m, Drop::TcpNoFlow);
        continue;
      }
      if (!f || f->binding != Binding::Spliced || new_syn || f->deadline_ns <= ctx_.now_ns) {
        DPTUN_TRACE_IF(kTrace, m, Hostname) tr->code = uint8_t(f ? f->binding : Binding::None);
        binding_.input(in_port, m, pi, ep, f);
        continue;
      }
    }
    const TunnelPool* pool = nullptr;
    if (f && f->binding != Binding::WaitHello) {  // (a QUIC flow still being held has no tunnel yet)
      // A flow stays with the tunnel it started on (a fixed entry point's, or the one its hostname led to).
      pool = ctx_.dp.tunnels.get(f->tunnel);
      if ((f->deadline_ns <= ctx_.now_ns && !flow_restarts(*f, pi.tcp_flags)) || !pool ||
          pool->generation != f->tunnel_generation || (fixed && f->tunnel != ep.tunnel)) {
        setup_.end_flow(*f);  // expired, or its tunnel (or entry point) changed
        f = nullptr;
      }
    }
    // QUIC by SNI: the first datagrams of a flow are read (and held, while its ClientHello is incomplete).
    std::string_view quic_name;
    std::span<const uint8_t> quic_earlier;  // datagrams held before this one, to send on ahead of it
    if (quic && (!f || f->binding == Binding::WaitHello)) {
      if (quic_.first_packets(m, pi, f, quic_name, quic_earlier) != QuicHolds::Step::Route) continue;
    }
    // A packet that cannot start its flow takes the datagrams held before it along.
    const auto refuse = [&](Drop why) {
      if (!quic_earlier.empty()) ctx_.stats.drops[size_t(why)].add(QuicHolds::held_records(quic_earlier));
      ctx_.drop(m, why);
    };
    uint8_t inner_flags = 0;
    bool repinned = false;  // (for the trace)
    TunnelSession* s;
    if (f) {
      s = setup_.flow_session(*f, *pool, repinned);
      if (!s) {
        refuse(Drop::NoSession);
        continue;
      }
      if (flow_restarts(*f, pi.tcp_flags)) inner_flags = kInnerFlowNew;
      flow_track(*f, pi.tcp_flags, true, fc, uint64_t(f->udp_ttl_ms) * 1000000ull, ctx_.now_ns);
    } else {
      // Where a new flow goes: the entry point's own tunnel and target, or the hostname rule's.
      FlowPlan plan;
      plan.udp_ttl_ns = ep.udp_ttl_ns;
      plan.keepalive = ep.keepalive;
      plan.target = ep.target;
      Drop why_not = Drop::NoSession;
      const bool planned = fixed ? setup_.plan_tunnel(ep.tunnel, ep.tunnel_generation, plan, why_not)
                                 : setup_.plan_by_rule(quic_name, pi.dst_port, nullptr, plan, why_not);
      if (!planned) {
        refuse(why_not);
        continue;
      }
      if (!flow_may_start(pi.l4_proto, pi.tcp_flags)) {
        refuse(Drop::TcpNoFlow);
        continue;
      }
      f = setup_.open_flow(key, h, plan, s, why_not);
      if (!f) {
        refuse(why_not);
        continue;
      }
      flow_start(*f, pi.tcp_flags, fc, ep.udp_ttl_ns, ctx_.now_ns);
      inner_flags = kInnerFlowNew;
      // Datagrams held before this one go first; the first of them is the flow's first packet (FLOW_NEW).
      if (!quic_earlier.empty() && quic_.send_held(*f, *s, quic_earlier)) inner_flags = 0;
    }
    DPTUN_TRACE_IF(kTrace, m, Flow) {
      tr->flow_id = flows_.id_of(*f);
      const bool opened = (inner_flags & kInnerFlowNew) || !quic_earlier.empty();
      tr->flags = uint8_t((opened ? 1 : 0) | (repinned ? 2 : 0));
      tr->tunnel = f->tunnel;
      tr->session = s ? s->index : 0;
    }
    const Endpoint peer = s ? s->peer() : Endpoint{};  // (one read of the session's endpoint; port 0: unknown)
    if (!peer.port) {
      ctx_.drop(m, Drop::NoSession);
      continue;
    }
    // Packets of a burst mostly go to the same agent: resolve its next hop once per burst.
    if (!(peer.ip == hop_ip) || !hop_ok) {
      hop_ip = peer.ip;
      hop_ok = tx_.resolve_next_hop(hop_ip, out_port, mac, why);
    }
    if (!hop_ok) {
      ctx_.drop(m, why);
      continue;
    }
    const uint32_t inner_len = pi.ip_total_len;
    const std::span<const uint8_t> held = names_.held(*f);
    const uint32_t trailer = held.empty() ? 0 : uint32_t(held.size() + 1);
    const uint32_t budget = encap_.frame_budget(out_port, *s);
    // A packet that does not fit one frame travels as inner fragments, one frame each (protocol.md); so does a
    // datagram reassembled from the client's fragments that spans mbufs.
    bool split = m->nb_segs > 1;
    if (inner_len + trailer > budget) {
      // The client's DF bit speaks for its own packet; our name trailer never makes it "too big".
      if (pi.dont_fragment && inner_len > budget) {
        local_.send_frag_needed(in_port, m, pi, uint16_t(budget));
        ctx_.drop(m, Drop::TooBig);
        continue;
      }
      split = true;
    }

    // NAT to the target and clamp the MSS, in place.
    uint8_t* l2 = rte_pktmbuf_mtod(m, uint8_t*);
    uint8_t* ip = l2 + pi.l3_offset;
    uint8_t* l4 = l2 + pi.l4_offset;
    if (f->binding == Binding::Spliced) {
      if (f->bind.buffer != BindingBuffers::kNone) binding_.held_from_client(*f, l4, pi);  // first bytes still on their way
      f->splice.to_server(l4, pi.tcp_header_len);
    }
    if (pi.l4_proto == kIpProtoTcp && (pi.tcp_flags & kTcpSyn)) tcp_clamp_mss(l4, pi.tcp_header_len, f->mss_clamp);
    ipv4_rewrite_dst(ip, l4, pi.l4_proto, f->target_ip.v4(), f->target_port);
    DPTUN_TRACE_IF(kTrace, m, Nat) {
      tr->dst_ip = f->target_ip.v4();
      tr->dst_port = f->target_port;
    }

    // Reshape: drop L2 and Ethernet padding, prepend outer headers, append the hostname for an agent that picks
    // the target (until it has answered) and room for the tag.
    rte_pktmbuf_adj(m, pi.l3_offset);
    if (m->nb_segs == 1 && m->data_len > inner_len) rte_pktmbuf_trim(m, uint16_t(m->data_len - inner_len));
    DPTUN_TRACE_IF(kTrace, m, Encap) {
      tr->session = s->index;
      tr->dst_ip = peer.ip.v4();
      tr->dst_port = peer.port;
      tr->port = out_port;
      tr->len = uint16_t(std::min<uint32_t>(encap_.outer_len(inner_len + trailer, *s) + kEthHeaderLen, 0xffff));
      tr->code = split ? 1 : 0;
    }
    if (split) {
      encap_.fragments(m, flows_.id_of(*f), f->tunnel, *s, inner_flags, pi.l4_proto, held, out_port, mac);
      continue;
    }
    if (trailer) {
      char* t = rte_pktmbuf_append(m, uint16_t(trailer));
      if (!t) {
        ctx_.drop(m, Drop::NoRoom);
        continue;
      }
      write_name_trailer(reinterpret_cast<uint8_t*>(t), {reinterpret_cast<const char*>(held.data()), held.size()});
      inner_flags |= kInnerHasName;
    }
    encap_.packet(m, *s, peer, out_port, mac, InnerHeader{flows_.id_of(*f), pi.l4_proto, inner_flags}, inner_len + trailer,
                 f->tunnel);
  }
  encap_.flush();
}

}  // namespace dptun
