// Tunnel sessions: one agent reachable over the underlay, its per-direction epoch keys, its counters and
// replay window. Workers read sessions lock-free; keys are published and retired by the control lcore.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/inet.hpp"
#include "common/uuid.hpp"
#include "crypto/aead.hpp"
#include "crypto/key_schedule.hpp"
#include "crypto/replay_window.hpp"
#include "dataplane/tables/reclaimer.hpp"

namespace dptun {

// Where a session's agent is, as last seen: any IP address and a port, so no single atomic word holds it. One thread
// writes at a time (the control lcore before the session is published, its RX worker after: endpoint learning; for
// a QUIC session, its RX worker only while the endpoint is unknown (its first packet), then the control lcore only,
// when path validation moves it: TunnelSession::endpoint);
// any reads. A sequence lock: a reader that overlaps a write reads again, so it never sees half of one. Port 0:
// not known yet.
class PeerEndpoint {
 public:
  Endpoint load() const {
    for (;;) {
      const uint32_t before = seq_.load(std::memory_order_acquire);
      if (!(before & 1)) {
        const uint64_t hi = hi_.load(std::memory_order_relaxed), lo = lo_.load(std::memory_order_relaxed);
        const uint16_t port = port_.load(std::memory_order_relaxed);
        std::atomic_thread_fence(std::memory_order_acquire);
        if (seq_.load(std::memory_order_relaxed) == before) {
          Endpoint e;
          std::memcpy(e.ip.bytes.data(), &hi, 8);
          std::memcpy(e.ip.bytes.data() + 8, &lo, 8);
          e.port = port;
          return e;
        }
      }
      __builtin_ia32_pause();
    }
  }
  void store(const Endpoint& e) {
    uint64_t hi, lo;
    std::memcpy(&hi, e.ip.bytes.data(), 8);
    std::memcpy(&lo, e.ip.bytes.data() + 8, 8);
    const uint32_t s = seq_.load(std::memory_order_relaxed);
    seq_.store(s + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    hi_.store(hi, std::memory_order_relaxed);
    lo_.store(lo, std::memory_order_relaxed);
    port_.store(e.port, std::memory_order_relaxed);
    seq_.store(s + 2, std::memory_order_release);
  }
  bool known() const { return port_.load(std::memory_order_relaxed) != 0; }

 private:
  std::atomic<uint32_t> seq_{0};  // odd while a write is in progress
  std::atomic<uint64_t> hi_{0}, lo_{0};  // the address's 16 bytes, as two words
  std::atomic<uint16_t> port_{0};
};

inline constexpr uint64_t kNoEpoch = ~uint64_t(0);

struct QuicSessionState;  // dataplane/tables/quic_session.hpp

// The AEAD key of one epoch in one direction. Immutable once published.
struct EpochCipher {
  uint64_t epoch = 0;
  std::array<uint8_t, kSaltLen> salt{};
  std::unique_ptr<AeadKey> aead;
};

// Published epoch keys; workers search them by epoch (one cache line of pointers).
struct KeySlots {
  static constexpr int kSlots = 8;
  std::array<std::atomic<EpochCipher*>, kSlots> slot{};
  KeySlots() = default;
  KeySlots(const KeySlots&) = delete;
  KeySlots& operator=(const KeySlots&) = delete;
  ~KeySlots() {
    for (auto& s : slot) delete s.load(std::memory_order_relaxed);
  }
  EpochCipher* find(uint64_t epoch) const {
    for (const auto& s : slot) {
      EpochCipher* c = s.load(std::memory_order_acquire);
      if (c && c->epoch == epoch) return c;
    }
    return nullptr;
  }
};

// A MASQUE client's session (docs/masque.md "Datagrams on the fast path"): the request stream its HTTP Datagrams
// belong to and where their UDP payloads go. Made by the control lcore from MasqueSpec; immutable once published.
struct MasqueState {
  uint64_t stream_id = 0;  // the CONNECT-UDP request stream (a multiple of 4)
  Endpoint target;         // the route's target (IPv4), as the tunnel's agents reach it
  // The source of the IPv4/UDP packets the client's payloads travel in to the agent (the flow's client side): the
  // client's address and port on the path its handshake validated (QuicSessionSpec::path), fixed for the session's
  // life. The agent replaces it (its stateless NAT), so no target ever sees it; `dpgw trace` and flows show it.
  Endpoint source;
  // The HTTP Datagram header of the replies (RFC 9297 2.1, RFC 9298 4): Quarter Stream ID, context ID 0.
  std::array<uint8_t, 9> header{};
  uint8_t header_len = 0;
  // Nonzero: an HTTP/2 or HTTP/1.1 client whose DATAGRAM capsules dpctld carries (docs/masque.md "HTTP/2 and HTTP/1.1
  // fallback", MasqueSpec::request_id): its session has no `quic`, no keys and no endpoint, takes no frame from the
  // network; its payloads come from the control lcore (HandoffMeta::MasqueInject) and the target's replies go back to
  // it (Dataplane::masque_ring), both naming this id. stream_id and header are unused.
  uint64_t request_id = 0;
};

struct alignas(64) TunnelSession {
  // Identity: immutable while workers run.
  uint32_t index = 0;
  uint32_t serial = 0;  // unique per session object of this process (GatewayState counts them): flows name it
  uint16_t tunnel = 0;
  uint8_t weight = 1;
  uint16_t rx_worker = 0;  // the only worker that decrypts this session's frames (owns the replay window)
  bool peer_clock_counters = false;  // static peer: the agent's counters follow the wall clock (freshness checked)
  bool from_config = false;     // a static peer from dpgw's config (dpctld does not own it)
  bool configured_endpoint = false;  // the config gave its endpoint: usable before it is heard from
  bool visitor = false;  // a visitor of `tunnel`: its frames open flows to the tunnel's services
  // This end is the agent of the session (the edge role, dataplane/edge/): it transmits with AgentToGateway keys and
  // receives with GatewayToAgent ones. Every other session: the gateway's end.
  bool agent_side = false;
  uint16_t local_port = 0;  // our UDP port in its frames (dpgw.tunnel_port; the edge's local_port)
  std::vector<uint8_t> base_secret;
  // The QUIC framing's state (dataplane/tables/quic_session.hpp); null: relay frames. Its receive side: rx_worker.
  std::unique_ptr<QuicSessionState> quic;
  // A MASQUE client (with `visitor`, and `quic` unless MasqueState::request_id): its DATAGRAM frames are HTTP
  // Datagrams, not inner packets.
  std::unique_ptr<const MasqueState> masque;
  // The agent's address; not known until configured or heard from. Written by rx_worker (relay frames: it follows
  // every authenticated frame newer than all before). A QUIC session's: by rx_worker only to learn it (first packet),
  // afterwards by the control lcore only, when a new address passed path validation (main_lcore/quic_slow_path.hpp).
  PeerEndpoint endpoint;

