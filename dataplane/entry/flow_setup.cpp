// Flow setup: every stage that opens a flow or moves one to another session comes here (entry points, TCP
// binding, QUIC holds, visitors): a table slot, the session of the tunnel's pool, the hostname rule.
#include "dataplane/entry/pool_pick.hpp"
#include "dataplane/loop/worker.hpp"

namespace dptun {

// A new flow on an entry point routed by hostname (QUIC: the SNI its Initials gave): the rule for the name.
// Public entry points never use private rules.
const IngressRoute* Worker::route_by_hostname(std::string_view name, Drop& refused) {
  const IngressTable* table = dp_.ingress.load(std::memory_order_acquire);
  const IngressRoute* r = table ? table->lookup(name, id_) : nullptr;
  if (!r) {
    refused = Drop::NoRule;
    return nullptr;
  }
  if (r->private_rule) {
    refused = Drop::PrivateRule;
    return nullptr;
  }
  stats.hostname_routed.add();
  return r;
}

void Worker::release_flow(void* worker, const Flow& f) {
  if (!f.session_serial) return;
  TunnelSession* s = static_cast<Worker*>(worker)->dp_.sessions.find(f.session_index);
  if (s && s->serial == f.session_serial) s->flows_pinned.fetch_sub(1, std::memory_order_relaxed);
}

void Worker::pin_flow(Flow& f, TunnelSession& s) {
  release_flow(this, f);
  f.session_index = s.index;
  f.session_serial = s.serial;
  s.flows_pinned.fetch_add(1, std::memory_order_relaxed);
  s.flows_total.fetch_add(1, std::memory_order_relaxed);
}

Flow* Worker::new_flow(const FlowKey& key, uint32_t hash) {
  bool evicted;
  Flow* f = flows_.insert(key, hash, now_ns_, evicted);
  if (evicted) stats.flows_evicted.add();
  return f;
}

bool Worker::session_usable(const TunnelSession& s) const {
  if (!session_live(s, now_ns_, dp_.cfg->session_timeout_ns)) return false;
  return dp_.routes->lookup(s.peer().ip.value).valid;
}

TunnelSession* Worker::pick_session(const TunnelPool& pool, uint32_t hash) {
  const uint64_t timeout = dp_.cfg->session_timeout_ns;
  return pick_from_pool<TunnelSession>(
      pool.sessions, hash, [&](const TunnelSession& s) { return session_live(s, now_ns_, timeout); },
      [&](const TunnelSession& s) { return session_usable(s); });
}

}  // namespace dptun
