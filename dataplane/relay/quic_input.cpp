// Agent -> client over the QUIC framing: short-header packets of QUIC sessions, opened in bursts on the sessions'
// RX workers, and the ACKs they ask for (dataplane/relay/quic_input.hpp).
#include "dataplane/relay/quic_input.hpp"

#include <rte_mbuf.h>
#include <rte_ring.h>

#include <cstring>

#include "dataplane/relay/aead_burst.hpp"
#include "dataplane/relay/frame_admit.hpp"
#include "dataplane/tables/quic_session.hpp"

namespace dptun {

void QuicInput::input(uint8_t port, rte_mbuf** pkts, const PacketInfo* info, uint16_t n) {
  struct Pending {
    rte_mbuf* m;
    TunnelSession* s;
    FrameMeta meta;
    std::span<uint8_t> frame;
    const PacketInfo* pi;
    uint64_t generation;  // the key generation it was opened with
  };
  Pending p[kBurst];
  const EpochCipher* cipher[kBurst];
  AeadOp ops[kBurst];
  uint8_t iv[kBurst][kAeadIvLen];
  int32_t status[kBurst];
  uint16_t np = 0;

  // The packets this worker opens, with their header-protection samples side by side.
  Pending c[kBurst];
  alignas(16) uint8_t samples[kBurst * kHpSampleLen];
  alignas(16) uint8_t masks[kBurst * kHpMaskLen];
  uint16_t nc = 0;
  for (uint16_t i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    const PacketInfo& pi = info[i];
    const std::span<uint8_t> frame{rte_pktmbuf_mtod(m, uint8_t*) + pi.l4_offset + kUdpHeaderLen,
                                   pi.l4_len - uint32_t(kUdpHeaderLen)};
    // Only a short header long enough for its sample can be a QUIC session's; anything else (long headers of
    // handshakes, other protocols) is for the host: dpctld's QUIC port.
    if (frame.size() < kQuicMinPacket || (frame[0] & (kQuicHeaderForm | kQuicFixedBit)) != kQuicFixedBit) {
      local_.closed_port(port, m, pi);
      continue;
    }
    TunnelSession* s = ctx_.dp.sessions.find(load_be32(frame.data() + 1));
    if (!s || !s->quic) {  // a connection still with dpctld (index 0 before registration), or gone
      local_.closed_port(port, m, pi);
      continue;
    }
    if (!s->quic->codec.accepts_cid(frame)) {  // none of the connection IDs dpctld issued it: before any AES
      ctx_.drop(m, Drop::QuicBadConnectionId);
      continue;
    }
    if (s->rx_worker != ctx_.id) {  // the replay window and the hp context have a single owner
      tx_.handoff(s->rx_worker, m, HandoffMeta{0, 0, HandoffMeta::RawFrame, port});
      continue;
    }
    QuicDatagramCodec::sample_of(frame, samples + nc * kHpSampleLen);
    c[nc++] = Pending{m, s, FrameMeta{}, frame, &pi, 0};
  }
  if (!nc) return;
  // Header-protection masks: one call per session's key in the burst (usually one).
  const bool masked = hp_masks_burst(
      nc, [&](uint16_t k) { return c[k].s; },
      [&](uint16_t k, const uint8_t* smp, uint16_t g, uint8_t* out) { return c[k].s->quic->codec.rx_masks(smp, g, out); },
      samples, masks);
  if (!masked) {
    for (uint16_t k = 0; k < nc; ++k) ctx_.drop(c[k].m, Drop::CryptoError);
    return;
  }

  for (uint16_t k = 0; k < nc; ++k) {
    rte_mbuf* m = c[k].m;
    TunnelSession* s = c[k].s;
    const std::span<uint8_t> frame = c[k].frame;
    QuicSessionState& q = *s->quic;
    FrameMeta meta;
    const FrameError fe = q.codec.read_header_masked(frame, masks + k * kHpMaskLen,
                                                     s->replay.empty() ? kQuicNoAck : s->replay.top(), meta);
    if (fe != FrameError::None) {
      ctx_.drop(m, fe == FrameError::BadConnectionId ? Drop::QuicBadConnectionId : Drop::FrameMalformed);
      continue;
    }
    TunnelStats& ts = ctx_.tunnel_stats[s->tunnel];
    if (!s->replay.check(meta.counter)) {
      ts.replay.add();
      ctx_.drop(m, Drop::Replay);
      continue;
    }
    // The key generation (RFC 9001 6): the current one when the key phase matches; with the other phase, the next
    // one for a number above the first of the current generation (the agent's key update, 6.3), the previous one
    // below it while its keys are kept (reordered, 6.5). Anything else has no key.
    const uint64_t g = q.rx_generation.load(std::memory_order_relaxed);
    uint64_t want = g;
    if (bool(meta.flags & kQuicFlagKeyPhase) != bool(g & 1)) {
      if (meta.counter > q.rx_first_pn)
        want = g + 1;
      else if (g > 0 && meta.counter < q.rx_first_pn)
        want = g - 1;
      else
        want = kNoEpoch;
    }
    const QuicKeyGeneration* keys = want == kNoEpoch ? nullptr : q.generation(want);
    if (!keys) {
      ts.key_unavailable.add();
      ctx_.drop(m, Drop::KeyUnavailable);
      continue;
    }
    quic_nonce(iv[np], keys->rx_iv.data(), meta.counter);
    ops[np] = q.codec.open_op(frame, iv[np]);
    cipher[np] = &keys->rx_key(QuicDatagramCodec::aad_len(frame) - uint32_t(kQuicPnOffset));
    p[np++] = Pending{m, s, meta, frame, c[k].pi, want};
  }
  if (!np) return;
  aead_burst(cipher, ops, status, np, ctx_.id);

  TunnelSession* ack[kBurst];  // sessions that received ack-eliciting packets in this burst
  uint16_t nack = 0;
  for (uint16_t i = 0; i < np; ++i) {
    rte_mbuf* m = p[i].m;
    TunnelSession& s = *p[i].s;
    TunnelStats& ts = ctx_.tunnel_stats[s.tunnel];
    // An authenticated packet newer than all before from another address than the endpoint does not move it (as it
    // would a relay session's): the address is proposed to the control lcore, which validates it first (RFC 9000
    // 8.2, 9.3; new_path).
    // RFC 9000 17.3.1: reserved bits set after protection is removed (PROTOCOL_VIOLATION): nothing of it is taken.
    if (status[i] == 0 && (p[i].frame[0] & kQuicShortReserved)) {
      ctx_.drop(m, Drop::FrameMalformed);
      continue;
    }
    TunnelInput::PathNews path = TunnelInput::PathNews::Older;
    if (!tunnel_.take_opened(m, s, p[i].meta, status[i], *p[i].pi, &path)) continue;
    QuicSessionState& q = *s.quic;
    const QuicPayload payload = QuicDatagramCodec::payload(p[i].frame);
    uint8_t slow_flags = 0;
    const Endpoint from{Ipv4{p[i].pi->src_ip}, p[i].pi->src_port};
    if (q.proposed.port && from == q.proposed)  // the 3x anti-amplification budget counts every packet from it
      q.proposed_rx_bytes.store(q.proposed_rx_bytes.load(std::memory_order_relaxed) + p[i].pi->l4_len -
                                    uint32_t(kUdpHeaderLen),
                                std::memory_order_relaxed);
    // The endpoint follows the highest-numbered non-probing packet (RFC 9000 9.3), once its address is validated.
    if (!payload.probing_only && path == TunnelInput::PathNews::Elsewhere &&
        (from != q.proposed || ctx_.now_ns - q.proposed_ns >= kQuicPathReproposeNs)) {
      q.proposed = from;
      q.proposed_ns = ctx_.now_ns;
      q.proposed_rx_bytes.store(p[i].pi->l4_len - uint32_t(kUdpHeaderLen), std::memory_order_relaxed);
      slow_flags |= QuicSlowPathHeader::kNewPath;
    } else if (!payload.probing_only && path == TunnelInput::PathNews::Endpoint && q.proposed.port) {
      q.proposed = Endpoint{};  // back on the endpoint before the new address was validated: that migration is over
      slow_flags |= QuicSlowPathHeader::kBackHome;
    }
    if (p[i].generation != q.rx_generation.load(std::memory_order_relaxed)) {
      if (p[i].generation > q.rx_generation.load(std::memory_order_relaxed)) follow_key_update(s, p[i].meta.counter);
    } else if (p[i].meta.counter < q.rx_first_pn) {
      q.rx_first_pn = p[i].meta.counter;  // (reordered within the new generation: its first number is lower)
    }
    if (s.replay.top() == p[i].meta.counter) q.top_rx_ns = ctx_.now_ns;  // the ACK's largest: its delay counts from here
    if (payload.has_ack) {
      if (q.largest_acked_by_peer == kQuicNoAck || payload.largest_acked > q.largest_acked_by_peer)
        q.largest_acked_by_peer = payload.largest_acked;
      maybe_update_keys(s);
    }
    // Acknowledged: what asks for it (RFC 9000 13.2.1: every frame but ACK, PADDING, CONNECTION_CLOSE), the slow
    // path's frames included (the control lcore acts on them; they are in the replay window already).
    if (payload.ack_eliciting) {
      if (!q.ack_wanted_ns) q.ack_wanted_ns = ctx_.now_ns;
      uint16_t k = 0;
      while (k < nack && ack[k] != &s) ++k;
      if (k == nack) ack[nack++] = &s;
    }
    if (payload.kind == QuicPayload::Kind::SlowPath) slow_flags |= QuicSlowPathHeader::kFrames;
    if (__builtin_expect(slow_flags != 0, 0)) {
      // Rare: the frames (or only the news of a new path) go to the control lcore as a copy; the fast path goes on
      // with the packet's DATAGRAMs below.
      if (!to_slow_path(s, p[i].frame, p[i].meta.counter, *p[i].pi, slow_flags) &&
          (slow_flags & QuicSlowPathHeader::kNewPath))
        q.proposed = Endpoint{};  // the news did not go: the next packet from there proposes it again
      if (payload.datagrams > 1) extra_datagrams(s, p[i].frame);
    }
    switch (payload.kind) {
      case QuicPayload::Kind::Datagram:
      case QuicPayload::Kind::SlowPath: {
        if (payload.kind == QuicPayload::Kind::SlowPath && !payload.datagrams) {
          rte_pktmbuf_free(m);  // (its frames went to the control lcore)
          break;
        }
        if (__builtin_expect(s.masque != nullptr, 0)) {  // a MASQUE client's HTTP Datagram
          std::span<uint8_t> data;
          if (!QuicDatagramCodec::datagram_data(p[i].frame, payload, data)) {
            ctx_.drop(m, Drop::FrameMalformed);
            break;
          }
          tunnel_.count_from_agent(s, uint32_t(data.size()));
          masque_.input(m, data, s);
          break;
        }
        InnerHeader ih;
        std::span<uint8_t> inner;
        if (!QuicDatagramCodec::read_datagram(p[i].frame, payload, ih, inner)) {
          ctx_.drop(m, Drop::FrameMalformed);
          break;
        }
        tunnel_.from_agent(m, ih, inner, s);
        break;
      }
      case QuicPayload::Kind::NoDatagram:  // ACK, PING, PADDING: what they say is taken; nothing to deliver
        if (payload.ack_eliciting) {  // a PING: the agent's keepalive (an ACK-only packet is not one)
          ts.keepalives.add();
          ctx_.stats.keepalives_rx.add();
        }
        rte_pktmbuf_free(m);
        break;
      case QuicPayload::Kind::Malformed:
        ctx_.drop(m, Drop::FrameMalformed);
        break;
    }
  }
  for (uint16_t k = 0; k < nack; ++k) want_ack(*ack[k]);
}

bool QuicInput::to_slow_path(TunnelSession& s, std::span<const uint8_t> frame, uint64_t pn, const PacketInfo& pi,
                             uint8_t flags) {
  QuicSessionState& q = *s.quic;
  if (ctx_.now_ns - q.slow_window_ns >= QuicSessionState::kSlowPathWindowNs) {
    q.slow_window_ns = ctx_.now_ns;
    q.slow_in_window = 0;
  }
  if (q.slow_in_window >= QuicSessionState::kSlowPathPerWindow) {
    ctx_.stats.drops[size_t(Drop::QuicSlowPathLimit)].add();
    return false;
  }
  ++q.slow_in_window;
  const uint32_t h = QuicDatagramCodec::aad_len(frame);
  const std::span<const uint8_t> frames =
      flags & QuicSlowPathHeader::kFrames ? frame.subspan(h, frame.size() - h - kAeadTagLen) : std::span<const uint8_t>{};
  rte_mbuf* c = rte_pktmbuf_alloc(ctx_.dp.pool);
  if (!c) {
    ctx_.stats.drops[size_t(Drop::NoMbuf)].add();
    return false;
  }
  char* out = rte_pktmbuf_append(c, uint16_t(sizeof(QuicSlowPathHeader) + frames.size()));
  if (!out) {  // (frames of one packet fit an mbuf: it came in one)
    ctx_.drop(c, Drop::NoRoom);
    return false;
  }
  const QuicSlowPathHeader hdr{s.index, s.serial, Endpoint{Ipv4{pi.src_ip}, pi.src_port}, pn,
                               pi.l4_len - uint32_t(kUdpHeaderLen), flags};
  std::memcpy(out, &hdr, sizeof hdr);
  if (!frames.empty()) std::memcpy(out + sizeof hdr, frames.data(), frames.size());
  ctx_.dp.meta(c) = HandoffMeta{0, s.index, HandoffMeta::QuicSlowPath, 0};
  if (rte_ring_mp_enqueue(ctx_.dp.quic_slow_ring, c) != 0) {
    ctx_.drop(c, Drop::QuicSlowPathFull);
    return false;
  }
  ctx_.stats.to_control.add();
  return true;
}

void QuicInput::extra_datagrams(TunnelSession& s, std::span<const uint8_t> frame) {
  const uint32_t h = QuicDatagramCodec::aad_len(frame);
  QuicFrameReader r(frame.subspan(h, frame.size() - h - kAeadTagLen));
  QuicFrame f;
  bool first = true;
  while (r.next(f)) {
    if (f.type != kQuicFrameDatagram && f.type != kQuicFrameDatagramLen) continue;
    if (first) {  // the packet's own mbuf carries the first
      first = false;
      continue;
    }
    rte_mbuf* c = rte_pktmbuf_alloc(ctx_.dp.pool);
    if (!c) {
      ctx_.stats.drops[size_t(Drop::NoMbuf)].add();
      continue;
    }
    uint8_t* out = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(c, uint16_t(f.data.size())));
    InnerHeader ih;
    std::span<uint8_t> inner;
    if (out) std::memcpy(out, f.data.data(), f.data.size());
    if (s.masque && out) {  // a MASQUE client's HTTP Datagram
      tunnel_.count_from_agent(s, uint32_t(f.data.size()));
      masque_.input(c, {out, f.data.size()}, s);
      continue;
    }
    if (!out || !read_inner_plaintext({out, f.data.size()}, ih, inner)) {
      ctx_.drop(c, Drop::FrameMalformed);
      continue;
    }
    tunnel_.from_agent(c, ih, inner, s);
  }
}