  // Every worker adds to it: a cache line of its own.
  alignas(64) std::atomic<uint64_t> tx_counter{0};

  // Read for every frame, written rarely by the control lcore.
  alignas(64) KeySlots tx_keys;
  alignas(64) KeySlots rx_keys;

  // Receive state, written by rx_worker only.
  alignas(64) EpochReplayWindow replay;
  std::atomic<uint64_t> rx_epoch{kNoEpoch};     // highest epoch that authenticated
  std::atomic<uint64_t> wanted_epoch{kNoEpoch}; // an epoch a frame used that has no key (unauthenticated hint)
  std::atomic<uint64_t> last_rx_ns{0};
  std::atomic<uint64_t> endpoint_changes{0};
  // Flows pinned to this session now: +1 when a flow is pinned to it, -1 when that flow moves to another
  // session or ends (any worker, rarely). Flows carry `serial` so that a session reusing this index later is
  // never counted down for them.
  std::atomic<int64_t> flows_pinned{0};
  std::atomic<uint64_t> flows_total{0};  // flows ever pinned to it (new and moved here)

  // Control lcore only.
  uint64_t ctl_tx_epoch = kNoEpoch;
  uint64_t ctl_tx_epoch_since_ns = 0;
  uint64_t ctl_probe_epoch = kNoEpoch;
  uint64_t ctl_probe_ns = 0;

  TunnelSession();  // out of line: `quic` is an incomplete type here
  TunnelSession(const TunnelSession&) = delete;
  TunnelSession& operator=(const TunnelSession&) = delete;
  ~TunnelSession();

