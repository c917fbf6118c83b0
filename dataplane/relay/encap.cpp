// Client side out, both framings: an inner IPv4 packet gets its inner header, its session's frame header (a relay
// frame's, or a QUIC short header) and outer Ethernet/IPv4/UDP headers (docs/protocol.md), joins the worker's
// pending burst, and leaves encrypted in one AEAD call per session key (aead_burst.hpp), QUIC packets then
// header-protected in one mask call per session key.
#include <rte_mbuf.h>

#include <cstring>

#include "dataplane/relay/encap.hpp"

#include "dataplane/loop/fragment_out.hpp"
#include "crypto/hp_ipsec_mb.hpp"
#include "dataplane/relay/aead_burst.hpp"
#include "packet/checksum.hpp"

namespace dptun {

Encap::Encap(WorkerContext& ctx, Tx& tx, const FlowTable& flows, const NameSlots& names)
    : ctx_(ctx), tx_(tx), flows_(flows), names_(names) {}

// A packet dpgw made itself for a flow's server side (delayed binding): `m` holds the inner IPv4 packet; it is
// wrapped like a client's and joins the pending burst.
bool Encap::inner(rte_mbuf* m, const Flow& f, TunnelSession& s, uint8_t inner_flags, uint8_t proto) {
  const Endpoint peer = s.peer();  // port 0: not known yet
  uint8_t out_port;
  MacAddr mac;
  if (!route_or_drop(m, peer, out_port, mac)) return false;
  const std::span<const uint8_t> nb = names_.held(f);  // the agent picks the target: the hostname
  const uint32_t trailer = nb.empty() ? 0 : uint32_t(nb.size() + 1);
  const uint32_t inner_len = m->pkt_len;
  if (m->nb_segs > 1 || inner_len + trailer > frame_budget(out_port, s))
    return fragments(m, flows_.id_of(f), f.tunnel, s, inner_flags, proto, nb, out_port, mac);
  if (trailer) {
    char* t = rte_pktmbuf_append(m, uint16_t(trailer));
    if (!t) {
      ctx_.drop(m, Drop::NoRoom);
      return false;
    }
    write_name_trailer(reinterpret_cast<uint8_t*>(t), {reinterpret_cast<const char*>(nb.data()), nb.size()});
    inner_flags |= kInnerHasName;
  }
  return packet(m, s, peer, out_port, mac, InnerHeader{flows_.id_of(f), proto, inner_flags}, inner_len + trailer,
                      f.tunnel);
}

void Encap::flush() {
  const uint16_t np = n_pending_;
  n_pending_ = 0;
  if (!np) return;
  Pending* p = pending_.data();
  // Counters (one atomic add per session: a QUIC session's are its packet numbers), headers, nonces; then one AEAD
  // call per key.
  constexpr size_t kMax = std::tuple_size_v<decltype(pending_)>;  // <= 64: one bit per packet in aead_burst
  uint64_t counters[kMax];
  reserve_counters(np, [&](uint16_t i) { return p[i].s; }, counters);
  const EpochCipher* cipher[kMax];
  AeadOp ops[kMax];
  uint8_t iv[kMax][kAeadIvLen];
  int32_t status[kMax];
  uint16_t quic[kMax];  // where the QUIC packets are, after the loop below
  uint16_t nops = 0, nq = 0;
  TunnelSession* key_session = nullptr;  // the key of the previous packet's session and epoch (a burst's usual)
  uint64_t key_epoch = 0;
  EpochCipher* c = nullptr;
  for (uint16_t i = 0; i < np; ++i) {
    if (__builtin_expect(p[i].kind != Kind::Relay, 0)) {
      // QUIC: the packet number and the key generation from the counter (RFC 9001 5.3, 6): the generation's key
      // and IV, its key phase bit; a generation without keys (cannot happen while the RX worker moves it only to
      // made ones) or a number beyond kQuicTxPnLimit is not sent.
      QuicSessionState& q = *p[i].s->quic;
      const QuicKeyGeneration* k = q.tx_generation_of(counters[i]);
      const uint64_t pn = quic_tx_pn(counters[i]);
      if (__builtin_expect(!k || pn >= kQuicTxPnLimit, 0)) {
        ctx_.drop(p[i].m, Drop::KeyUnavailable);
        continue;
      }
      q.codec.write_header(p[i].frame, FrameMeta{FrameType::Data, uint8_t(k->generation & 1 ? kQuicFlagKeyPhase : 0), 0, pn});
      quic_nonce(iv[nops], k->tx_iv.data(), pn);
      ops[nops] = q.codec.seal_op(p[i].frame, p[i].encrypted_len, iv[nops]);
      cipher[nops] = &k->tx;
      quic[nq++] = nops;
      p[nops++] = p[i];
      continue;
    }
    if (p[i].s != key_session || epoch_of(counters[i]) != key_epoch) {
      key_session = p[i].s;
      key_epoch = epoch_of(counters[i]);
      c = key_session->tx_keys.find(key_epoch);
    }
    if (!c) {
      ctx_.drop(p[i].m, Drop::KeyUnavailable);
      continue;
    }
    codec_.write_header(p[i].frame, FrameMeta{FrameType::Data, 0, p[i].s->index, counters[i]});
    make_nonce(iv[nops], c->salt, counters[i]);
    ops[nops] = codec_.seal_op(p[i].frame, p[i].encrypted_len, iv[nops]);
    cipher[nops] = c;
    p[nops++] = p[i];
  }
  aead_burst(cipher, ops, status, nops, ctx_.id);
  if (nq) protect_quic(p, quic, nq, status);
  for (uint16_t i = 0; i < nops; ++i) {
    if (status[i]) {
      ctx_.drop(p[i].m, Drop::CryptoError);
      continue;
    }
    if (p[i].kind == Kind::Relay) codec_.protect({p[i].frame, codec_.layout().frame_len(p[i].encrypted_len)});
    if (__builtin_expect(p[i].kind == Kind::QuicAck || p[i].kind == Kind::QuicControl, 0)) {
      (p[i].kind == Kind::QuicAck ? ctx_.stats.quic_acks_tx : ctx_.stats.quic_control_tx).add();
      tx_.send(p[i].out_port, p[i].m);
      continue;
    }
    uint32_t inner_bytes;
    if (__builtin_expect(p[i].kind == Kind::QuicAppData, 0)) {
      ctx_.stats.masque_datagrams_tx.add();
      inner_bytes = p[i].encrypted_len - p[i].s->quic->codec.app_encrypted_len(0);
    } else {
      inner_bytes = p[i].encrypted_len -
                    (p[i].kind == Kind::Relay ? codec_.layout() : p[i].s->quic->codec.layout()).encrypted_len(0);
    }
    if (__builtin_expect(p[i].tunnel == kEdgeTunnel, 0)) {
      ctx_.stats.edge_to_concentrator_packets.add();
      ctx_.stats.edge_to_concentrator_bytes.add(inner_bytes);
    } else {
      ctx_.stats.encap_packets.add();
      ctx_.stats.encap_bytes.add(inner_bytes);
      TunnelStats& ts = ctx_.tunnel_stats[p[i].tunnel];
      ts.to_agent_packets.add();
      ts.to_agent_bytes.add(inner_bytes);
    }
    tx_.send(p[i].out_port, p[i].m);
  }
}

void Encap::protect_quic(const Pending* p, const uint16_t* quic, uint16_t nq, int32_t* status) {
  alignas(16) uint8_t samples[64 * kHpSampleLen];
  alignas(16) uint8_t masks[64 * kHpMaskLen];
  for (uint16_t k = 0; k < nq; ++k)  // every packet is long enough: the sample starts at the payload (4-byte pn)
    std::memcpy(samples + k * kHpSampleLen, p[quic[k]].frame + kQuicSampleOffset, kHpSampleLen);
  const IpsecMbHeaderProtection& hp = *ctx_.dp.quic_hp;  // (a QUIC session exists only when it does)
  const bool ok = hp_masks_burst(
      nq, [&](uint16_t k) { return p[quic[k]].s; },
      [&](uint16_t k, const uint8_t* s, uint16_t g, uint8_t* out) {
        return hp.masks(p[quic[k]].s->quic->tx_hp, s, g, out, ctx_.id);
      },
      samples, masks);
  for (uint16_t k = 0; k < nq; ++k) {
    uint8_t* f = p[quic[k]].frame;
    if (!ok) {
      status[quic[k]] = -1;  // not sent unprotected: the agent could not read it
      continue;
    }
    quic_protect_header(f[0], f + kQuicPnOffset, masks + k * kHpMaskLen);
  }
}

bool Encap::quic_ack(TunnelSession& s, uint64_t ack_delay) {
  // At most this many ranges: an ACK of a few hundred bytes at worst; the agent's own losses are rare.
  constexpr uint32_t kMaxRanges = 32;
  constexpr uint32_t kMaxFrames = 256;
  const Endpoint peer = s.peer();
  uint8_t out_port;
  MacAddr mac;
  Drop why;
  if (!route_to(peer, out_port, mac, why)) {
    ctx_.stats.drops[size_t(why)].add();
    return false;
  }
  rte_mbuf* m = rte_pktmbuf_alloc(ctx_.dp.pool);
  if (!m) {
    ctx_.stats.drops[size_t(Drop::NoMbuf)].add();
    return false;
  }
  const FrameLayout& l = s.quic->codec.layout();
  const uint32_t head = uint32_t(kEthHeaderLen + kIpv4HeaderLen + kUdpHeaderLen) + l.header_len;
  uint8_t* out = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, uint16_t(head + kMaxFrames + l.tag_len)));
  uint32_t frames = out ? uint32_t(quic_write_ack(s.replay.current(), ack_delay, kMaxRanges, {out + head, kMaxFrames})) : 0;
  if (!frames) {  // (an mbuf holds far more; an empty window: nothing was received)
    rte_pktmbuf_free(m);
    return false;
  }
  // PADDING up to the header-protection sample (RFC 9001 5.4.2): the packet holds at least kQuicMinPacket bytes.
  const uint32_t min_frames = uint32_t(kQuicMinPacket) > l.header_len + l.tag_len
                                  ? uint32_t(kQuicMinPacket) - l.header_len - l.tag_len : 0;
  if (frames < min_frames) {
    std::memset(out + head + frames, kQuicFramePadding, min_frames - frames);
    frames = min_frames;
  }
  rte_pktmbuf_trim(m, uint16_t(kMaxFrames - frames));
  const uint32_t outer = uint32_t(kIpv4HeaderLen + kUdpHeaderLen) + l.frame_len(frames);
  uint8_t* frame = write_outer(out, s, peer, out_port, mac, outer);
  queue(Pending{m, &s, frame, frames, out_port, Kind::QuicAck, s.tunnel});
  return true;
}

