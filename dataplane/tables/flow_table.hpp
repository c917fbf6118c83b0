// Per-worker flow table: fixed capacity, no allocation after construction, single writer (its worker).
// Flows live in stable slots so a flow id (generation | worker | slot) can travel in the inner header and
// find the flow again in O(1) when the agent's reply comes back.
#pragma once
#include <atomic>
#include <cstdint>
#include <vector>

#include "common/inet.hpp"

#include "ingress/tcp_splice.hpp"

namespace dptun {

struct FlowKey {
  IpAddr client;  // the client's address (a visitor's: its inner source)
  IpAddr local;   // the address the client reached (an entry point's; a visitor's inner destination)
  uint16_t client_port = 0;
  uint16_t local_port = 0;
  uint8_t proto = 0;
  uint16_t scope = 0;  // 0: a client of a public entry point; else the visitor session the flow belongs to
  bool operator==(const FlowKey&) const = default;
  // An IPv4 flow, its addresses in host byte order as the parser gives them.
  static FlowKey v4(uint32_t client_ip, uint32_t local_ip, uint16_t client_port, uint16_t local_port, uint8_t proto,
                    uint16_t scope) {
    return FlowKey{Ipv4{client_ip}, Ipv4{local_ip}, client_port, local_port, proto, scope};
  }
};

enum class TcpState : uint8_t { None = 0, SynSent, Established, Closing, Closed };

// Delayed binding (TCP entry points routed by hostname): dpgw holds the client's connection itself until it has
// read the hostname (WaitHello), opens the server side (WaitServer), then splices the two (Spliced; until the
// server has acknowledged the first bytes dpgw acknowledged to the client, dpgw keeps them and sends them again
// as needed). Refused: dpgw answered the client itself (HTTP 400/431/502/503, or a RST for TLS) and lingers a
// while: it resends its answer until the client acknowledges it, and acknowledges and discards what the client
// still sends, so that the client reads the answer instead of a reset.
enum class Binding : uint8_t { None = 0, WaitHello, WaitServer, Spliced, Refused };

struct BindingState {
  uint32_t client_isn = 0, our_isn = 0;  // the client's ISN; ours is the SYN cookie
  uint32_t next_client_seq = 0;          // the next in-order byte from the client (its FIN not counted)
  uint32_t client_tsval = 0;             // the newest TSval from the client (never moves back: the server sees it)
  uint32_t buffer = UINT32_MAX;          // HeadBuffers handle holding the client's first bytes
  uint64_t give_up_ns = 0;               // the step in progress (naming a host, reaching the target, lingering) ends
  uint16_t client_mss = 0;
  uint16_t client_window = 0;            // the newest raw window from the client
  uint8_t client_wscale = 0xff;          // 0xff: the client does not scale windows
  bool client_sack = false;
  bool client_ts = false;
  bool proxy_protocol = false;
  bool fin = false;                      // the client closed its side after its first bytes (acknowledged by dpgw)
  bool ts_both = false;                  // client and target both use timestamps (known at the splice)
  uint8_t route = 0;                     // EntryRoute: what to read (TLS ClientHello or HTTP request head)
  uint8_t answer = 0;                    // Refused: what dpgw answered (tcp_binding.cpp's kAnswers; 0: a RST)
  // Bytes that arrived ahead of a gap (offsets from the first byte), kept until the gap fills.
  uint8_t n_ahead = 0;
  uint16_t ahead_start[4] = {}, ahead_end[4] = {};
};

// What a connection needs only while dpgw holds first bytes of it: kept with its buffer (HeadBuffers), not in
// every flow. Offsets towards the server count from the client's first byte in the server's sequence space
// (a PROXY protocol header first, then the client's bytes, then its FIN if it sent one).
struct BindingProgress {
  uint64_t since_ns = 0;        // the first byte came (the connection reading longest gives way when all are taken)
  uint32_t scan = 0, scan2 = 0; // how far http_head_complete / tls_hello_complete have looked
  uint32_t parsed = 0;          // bytes the last full read of the head saw
  uint64_t syn_sent_ns = 0;     // our first SYN to the server (its answer gives a round-trip time)
  uint64_t timer_ns = 0;        // when to send again: our SYN (WaitServer), the first bytes (Spliced), the answer
  uint32_t rto_ms = 0;          // the current retransmission timeout, doubled on every resend
  uint8_t resends = 0;
  uint8_t dup_acks = 0;         // the server acknowledged the same offset again without data
  bool answered = false;        // Refused: the client acknowledged dpgw's answer
  // Spliced: the first bytes on their way to the server.
  uint32_t una = 0, next = 0, end = 0;  // offsets: oldest unacknowledged, next to send, end (FIN included)
  uint32_t server_window = 0;   // bytes beyond `una` the server takes
  uint32_t server_ack = 0;      // the acknowledgment number our segments carry (the server's sequence space)
  uint32_t server_tsval = 0;    // the newest TSval from the server: our segments' TSecr
  uint32_t client_rcv = 0;      // what the client expects next from us (its sequence space): where a RST goes
  uint16_t mss = 536;           // payload per segment towards the server
};

struct Flow {
  FlowKey key;
  bool in_use = false;
  TcpState tcp_state = TcpState::None;
  uint8_t fin_seen = 0;      // bit 0: client sent FIN, bit 1: target sent FIN
  bool keepalive = false;    // UDP: traffic refreshes the deadline
  uint32_t generation = 0;
  uint32_t session_index = 0;
  uint32_t session_serial = 0;    // the session's serial when the flow was pinned to it (0: not pinned)
  uint16_t tunnel = 0;            // TunnelTable slot
  uint32_t tunnel_generation = 0; // the slot's tunnel when the flow started; a different one means it has gone
  uint32_t udp_ttl_ms = 0;
  IpAddr target_ip;  // 0.0.0.0: the agent picks the target (agent-side routing)
  uint16_t target_port = 0;
  uint16_t mss_clamp = 0;
  uint32_t hash = 0;
  uint64_t deadline_ns = 0;
  uint64_t last_seen_ns = 0;
  Binding binding = Binding::None;
  bool agent_routed = false;        // the rule had no target: the agent picks it by the hostname
  bool masque = false;              // a MASQUE client's (a visitor's): replies go back as HTTP Datagrams
  uint32_t visitor = 0;             // a visitor's flow: its session (replies go back in frames of it)
  uint32_t name_slot = UINT32_MAX;  // the hostname, sent to the agent until the target answers (NameSlots)
  BindingState bind;
  TcpSplice splice;  // once Spliced: how segments are rewritten both ways
};

class FlowTable {
 public:
  static constexpr unsigned kSlotBits = 24;
  static constexpr uint64_t kIdleBeforeEviction = 1'000'000'000ull;  // a flow must be idle 1 s to be evicted

