// A worker lcore: polls its RX queue on every port plus its handoff ring, runs the pipeline in bursts
// (classify -> entry_input / tunnel_input / local_input -> tx), owns its flow table and counters.
// Single-threaded by construction: no locks, no syscalls, no allocation in the loop.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/token_bucket.hpp"
#include "dataplane/tables/counters.hpp"
#include "dataplane/tables/dataplane.hpp"
#include "dataplane/entry/entry_table.hpp"
#include "dataplane/entry/entry_input.hpp"
#include "dataplane/entry/flow_setup.hpp"
#include "dataplane/tables/flow_table.hpp"
#include "dataplane/loop/idle_backoff.hpp"
#include "dataplane/loop/trace.hpp"
#include "dataplane/loop/fragments.hpp"
#include "dataplane/loop/local_input.hpp"
#include "dataplane/loop/tx.hpp"
#include "dataplane/loop/worker_context.hpp"
#include "dataplane/relay/encap.hpp"
#include "dataplane/hostname/ingress_table.hpp"
#include "dataplane/hostname/binding_buffers.hpp"
#include "dataplane/hostname/name_slots.hpp"
#include "dataplane/hostname/quic_hold.hpp"
#include "dataplane/hostname/tcp_binding.hpp"
#include "dataplane/hostname/visitor_input.hpp"
#include "ingress/quic_initial.hpp"
#include "ingress/syn_cookie.hpp"
#include "packet/ipv4_reassembly.hpp"
#include "packet/tcp_segment.hpp"
#include "packet/parser.hpp"
#include "proto/relay_frame.hpp"

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
  // Transmits everything buffered (TX queues and handoffs).
  void flush();

  uint16_t id() const { return ctx_.id; }
  unsigned lcore() const { return lcore_; }
  rte_ring* handoff_ring() const { return handoff_; }
  const FlowTable& flows() const { return flows_; }

 private:
  WorkerContext ctx_;  // first: every stage below holds a reference to it
  Tx tx_;
  LocalInput local_{ctx_, tx_};

 public:
  // The worker's counters (they live in its context), for the control lcore's stats report.
  WorkerStats& stats = ctx_.stats;
  std::vector<PortStats>& port_stats = ctx_.port_stats;
  std::vector<TunnelStats>& tunnel_stats = ctx_.tunnel_stats;

 private:
  // classify (worker.cpp); process_burst picks the instance with or without trace points, once per burst
  template <bool kTrace>
  void classify_burst(uint8_t port, rte_mbuf** pkts, uint16_t n, bool count_rx);
  void handle_handoffs(rte_mbuf** objs, unsigned n);
  // tunnel_input.cpp: agent frame -> replay check -> decrypt -> flow -> client
  void tunnel_input(uint8_t port, rte_mbuf** pkts, const PacketInfo* info, uint16_t n);
  template <bool kTrace>
  void tunnel_burst(uint8_t port, rte_mbuf** pkts, const PacketInfo* info, uint16_t n);
  void deliver_to_client(rte_mbuf* m, uint64_t flow_id, TunnelSession& s);
  Flow* flow_of_reply(uint64_t flow_id, const TunnelSession& s, uint8_t proto, uint32_t ip, uint16_t port, Drop& why);
  // An agent's ICMP error about a flow's target (inner protocol ICMP): passed on to the client, rewritten as a NAT
  // would, or (hostname connections) the client's connection refused.
  void icmp_from_agent(rte_mbuf* m, uint64_t flow_id, TunnelSession& s);
  void reply_keepalive(uint8_t port, rte_mbuf* m, TunnelSession& s, const PacketInfo& pi);
  // trace points out of line (trace.hpp has the rest)

  Worker(Dataplane& dp, uint16_t id, unsigned lcore, rte_ring* handoff);

  unsigned lcore_;
  FlowTable flows_;
  NameSlots names_{flows_};  // hostnames of flows whose agent picks the target, until it answers
  FlowSetup setup_{ctx_, flows_, names_};
  Encap encap_{ctx_, tx_, flows_, names_};
  RelayCodec codec_;  // tunnel input's framing (relay/tunnel_input.cpp)
  QuicHolds quic_{ctx_, flows_, setup_, encap_};
  VisitorInput visitors_{ctx_, flows_, setup_, encap_};
  TcpBinding binding_{ctx_, tx_, flows_, setup_, names_, encap_};
  EntryInput entry_{ctx_, tx_, flows_, setup_, names_, encap_, binding_, quic_, local_};
  Fragments frags_{ctx_, tx_, local_, entry_};
  rte_ring* handoff_ = nullptr;
  IdleBackoff idle_;

};

}  // namespace dptun
