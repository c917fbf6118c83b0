// Flow setup: the one way a flow is opened, moved to another session or ended, for every stage that makes flows
// (entry points, TCP binding, QUIC holds, visitors): the hostname rule (one policy), a session of the tunnel's pool,
// a table slot, the MSS clamp, the counters. Touches the worker's flow table (insert, erase, expire; its release
// hook keeps the sessions' pinned counts), its name slots (a flow whose agent picks the target), the sessions'
// pinned-flow counts; reads tunnels, rules, routes. Counts flows_created/evicted/expired/repinned/unanswered,
// hostname_routed, visitor_flows.
#pragma once
#include <cstdint>
#include <string_view>

#include "common/inet.hpp"
#include "dataplane/hostname/name_slots.hpp"
#include "dataplane/loop/worker_context.hpp"
#include "dataplane/tables/flow_table.hpp"

namespace dptun {

// Where a new flow goes.
struct FlowPlan {
  const TunnelPool* pool = nullptr;
  uint16_t tunnel = 0;             // the pool's TunnelTable slot
  Endpoint target{};               // 0.0.0.0: the agent picks the target by `name`
  std::string_view name;           // held for the agent while it picks the target (agent-side routing)
  uint64_t udp_ttl_ns = 0;
  bool keepalive = false;
  bool by_rule = false;            // routed by a hostname rule (counted as hostname_routed)
  bool proxy_protocol = false;     // the rule's PROXY protocol v2 header (TCP binding)
  uint32_t visitor = 0;            // the visitor session whose flow this is (0: a client's)
  bool masque = false;             // a MASQUE client's flow (Flow::masque)
};

class FlowSetup {
 public:
  FlowSetup(WorkerContext& ctx, FlowTable& flows, NameSlots& names);
  FlowSetup(const FlowSetup&) = delete;
  FlowSetup& operator=(const FlowSetup&) = delete;

  // The plan for a flow on `tunnel`'s pool; false (no_session) when the tunnel went away (`generation` differs).
  bool plan_tunnel(uint16_t tunnel, uint32_t generation, FlowPlan& plan, Drop& why) const;
  // The plan by the hostname rule for `name`, for a client of a public entry point (`visitor` null: private rules
  // are refused) or for a visitor (only its own tunnel's rules, private or not). A rule's target without a port
  // takes `client_port`. False with `why`: no_hostname, no_rule, private_rule, no_session.
  bool plan_by_rule(std::string_view name, uint16_t client_port, const TunnelSession* visitor, FlowPlan& plan,
                    Drop& why) const;
  // A new flow for `key` along `plan`: a session of the pool (no_session), a table slot (flow_table_full), then
  // attach_flow. nullptr with `why`; `s` is the flow's session.
  Flow* open_flow(const FlowKey& key, uint32_t hash, const FlowPlan& plan, TunnelSession*& s, Drop& why);
  // Gives flow `f` its tunnel, session `s`, target, name (binding_full when no slot is left) and the MSS clamp of
  // the session's path; counts it (flows_created, per tunnel, hostname_routed, visitor_flows).
  bool attach_flow(Flow& f, const FlowPlan& plan, TunnelSession& s, Drop& why);
  // The session flow `f` rides now: its own while it lives, else another of `pool` (counted flows_repinned,
  // `repinned` set). nullptr when the pool has none.
  TunnelSession* flow_session(Flow& f, const TunnelPool& pool, bool& repinned);
  // A flow found in the table that may not go on (expired, its tunnel or entry point changed): counted, removed.
  void end_flow(Flow& f);
  // A live session of the pool for a new (or re-pinned) flow: by weight, only weight-255 sessions while any of
  // them is live, up to 3 retries when the picked one cannot be used. nullptr when none can.
  TunnelSession* pick_session(const TunnelPool& pool, uint32_t hash);
  // A table slot for `key` (a full table evicts an idle flow, counted), not yet attached; nullptr when none.
  Flow* new_flow(const FlowKey& key, uint32_t hash);
  uint16_t path_mss(const TunnelSession& s) const;  // inner_tcp_mss() of the port towards the session's agent
  // Gives back the slots of flows past their deadline among the next `budget` slots of the table (counted
  // flows_expired, flows_unanswered). The worker paces it by time: the whole table once per expiry_period_ns.
  void expire(uint32_t budget);
  // How long one sweep of the whole flow table takes: a quarter of the shortest flow timeout in `cfg` (its flow
  // section and its entry points' UDP ttl), between 10 ms and 1 s. Why: see flow_setup.cpp.
  static uint64_t expiry_period_ns(const GatewayConfig& cfg);

 private:
  bool session_usable(const TunnelSession& s) const;
  // Pins a flow to a session (a new flow, or one moved off a session that went away): the sessions' counts of
  // pinned flows follow, so a moved flow is counted on its new session only.
  void pin_flow(Flow& f, TunnelSession& s);
  static void release_flow(void* setup, const Flow& f);  // FlowTable's release hook: the flow's session counts it down
  void note_expired(const Flow& f);  // counts a flow that ends without an answer (flows_unanswered)

  WorkerContext& ctx_;
  FlowTable& flows_;
  NameSlots& names_;
};

}  // namespace dptun