void QuicInput::follow_key_update(TunnelSession& s, uint64_t pn) {
  QuicSessionState& q = *s.quic;
  const uint64_t g = q.rx_generation.load(std::memory_order_relaxed) + 1;
  q.rx_first_pn = pn;
  q.rx_generation.store(g, std::memory_order_release);  // the control lcore then retires g - 2, makes g + 1
  // RFC 9001 6.2: the send keys follow before the ACK of this packet goes (it joins Encap's burst after this).
  // (tx_generation is g already when dpgw started this update itself and the agent has now answered it: not
  // counted as the agent's.)
  if (q.tx_generation < g) {
    ctx_.stats.quic_key_updates_rx.add();
    const uint64_t before = s.tx_counter.fetch_add(uint64_t(1) << kQuicTxGenShift, std::memory_order_relaxed);
    q.tx_generation = g;
    q.tx_first_pn = quic_tx_pn(before);
  }
}

void QuicInput::maybe_update_keys(TunnelSession& s) {
  QuicSessionState& q = *s.quic;
  // RFC 9001 6.1: not before the agent has acknowledged a packet of the current generation, nor before it has
  // answered dpgw's previous update (its packets arrive in tx_generation); the next keys must be ready.
  if (q.tx_generation != q.rx_generation.load(std::memory_order_relaxed)) return;
  if (q.largest_acked_by_peer == kQuicNoAck || q.largest_acked_by_peer < q.tx_first_pn) return;
  const uint64_t sent = quic_tx_pn(s.tx_counter.load(std::memory_order_relaxed)) - q.tx_first_pn;
  if (sent < q.update_after_packets || !q.generation(q.tx_generation + 1)) return;
  const uint64_t before = s.tx_counter.fetch_add(uint64_t(1) << kQuicTxGenShift, std::memory_order_relaxed);
  ++q.tx_generation;
  q.tx_first_pn = quic_tx_pn(before);
  ctx_.stats.quic_key_updates_tx.add();
}

