// A worker lcore: polls its RX queue on every port plus its handoff ring, classifies each burst and composes the
// stages (dataplane/README.md has the table). Each stage is an object that owns its per-worker state; its
// constructor names the stages and tables it touches, and the calls between them are direct (no virtual dispatch).
//   classify -> entry input   -> TCP binding / QUIC holds -> flow setup -> encap -> tx
//            -> tunnel input  -> visitors / TCP binding / fragments      -> tx
//            -> local input, fragments (-> entry input, edge output)
//            -> STUN input (Binding requests, answered in place)   -> tx
//            -> pair relay (pair frames, sent on unopened to the pair's other end) -> tx
//            -> edge input (frames from the concentrator) -> fragments -> tx (LAN)
//            -> edge output (targets' replies)             -> encap      -> tx (underlay)
// Single-threaded by construction: no locks, no syscalls, no allocation in the loop.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "dataplane/edge/edge_input.hpp"
#include "dataplane/edge/edge_output.hpp"
#include "dataplane/entry/entry_input.hpp"
#include "dataplane/entry/flow_setup.hpp"
#include "dataplane/hostname/name_slots.hpp"
#include "dataplane/hostname/quic_hold.hpp"
#include "dataplane/hostname/tcp_binding.hpp"
#include "dataplane/hostname/visitor_input.hpp"
#include "dataplane/loop/fragments.hpp"
#include "dataplane/loop/idle_backoff.hpp"
#include "dataplane/loop/local_input.hpp"
#include "dataplane/loop/sweep_pacer.hpp"
#include "dataplane/loop/tx.hpp"
#include "dataplane/loop/worker_context.hpp"
#include "dataplane/nat/stun_input.hpp"
#include "dataplane/relay/encap.hpp"
#include "dataplane/relay/pair_relay.hpp"
#include "dataplane/relay/quic_input.hpp"
#include "dataplane/relay/tunnel_input.hpp"
#include "dataplane/tables/flow_table.hpp"

struct rte_mbuf;
struct rte_ring;

namespace dptun {

class Worker {
 public:
  // Worker `id` for `lcore`, its handoff ring on the lcore's NUMA socket; nullptr with `error` on failure (nothing
  // is thrown). Run on the worker's own lcore (the gateway does), its tables and buffers are first touched there and
  // so live on the worker's socket.
  static std::unique_ptr<Worker> create(Dataplane& dp, uint16_t id, unsigned lcore, std::string& error);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // The lcore entry point: polls until dp.stop. Reports RCU quiescent states once per poll.
  int run();
  // One poll of every port queue and the handoff ring; returns the packets taken in.
  unsigned poll_once();
  // The pipeline for one burst received on `port` (also used by the benchmark). count_rx = false for
  // frames another worker received and handed over (already counted there).
  void process_burst(uint8_t port, rte_mbuf** pkts, uint16_t n, bool count_rx = true);
  // Transmits everything buffered (frames waiting for encryption, TX queues and handoffs).
  void flush();

  uint16_t id() const { return ctx_.id; }
  unsigned lcore() const { return lcore_; }
  rte_ring* handoff_ring() const { return handoff_; }
  const FlowTable& flows() const { return flows_; }

 private:
  WorkerContext ctx_;  // first: every stage below holds a reference to it

 public:
  // The worker's counters (they live in its context), for the control lcore's stats report.
  WorkerStats& stats = ctx_.stats;
  std::vector<PortStats>& port_stats = ctx_.port_stats;
  std::vector<TunnelStats>& tunnel_stats = ctx_.tunnel_stats;

 private:
  Worker(Dataplane& dp, uint16_t id, unsigned lcore, rte_ring* handoff);
  // classify (worker.cpp); process_burst picks the instance with or without trace points, once per burst
  template <bool kTrace>
  void classify_burst(uint8_t port, rte_mbuf** pkts, uint16_t n, bool count_rx);
  void handle_handoffs(rte_mbuf** objs, unsigned n);
  void sweep_tables(uint64_t now_ns);  // flow expiry and the held-buffer sweeps: what the time since the last asks

  unsigned lcore_;
  rte_ring* handoff_;  // other workers hand this one packets here
  IdleBackoff idle_;
  // The stages, each after what it touches (construction order).
  FlowTable flows_;
  NameSlots names_{flows_};
  FlowSetup setup_{ctx_, flows_, names_};
  Tx tx_{ctx_};
  LocalInput local_{ctx_, tx_};
  StunInput stun_{ctx_, tx_};
  PairRelay pairs_{ctx_, tx_};
  Encap encap_{ctx_, tx_, flows_, names_};
  QuicHolds quic_{ctx_, flows_, setup_, encap_};
  VisitorInput visitors_{ctx_, flows_, setup_, encap_};
  TcpBinding binding_{ctx_, tx_, flows_, setup_, names_, encap_};
  EntryInput entry_{ctx_, tx_, flows_, setup_, names_, encap_, binding_, quic_, local_};
  EdgeOutput edge_out_{ctx_, tx_, local_, encap_};
  Fragments frags_{ctx_, tx_, local_, entry_, edge_out_};
  MasqueInput masque_{ctx_, visitors_, encap_};
  TunnelInput tunnel_{ctx_, tx_, flows_, names_, binding_, visitors_, masque_, frags_, local_};
  QuicInput quic_in_{ctx_, tx_, local_, tunnel_, masque_, encap_};
  EdgeInput edge_in_{ctx_, tx_, frags_};
  // Housekeeping, paced by the clock rather than by polls (loop/sweep_pacer.hpp): each table is swept once per its
  // period, so it costs the same per second to a busy worker and to an idle one. The periods and why: each stage.
  SweepPacer flow_sweep_{flows_.capacity(), FlowSetup::expiry_period_ns(*ctx_.dp.cfg)};
  SweepPacer binding_sweep_{TcpBinding::kSweepSlots, TcpBinding::kSweepPeriodNs};
  SweepPacer quic_sweep_{QuicHolds::kBuffers, QuicHolds::kSweepPeriodNs};
  SweepPacer name_sweep_{NameSlots::kSlots, NameSlots::kSweepPeriodNs};
  // The pacers are asked at most this often: their periods are 10 ms and more, so asking every 10 us rather than on
  // every poll changes nothing they do (what is due adds up) and keeps an empty busy poll (15-20 ns) from spending
  // a tenth of its time asking.
  static constexpr uint64_t kSweepTickNs = 10'000;
  uint64_t sweep_asked_ns_ = 0;
};

}  // namespace dptun