bool Encap::quic_frames(TunnelSession& s, rte_mbuf* m, Endpoint to) {
  uint8_t out_port;
  MacAddr mac;
  if (!route_or_drop(m, to, out_port, mac)) return false;
  const FrameLayout& l = s.quic->codec.layout();
  uint32_t frames = m->pkt_len;
  const uint32_t min_frames =
      uint32_t(kQuicMinPacket) > l.header_len + l.tag_len ? uint32_t(kQuicMinPacket) - l.header_len - l.tag_len : 0;
  if (frames < min_frames) {  // PADDING up to the header-protection sample (RFC 9001 5.4.2)
    char* pad = rte_pktmbuf_append(m, uint16_t(min_frames - frames));
    if (!pad) {
      ctx_.drop(m, Drop::NoRoom);
      return false;
    }
    std::memset(pad, kQuicFramePadding, min_frames - frames);
    frames = min_frames;
  }
  const uint32_t head = uint32_t(kEthHeaderLen + kIpv4HeaderLen + kUdpHeaderLen) + l.header_len;
  uint8_t* out = reinterpret_cast<uint8_t*>(rte_pktmbuf_prepend(m, uint16_t(head)));
  if (m->nb_segs > 1 || !out || !rte_pktmbuf_append(m, uint16_t(l.tag_len))) {
    ctx_.drop(m, Drop::NoRoom);
    return false;
  }
  const uint32_t outer = uint32_t(kIpv4HeaderLen + kUdpHeaderLen) + l.frame_len(frames);
  uint8_t* frame = write_outer(out, s, to, out_port, mac, outer);
  queue(Pending{m, &s, frame, frames, out_port, Kind::QuicControl, s.tunnel});
  return true;
}

