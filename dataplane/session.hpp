// Tunnel sessions: one agent reachable over the underlay, its per-direction epoch keys, its counters and
// replay window. Workers read sessions lock-free; keys are published and retired by the control lcore.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/inet.hpp"
#include "common/uuid.hpp"
#include "crypto/aead.hpp"
#include "crypto/key_schedule.hpp"
#include "crypto/replay_window.hpp"

struct rte_rcu_qsbr;

namespace dptun {

inline constexpr uint64_t kNoEpoch = ~uint64_t(0);

// The AEAD key of one epoch in one direction. Immutable once published.
struct EpochCipher {
  uint64_t epoch = 0;
  std::array<uint8_t, kSaltLen> salt{};
  std::unique_ptr<AeadKey> aead;
};

// A few published epoch keys; workers search them by epoch.
struct KeySlots {
  static constexpr int kSlots = 4;
  std::array<std::atomic<EpochCipher*>, kSlots> slot{};
  EpochCipher* find(uint64_t epoch) const {
    for (const auto& s : slot) {
      EpochCipher* c = s.load(std::memory_order_acquire);
      if (c && c->epoch == epoch) return c;
    }
    return nullptr;
  }
};

struct alignas(64) TunnelSession {
  // Identity: immutable while workers run.
  uint32_t index = 0;
  uint16_t tunnel = 0;
  uint8_t weight = 1;
  uint16_t rx_worker = 0;  // the only worker that decrypts this session's frames (owns the replay window)
  std::vector<uint8_t> base_secret;
  bool clock_counters = false;        // static peer: the agent's counters start at its wall clock in ns
  std::atomic<uint64_t> endpoint{0};  // Endpoint::pack() of the agent; 0 while unknown

  alignas(64) std::atomic<uint64_t> tx_counter{0};  // next counter to send; workers fetch_add
  KeySlots tx_keys;
  KeySlots rx_keys;

  // Receive state, written by rx_worker only.
  alignas(64) EpochReplayWindow replay;
  std::atomic<uint64_t> rx_epoch{kNoEpoch};     // highest epoch that authenticated
  std::atomic<uint64_t> wanted_epoch{kNoEpoch}; // an epoch a frame used that has no key yet
  std::atomic<uint64_t> last_rx_ns{0};
  std::atomic<uint64_t> endpoint_changes{0};

  // Control lcore only.
  uint64_t ctl_tx_epoch = kNoEpoch;
  uint64_t ctl_tx_epoch_since_ns = 0;

  TunnelSession() = default;
  TunnelSession(const TunnelSession&) = delete;
  TunnelSession& operator=(const TunnelSession&) = delete;
  ~TunnelSession();

  Endpoint peer() const { return Endpoint::unpack(endpoint.load(std::memory_order_relaxed)); }
  bool has_peer() const { return endpoint.load(std::memory_order_relaxed) != 0; }
};

struct Tunnel {
  Uuid id;
  std::string name;
  std::vector<TunnelSession*> sessions;
  uint32_t total_weight = 0;
};

// Sessions by receiver index (1..65535): one array load per frame.
class SessionTable {
 public:
  static constexpr uint32_t kMaxIndex = 65535;
  SessionTable() : by_index_(kMaxIndex + 1, nullptr) {}
  TunnelSession* find(uint32_t index) const { return index <= kMaxIndex ? by_index_[index] : nullptr; }
  TunnelSession& add(std::unique_ptr<TunnelSession> s);
  const std::vector<std::unique_ptr<TunnelSession>>& all() const { return owned_; }

 private:
  std::vector<TunnelSession*> by_index_;
  std::vector<std::unique_ptr<TunnelSession>> owned_;
};

// Control-lcore side of session keys: derives epoch keys ahead of use, rekeys TX on a timer by jumping the
// counter to the next epoch, and frees replaced keys only after every worker passed a quiescent state.
class SessionKeyManager {
 public:
  SessionKeyManager(AeadEngine& engine, uint8_t key_len, uint64_t rekey_interval_ns, rte_rcu_qsbr* rcu)
      : engine_(engine), key_len_(key_len), rekey_interval_ns_(rekey_interval_ns), rcu_(rcu) {}
  ~SessionKeyManager();
  // Ensures TX keys for the current and next epoch and RX keys around the highest authenticated epoch
  // (plus the one a peer asked for). Returns false when a key could not be made.
  bool maintain(TunnelSession& s, uint64_t now_ns);
  // Frees retired keys whose grace period ended.
  void reclaim();
  // Frees every key of a session; workers must be stopped.
  void release(TunnelSession& s);
  uint64_t rekeys() const { return rekeys_; }

 private:
  bool ensure(TunnelSession& s, KeySlots& slots, KeyDirection dir, uint64_t epoch,
              std::initializer_list<uint64_t> keep);
  void retire(EpochCipher* c);

  AeadEngine& engine_;
  uint8_t key_len_;
  uint64_t rekey_interval_ns_;
  rte_rcu_qsbr* rcu_;
  struct Retired {
    EpochCipher* cipher;
    uint64_t token;
  };
  std::vector<Retired> retired_;
  uint64_t rekeys_ = 0;
};

}  // namespace dptun
