// The QUIC slow path on the control lcore: path validation, the agent's PATH_CHALLENGE and CONNECTION_CLOSE, the
// rare frames counted (dataplane/main_lcore/quic_slow_path.hpp).
#include "dataplane/main_lcore/quic_slow_path.hpp"

#include <openssl/rand.h>
#include <rte_mbuf.h>
#include <rte_random.h>
#include <rte_ring.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "common/log.hpp"
#include "dataplane/loop/worker.hpp"
#include "dataplane/tables/quic_session.hpp"

namespace dptun {

namespace {
size_t frame_slot(uint64_t type) {
  if (type == kQuicFrameDatagram || type == kQuicFrameDatagramLen) return kQuicFrameSlotDatagram;
  if (type >= kQuicFrameStream && type <= kQuicFrameStream + 7) return kQuicFrameStream;
  return type <= kQuicFrameHandshakeDone ? size_t(type) : kQuicFrameSlotDatagram;  // (no other type parses)
}

// Printable ASCII, at most `max` bytes, the rest marked: a reason phrase comes from the network.
std::string sanitized(std::span<const uint8_t> text, size_t max) {
  std::string out;
  for (size_t i = 0; i < text.size() && i < max; ++i) out += text[i] >= 0x20 && text[i] < 0x7f && text[i] != '"' ? char(text[i]) : '?';
  if (text.size() > max) out += "...";
  return out;
}

void random_path_data(std::array<uint8_t, kQuicPathDataLen>& d) {
  if (RAND_bytes(d.data(), int(d.size())) == 1) return;
  const uint64_t r = rte_rand();  // (OpenSSL's generator failed: DPDK's, still unpredictable enough to an off-path peer)
  std::memcpy(d.data(), &r, d.size());
}
}  // namespace

TunnelSession* QuicSlowPath::session(uint32_t index, uint32_t serial) const {
  auto it = state_.sessions().find(index);
  if (it == state_.sessions().end() || it->second->serial != serial || !it->second->quic) return nullptr;
  return it->second;
}

const char* QuicSlowPath::tunnel_name(const TunnelSession& s) const {
  const TunnelPool* pool = dp_.tunnels.get(s.tunnel);
  return pool ? pool->name.c_str() : "?";
}

void QuicSlowPath::input(rte_mbuf* m, uint64_t now_ns) {
  QuicSlowPathHeader h;
  if (m->nb_segs == 1 && m->data_len >= sizeof h) {
    std::memcpy(&h, rte_pktmbuf_mtod(m, const void*), sizeof h);
    handle(h, {rte_pktmbuf_mtod_offset(m, const uint8_t*, sizeof h), m->data_len - sizeof h}, now_ns);
  }
  rte_pktmbuf_free(m);
}

void QuicSlowPath::handle(const QuicSlowPathHeader& h, std::span<const uint8_t> frames, uint64_t now_ns) {
  TunnelSession* s = session(h.session, h.serial);
  if (!s) return;  // the session went since
  QuicControlStats& st = dp_.quic_control;
  if (h.flags & QuicSlowPathHeader::kNewPath) new_path(*s, h.from, now_ns);
  if (h.flags & QuicSlowPathHeader::kBackHome) back_home(*s);
  if (!(h.flags & QuicSlowPathHeader::kFrames)) return;
  st.slow_path_rx.add();
  // Two passes: a packet whose frames do not all parse is not acted on at all (the fast path found them whole; a
  // worker's copy cannot differ, but the bytes are the agent's).
  QuicFrameReader check(frames);
  QuicFrame f;
  while (check.next(f)) {
  }
  if (check.malformed() || frames.empty()) {
    st.frames_malformed.add();
    return;
  }
  QuicFrameReader r(frames);
  uint32_t seen = 0;  // frame types counted once per packet (PADDING is a frame per byte)
  while (r.next(f)) {
    const size_t slot = frame_slot(f.type);
    if (!(seen >> slot & 1)) st.frames_rx[slot].add();
    seen |= uint32_t(1) << slot;
    switch (f.type) {
      case kQuicFramePathChallenge:
        answer_challenge(*s, h.from, h.packet_len, f.path);
        break;
      case kQuicFramePathResponse:
        path_response(*s, f.path);
        break;
      case kQuicFrameConnectionClose:
      case kQuicFrameConnectionCloseApp:
        connection_close(*s, f);
        return;  // the session is gone
      case kQuicFrameNewConnectionId: {
        // dpgw sends with the connection ID dpctld handed over (the agent's first, sequence 0, QuicSessionState::
        // peer_cid). A Retire Prior To above 0 asks for it to be retired (RFC 9000 19.15); the codec's DCID is read by
        // every worker without synchronisation, so it is not switched here: noted, once per session.
        if (f.retire_prior_to > 0) {
          auto [it, fresh] = cid_noted_.try_emplace(s->index, s->serial);
          if (fresh || it->second != s->serial) {
            it->second = s->serial;
            st.peer_cid_retired.add();
            LOG_WARN("tunnel %s session %u: the agent retired the connection ID dpgw sends with (NEW_CONNECTION_ID "
                     "sequence %llu, Retire Prior To %llu); dpgw keeps using it (switching is not built)",
                     tunnel_name(*s), s->index, (unsigned long long)f.sequence, (unsigned long long)f.retire_prior_to);
          }
        }
        break;
      }
      default:  // counted: acknowledged already, nothing for dpgw to do
        break;
    }
  }
}

uint32_t QuicSlowPath::frames_len(uint32_t frame_len, uint64_t budget) {
  constexpr uint32_t kOverhead = uint32_t(kQuicPnOffset + 4 + kAeadTagLen);  // 1-RTT header (4-byte pn) and tag
  const uint32_t full = uint32_t(kQuicMinPathDatagram) - kOverhead;
  if (budget >= kQuicMinPathDatagram) return full;
  const uint32_t bare = std::max<uint32_t>(frame_len, uint32_t(kQuicMinPacket) > kOverhead ? uint32_t(kQuicMinPacket) - kOverhead : 0);
  if (budget < bare + kOverhead) return 0;
  return uint32_t(std::min<uint64_t>(full, budget - kOverhead));
}

bool QuicSlowPath::send(TunnelSession& s, const Endpoint& to, std::span<const uint8_t> frame, uint32_t padded_len) {
  rte_mbuf* m = rte_pktmbuf_alloc(dp_.pool);
  const uint32_t len = std::max<uint32_t>(padded_len, uint32_t(frame.size()));
  char* out = m ? rte_pktmbuf_append(m, uint16_t(sizeof(QuicSendHeader) + len)) : nullptr;
  if (!out) {
    if (m) rte_pktmbuf_free(m);
    dp_.quic_control.send_full.add();
    return false;
  }
  const QuicSendHeader h{s.serial, to};
  std::memcpy(out, &h, sizeof h);
  std::memcpy(out + sizeof h, frame.data(), frame.size());
  std::memset(out + sizeof h + frame.size(), kQuicFramePadding, len - frame.size());
  dp_.meta(m) = HandoffMeta{0, s.index, HandoffMeta::QuicSend, 0};
  if (s.rx_worker >= dp_.workers.size() || rte_ring_mp_enqueue(dp_.workers[s.rx_worker]->handoff_ring(), m) != 0) {
    rte_pktmbuf_free(m);
    dp_.quic_control.send_full.add();
    return false;
  }
  return true;
}

void QuicSlowPath::new_path(TunnelSession& s, const Endpoint& from, uint64_t now_ns) {
  if (s.endpoint.load() == from) return;  // (validated meanwhile)
  auto [it, fresh] = paths_.try_emplace(s.index);
  Path& p = it->second;
  if (!fresh && p.serial == s.serial && p.candidate == from) return;  // being validated
  p = Path{};
  p.serial = s.serial;
  p.candidate = from;
  p.started_ns = now_ns;
  challenge(s, p, now_ns);
}

void QuicSlowPath::back_home(TunnelSession& s) {
  auto it = paths_.find(s.index);
  if (it == paths_.end() || it->second.serial != s.serial) return;
  // A newer non-probing packet came from the endpoint: the endpoint stays, and a late PATH_RESPONSE from the
  // candidate moves nothing (RFC 9000 9.3: the address of the highest-numbered non-probing packet).
  dp_.quic_control.paths_abandoned.add();
  LOG_DEBUG("tunnel %s session %u: the agent is back on %s; validation of %s dropped", tunnel_name(s), s.index,
            s.endpoint.load().str().c_str(), it->second.candidate.str().c_str());
  paths_.erase(it);
}

void QuicSlowPath::challenge(TunnelSession& s, Path& p, uint64_t now_ns) {
  if (p.challenges == kMaxChallenges) return;
  p.last_sent_ns = now_ns;  // (also when the limit holds it back: tried again after kRetryNs)
  // Anti-amplification (RFC 9000 8.1, 9.3): at most 3x what the candidate sent, until it is validated. (The RX
  // worker's count is of the address it proposed last: this candidate, unless a newer proposal is on its way here.)
  const uint64_t received = s.quic->proposed_rx_bytes.load(std::memory_order_relaxed);
  const uint64_t budget = 3 * received > p.tx_bytes ? 3 * received - p.tx_bytes : 0;
  const uint32_t len = frames_len(1 + kQuicPathDataLen, budget);
  if (len < uint32_t(kQuicMinPathDatagram) - uint32_t(kQuicPnOffset + 4 + kAeadTagLen)) dp_.quic_control.path_probes_limited.add();
  if (!len) return;
  auto& data = p.data[p.challenges];
  random_path_data(data);
  uint8_t frame[1 + kQuicPathDataLen];
  quic_write_path_frame(kQuicFramePathChallenge, data, frame);
  if (!send(s, p.candidate, frame, len)) return;
  ++p.challenges;
  p.tx_bytes += len + uint32_t(kQuicPnOffset + 4 + kAeadTagLen);
  dp_.quic_control.path_challenges_tx.add();
}

void QuicSlowPath::path_response(TunnelSession& s, const std::array<uint8_t, kQuicPathDataLen>& data) {
  auto it = paths_.find(s.index);
  if (it == paths_.end() || it->second.serial != s.serial) return;  // no validation outstanding: ignored (8.2.3)
  Path& p = it->second;
  bool match = false;
  for (uint32_t i = 0; i < p.challenges; ++i) match |= p.data[i] == data;
  if (!match) return;
  const Endpoint was = s.endpoint.load();
  s.endpoint.store(p.candidate);  // the control lcore: the endpoint's one writer once a QUIC session's is known
  s.endpoint_changes.fetch_add(1, std::memory_order_relaxed);
  dp_.quic_control.paths_validated.add();
  LOG_INFO("tunnel %s session %u: path to %s validated (PATH_RESPONSE); agent endpoint %s -> %s", tunnel_name(s),
           s.index, p.candidate.str().c_str(), was.str().c_str(), p.candidate.str().c_str());
  paths_.erase(it);
}

void QuicSlowPath::answer_challenge(TunnelSession& s, const Endpoint& from, uint32_t packet_len,
                                    const std::array<uint8_t, kQuicPathDataLen>& data) {
  // RFC 9000 8.2.2: on the path the challenge came from, padded to 1200 bytes unless the 3x limit forbids (8.1,
  // 9.3): no limit on the validated endpoint; the candidate's budget there; elsewhere 3x the packet that carried the
  // challenge (an agent probing a path it migrates to pads it to 1200 bytes, 8.2.1). Not even the bare frame within
  // the limit: not answered (quic_path_probes_limited).
  uint64_t budget = ~uint64_t(0);
  Path* p = nullptr;
  if (s.endpoint.load() != from) {
    auto it = paths_.find(s.index);
    p = it != paths_.end() && it->second.serial == s.serial && it->second.candidate == from ? &it->second : nullptr;
    if (p) {
      const uint64_t received = s.quic->proposed_rx_bytes.load(std::memory_order_relaxed);
      budget = 3 * received > p->tx_bytes ? 3 * received - p->tx_bytes : 0;
    } else {
      budget = 3 * uint64_t(packet_len);
    }
  }
  uint8_t frame[1 + kQuicPathDataLen];
  quic_write_path_frame(kQuicFramePathResponse, data, frame);
  const uint32_t len = frames_len(sizeof frame, budget);
  if (len < uint32_t(kQuicMinPathDatagram) - uint32_t(kQuicPnOffset + 4 + kAeadTagLen)) dp_.quic_control.path_probes_limited.add();
  if (!len) return;
  if (!send(s, from, frame, len)) return;
  if (p) p->tx_bytes += len + uint32_t(kQuicPnOffset + 4 + kAeadTagLen);
  dp_.quic_control.path_responses_tx.add();
}

void QuicSlowPath::connection_close(TunnelSession& s, const QuicFrame& f) {
  const uint32_t index = s.index;
  const std::string reason = sanitized(f.reason, kMaxReasonLog);
  const bool app = f.type == kQuicFrameConnectionCloseApp;
  char code[64];
  if (app)
    snprintf(code, sizeof code, "application error 0x%llx", (unsigned long long)f.error_code);
  else
    snprintf(code, sizeof code, "transport error 0x%llx, frame type 0x%llx", (unsigned long long)f.error_code,
             (unsigned long long)f.frame_type);
  LOG_INFO("tunnel %s session %u: the agent closed its QUIC connection (CONNECTION_CLOSE, %s, reason \"%s\"); "
           "session ended",
           tunnel_name(s), index, code, reason.c_str());
  std::string error;
  if (!state_.remove_session(index, error)) {
    LOG_WARN("session %u: %s", index, error.c_str());
    return;
  }
  dp_.quic_control.connection_closes_rx.add();
  paths_.erase(index);
  cid_noted_.erase(index);
  if (closed_.size() < 4096) closed_.push_back(Closed{index, f.error_code, app, reason});
}

void QuicSlowPath::tick(uint64_t now_ns) {
  for (auto it = paths_.begin(); it != paths_.end();) {
    Path& p = it->second;
    TunnelSession* s = session(it->first, p.serial);
    if (!s) {
      it = paths_.erase(it);
      continue;
    }
    if (now_ns - p.started_ns >= kValidationNs) {
      dp_.quic_control.path_validation_failed.add();
      LOG_WARN("tunnel %s session %u: path to %s not validated (%u PATH_CHALLENGE(s), no PATH_RESPONSE in %.1f s); the "
               "agent's endpoint stays %s",
               tunnel_name(*s), s->index, p.candidate.str().c_str(), p.challenges, double(kValidationNs) / 1e9,
               s->endpoint.load().str().c_str());
      it = paths_.erase(it);
      continue;
    }
    if (now_ns - p.last_sent_ns >= kRetryNs) challenge(*s, p, now_ns);
    ++it;
  }
  if (cid_noted_.size() > 4096)
    for (auto it = cid_noted_.begin(); it != cid_noted_.end();)
      it = session(it->first, it->second) ? std::next(it) : cid_noted_.erase(it);
}

}  // namespace dptun
