// Agent -> client over the QUIC framing: short-header packets of QUIC sessions, opened in bursts on the sessions'
// RX workers (dataplane/relay/quic_input.hpp).
#include "dataplane/relay/quic_input.hpp"

#include <rte_mbuf.h>

#include <cstring>

#include "dataplane/relay/aead_burst.hpp"
#include "dataplane/relay/frame_admit.hpp"
#include "dataplane/tables/quic_session.hpp"

namespace dptun {

namespace {

// Masks for `n` packets whose samples lie side by side: one call for each session's receive key, the samples of a
// session gathered when the burst mixes sessions. False when a call failed.
template <typename Pending>
bool masks_by_session(const Pending* c, uint16_t n, const uint8_t* samples, uint8_t* masks) {
  uint16_t same = 1;
  while (same < n && c[same].s == c[0].s) ++same;
  if (same == n) return c[0].s->quic->codec.rx_masks(samples, n, masks);
  uint64_t pending = n == 64 ? ~uint64_t(0) : (uint64_t(1) << n) - 1;
  alignas(16) uint8_t group_samples[kBurst * kHpSampleLen];
  alignas(16) uint8_t group_masks[kBurst * kHpMaskLen];
  uint16_t index[kBurst];
  while (pending) {
    const TunnelSession* s = c[__builtin_ctzll(pending)].s;
    uint16_t g = 0;
    for (uint64_t rest = pending; rest; rest &= rest - 1) {
      const uint16_t i = uint16_t(__builtin_ctzll(rest));
      if (c[i].s != s) continue;
      std::memcpy(group_samples + g * kHpSampleLen, samples + i * kHpSampleLen, kHpSampleLen);
      index[g++] = i;
      pending &= ~(uint64_t(1) << i);
    }
    if (!s->quic->codec.rx_masks(group_samples, g, group_masks)) return false;
    for (uint16_t k = 0; k < g; ++k) std::memcpy(masks + index[k] * kHpMaskLen, group_masks + k * kHpMaskLen, kHpMaskLen);
  }
  return true;
}

}  // namespace

void QuicInput::input(uint8_t port, rte_mbuf** pkts, const PacketInfo* info, uint16_t n) {
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
    if (s->rx_worker != ctx_.id) {  // the replay window and the hp context have a single owner
      tx_.handoff(s->rx_worker, m, HandoffMeta{0, 0, HandoffMeta::RawFrame, port});
      continue;
    }
    QuicDatagramCodec::sample_of(frame, samples + nc * kHpSampleLen);
    c[nc++] = Pending{m, s, FrameMeta{}, frame, &pi};
  }
  if (!nc) return;
  // Header-protection masks: one call per session's key in the burst (usually one).
  if (!masks_by_session(c, nc, samples, masks)) {
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
    if (bool(meta.flags & kQuicFlagKeyPhase) != bool(q.rx_generation & 1)) {  // a key update: not followed yet
      ts.key_unavailable.add();
      ctx_.drop(m, Drop::KeyUnavailable);
      continue;
    }
    quic_nonce(iv[np], q.rx_iv.data(), meta.counter);
    ops[np] = q.codec.open_op(frame, iv[np]);
    cipher[np] = &q.rx_key(QuicDatagramCodec::aad_len(frame) - uint32_t(kQuicPnOffset));
    p[np++] = Pending{m, s, meta, frame, c[k].pi};
  }
  if (!np) return;
  aead_burst(cipher, ops, status, np, ctx_.id);

  for (uint16_t i = 0; i < np; ++i) {
    rte_mbuf* m = p[i].m;
    TunnelSession& s = *p[i].s;
    TunnelStats& ts = ctx_.tunnel_stats[s.tunnel];
    // As for relay frames, only an authenticated packet newer than all before moves the agent's endpoint. (QUIC
    // asks for path validation before sending much to a new address, RFC 9000 9; that comes with the slow path.)
    if (!tunnel_.take_opened(m, s, p[i].meta, status[i], *p[i].pi)) continue;
    const QuicPayload payload = QuicDatagramCodec::payload(p[i].frame);
    if (payload.has_ack) s.quic->largest_acked_by_peer = payload.largest_acked;
    switch (payload.kind) {
      case QuicPayload::Kind::Datagram: {
        InnerHeader ih;
        std::span<uint8_t> inner;
        if (!s.quic->codec.read_inner(p[i].frame, ih, inner)) {
          ctx_.drop(m, Drop::FrameMalformed);
          break;
        }
        tunnel_.from_agent(m, ih, inner, s);
        break;
      }
      case QuicPayload::Kind::NoDatagram:  // ACK, PING, PADDING: what they say is taken; nothing to deliver
        ts.keepalives.add();
        ctx_.stats.keepalives_rx.add();
        rte_pktmbuf_free(m);
        break;
      case QuicPayload::Kind::SlowPath:
        ctx_.drop(m, Drop::QuicSlowPath);
        break;
      case QuicPayload::Kind::Malformed:
        ctx_.drop(m, Drop::FrameMalformed);
        break;
    }
  }
}

}  // namespace dptun
