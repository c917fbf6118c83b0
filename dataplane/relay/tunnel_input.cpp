// Agent -> client: a relay frame on the tunnel port is checked against its session's replay window,
// decrypted in one AEAD call per key, then its inner packet is NAT-reversed onto the flow it belongs to
// (on the worker that owns the flow) and sent to the client.
#include <rte_mbuf.h>

#include <cstring>

#include "dataplane/relay/aead_burst.hpp"
#include "dataplane/relay/frame_admit.hpp"
#include "dataplane/tables/flow_tracking.hpp"
#include "dataplane/relay/tunnel_input.hpp"
#include "packet/checksum.hpp"
#include "packet/icmp_error.hpp"
#include "packet/ipv4_fragment.hpp"
#include "packet/ipv4_rewrite.hpp"
#include "packet/tcp_mss.hpp"

namespace dptun {

void TunnelInput::input(uint8_t port, rte_mbuf** pkts, const PacketInfo* info, uint16_t n) {
  if (__builtin_expect(ctx_.trace.on(), 0))
    burst<true>(port, pkts, info, n);
  else
    burst<false>(port, pkts, info, n);
}

template <bool kTrace>
void TunnelInput::burst(uint8_t port, rte_mbuf** pkts, const PacketInfo* info, uint16_t n) {
  struct Pending {
    rte_mbuf* m;
    TunnelSession* s;
    FrameMeta meta;
    std::span<uint8_t> frame;
    const PacketInfo* pi;
  };
  Pending p[kBurst];
  EpochCipher* cipher[kBurst];
  AeadOp ops[kBurst];
  uint8_t iv[kBurst][kAeadIvLen];
  int32_t status[kBurst];
  uint16_t np = 0;

  for (uint16_t i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    const PacketInfo& pi = info[i];
    const std::span<uint8_t> frame{rte_pktmbuf_mtod(m, uint8_t*) + pi.l4_offset + kUdpHeaderLen,
                                   pi.l4_len - uint32_t(kUdpHeaderLen)};
    uint32_t receiver;
    if (!codec_.receiver_of(frame, receiver)) {
      ctx_.drop(m, Drop::FrameMalformed);
      continue;
    }
    TunnelSession* s = ctx_.dp.sessions.find(receiver);
    if (!s) {
      ctx_.drop(m, Drop::UnknownSession);
      continue;
    }
    if (__builtin_expect(s->masque != nullptr, 0) && s->masque->request_id) {  // its capsules come from dpctld only
      ctx_.drop(m, Drop::MasqueCapsuleFrame);
      continue;
    }
    if (s->rx_worker != ctx_.id) {  // the replay window has a single owner
      tx_.handoff(s->rx_worker, m, HandoffMeta{0, 0, HandoffMeta::RawFrame, port});
      continue;
    }
    FrameMeta meta;
    Drop why;
    EpochCipher* c = admit_frame(codec_, *s, frame, ctx_.fresh_floor, meta, why);
    if (!c) {
      TunnelStats& ts = ctx_.tunnel_stats[s->tunnel];
      if (why == Drop::Replay || why == Drop::StaleCounter) ts.replay.add();
      if (why == Drop::KeyUnavailable) ts.key_unavailable.add();
      ctx_.drop(m, why);
      continue;
    }
    make_nonce(iv[np], c->salt, meta.counter);
    ops[np] = codec_.open_op(frame, iv[np]);
    cipher[np] = c;
    p[np++] = Pending{m, s, meta, frame, &pi};
  }
  if (!np) return;
  aead_burst(cipher, ops, status, np, ctx_.id);

  for (uint16_t i = 0; i < np; ++i) {
    rte_mbuf* m = p[i].m;
    TunnelSession& s = *p[i].s;
    TunnelStats& ts = ctx_.tunnel_stats[s.tunnel];
    if (!take_opened(m, s, p[i].meta, status[i], *p[i].pi)) continue;

    InnerHeader ih;
    std::span<uint8_t> inner;
    const bool data = p[i].meta.type == FrameType::Data && codec_.read_inner(p[i].frame, ih, inner);
    DPTUN_TRACE_IF(kTrace, m, Decap) {
      tr->session = s.index;
      tr->code = uint8_t(p[i].meta.type);
      if (data) {
        tr->flow_id = ih.flow_id;
        tr->len = uint16_t(inner.size());
      }
    }
    if (p[i].meta.type == FrameType::Keepalive) {
      ts.keepalives.add();
      ctx_.stats.keepalives_rx.add();
      if (p[i].meta.flags & kFlagKeepaliveReply) {
        DPTUN_TRACE_IF(kTrace, m, Consumed) tr->code = 0;
        rte_pktmbuf_free(m);
      } else {
        reply_keepalive(port, m, s, *p[i].pi);
      }
      continue;
    }
    if (!data) {  // control frames arrive with the control plane
      ctx_.drop(m, Drop::FrameMalformed);
      continue;
    }
    from_agent(m, ih, inner, s);
  }
}

bool TunnelInput::take_opened(rte_mbuf* m, TunnelSession& s, const FrameMeta& meta, int32_t status,
                              const PacketInfo& pi, PathNews* path) {
  TunnelStats& ts = ctx_.tunnel_stats[s.tunnel];
  if (status) {
    ts.auth_fail.add();
    ctx_.drop(m, Drop::AuthFail);
    return false;
  }
  bool newest;
  if (!accept_frame(s, meta, ctx_.now_ns, newest)) {  // a duplicate inside this burst
    ts.replay.add();
    ctx_.drop(m, Drop::Replay);
    return false;
  }
  // Follow the agent's endpoint (NAT rebinding): only an authenticated frame newer than every frame seen so far
  // moves it, so a delayed or replayed frame cannot pull traffic to an old address.
  const Endpoint from{Ipv4{pi.src_ip}, pi.src_port};
  if (path && newest && s.has_peer()) {  // QUIC: validated first (RFC 9000 9.3); the control lcore moves it
    *path = s.endpoint.load() == from ? PathNews::Endpoint : PathNews::Elsewhere;
    return true;
  }
  if (newest && s.endpoint.load() != from) {
    s.endpoint.store(from);
    s.endpoint_changes.fetch_add(1, std::memory_order_relaxed);
  }
  return true;
}

void TunnelInput::from_agent(rte_mbuf* m, const InnerHeader& ih, std::span<uint8_t> inner, TunnelSession& s) {
  const uint32_t inner_len = uint32_t(inner.size());
  count_from_agent(s, inner_len);
  rte_pktmbuf_adj(m, uint16_t(inner.data() - rte_pktmbuf_mtod(m, uint8_t*)));
  rte_pktmbuf_trim(m, uint16_t(m->data_len - inner_len));
  // A fragment of a datagram bigger than one frame: reassembled here, where all the session's frames come.
  if (ipv4_is_fragment(inner.data()) && !frags_.inner_fragment(m, ih, s)) return;  // held, or dropped (counted)
  if (s.visitor) {  // a visitor opening or continuing a flow (this worker owns the session and its flows)
    if (m->nb_segs > 1)
      ctx_.drop(m, Drop::Fragment);
    else
      visitors_.input(m, ih, s);
    return;
  }
  const uint8_t owner = FlowTable::worker_of(uint32_t(ih.flow_id));
  if (owner == ctx_.id) {
    deliver_to_client(m, ih.flow_id, s);
  } else if (owner < ctx_.dp.workers.size()) {
    tx_.handoff(owner, m, HandoffMeta{ih.flow_id, s.index, HandoffMeta::InnerPacket, 0});
  } else {
    ctx_.drop(m, Drop::StaleFlow);
  }
}

namespace {
// The inner packet of a frame, or a datagram reassembled from several (its first mbuf holds every header).
bool parse_inner(const rte_mbuf* m, PacketInfo& pi) {
  const std::span<const uint8_t> head{rte_pktmbuf_mtod(m, const uint8_t*), m->data_len};
  if (m->nb_segs == 1) return parse_tunnel_packet(head, pi);
  return parse_ipv4_head(head, m->pkt_len, pi) == ParseStatus::Ok && !pi.is_fragment && pi.has_l4 &&
         (pi.l4_proto == kIpProtoTcp || pi.l4_proto == kIpProtoUdp);
}
}  // namespace

void TunnelInput::deliver_to_client(rte_mbuf* m, uint64_t flow_id, TunnelSession& s) {
  PacketInfo pi;
  if (!parse_inner(m, pi)) {
    const uint8_t* ip = rte_pktmbuf_mtod(m, const uint8_t*);
    if (m->data_len >= kIpv4HeaderLen && ip[kIpv4OffProto] == kIpProtoIcmp)
      icmp_from_agent(m, flow_id, s);  // an agent's word that the flow's target cannot be reached
    else
      ctx_.drop(m, Drop::BadInner);
    return;
  }
  // The reply must come from the flow's target, with a plain IPv4 header.
  Drop why = Drop::FlowMismatch;
  Flow* f = flow_of_reply(flow_id, s, pi.l4_proto, pi.src_ip, pi.src_port, why);
  if (!f || pi.ip_header_len != 20) {
    ctx_.drop(m, f ? Drop::FlowMismatch : why);
    return;
  }
  if (f->agent_routed) {
    // The agent has picked the target: from now on the flow is addressed to it (the agent keeps no state for
    // it, another agent of the pool can take it over) and replies must come from it.
    f->target_ip = Ipv4{pi.src_ip};
    f->target_port = pi.src_port;
    f->agent_routed = false;
    names_.release(*f);
  }
  if (f->visitor) {  // a reply for a visitor's flow goes back through the tunnel, to the visitor
    flow_track(*f, pi.tcp_flags, false, ctx_.dp.cfg->flow, uint64_t(f->udp_ttl_ms) * 1000000ull, ctx_.now_ns);
    if (f->masque)  // a MASQUE client's: the payload goes back as an HTTP Datagram
      masque_.deliver(m, *f, pi);
    else
      visitors_.deliver(m, *f, pi);
    return;
  }
  if (f->binding == Binding::WaitServer) {  // the target answers dpgw's SYN (delayed binding)
    if (m->nb_segs > 1)
      ctx_.drop(m, Drop::Fragment);
    else
      binding_.splice_from_server(m, *f, pi);
    return;
  }
  if (f->binding == Binding::WaitHello || f->binding == Binding::Refused) {  // nothing was sent to a target yet
    ctx_.drop(m, Drop::FlowMismatch);
    return;
  }
  uint8_t out_port;
  MacAddr mac;
  if (!tx_.resolve_next_hop(f->key.client, out_port, mac, why)) {
    ctx_.drop(m, why);
    return;
  }
  // Bigger than the client's link (a datagram the agent sent in fragments): IPv4 fragments, unless DF forbids it.
  const bool too_big = m->nb_segs > 1 || pi.ip_total_len > ctx_.dp.ports[out_port].mtu;
  if (too_big && pi.dont_fragment) {
    ctx_.drop(m, Drop::TooBig);
    return;
  }
  flow_track(*f, pi.tcp_flags, false, ctx_.dp.cfg->flow, uint64_t(f->udp_ttl_ms) * 1000000ull, ctx_.now_ns);

  uint8_t* ip = rte_pktmbuf_mtod(m, uint8_t*);
  uint8_t* l4 = ip + pi.l4_offset;
  if (f->binding == Binding::Spliced) {
    // (While dpgw holds first bytes the target has not acknowledged, their progress is read here.)
    if (f->bind.buffer != BindingBuffers::kNone && !binding_.held_from_server(*f, l4, pi)) {
      rte_pktmbuf_free(m);
      return;
    }
    f->splice.to_client(l4, pi.tcp_header_len);
  }
  if (pi.l4_proto == kIpProtoTcp && (pi.tcp_flags & kTcpSyn)) tcp_clamp_mss(l4, pi.tcp_header_len, f->mss_clamp);
  // Whatever addresses the agent wrote, the client only ever sees the entry point talking to it.
  ipv4_rewrite_src(ip, l4, pi.l4_proto, f->key.local.v4(), f->key.local_port);
  ipv4_rewrite_dst(ip, l4, pi.l4_proto, f->key.client.v4(), f->key.client_port);
  if (m->data_len > pi.ip_total_len) rte_pktmbuf_trim(m, uint16_t(m->data_len - pi.ip_total_len));
  if (too_big) {
    frags_.send_ip_fragments(out_port, mac, m);
    return;
  }

  if (!tx_.prepend_ethernet(m, out_port, mac)) return;
  DPTUN_TRACE(m, Deliver) {
    tr->flow_id = flows_.id_of(*f);
    tr->src_ip = f->key.local.v4();
    tr->src_port = f->key.local_port;
    tr->dst_ip = f->key.client.v4();
    tr->dst_port = f->key.client_port;
  }
  tx_.send(out_port, m);
}

// The flow an agent's packet is about (a reply, or an ICMP error about what the flow sent): agents know a flow by its
// tag only (their NAT is stateless), so the tag must name a live flow of the session's tunnel (any agent of the pool
// may carry it), of protocol `proto`, whose target is `ip`:`port` (when the agent picked the target, it is the
// agent's to know: the tag and tunnel vouch). nullptr with `why`: stale_flow, flow_mismatch.
Flow* TunnelInput::flow_of_reply(uint64_t flow_id, const TunnelSession& s, uint8_t proto, uint32_t ip, uint16_t port,
                            Drop& why) {
  Flow* f = flows_.find_by_tag(uint32_t(flow_id));
  if (!f || f->deadline_ns <= ctx_.now_ns) {
    why = Drop::StaleFlow;
    return nullptr;
  }
  if (f->tunnel != s.tunnel || f->key.proto != proto || (!f->agent_routed && (ip != f->target_ip.v4() || port != f->target_port))) {
    why = Drop::FlowMismatch;
    return nullptr;
  }
  return f;
}

// An ICMP error the agent's kernel sent about a packet of the flow (protocol.md "ICMP errors"). It must quote a
// datagram of the flow's protocol to the flow's target and come over a session of the flow's tunnel, like a reply.
// The client then hears what a NAT router would tell it: the error, from the entry point's address (the address it
// sent to), quoting its own datagram; its TCP gives up a connection attempt at once (RFC 1122 4.2.3.9), its UDP
// socket reports the error. A hostname connection (dpgw holds the client's side itself) is refused instead, as its
// target's RST would be (502 for HTTP, a RST for TLS).
void TunnelInput::icmp_from_agent(rte_mbuf* m, uint64_t flow_id, TunnelSession& s) {
  IcmpError e;
  uint8_t* ip = rte_pktmbuf_mtod(m, uint8_t*);
  if (m->nb_segs != 1 || !parse_icmp_error({ip, m->data_len}, e)) {
    ctx_.drop(m, Drop::BadInner);
    return;
  }
  // The error is about what the flow sent its target. (A hostname connection still being read, or refused, has
  // sent its target nothing.)
  Drop why = Drop::FlowMismatch;
  Flow* f = flow_of_reply(flow_id, s, e.proto, e.dst_ip, e.dst_port, why);
  if (!f || f->binding == Binding::WaitHello || f->binding == Binding::Refused) {
    ctx_.drop(m, f ? Drop::FlowMismatch : why);
    return;
  }
  ctx_.tunnel_stats[f->tunnel].targets_unreachable.add();
  DPTUN_TRACE(m, IcmpError) {
    tr->code = uint8_t(e.reason());
    tr->flow_id = flows_.id_of(*f);
    tr->dst_ip = e.dst_ip;
    tr->dst_port = e.dst_port;
  }
  // Anything but "fragmentation needed" means the target cannot be reached at all (a TCP in SYN-SENT gives up).
  const bool hard = !(e.type == kIcmpDestUnreachable && e.code == kIcmpFragNeeded);
  if (f->binding == Binding::WaitServer) {
    binding_.unreachable(*f, m, hard);
    return;
  }
  if (f->masque) {  // RFC 9298 has no way to tell a client (docs/masque.md): counted, the client sees no answer
    ctx_.drop(m, Drop::MasqueTargetUnreachable);
    return;
  }
  if (f->visitor || !local_.icmp_error_allowed()) {  // (visitors' programs are not told; counted)
    ctx_.drop(m, Drop::TargetUnreachable);
    return;
  }
  if (hard && f->tcp_state == TcpState::SynSent) {  // the client's TCP gives up: so does the flow
    f->tcp_state = TcpState::Closed;
    f->deadline_ns = ctx_.now_ns + ctx_.dp.cfg->flow.tcp_closed_timeout_ns;
  }
  uint8_t out_port;
  MacAddr mac;
  if (!tx_.resolve_next_hop(f->key.client, out_port, mac, why)) {
    ctx_.drop(m, why);
    return;
  }
  // A spliced connection's sequence numbers towards the target are the client's plus client_seq_delta (bytes dpgw
  // inserted, e.g. a PROXY header): the quote gets the client's own back, which its TCP checks.
  if (f->binding == Binding::Spliced && e.proto == kIpProtoTcp) {
    uint8_t* seq = ip + e.quote_offset + e.quote_header_len + 4;
    store_be32(seq, load_be32(seq) - f->splice.client_seq_delta);
  }
  const size_t len = icmp_error_rewrite({ip, m->data_len}, e, f->key.local.v4(), f->key.client.v4(), f->key.client.v4(),
                                        f->key.client_port, f->key.local.v4(), f->key.local_port);
  rte_pktmbuf_trim(m, uint16_t(m->data_len - len));
  if (!tx_.prepend_ethernet(m, out_port, mac)) return;
  ctx_.stats.icmp_errors_forwarded.add();
  tx_.send(out_port, m);
}

// Answers an agent's keepalive in place: swap the outer addresses, seal an empty frame with a fresh counter.
void TunnelInput::reply_keepalive(uint8_t port, rte_mbuf* m, TunnelSession& s, const PacketInfo& pi) {
  uint8_t* l2 = rte_pktmbuf_mtod(m, uint8_t*);
  uint8_t* ip = l2 + pi.l3_offset;
  uint8_t* udp = l2 + pi.l4_offset;
  const std::span<uint8_t> frame{udp + kUdpHeaderLen, codec_.layout().frame_len(0)};
  const uint64_t counter = s.tx_counter.fetch_add(1, std::memory_order_relaxed);
  EpochCipher* c = s.tx_keys.find(epoch_of(counter));
  if (!c) {
    ctx_.drop(m, Drop::KeyUnavailable);
    return;
  }
  std::memcpy(l2, l2 + 6, 6);
  std::memcpy(l2 + 6, ctx_.dp.ports[port].mac.data(), 6);
  store_be32(ip + kIpv4OffSrc, pi.dst_ip);
  store_be32(ip + kIpv4OffDst, pi.src_ip);
  ip[kIpv4OffTtl] = 64;
  store_be16(ip + kIpv4OffId, ctx_.next_ip_id());
  store_be16(ip + kIpv4OffFrag, 0);
  store_be16(ip + kIpv4OffChecksum, 0);
  store_be16(ip + kIpv4OffChecksum, ipv4_header_checksum({ip, pi.ip_header_len}));
  store_be16(udp, pi.dst_port);
  store_be16(udp + 2, pi.src_port);
  store_be16(udp + kUdpOffChecksum, 0);
  codec_.write_header(frame.data(), FrameMeta{FrameType::Keepalive, kFlagKeepaliveReply, s.index, counter});
  uint8_t iv[kAeadIvLen];
  make_nonce(iv, c->salt, counter);
  const AeadOp op = codec_.seal_op(frame.data(), 0, iv);
  int32_t st = 0;
  c->aead->process({&op, 1}, {&st, 1}, ctx_.id);
  if (st) {
    ctx_.drop(m, Drop::CryptoError);
    return;
  }
  codec_.protect(frame);
  ctx_.stats.keepalives_tx.add();
  DPTUN_TRACE(m, Answer) tr->code = uint8_t(TraceAnswer::KeepaliveReply);
  tx_.send(port, m);
}

}  // namespace dptun
