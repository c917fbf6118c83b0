#include "dataplane/main_lcore/edge_control.hpp"

#include "common/clock.hpp"
#include "common/log.hpp"
#include "dataplane/loop/worker.hpp"

namespace dptun {

std::unique_ptr<EdgePeer> make_edge_peer(const EdgeConfig& cfg, uint16_t workers) {
  auto e = std::make_unique<EdgePeer>(cfg.snat_net);
  TunnelSession& s = e->session;
  s.index = cfg.session;
  s.agent_side = true;
  s.peer_clock_counters = true;  // the concentrator's counters follow the wall clock: stale ones are refused
  s.from_config = true;
  s.base_secret = cfg.psk;
  s.rx_worker = uint16_t(cfg.session % (workers ? workers : 1));
  s.local_port = cfg.local_port;
  s.endpoint.store(cfg.concentrator);
  s.configured_endpoint = true;
  // Static keys outlive this process: start one epoch ahead of the wall clock (docs/protocol.md).
  s.tx_counter.store(realtime_ns() + kClockLeadNs);
  e->concentrator = cfg.concentrator;
  e->local_port = cfg.local_port;
  e->underlay_port = cfg.underlay_port;
  e->lan_port = cfg.lan_port;
  e->keepalive_ns = cfg.keepalive_ns;
  return e;
}

EdgeControl::EdgeControl(Dataplane& dp, AeadEngine& engine, uint64_t rekey_interval_ns, Reclaimer& reclaimer)
    : dp_(dp), edge_(*dp.edge), keys_(engine, dp.cfg->edge->key_len, rekey_interval_ns, reclaimer) {}

bool EdgeControl::start(std::string& error) {
  started_ns_ = dp_.clock.now_ns();
  last_log_ns_ = last_auth_report_ns_ = started_ns_;
  if (!keys_.maintain(edge_.session, started_ns_, realtime_ns())) {
    error = "edge: cannot create the keys of session " + std::to_string(edge_.session.index);
    return false;
  }
  const EdgeConfig& c = *dp_.cfg->edge;
  LOG_INFO("edge: static session %u to concentrator %s from %s:%u (port %s), targets on port %s, translated sources "
           "%s, %s",
           c.session, c.concentrator.str().c_str(), Ipv4{dp_.ports[c.underlay_port].address}.str().c_str(),
           unsigned(c.local_port), dp_.ports[c.underlay_port].name.c_str(), dp_.ports[c.lan_port].name.c_str(),
           c.snat_net.str().c_str(), c.key_len == 16 ? "aes-128-gcm" : "aes-256-gcm");
  return true;
}

void EdgeControl::tick(uint64_t now_ns, uint64_t real_ns) {
  TunnelSession& s = edge_.session;
  if (!keys_.maintain(s, now_ns, real_ns)) LOG_ERROR("edge: session %u: cannot install keys", s.index);
  const bool up = edge_.up(now_ns);
  if (!up) {
    // No answer: the concentrator may have restarted, and has keys ready for the wall clock's epoch (maintain just
    // published ours for it). The counter only grows.
    uint64_t c = s.tx_counter.load(std::memory_order_relaxed);
    while (c < real_ns && !s.tx_counter.compare_exchange_weak(c, real_ns, std::memory_order_relaxed)) {
    }
  }
  if (now_ns - last_log_ns_ < 1'000'000'000ull) return;
  last_log_ns_ = now_ns;
  if (up && link_ != Link::Up) {
    LOG_INFO("edge: concentrator %s %s (session %u)", edge_.concentrator.str().c_str(),
             link_ == Link::Unknown ? "answered: tunnel up" : "answering again: tunnel up", s.index);
    link_ = Link::Up;
  } else if (!up && link_ != Link::Down) {
    const uint64_t last = s.last_rx_ns.load(std::memory_order_relaxed);
    const uint64_t silent = now_ns - (last ? last : started_ns_);
    if (silent > 3 * edge_.keepalive_ns) {
      LOG_WARN("edge: no authenticated answer from concentrator %s for %.1f s: it is down or unreachable, or it does "
               "not know session %u with this key",
               edge_.concentrator.str().c_str(), double(silent) / 1e9, s.index);
      link_ = Link::Down;
    }
  }
  if (now_ns - last_auth_report_ns_ >= 5'000'000'000ull) {
    uint64_t failed = 0;
    for (const auto& w : dp_.workers) failed += w->stats.edge_auth_fail.get();
    if (failed > auth_fail_reported_)
      LOG_WARN("edge: %llu frames from concentrator %s failed authentication in the last 5 s: it uses another key "
               "or cipher for session %u (or someone tampers with the traffic)",
               (unsigned long long)(failed - auth_fail_reported_), edge_.concentrator.str().c_str(), s.index);
    auth_fail_reported_ = failed;
    last_auth_report_ns_ = now_ns;
  }
}

}  // namespace dptun