  Endpoint peer() const { return endpoint.load(); }
  bool has_peer() const { return endpoint.known(); }
};

// Is a session usable for new flows: it has a peer and was heard from within `timeout_ns` (a static peer not heard
// from yet counts as live). Workers and the main lcore decide it from the same fields.
inline bool session_live(const TunnelSession& s, uint64_t now_ns, uint64_t timeout_ns) {
  if (!s.has_peer()) return false;
  const uint64_t last = s.last_rx_ns.load(std::memory_order_relaxed);
  if (!last) return s.configured_endpoint;
  return now_ns - last < timeout_ns;
}

// A tunnel and its pool of sessions as workers see it: immutable once published; a change publishes a new one.
struct TunnelPool {
  Uuid id;
  std::string name;
  uint32_t generation = 0;  // changes when the slot is given to another tunnel; flows remember it
  bool from_config = false;
  std::vector<TunnelSession*> sessions;
};

// Tunnels by slot (stable for a tunnel's lifetime): one atomic load per lookup.
class TunnelTable {
 public:
  explicit TunnelTable(uint16_t capacity)
      : capacity_(capacity), slots_(new std::atomic<const TunnelPool*>[capacity]) {
    for (uint16_t i = 0; i < capacity; ++i) slots_[i].store(nullptr);
  }
  ~TunnelTable() {
    for (uint16_t i = 0; i < capacity_; ++i) delete slots_[i].load();
  }
  TunnelTable(const TunnelTable&) = delete;
  TunnelTable& operator=(const TunnelTable&) = delete;
  const TunnelPool* get(uint16_t slot) const {
    return slot < capacity_ ? slots_[slot].load(std::memory_order_acquire) : nullptr;
  }
  uint16_t capacity() const { return capacity_; }
  // Control lcore: publishes `pool` in `slot` and returns the previous one (to retire).
  const TunnelPool* publish(uint16_t slot, const TunnelPool* pool) {
    return slots_[slot].exchange(pool, std::memory_order_acq_rel);
  }

 private:
  uint16_t capacity_;
  std::unique_ptr<std::atomic<const TunnelPool*>[]> slots_;
};

// Sessions by receiver index (1..65535): one atomic load per frame.
class SessionTable {
 public:
  static constexpr uint32_t kMaxIndex = 65535;
  SessionTable() : by_index_(new std::atomic<TunnelSession*>[kMaxIndex + 1]) {
    for (uint32_t i = 0; i <= kMaxIndex; ++i) by_index_[i].store(nullptr);
  }
  TunnelSession* find(uint32_t index) const {
    return index <= kMaxIndex ? by_index_[index].load(std::memory_order_acquire) : nullptr;
  }
  // Control lcore: publishes `s` under its index and returns what was there (to retire).
  TunnelSession* publish(uint32_t index, TunnelSession* s) {
    return by_index_[index].exchange(s, std::memory_order_acq_rel);
  }

 private:
  std::unique_ptr<std::atomic<TunnelSession*>[]> by_index_;
};

// Control-lcore side of session keys: keeps the keys workers will need published ahead of use, rekeys the
// transmit side (timer, and for static peers re-anchoring to the wall clock), and frees replaced keys only
// after every worker passed a quiescent state.
//   transmit: current epoch, the next one, the epoch a rekey jumps to (and, for static peers, the wall
//             clock's epoch and the next, ready for the next re-anchor);
//   receive:  around the highest authenticated epoch, the wall clock's epochs for static peers (a restarted
//             agent starts there), and one probe epoch a newer frame asked for (plausible ones only, at most
//             every 50 ms, never displacing the others).
class SessionKeyManager {
 public:
  SessionKeyManager(AeadEngine& engine, uint8_t key_len, uint64_t rekey_interval_ns, Reclaimer& reclaimer)
      : engine_(engine), key_len_(key_len), rekey_interval_ns_(rekey_interval_ns), reclaimer_(reclaimer) {}
  // now_ns: monotonic clock; real_ns: wall clock. Returns false when a key could not be made. Nothing for a QUIC
  // session (its keys are its own; its counter is its packet number).
  bool maintain(TunnelSession& s, uint64_t now_ns, uint64_t real_ns);
  uint64_t rekeys() const { return rekeys_; }
  AeadEngine& engine() { return engine_; }

  // Epochs a key set should hold; at most KeySlots::kSlots distinct values.
  struct EpochSet {
    std::array<uint64_t, KeySlots::kSlots> v{};
    int n = 0;
    void add(uint64_t e) {
      for (int i = 0; i < n; ++i)
        if (v[i] == e) return;
      if (n < KeySlots::kSlots) v[n++] = e;
    }
    bool has(uint64_t e) const {
      for (int i = 0; i < n; ++i)
        if (v[i] == e) return true;
      return false;
    }
  };

 private:
  bool ensure(TunnelSession& s, KeySlots& slots, KeyDirection dir, AeadDirection use, const EpochSet& want);

  AeadEngine& engine_;
  uint8_t key_len_;
  uint64_t rekey_interval_ns_;
  Reclaimer& reclaimer_;
  uint64_t rekeys_ = 0;
};

}  // namespace dptun