bool Encap::app_datagram(rte_mbuf* m, TunnelSession& s) {
  const Endpoint peer = s.peer();
  uint8_t out_port;
  MacAddr mac;
  if (!route_or_drop(m, peer, out_port, mac)) return false;
  const uint32_t len = m->pkt_len;
  if (len > app_datagram_budget(out_port, s)) {
    ctx_.drop(m, Drop::MasqueTooLarge);
    return false;
  }
  const QuicDatagramCodec& codec = s.quic->codec;
  const FrameLayout& l = codec.layout();
  const uint32_t encrypted = codec.app_encrypted_len(len);
  uint8_t* out = reinterpret_cast<uint8_t*>(
      rte_pktmbuf_prepend(m, uint16_t(kEthHeaderLen + kIpv4HeaderLen + kUdpHeaderLen + l.inner_offset())));
  if (m->nb_segs > 1 || !out || !rte_pktmbuf_append(m, uint16_t(l.tag_len))) {
    ctx_.drop(m, Drop::NoRoom);
    return false;
  }
  const uint32_t outer = uint32_t(kIpv4HeaderLen + kUdpHeaderLen) + l.frame_len(encrypted);
  uint8_t* frame = write_outer(out, s, peer, out_port, mac, outer);
  codec.write_app_datagram(frame);
  queue(Pending{m, &s, frame, encrypted, out_port, Kind::QuicAppData, s.tunnel});
  return true;
}