  // capacity: 1 .. 2^24 flows. Memory is allocated here, never on the fast path. Generations start at a
  // random value, so flow ids of a restarted gateway do not repeat the previous run's ids.
  FlowTable(uint32_t capacity, uint8_t worker);

  static uint32_t hash(const FlowKey& k);
  static uint8_t worker_of(uint64_t flow_id) { return uint8_t(flow_id >> kSlotBits); }

  Flow* find(const FlowKey& k, uint32_t hash);
  // Starts loading what find(k, hash) reads, for a burst (no effect on the table): prefetch_index first, for every
  // packet of the burst, then prefetch_flow (reads the index entry: the flow in the key's first probe slot).
  void prefetch_index(uint32_t hash) const { __builtin_prefetch(&index_[hash & index_mask_]); }
  void prefetch_flow(uint32_t hash) const {
    const IndexEntry& e = index_[hash & index_mask_];
    if (!e.slot_plus1) return;
    const Flow& f = flows_[e.slot_plus1 - 1];
    __builtin_prefetch(&f.key);
    __builtin_prefetch(&f.deadline_ns);  // (the next line: state, tunnel, session, target, deadline)
  }
  // Adds a flow for a key that is not present. When full, evicts the least recently used of a few sampled
  // flows if it has been idle for kIdleBeforeEviction (`evicted` set); otherwise returns nullptr.
  Flow* insert(const FlowKey& k, uint32_t hash, uint64_t now_ns, bool& evicted);
  // The flow a flow id names, or nullptr when that flow has gone (slot free or reused).
  Flow* find_by_id(uint64_t flow_id);
  // The flow in the slot a tag (worker | slot: the low 32 bits of a flow id) names, if the slot is in use. Agents
  // know flows only by tag; the caller checks the flow is the one it expects (target, tunnel, protocol).
  Flow* find_by_tag(uint32_t tag);
  uint64_t id_of(const Flow& f) const {
    return uint64_t(f.generation) << 32 | uint64_t(worker_) << kSlotBits | uint32_t(&f - flows_.data());
  }
  void erase(Flow& f);
  // Called for every flow that leaves the table (erase, expiry, eviction), before its slot is reused.
  using ReleaseHook = void (*)(void* ctx, const Flow& f);
  void set_release_hook(ReleaseHook hook, void* ctx) {
    release_hook_ = hook;
    release_ctx_ = ctx;
  }
  // Looks at up to `budget` slots from a rotating cursor and removes flows whose deadline passed, calling
  // `on_expire(const Flow&)` for each just before it goes.
  template <class OnExpire>
  uint32_t expire(uint64_t now_ns, uint32_t budget, OnExpire&& on_expire) {
    uint32_t removed = 0;
    const uint32_t n = uint32_t(flows_.size());
    if (budget > n) budget = n;
    for (uint32_t i = 0; i < budget; ++i) {
      Flow& f = flows_[cursor_];
      cursor_ = cursor_ + 1 == n ? 0 : cursor_ + 1;
      if (f.in_use && f.deadline_ns <= now_ns) {
        on_expire(static_cast<const Flow&>(f));
        erase(f);
        ++removed;
      }
    }
    return removed;
  }
  uint32_t expire(uint64_t now_ns, uint32_t budget) {
    return expire(now_ns, budget, [](const Flow&) {});
  }

  uint32_t size() const { return size_.load(std::memory_order_relaxed); }
  uint32_t capacity() const { return uint32_t(flows_.size()); }

 private:
  struct IndexEntry {
    uint32_t hash;
    uint32_t slot_plus1;  // 0: empty
  };
  uint32_t index_find(const Flow& f) const;
  void index_erase(uint32_t pos);

  std::vector<Flow> flows_;
  // Free slots, first in first out: a slot (and so a flow's tag and its source address at the target) comes
  // back into use as late as possible.
  std::vector<uint32_t> free_ring_;
  uint32_t free_head_ = 0;
  uint32_t free_count_ = 0;
  std::vector<IndexEntry> index_;
  uint32_t index_mask_;
  std::atomic<uint32_t> size_{0};  // written by the worker, read by the control lcore
  uint32_t cursor_ = 0;
  uint32_t sample_ = 0;
  uint8_t worker_;
  ReleaseHook release_hook_ = nullptr;
  void* release_ctx_ = nullptr;
};

}  // namespace dptun
