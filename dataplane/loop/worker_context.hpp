// What every stage of one worker shares: the data plane's tables, the worker's id and clock, its counters, its
// trace points, the IPv4 ids it gives its own packets, and the one way a packet is dropped. Each stage holds a
// reference to its worker's context; only the loop (loop/worker.cpp) moves the clock. Single-threaded.
#pragma once
#include <cstdint>
#include <vector>

#include "dataplane/loop/trace.hpp"
#include "dataplane/tables/counters.hpp"
#include "dataplane/tables/dataplane.hpp"

struct rte_mbuf;

namespace dptun {

struct WorkerContext {
  WorkerContext(Dataplane& dp, uint16_t id);

  Dataplane& dp;
  const uint16_t id;
  uint64_t now_ns = 0;       // the worker's clock (TscClock), read once per poll
  uint64_t fresh_floor = 0;  // static peers' counters below this (wall clock - kClockFreshnessNs) are stale
  WorkerStats stats;
  std::vector<PortStats> port_stats;      // per dpgw port
  std::vector<TunnelStats> tunnel_stats;  // per TunnelTable slot
  TracePoints trace;                      // dpgw trace (loop/trace.hpp)
  const uint32_t max_frame_ip;            // the longest IPv4 packet one mbuf of dp.pool holds behind Ethernet

  // The IPv4 id of the next packet this worker makes (outer headers, answers); workers start apart.
  uint16_t next_ip_id() { return ip_id_++; }
  // The id of the next datagram this worker fragments: its own residue class modulo the workers, so two workers
  // never fragment two datagrams to one host with one id.
  uint16_t next_frag_id() {
    frag_id_ = uint16_t(frag_id_ + frag_step_);
    return frag_id_;
  }
  // Drops `m` for `why`: counted (and traced), freed.
  void drop(rte_mbuf* m, Drop why);

 private:
  void trace_drop(const rte_mbuf* m, Drop why);
  uint16_t ip_id_;
  uint16_t frag_id_;
  uint16_t frag_step_;
};

// A trace point (loop/trace.hpp) in a stage that holds its WorkerContext as `ctx_`: the statement after it runs,
// with `tr` the packet's new TraceRecord, only for a packet a `dpgw trace` follows. Without a trace armed it is one
// test of a worker-local flag.
#define DPTUN_TRACE(m, stage) \
  if (TraceRecord* tr = __builtin_expect(ctx_.trace.on(), 0) ? ctx_.trace.record((m), TraceStage::stage) : nullptr)
// The same in the burst stages, which are compiled twice (kTrace: a trace is armed) and picked once per burst:
// without a trace, their trace points are not there at all.
#define DPTUN_TRACE_IF(on, m, stage) \
  if (TraceRecord* tr = (on) ? ctx_.trace.record((m), TraceStage::stage) : nullptr)

}  // namespace dptun