bool Encap::fragments(rte_mbuf* m, uint64_t flow_id, uint16_t tunnel, TunnelSession& s, uint8_t inner_flags,
                      uint8_t proto, std::span<const uint8_t> name, uint8_t out_port, const MacAddr& mac) {
  const uint8_t* ip = rte_pktmbuf_mtod(m, const uint8_t*);
  const uint32_t hl = uint32_t(ip[0] & 0x0f) * 4;
  const uint32_t total = load_be16(ip + kIpv4OffTotalLen);
  const uint32_t trailer = name.empty() ? 0 : uint32_t(name.size() + 1);
  if (trailer) inner_flags |= kInnerHasName;
  const FragmentPlan plan = plan_ipv4_fragments(hl, total - hl, frame_budget(out_port, s) - trailer);
  if (!plan.count || plan.count > kMaxFragmentsOut || total > m->pkt_len) {
    ctx_.drop(m, Drop::TooBig);
    return false;
  }
  rte_mbuf* out[kMaxFragmentsOut];
  if (rte_pktmbuf_alloc_bulk(ctx_.dp.pool, out, plan.count) != 0) {
    ctx_.drop(m, Drop::NoMbuf);
    return false;
  }
  uint8_t header[60];
  std::memcpy(header, ip, hl);
  const uint16_t id = ctx_.next_frag_id();
  const Endpoint peer = s.peer();
  for (uint32_t k = 0; k < plan.count; ++k) {
    const uint32_t off = k * plan.chunk;
    const uint32_t len = std::min(plan.chunk, total - hl - off);
    uint8_t* p = build_fragment(out[k], m, {header, hl}, id, off, len, k + 1 < plan.count, 0, trailer);
    if (!p) {  // (m is shorter than its header says: not after the checks above)
      for (uint32_t j = k; j < plan.count; ++j) rte_pktmbuf_free(out[j]);
      ctx_.stats.drops[size_t(Drop::NoRoom)].add();
      break;
    }
    const uint32_t fh = off == 0 ? hl : uint32_t(kIpv4HeaderLen);
    if (trailer) write_name_trailer(p + fh + len, {reinterpret_cast<const char*>(name.data()), name.size()});
    if (packet(out[k], s, peer, out_port, mac, InnerHeader{flow_id, proto, inner_flags}, fh + len + trailer, tunnel))
      ctx_.stats.fragments_tx.add();
  }
  rte_pktmbuf_free(m);
  return true;
}

}  // namespace dptun
