// Concentrator -> targets on an edge dpgw: a relay frame is checked against the edge session's replay window,
// opened in one AEAD call per key, and its inner packet gets the flow's translated source and goes out the LAN port.
#include "dataplane/edge/edge_input.hpp"

#include <rte_mbuf.h>

#include <cstring>

#include "dataplane/relay/aead_burst.hpp"
#include "dataplane/relay/frame_admit.hpp"
#include "packet/checksum.hpp"
#include "packet/headers.hpp"
#include "packet/ipv4_fragment.hpp"
#include "packet/ipv4_rewrite.hpp"

namespace dptun {

EdgeInput::EdgeInput(WorkerContext& ctx, Tx& tx, Fragments& frags)
    : ctx_(ctx), tx_(tx), frags_(frags), edge_(ctx.dp.edge.get()) {}

void EdgeInput::input(uint8_t port, rte_mbuf** pkts, const PacketInfo* info, uint16_t n) {
  if (__builtin_expect(ctx_.trace.on(), 0))
    burst<true>(port, pkts, info, n);
  else
    burst<false>(port, pkts, info, n);
}

template <bool kTrace>
void EdgeInput::burst(uint8_t port, rte_mbuf** pkts, const PacketInfo* info, uint16_t n) {
  TunnelSession& s = edge_->session;
  struct Pending {
    rte_mbuf* m;
    FrameMeta meta;
    std::span<uint8_t> frame;
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
    DPTUN_TRACE_IF(kTrace, m, Classify) tr->code = uint8_t(TraceClass::EdgeFrame);
    const std::span<uint8_t> frame{rte_pktmbuf_mtod(m, uint8_t*) + pi.l4_offset + kUdpHeaderLen,
                                   pi.l4_len - uint32_t(kUdpHeaderLen)};
    uint32_t receiver;
    if (!codec_.receiver_of(frame, receiver)) {
      ctx_.drop(m, Drop::FrameMalformed);
      continue;
    }
    if (receiver != s.index) {  // the concentrator knows us by one index only
      ctx_.drop(m, Drop::UnknownSession);
      continue;
    }
    if (s.rx_worker != ctx_.id) {  // the replay window has a single owner
      tx_.handoff(s.rx_worker, m, HandoffMeta{0, 0, HandoffMeta::RawFrame, port});
      continue;
    }
    // (The session has peer_clock_counters: the concentrator's counters follow the wall clock.)
    FrameMeta meta;
    Drop why;
    EpochCipher* c = admit_frame(codec_, s, frame, ctx_.fresh_floor, meta, why);
    if (!c) {
      ctx_.drop(m, why);
      continue;
    }
    make_nonce(iv[np], c->salt, meta.counter);
    ops[np] = codec_.open_op(frame, iv[np]);
    cipher[np] = c;
    p[np++] = Pending{m, meta, frame};
  }
  if (!np) return;
  aead_burst(cipher, ops, status, np, ctx_.id);

  hop_ok_ = false;  // next hops are looked up again for every burst
  for (uint16_t i = 0; i < np; ++i) {
    rte_mbuf* m = p[i].m;
    if (status[i]) {
      ctx_.stats.edge_auth_fail.add();
      ctx_.drop(m, Drop::AuthFail);
      continue;
    }
    bool newest;  // (the concentrator's endpoint is configured: it does not move)
    if (!accept_frame(s, p[i].meta, ctx_.now_ns, newest)) {  // a duplicate inside this burst
      ctx_.drop(m, Drop::Replay);
      continue;
    }

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
    if (p[i].meta.type == FrameType::Keepalive) {  // the concentrator's answer to ours: the tunnel is up
      ctx_.stats.edge_keepalives_rx.add();
      DPTUN_TRACE_IF(kTrace, m, Consumed) tr->code = 0;
      rte_pktmbuf_free(m);
      continue;
    }
    if (!data) {  // control frames arrive with the control plane
      ctx_.drop(m, Drop::FrameMalformed);
      continue;
    }
    const uint32_t inner_len = uint32_t(inner.size());
    ctx_.stats.edge_from_concentrator_packets.add();
    ctx_.stats.edge_from_concentrator_bytes.add(inner_len);
    rte_pktmbuf_adj(m, uint16_t(inner.data() - rte_pktmbuf_mtod(m, uint8_t*)));
    rte_pktmbuf_trim(m, uint16_t(m->data_len - inner_len));
    // A fragment of a datagram bigger than one frame: reassembled here, where all the session's frames come.
    if (ipv4_is_fragment(inner.data()) && !frags_.inner_fragment(m, ih, s)) continue;  // held, or dropped (counted)
    deliver(m, uint32_t(ih.flow_id), ih.proto);
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

// As dpagent does before its kernel routes the packet: the source becomes the flow's translated address:port, which
// names the flow's tag again when the target answers. The destination is the target the concentrator chose.
void EdgeInput::deliver(rte_mbuf* m, uint32_t tag, uint8_t proto) {
  PacketInfo pi;
  if (!parse_inner(m, pi) || pi.l4_proto != proto) {
    ctx_.drop(m, Drop::BadInner);
    return;
  }
  if (pi.dst_ip == 0) {  // a hostname rule without a target leaves it to the far end: an edge has no routes by name
    ctx_.drop(m, Drop::NoRoute);
    return;
  }
  Drop why = Drop::NoRoute;
  if (!hop_ok_ || hop_ip_ != pi.dst_ip) {
    hop_ip_ = pi.dst_ip;
    hop_ok_ = tx_.resolve_next_hop_on(edge_->lan_port, Ipv4{pi.dst_ip}, hop_mac_, why);
    if (!hop_ok_) {
      ctx_.drop(m, why);
      return;
    }
  }
  const uint8_t lan = edge_->lan_port;
  const bool too_big = m->nb_segs > 1 || pi.ip_total_len > ctx_.dp.ports[lan].mtu;
  if (too_big && pi.dont_fragment) {  // (the concentrator clamps TCP's MSS; this is UDP with DF, as a router drops it)
    ctx_.drop(m, Drop::TooBig);
    return;
  }
  const Endpoint snat = edge_->snat.encode(tag);
  uint8_t* ip = rte_pktmbuf_mtod(m, uint8_t*);
  ipv4_rewrite_src(ip, ip + pi.l4_offset, pi.l4_proto, snat.ip.v4(), snat.port);
  if (m->data_len > pi.ip_total_len) rte_pktmbuf_trim(m, uint16_t(m->data_len - pi.ip_total_len));  // name trailer
  DPTUN_TRACE(m, Deliver) {
    tr->flow_id = tag;
    tr->src_ip = snat.ip.v4();
    tr->src_port = snat.port;
    tr->dst_ip = pi.dst_ip;
    tr->dst_port = pi.dst_port;
  }
  if (too_big) {
    frags_.send_ip_fragments(lan, hop_mac_, m);
    return;
  }
  if (!tx_.prepend_ethernet(m, lan, hop_mac_)) return;
  tx_.send(lan, m);
}

// A keepalive (protocol.md "Keepalives"): an empty frame the concentrator answers. It proves the edge alive, tells
// the concentrator where the edge is (it learns the endpoint from authenticated frames) and brings its answer back.
void EdgeInput::send_keepalive() {
  TunnelSession& s = edge_->session;
  // Until the concentrator answers, probe every 250 ms so the tunnel comes up (or back) quickly.
  const bool up = edge_->up(ctx_.now_ns);
  next_keepalive_ns_ = ctx_.now_ns + (up ? edge_->keepalive_ns : std::min<uint64_t>(edge_->keepalive_ns, 250'000'000ull));
  rte_mbuf* m = rte_pktmbuf_alloc(ctx_.dp.pool);
  if (!m) {
    ctx_.stats.drops[size_t(Drop::NoMbuf)].add();
    return;
  }
  const uint8_t port = edge_->underlay_port;
  MacAddr mac;
  Drop why;
  if (!tx_.resolve_next_hop_on(port, edge_->concentrator.ip, mac, why)) {
    ctx_.drop(m, why);  // (ARP requested: the next keepalive finds the neighbour)
    return;
  }
  const uint32_t frame_len = codec_.layout().frame_len(0);
  const uint32_t outer = uint32_t(kIpv4HeaderLen + kUdpHeaderLen) + frame_len;
  uint8_t* eth = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, uint16_t(kEthHeaderLen + outer)));
  if (!eth) {
    ctx_.drop(m, Drop::NoRoom);
    return;
  }
  tx_.write_ethernet(eth, port, mac.data());
  uint8_t* ip = eth + kEthHeaderLen;
  write_ipv4_header(ip, uint16_t(outer), ctx_.next_ip_id(), kIpProtoUdp, ctx_.dp.ports[port].address,
                    edge_->concentrator.ip.v4());
  uint8_t* udp = ip + kIpv4HeaderLen;
  store_be16(udp, edge_->local_port);
  store_be16(udp + 2, edge_->concentrator.port);
  store_be16(udp + kUdpOffLength, uint16_t(outer - kIpv4HeaderLen));
  store_be16(udp + kUdpOffChecksum, 0);  // the AEAD protects the payload
  uint8_t* frame = udp + kUdpHeaderLen;
  const uint64_t counter = s.tx_counter.fetch_add(1, std::memory_order_relaxed);
  EpochCipher* c = s.tx_keys.find(epoch_of(counter));
  if (!c) {
    ctx_.drop(m, Drop::KeyUnavailable);
    return;
  }
  codec_.write_header(frame, FrameMeta{FrameType::Keepalive, 0, s.index, counter});
  uint8_t iv[kAeadIvLen];
  make_nonce(iv, c->salt, counter);
  const AeadOp op = codec_.seal_op(frame, 0, iv);
  int32_t st = 0;
  c->aead->process({&op, 1}, {&st, 1}, ctx_.id);
  if (st) {
    ctx_.drop(m, Drop::CryptoError);
    return;
  }
  codec_.protect({frame, frame_len});
  ctx_.stats.edge_keepalives_tx.add();
  tx_.send(port, m);
}

}  // namespace dptun
