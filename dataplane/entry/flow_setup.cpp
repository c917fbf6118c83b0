// Flow setup: every stage that opens a flow, moves one to another session or ends one comes here (entry points, TCP
// binding, QUIC holds, visitors): the hostname rule (one policy), a session of the tunnel's pool, a table slot, the
// MSS clamp, the counters.
#include <algorithm>

#include "dataplane/entry/pool_pick.hpp"
#include "dataplane/hostname/ingress_table.hpp"
#include "dataplane/entry/flow_setup.hpp"
#include "dataplane/tables/flow_tracking.hpp"
#include "proto/relay_frame.hpp"

namespace dptun {

FlowSetup::FlowSetup(WorkerContext& ctx, FlowTable& flows, NameSlots& names) : ctx_(ctx), flows_(flows), names_(names) {
  flows_.set_release_hook(&FlowSetup::release_flow, this);
}

bool FlowSetup::plan_tunnel(uint16_t tunnel, uint32_t generation, FlowPlan& plan, Drop& why) const {
  const TunnelPool* pool = ctx_.dp.tunnels.get(tunnel);
  if (!pool || !generation || pool->generation != generation) {
    why = Drop::NoSession;
    return false;
  }
  plan.pool = pool;
  plan.tunnel = tunnel;
  return true;
}

bool FlowSetup::plan_by_rule(std::string_view name, uint16_t client_port, const TunnelSession* visitor, FlowPlan& plan,
                          Drop& why) const {
  if (name.empty()) {
    why = Drop::NoHostname;
    return false;
  }
  const IngressTable* table = ctx_.dp.ingress.load(std::memory_order_acquire);
  const IngressRoute* r = table ? table->lookup(name, ctx_.id) : nullptr;
  if (!r || (visitor && r->tunnel != visitor->tunnel)) {  // another tunnel's rules are not a visitor's to use
    why = Drop::NoRule;
    return false;
  }
  if (r->private_rule && !visitor) {  // public entry points never reach private rules
    why = Drop::PrivateRule;
    return false;
  }
  if (!plan_tunnel(r->tunnel, r->tunnel_generation, plan, why)) return false;
  plan.target = r->target ? *r->target : Endpoint{Ipv4{0}, 0};
  if (!plan.target.port) plan.target.port = client_port;
  plan.name = r->target ? std::string_view{} : name;
  plan.by_rule = true;
  plan.proxy_protocol = r->proxy_protocol;
  return true;
}

Flow* FlowSetup::open_flow(const FlowKey& key, uint32_t hash, const FlowPlan& plan, TunnelSession*& s, Drop& why) {
  s = pick_session(*plan.pool, hash);
  if (!s) {
    why = Drop::NoSession;
    return nullptr;
  }
  Flow* f = new_flow(key, hash);
  if (!f) {
    why = Drop::FlowTableFull;
    return nullptr;
  }
  if (!attach_flow(*f, plan, *s, why)) {
    flows_.erase(*f);
    return nullptr;
  }
  return f;
}

bool FlowSetup::attach_flow(Flow& f, const FlowPlan& plan, TunnelSession& s, Drop& why) {
  if (!plan.name.empty() && !names_.hold(f, plan.name)) {
    why = Drop::BindingFull;
    return false;
  }
  pin_flow(f, s);
  f.tunnel = plan.tunnel;
  f.tunnel_generation = plan.pool->generation;
  f.target_ip = plan.target.ip;
  f.target_port = plan.target.port;
  f.udp_ttl_ms = uint32_t(plan.udp_ttl_ns / 1000000ull);
  f.keepalive = plan.keepalive;
  f.visitor = plan.visitor;
  f.masque = plan.masque;
  f.mss_clamp = path_mss(s);
  ctx_.stats.flows_created.add();
  ctx_.tunnel_stats[plan.tunnel].flows_created.add();
  if (plan.by_rule) ctx_.stats.hostname_routed.add();
  if (plan.visitor) ctx_.stats.visitor_flows.add();
  return true;
}

TunnelSession* FlowSetup::flow_session(Flow& f, const TunnelPool& pool, bool& repinned) {
  TunnelSession* s = ctx_.dp.sessions.find(f.session_index);
  // (An index dpctld gave to another agent, or to a visitor, since: not this flow's session any more.)
  if (s && !s->visitor && s->tunnel == f.tunnel && session_live(*s, ctx_.now_ns, ctx_.dp.cfg->session_timeout_ns)) return s;
  // The session went away or its keepalives stopped: re-pin the flow to another one of the pool.
  s = pick_session(pool, f.hash);
  if (!s) return nullptr;
  pin_flow(f, *s);
  ctx_.stats.flows_repinned.add();
  repinned = true;
  return s;
}

void FlowSetup::end_flow(Flow& f) {
  if (f.deadline_ns <= ctx_.now_ns) note_expired(f);
  names_.release(f);
  flows_.erase(f);
  ctx_.stats.flows_expired.add();
}

uint16_t FlowSetup::path_mss(const TunnelSession& s) const {
  const Route rt = ctx_.dp.routes->lookup(s.peer().ip);
  return inner_tcp_mss(ctx_.dp.ports[rt.valid ? rt.port : 0].mtu);
}

void FlowSetup::release_flow(void* setup, const Flow& f) {
  if (!f.session_serial) return;
  TunnelSession* s = static_cast<FlowSetup*>(setup)->ctx_.dp.sessions.find(f.session_index);
  if (s && s->serial == f.session_serial) s->flows_pinned.fetch_sub(1, std::memory_order_relaxed);
}

void FlowSetup::pin_flow(Flow& f, TunnelSession& s) {
  release_flow(this, f);
  f.session_index = s.index;
  f.session_serial = s.serial;
  s.flows_pinned.fetch_add(1, std::memory_order_relaxed);
  s.flows_total.fetch_add(1, std::memory_order_relaxed);
}

Flow* FlowSetup::new_flow(const FlowKey& key, uint32_t hash) {
  bool evicted;
  Flow* f = flows_.insert(key, hash, ctx_.now_ns, evicted);
  if (evicted) ctx_.stats.flows_evicted.add();
  return f;
}

bool FlowSetup::session_usable(const TunnelSession& s) const {
  if (!session_live(s, ctx_.now_ns, ctx_.dp.cfg->session_timeout_ns)) return false;
  return ctx_.dp.routes->lookup(s.peer().ip).valid;
}

TunnelSession* FlowSetup::pick_session(const TunnelPool& pool, uint32_t hash) {
  const uint64_t timeout = ctx_.dp.cfg->session_timeout_ns;
  return pick_from_pool<TunnelSession>(
      pool.sessions, hash, [&](const TunnelSession& s) { return session_live(s, ctx_.now_ns, timeout); },
      [&](const TunnelSession& s) { return session_usable(s); });
}

void FlowSetup::note_expired(const Flow& f) {
  if (!flow_unanswered(f)) return;
  ctx_.stats.flows_unanswered.add();
  if (f.tunnel < ctx_.tunnel_stats.size()) ctx_.tunnel_stats[f.tunnel].flows_unanswered.add();
}

// Lookups treat a flow past its deadline as gone already (entry input, tunnel input, visitors): the sweep decides
// only when its slot comes back, when flows_expired / flows_unanswered count it and when its session's pinned count
// drops. A quarter of the shortest timeout keeps a table under churn from holding more than ~25 % of flows that
// are over; at most 1 s keeps those counters (flows_active) within a second of the truth and costs, for the default
// 65536 flows and timeouts (5 s the shortest), 65536 slots a second (a few ms of a worker when they are out of
// cache: docs/performance.md, "Idle housekeeping"); at least 10 ms bounds the cost should a timeout be tiny (the
// configuration's shortest, 0.1 s, gives 25 ms; only tests go lower).
// Entry points dpctld adds later with a shorter ttl are not counted: their flows come back at most a second late.
uint64_t FlowSetup::expiry_period_ns(const GatewayConfig& cfg) {
  const FlowConfig& fc = cfg.flow;
  uint64_t shortest = std::min({fc.udp_ttl_ns, fc.tcp_syn_timeout_ns, fc.tcp_established_timeout_ns,
                                fc.tcp_closing_timeout_ns, fc.tcp_closed_timeout_ns});
  for (const EntryPointConfig& e : cfg.entry_points)
    if (e.udp_ttl_ns) shortest = std::min(shortest, e.udp_ttl_ns);
  return std::clamp<uint64_t>(shortest / 4, 10'000'000ull, 1'000'000'000ull);
}

void FlowSetup::expire(uint32_t budget) {
  // A flow past its deadline is already treated as gone by lookups; the sweep only gives its slot back.
  const uint32_t expired = flows_.expire(ctx_.now_ns, budget, [this](const Flow& f) { note_expired(f); });
  if (expired) ctx_.stats.flows_expired.add(expired);
}

}  // namespace dptun
