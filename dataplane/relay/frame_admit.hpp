// The receive checks of a relay frame (docs/protocol.md "Replay protection", "Keys"), for the stages that open
// frames of a session whose replay window this worker owns: TunnelInput (agents' sessions) and EdgeInput (the edge
// role's own session). One place decides which frames reach the AEAD and what an opened frame changes.
#pragma once
#include <atomic>
#include <cstdint>
#include <span>

#include "dataplane/tables/counters.hpp"
#include "dataplane/tables/session.hpp"
#include "proto/relay_frame.hpp"

namespace dptun {

// Before the AEAD: the header is read against the session's replay window, the counter must be new to the window and,
// where the peer's counters follow the wall clock (static peers, the edge), not below `fresh_floor`; the counter's
// epoch must have a receive key. Returns that key, or nullptr with the drop reason in `why` (frame_malformed,
// replay, stale_counter, key_unavailable; for the last, the session asks the main lcore for the epoch's key).
inline EpochCipher* admit_frame(const RelayCodec& codec, TunnelSession& s, std::span<uint8_t> frame,
                                uint64_t fresh_floor, FrameMeta& meta, Drop& why) {
  if (codec.read_header(frame, s.replay.top(), meta) != FrameError::None) {
    why = Drop::FrameMalformed;
    return nullptr;
  }
  if (!s.replay.check(meta.counter)) {
    why = Drop::Replay;
    return nullptr;
  }
  if (s.peer_clock_counters && meta.counter < fresh_floor) {
    why = Drop::StaleCounter;
    return nullptr;
  }
  const uint64_t epoch = epoch_of(meta.counter);
  EpochCipher* c = s.rx_keys.find(epoch);
  if (!c) {
    s.wanted_epoch.store(epoch, std::memory_order_release);
    why = Drop::KeyUnavailable;
    return nullptr;
  }
  return c;
}

// After the AEAD opened the frame: its counter enters the replay window (false: a duplicate of a frame earlier in
// the same burst, to drop as replay), the session's receive epoch and last-RX time move. `newest`: no frame seen
// before had a larger counter (only such a frame may move the peer's endpoint).
inline bool accept_frame(TunnelSession& s, const FrameMeta& meta, uint64_t now_ns, bool& newest) {
  newest = s.replay.empty() || meta.counter > s.replay.top();
  if (!s.replay.accept(meta.counter)) return false;
  const uint64_t epoch = epoch_of(meta.counter);
  const uint64_t seen = s.rx_epoch.load(std::memory_order_relaxed);
  if (seen == kNoEpoch || epoch > seen) s.rx_epoch.store(epoch, std::memory_order_release);
  s.last_rx_ns.store(now_ns, std::memory_order_relaxed);
  return true;
}

}  // namespace dptun
