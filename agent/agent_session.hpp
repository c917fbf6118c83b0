// The agent's end of one tunnel session: transmit counter and epoch keys (agent->gateway), receive epoch
// keys (gateway->agent) and the replay windows; keys are derived on demand.
// Threads: the sending half (seal, seal_later, seal_pending, sealing, anchor_to_clock: the transmit counter and the
// transmit keys) and the receiving half (open, open_burst: the replay window and the receive keys) share no mutable
// state, so one thread may send while another receives; each half has one thread at a time. tx_epoch(), rekeys()
// and last_heard_ns() may be read from any thread.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "common/counter.hpp"
#include "crypto/aead.hpp"
#include "crypto/key_schedule.hpp"
#include "crypto/replay_window.hpp"
#include "proto/relay_frame.hpp"

namespace dptun {

class AgentSession {
 public:
  enum class OpenResult { Ok, Malformed, WrongSession, Replay, Stale, NoKey, AuthFail };
  // WallClock: static keys; counters follow the wall clock (crypto/key_schedule.hpp), stale frames refused.
  // FromZero: a fresh secret per session (control plane); counters start at 0.
  enum class CounterMode { WallClock, FromZero };

  // Which end of the key schedule's two directions this is: the agent's (sends AgentToGateway, receives
  // GatewayToAgent), or the gateway's (the other way round: a direct-path pair's controlling end, the visitor,
  // docs/nat-traversal.md "The pair's data").
  enum class End { Agent, Gateway };

  AgentSession(uint32_t index, std::vector<uint8_t> base_secret, uint8_t key_len, uint64_t rekey_interval_ns,
               AeadEngine& engine, CounterMode mode = CounterMode::WallClock, End end = End::Agent);
  ~AgentSession();
  AgentSession(const AgentSession&) = delete;
  AgentSession& operator=(const AgentSession&) = delete;

  // Seals in place the frame at `frame` whose `encrypted_len` bytes (FrameLayout::encrypted_len; 0 for a keepalive)
  // are written behind its header, with room for the tag behind them (codec().layout().frame_len(encrypted_len)
  // bytes in all). now_ns: monotonic clock (rekey timer). False when no key can be derived or the AEAD fails.
  bool seal(FrameType type, uint8_t flags, uint8_t* frame, size_t encrypted_len, uint64_t now_ns);
  // The same in two steps, for bursts: seal_later() writes the header (its counter reserved now) and keeps the frame;
  // seal_pending() encrypts every kept frame, one AEAD call per key, and protects them. The frames must stay where
  // they are until then. A frame the AEAD failed on is wiped (never sent in clear); seal_pending() returns how many
  // (and, given `watch`, whether that frame was one).
  bool seal_later(FrameType type, uint8_t flags, uint8_t* frame, size_t encrypted_len, uint64_t now_ns);
  size_t seal_pending(const uint8_t* watch = nullptr, bool* watch_failed = nullptr);
  bool sealing() const { return pending_ != 0; }
  // Authenticates and decrypts a whole frame in place (codec().read_inner reads a data frame's contents then).
  OpenResult open(std::span<uint8_t> frame, FrameMeta& meta, uint64_t now_ns);
  // A frame of a received batch: which session it names (nullptr: none), and what opening it gave.
  struct Received {
    std::span<uint8_t> frame;
    AgentSession* session;
    FrameMeta meta;
    OpenResult result;
  };
  // Opens, in order, the frames of `batch` that name this session (others are left as they are): one AEAD call per
  // run of frames under one key, then the replay window in frame order (a frame repeated within the batch is a
  // replay).
  void open_burst(std::span<Received> batch, uint64_t now_ns);
  const RelayCodec& codec() const { return codec_; }
  // WallClock mode: moves the transmit counter up to the wall clock now (after losing the gateway: a restarted
  // gateway has keys ready for the wall clock's epoch).
  void anchor_to_clock();

  uint32_t index() const { return index_; }
  uint64_t tx_epoch() const { return epoch_of(tx_counter_); }
  uint64_t rekeys() const { return rekeys_; }
  // The receiving thread notes when the session last received an authenticated frame (monotonic ns; 0: never), for
  // the thread that watches the gateway's liveness.
  void heard(uint64_t now_ns) { last_heard_ns_.store(now_ns, std::memory_order_relaxed); }
  uint64_t last_heard_ns() const { return last_heard_ns_.load(std::memory_order_relaxed); }
  // Which `thread` slot of the AEAD engine each half passes to AeadKey::process (default 0 and 0): distinct when
  // the halves run on two threads.
  void use_engine_threads(unsigned rx, unsigned tx) {
    rx_thread_ = rx;
    tx_thread_ = tx;
  }
  // Tests replace the wall clock.
  void set_realtime_source(std::function<uint64_t()> fn) { realtime_ = std::move(fn); }

 private:
  struct Key {
    std::array<uint8_t, kSaltLen> salt{};
    std::unique_ptr<AeadKey> aead;
  };
  Key* make_key(KeyDirection dir, uint64_t epoch);
  Key* rx_key(uint64_t epoch, uint64_t now_ns, uint64_t real_ns);
  bool expected_epoch(uint64_t epoch, uint64_t real_ns) const;

  uint32_t index_;
  std::vector<uint8_t> base_secret_;
  uint8_t key_len_;
  uint64_t rekey_interval_ns_;
  AeadEngine& engine_;
  CounterMode mode_;
  KeyDirection tx_dir_, rx_dir_;
  RelayCodec codec_;
  std::function<uint64_t()> realtime_;

  unsigned rx_thread_ = 0, tx_thread_ = 0;
  std::atomic<uint64_t> last_heard_ns_{0};

  // The sending half. The counter and the rekey count are written by the sending thread only (StatCounter: other
  // threads read them for the counters): a nonce is never used twice.
  StatCounter tx_counter_;
  uint64_t tx_epoch_ = ~uint64_t(0);
  uint64_t tx_epoch_since_ns_ = 0;
  std::unique_ptr<Key> tx_key_;
  StatCounter rekeys_ = 0;
  static constexpr size_t kMaxPending = 64;
  size_t pending_ = 0;  // frames kept by seal_later, all under tx_key_
  std::array<AeadOp, kMaxPending> pending_ops_;
  std::array<std::array<uint8_t, kAeadIvLen>, kMaxPending> pending_ivs_;
  std::array<uint32_t, kMaxPending> pending_len_;  // frame lengths
  std::array<uint8_t*, kMaxPending> pending_frames_;

  // The receiving half.
  EpochReplayWindow replay_;
  uint64_t rx_epoch_ = ~uint64_t(0);
  std::map<uint64_t, std::unique_ptr<Key>> rx_keys_;
  uint64_t derive_tokens_ = 20;
  uint64_t derive_refill_ns_ = 0;
};

}  // namespace dptun