void QuicInput::want_ack(TunnelSession& s) {
  QuicSessionState& q = *s.quic;
  if (ctx_.now_ns - q.ack_sent_ns >= kAckIntervalNs) {  // (never sent: ack_sent_ns 0, long ago)
    send_ack(s);
    return;
  }
  if (q.ack_listed) return;
  if (n_owed_ == kMaxOwedAcks) {  // more sessions waiting than the list holds: this one's ACK goes early
    send_ack(s);
    return;
  }
  owed_[n_owed_++] = Owed{s.index, s.serial};
  q.ack_listed = true;
}

void QuicInput::send_ack(TunnelSession& s) {
  QuicSessionState& q = *s.quic;
  const uint64_t delay_ns = ctx_.now_ns > q.top_rx_ns ? ctx_.now_ns - q.top_rx_ns : 0;
  encap_.quic_ack(s, (delay_ns / 1000) >> kAckDelayExponent);
  // (Not queued -- no next hop, no mbuf; counted there -- is not retried: the agent's next packet asks again.)
  q.ack_wanted_ns = 0;
  q.ack_sent_ns = ctx_.now_ns;
}

void QuicInput::send_owed_acks() {
  uint16_t kept = 0;
  for (uint16_t k = 0; k < n_owed_; ++k) {
    const Owed o = owed_[k];
    TunnelSession* s = ctx_.dp.sessions.find(o.index);
    if (!s || s->serial != o.serial || !s->quic || s->rx_worker != ctx_.id) continue;  // the session went
    QuicSessionState& q = *s->quic;
    if (q.ack_wanted_ns && ctx_.now_ns - q.ack_sent_ns < kAckIntervalNs) {
      owed_[kept++] = o;
      continue;
    }
    q.ack_listed = false;
    if (q.ack_wanted_ns) send_ack(*s);  // (0: a burst's ACK went in the meantime)
  }
  n_owed_ = kept;
}

}  // namespace dptun
