// Client -> agent: a packet to a public entry point finds or creates its flow, is pinned to a tunnel session,
// NAT-ed to the target, wrapped in a relay frame, encrypted in one AEAD call per burst and sent to the agent.
#include <rte_mbuf.h>

#include <algorithm>
#include <cstring>

#include "dataplane/tables/flow_tracking.hpp"
#include "dataplane/loop/worker.hpp"
#include "packet/checksum.hpp"
#include "packet/ipv4_rewrite.hpp"
#include "packet/tcp_mss.hpp"

namespace dptun {

namespace {
// MSS that keeps a full segment inside one underlay packet of `mtu` bytes.
inline uint16_t mss_for_underlay(uint16_t mtu) { return uint16_t(mtu - kUnderlayOverhead - 40); }
}  // namespace

void Worker::entry_input(uint8_t in_port, rte_mbuf** pkts, const PacketInfo* info, const EntryPoint* const* entry,
                         uint16_t n) {
  if (__builtin_expect(tracing_, 0))
    entry_burst<true>(in_port, pkts, info, entry, n);
  else
    entry_burst<false>(in_port, pkts, info, entry, n);
}

template <bool kTrace>
void Worker::entry_burst(uint8_t in_port, rte_mbuf** pkts, const PacketInfo* info, const EntryPoint* const* entry,
                         uint16_t n) {
  const FlowConfig& fc = dp_.cfg->flow;
  uint32_t hop_ip = 0;
  bool hop_ok = false;
  uint8_t out_port = 0;
  MacAddr mac{};
  Drop why = Drop::NoRoute;

  for (uint16_t i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    const PacketInfo& pi = info[i];
    const EntryPoint& ep = *entry[i];
    const bool fixed = ep.route == EntryRoute::Fixed;
    const FlowKey key{pi.src_ip, pi.dst_ip, pi.src_port, pi.dst_port, pi.l4_proto, 0};
    const uint32_t h = FlowTable::hash(key);

    Flow* f = flows_.find(key, h);
    if (ep.route == EntryRoute::TlsSni || ep.route == EntryRoute::HttpHost) {
      // Until a connection is spliced, dpgw itself is its peer (SYN cookie, reading the hostname).
      const bool new_syn = (pi.tcp_flags & (kTcpSyn | kTcpAck)) == kTcpSyn;
      // A SYN on a live spliced connection is a blind attempt to reset it (RFC 5961): only a closed one may
      // start over on the same ports.
      if (f && f->binding == Binding::Spliced && new_syn && f->deadline_ns > now_ns_ &&
          f->tcp_state == TcpState::Established) {
        drop(m, Drop::TcpNoFlow);
        continue;
      }
      if (!f || f->binding != Binding::Spliced || new_syn || f->deadline_ns <= now_ns_) {
        DPTUN_TRACE_IF(kTrace, m, Hostname) tr->code = uint8_t(f ? f->binding : Binding::None);
        hostname_tcp(in_port, m, pi, ep, f);
        continue;
      }
    }
    const TunnelPool* pool = nullptr;
    if (f && f->binding != Binding::WaitHello) {  // (a QUIC flow still being held has no tunnel yet)
      // A flow stays with the tunnel it started on (a fixed entry point's, or the one its hostname led to).
      pool = dp_.tunnels.get(f->tunnel);
      if ((f->deadline_ns <= now_ns_ && !flow_restarts(*f, pi.tcp_flags)) || !pool ||
          pool->generation != f->tunnel_generation || (fixed && f->tunnel != ep.tunnel)) {
        if (f->deadline_ns <= now_ns_) note_expired(*f);
        flows_.erase(*f);  // expired, or its tunnel (or entry point) changed
        stats.flows_expired.add();
        f = nullptr;
      }
    }
    // QUIC by SNI: the first datagrams of a flow are read (and held, while its ClientHello is incomplete).
    std::string_view quic_name;
    std::span<const uint8_t> quic_earlier;  // datagrams held before this one, to send on ahead of it
    if (ep.route == EntryRoute::QuicSni && (!f || f->binding == Binding::WaitHello)) {
      if (quic_first_packets(m, pi, f, quic_name, quic_earlier) != QuicStep::Route) continue;
    }
    // A packet that cannot start its flow takes the datagrams held before it along.
    const auto refuse = [&](Drop why) {
      if (!quic_earlier.empty()) stats.drops[size_t(why)].add(held_records(quic_earlier));
      drop(m, why);
    };
    // Where a new flow goes: the entry point's own tunnel and target, or the hostname rule's.
    uint16_t tunnel = ep.tunnel;
    uint32_t tunnel_generation = ep.tunnel_generation;
    Endpoint target = ep.target;
    std::string_view routed_name;  // set when the agent picks the target (a rule without one)
    if (!f && !fixed) {
      Drop refused = Drop::NoHostname;
      const std::string_view name = quic_name;
      const IngressRoute* r = name.empty() ? nullptr : route_by_hostname(name, refused);
      if (!r) {
        refuse(refused);
        continue;
      }
      tunnel = r->tunnel;
      tunnel_generation = r->tunnel_generation;
      target = r->target ? *r->target : Endpoint{Ipv4{0}, 0};  // 0.0.0.0: the agent chooses
      if (!target.port) target.port = pi.dst_port;  // the rule's target without a port: the one the client used
      if (!r->target) routed_name = name;
    }
    if (!f) {
      pool = dp_.tunnels.get(tunnel);
      if (!pool || pool->generation != tunnel_generation) {  // the tunnel went away under the entry point or rule
        refuse(Drop::NoSession);
        continue;
      }
    }
    uint8_t inner_flags = 0;
    bool repinned = false;  // (for the trace)
    TunnelSession* s;
    if (f) {
      s = dp_.sessions.find(f->session_index);
      // (An index dpctld gave to another agent, or to a visitor, since: not this flow's session any more.)
      if (!s || s->visitor || s->tunnel != f->tunnel ||
          !session_live(*s, now_ns_, dp_.cfg->session_timeout_ns)) {
        // The session went away or its keepalives stopped: re-pin the flow to another one of the pool.
        s = pick_session(*pool, h);
        if (!s) {
          refuse(Drop::NoSession);
          continue;
        }
        pin_flow(*f, *s);
        stats.flows_repinned.add();
        repinned = true;
      }
      if (flow_restarts(*f, pi.tcp_flags)) inner_flags = kInnerFlowNew;
      flow_track(*f, pi.tcp_flags, true, fc, uint64_t(f->udp_ttl_ms) * 1000000ull, now_ns_);
    } else {
      if (!flow_may_start(pi.l4_proto, pi.tcp_flags)) {
        refuse(Drop::TcpNoFlow);
        continue;
      }
      s = pick_session(*pool, h);
      if (!s) {
        refuse(Drop::NoSession);
        continue;
      }
      Route r = dp_.routes->lookup(s->peer().ip.value);
      f = new_flow(key, h);
      if (!f) {
        refuse(Drop::FlowTableFull);
        continue;
      }
      pin_flow(*f, *s);
      f->tunnel = tunnel;
      f->tunnel_generation = pool->generation;
      f->udp_ttl_ms = uint32_t(ep.udp_ttl_ns / 1000000ull);
      f->target_ip = target.ip.value;
      f->target_port = target.port;
      f->keepalive = ep.keepalive;
      f->mss_clamp = mss_for_underlay(dp_.ports[r.port].mtu);
      if (!routed_name.empty() && !hold_name(*f, routed_name)) {
        flows_.erase(*f);
        refuse(Drop::BindingFull);
        continue;
      }
      flow_start(*f, pi.tcp_flags, fc, ep.udp_ttl_ns, now_ns_);
      stats.flows_created.add();
      tunnel_stats[tunnel].flows_created.add();
      inner_flags = kInnerFlowNew;
      if (!quic_earlier.empty()) send_held_datagrams(*f, *s, quic_earlier);
    }
    DPTUN_TRACE_IF(kTrace, m, Flow) {
      tr->flow_id = flows_.id_of(*f);
      tr->flags = uint8_t((inner_flags & kInnerFlowNew ? 1 : 0) | (repinned ? 2 : 0));
      tr->tunnel = f->tunnel;
      tr->session = s ? s->index : 0;
    }
    if (!s || !s->has_peer()) {
      drop(m, Drop::NoSession);
      continue;
    }
    const Endpoint peer = s->peer();
    // Packets of a burst mostly go to the same agent: resolve its next hop once per burst.
    if (peer.ip.value != hop_ip || !hop_ok) {
      hop_ip = peer.ip.value;
      hop_ok = resolve_next_hop(hop_ip, out_port, mac, why);
    }
    if (!hop_ok) {
      drop(m, why);
      continue;
    }
    const uint32_t inner_len = pi.ip_total_len;
    const std::span<const uint8_t> held = held_name(*f);
    const uint32_t trailer = held.empty() ? 0 : uint32_t(held.size() + 1);
    const uint32_t outer_len = uint32_t(kIpv4HeaderLen + kUdpHeaderLen + kRelayFrameOverhead) + inner_len + trailer;
    const uint32_t budget = frame_budget(out_port);
    // A packet that does not fit one frame travels as inner fragments, one frame each (protocol.md); so does a
    // datagram reassembled from the client's fragments that spans mbufs.
    bool split = m->nb_segs > 1;
    if (inner_len + trailer > budget) {
      // The client's DF bit speaks for its own packet; our name trailer never makes it "too big".
      if (pi.dont_fragment && inner_len > budget) {
        send_frag_needed(in_port, m, pi, uint16_t(budget));
        drop(m, Drop::TooBig);
        continue;
      }
      split = true;
    }

    // NAT to the target and clamp the MSS, in place.
    uint8_t* l2 = rte_pktmbuf_mtod(m, uint8_t*);
    uint8_t* ip = l2 + pi.l3_offset;
    uint8_t* l4 = l2 + pi.l4_offset;
    if (f->binding == Binding::Spliced) {
      if (f->bind.buffer != BindingBuffers::kNone) held_from_client(*f, l4, pi);  // first bytes still on their way
      f->splice.to_server(l4, pi.tcp_header_len);
    }
    if (pi.l4_proto == kIpProtoTcp && (pi.tcp_flags & kTcpSyn)) tcp_clamp_mss(l4, pi.tcp_header_len, f->mss_clamp);
    ipv4_rewrite_dst(ip, l4, pi.l4_proto, f->target_ip, f->target_port);
    DPTUN_TRACE_IF(kTrace, m, Nat) {
      tr->dst_ip = f->target_ip;
      tr->dst_port = f->target_port;
    }

    // Reshape: drop L2 and Ethernet padding, prepend outer headers, append the hostname for an agent that picks
    // the target (until it has answered) and room for the tag.
    rte_pktmbuf_adj(m, pi.l3_offset);
    if (m->nb_segs == 1 && m->data_len > inner_len) rte_pktmbuf_trim(m, uint16_t(m->data_len - inner_len));
    DPTUN_TRACE_IF(kTrace, m, Encap) {
      tr->session = s->index;
      tr->dst_ip = peer.ip.value;
      tr->dst_port = peer.port;
      tr->port = out_port;
      tr->len = uint16_t(std::min<uint32_t>(outer_len + kEthHeaderLen, 0xffff));
      tr->code = split ? 1 : 0;
    }
    if (split) {
      encap_fragments(m, *f, *s, inner_flags, pi.l4_proto, held, out_port, mac);
      continue;
    }
    if (trailer) {
      char* t = rte_pktmbuf_append(m, uint16_t(trailer));
      if (!t) {
        drop(m, Drop::NoRoom);
        continue;
      }
      write_name_trailer(reinterpret_cast<uint8_t*>(t), {reinterpret_cast<const char*>(held.data()), held.size()});
      inner_flags |= kInnerHasName;
    }
    uint8_t* frame = prepend_outer(m, mac, out_port, peer, outer_len);
    if (!frame) continue;
    encode_inner_header(frame + kRelayHeaderLen, InnerHeader{flows_.id_of(*f), pi.l4_proto, inner_flags, 0});
    queue_encap(EncapPending{m, s, frame, uint32_t(kInnerHeaderLen + inner_len + trailer), out_port, f->tunnel});
  }
  encap_flush();
}

}  // namespace dptun
