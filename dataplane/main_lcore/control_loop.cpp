#include "dataplane/main_lcore/control_loop.hpp"

#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include <algorithm>
#include <cstring>
#include <ctime>

#include "common/bytes.hpp"
#include "common/clock.hpp"
#include "common/json_writer.hpp"
#include "common/log.hpp"
#include "common/config_file.hpp"
#include "dataplane/main_lcore/control_commands.hpp"
#include "dataplane/main_lcore/stats_report.hpp"
#include "dataplane/loop/worker.hpp"
#include "packet/headers.hpp"

namespace dptun {

bool ControlLoop::open_control_socket(std::string& error) {
  if (dp_.cfg->control_socket.empty()) return true;
  // One line is one message, and dpctld's `sync` of its whole state is one line: about 150 bytes per session and
  // per entry point, so at dpctld's limits (32768 sessions, 131070 entry points, 16384 tunnels) some 25 MiB.
  LineServer::Limits limits;
  limits.max_line = size_t(64) << 20;
  return control_.listen(dp_.cfg->control_socket, error, limits);
}

bool ControlLoop::open_metrics(std::string& error) {
  if (!dp_.cfg->metrics_listen) return true;
  metrics_.publish(stats_prometheus(dp_, controller_.epoch));
  if (!metrics_.start(*dp_.cfg->metrics_listen, error)) return false;
  LOG_INFO("metrics: http://%s/metrics", dp_.cfg->metrics_listen->str().c_str());
  return true;
}

void ControlLoop::run() {
  while (!dp_.stop.load(std::memory_order_relaxed)) {
    tick(dp_.clock.now_ns());
    timespec ts{0, 1'000'000};  // 1 ms
    nanosleep(&ts, nullptr);
  }
}

void ControlLoop::reload() {
  const std::string& path = dp_.cfg->path;
  GatewayConfig next;
  try {
    next = load_gateway_config(path);
  } catch (const ConfigError& e) {
    LOG_ERROR("reload: %s; nothing changed", e.what());
    return;
  }
  // What only a restart applies: the DPDK setup (EAL, ports, workers, queues, memory) and the values workers
  // read without synchronisation.
  const GatewayConfig& now = *dp_.cfg;
  const std::vector<std::string> restart = restart_only_changes(now, next);
  std::string error;
  std::vector<std::string> changes;
  if (!state_.apply_config(next, error, &changes)) {
    LOG_ERROR("reload %s: %s; nothing changed", path.c_str(), error.c_str());
    return;
  }
  for (const std::string& c : changes) LOG_INFO("reload: %s", c.c_str());
  std::string pending;
  for (const std::string& k : restart) pending += (pending.empty() ? "" : ", ") + k;
  LOG_INFO("reloaded %s: %zu change(s) applied%s%s", path.c_str(), changes.size(),
           pending.empty() ? "" : "; these need a restart and were not applied: ", pending.c_str());
}

namespace {
std::vector<std::string> port_devices(const Dataplane& dp) {
  std::vector<std::string> out;
  if (dp.cfg)
    for (const PortConfig& pc : dp.cfg->ports) out.push_back(pc.device);
  return out;
}
}  // namespace

ControlLoop::ControlLoop(Dataplane& dp, GatewayState& state, Reclaimer& reclaimer, EdgeControl* edge)
    : dp_(dp), state_(state), reclaimer_(reclaimer), edge_(edge), kernel_(dp), quic_(dp, state), masque_(dp, state),
      socket_drops_(port_devices(dp)), links_(dp, port_devices(dp)) {
  for (size_t p = 0; p < dp_.socket_counted.size(); ++p) dp_.socket_counted[p] = socket_drops_.counted(uint8_t(p));
}

void ControlLoop::tick(uint64_t now_ns) {
  if (dp_.reload.exchange(false)) reload();
  if (metrics_.wanted()) metrics_.publish(stats_prometheus(dp_, controller_.epoch));  // a scrape waits for it
  void* objs[32];
  unsigned n = rte_ring_sc_dequeue_burst(dp_.control_ring, objs, 32, nullptr);
  for (unsigned i = 0; i < n; ++i) handle_arp(static_cast<rte_mbuf*>(objs[i]));
  n = rte_ring_sc_dequeue_burst(dp_.quic_slow_ring, objs, 32, nullptr);
  for (unsigned i = 0; i < n; ++i) quic_.input(static_cast<rte_mbuf*>(objs[i]), now_ns);
  quic_.tick(now_ns);
  kernel_.poll([this](uint8_t port, rte_mbuf* m) { return transmit(port, m); });

  uint64_t want[32];
  n = rte_ring_sc_dequeue_burst_elem(dp_.resolve_ring, want, sizeof want[0], 32, nullptr);
  for (unsigned i = 0; i < n; ++i) {
    if (arp_requested_ns_.size() > 4096) {  // forget old requests; the map must not grow without bound
      for (auto it = arp_requested_ns_.begin(); it != arp_requested_ns_.end();)
        it = now_ns - it->second > 1'000'000'000ull ? arp_requested_ns_.erase(it) : std::next(it);
    }
    uint64_t& last = arp_requested_ns_[want[i]];
    if (last && now_ns - last < 200'000'000ull) continue;  // one request per next hop per 200 ms
    last = now_ns;
    send_arp_request(uint8_t(want[i] >> 32), uint32_t(want[i]));
  }

  if (now_ns - last_keys_ns_ >= 10'000'000ull) {  // every 10 ms
    last_keys_ns_ = now_ns;
    const uint64_t real = realtime_ns();
    dp_.realtime_offset_ns.store(int64_t(real) - int64_t(now_ns), std::memory_order_relaxed);
    state_.maintain(now_ns, real);
    if (edge_) edge_->tick(now_ns, real);
    reclaimer_.reclaim();
  }
  if (now_ns - last_socket_drops_ns_ >= 100'000'000ull) {  // every 100 ms
    last_socket_drops_ns_ = now_ns;
    socket_drops_.refresh();
    for (size_t p = 0; p < dp_.socket_rx_dropped.size(); ++p) dp_.socket_rx_dropped[p] = socket_drops_.dropped(uint8_t(p));
  }
  links_.poll(now_ns);
  if (now_ns - last_report_ns_ >= 1'000'000'000ull) {
    report(now_ns);
    last_report_ns_ = now_ns;
  }
  // Targets' replies to MASQUE clients whose capsules dpctld carries: to the controller's connection, before this
  // tick's replies are written (a bounded number per tick).
  masque_.drain([this](const std::string& line) {
    if (!controller_.conn || !control_.is_open(controller_.conn)) return MasqueCapsules::Push::NoController;
    return control_.push(controller_.conn, line) ? MasqueCapsules::Push::Queued : MasqueCapsules::Push::Backlog;
  });
  ControlContext ctx{dp_, state_, controller_, control_, now_ns, &quic_, &masque_};
  control_.poll([&](const std::string& line, bool& close, uint64_t conn) -> std::optional<std::string> {
    std::string reply = handle_control_line(line, close, conn, ctx);
    if (ctx.fence_conn) {  // a controller silent past its lease was replaced: it hears so, and is cut off
      control_.reply(ctx.fence_conn,
                     "{\"type\":\"error\",\"code\":\"fenced\",\"reason\":\"another dpctld took over the gateway: " +
                         json_escape(controller_.who) + "\"}\n",
                     true);
      ctx.fence_conn = 0;
    }
    return reply;
  });
}

// Once a second: log agent endpoint changes and authentication failures (never key material).
void ControlLoop::report(uint64_t now_ns) {
  (void)now_ns;
  for (const auto& [index, s] : state_.sessions()) {
    const TunnelPool* pool = dp_.tunnels.get(s->tunnel);
    const char* name = pool ? pool->name.c_str() : "?";
    const Endpoint ep = s->endpoint.load();
    Endpoint& last_ep = last_endpoint_[index];
    if (ep.port && ep != last_ep)
      LOG_INFO("tunnel %s session %u: agent endpoint %s", name, index, ep.str().c_str());
    last_ep = ep;
    // An endpoint that keeps moving means two agents run with one session's key: their counters share a
    // nonce space. Say so loudly.
    uint64_t changes = s->endpoint_changes.load(std::memory_order_relaxed);
    uint64_t& last_changes = last_endpoint_changes_[index];
    if (changes - last_changes >= 3)
      LOG_WARN("tunnel %s session %u: agent endpoint changed %llu times in the last second: are two agents "
               "running with this session's key? Each session must have exactly one agent.",
               name, index, (unsigned long long)(changes - last_changes));
    last_changes = changes;
  }
  for (const auto& [key, t] : state_.tunnels()) {
    uint64_t v = 0;
    for (const auto& w : dp_.workers) v += w->tunnel_stats[t.slot].auth_fail.get();
    uint64_t& last = last_auth_fail_[t.slot];
    if (v > last)
      LOG_WARN("tunnel %s: %llu frames failed authentication in the last second (an agent with the wrong key, "
               "or tampering)",
               t.name.c_str(), (unsigned long long)(v - last));
    last = v;
  }
}

bool ControlLoop::transmit(uint8_t port, rte_mbuf* m) {
  dp_.meta(m) = HandoffMeta{0, 0, HandoffMeta::Transmit, port};
  if (rte_ring_mp_enqueue(dp_.workers[0]->handoff_ring(), m) == 0) return true;
  rte_pktmbuf_free(m);
  return false;
}

void ControlLoop::handle_arp(rte_mbuf* m) {
  const uint8_t port = dp_.meta(m).port;
  const PortInfo& pi = dp_.ports[port];
  uint8_t* eth = rte_pktmbuf_mtod(m, uint8_t*);
  uint8_t* arp = eth + kEthHeaderLen;
  const uint16_t op = load_be16(arp + 6);
  MacAddr sha;
  std::memcpy(sha.data(), arp + 8, 6);
  const uint32_t spa = load_be32(arp + 14);
  const uint32_t tpa = load_be32(arp + 24);
  MacAddr known;
  const bool for_us = tpa == pi.address;
  const bool on_link = dp_.cfg->ports[port].address.contains(Ipv4{spa});
  // Learn only neighbours on the port's subnet that talk to us (or update ones we know); keep the table at most
  // 3/4 full so a flood of made-up senders cannot slow every lookup down.
  if (spa && spa != pi.address && on_link) {
    bool known_before = dp_.neighbors.lookup(port, spa, known);
    if (known_before || (for_us && dp_.neighbors.size() < NeighborTable::kCapacity * 3 / 4))
      dp_.neighbors.update(port, spa, sha);
    else if (for_us && !neighbor_full_warned_) {
      LOG_WARN("neighbour table is 3/4 full (%u entries); not learning new neighbours", dp_.neighbors.size());
      neighbor_full_warned_ = true;
    }
  }
  // The kernel path learns its neighbours from the same ARP: requests for our address and replies to us (its own
  // requests go out as they are; dpgw answers requests itself).
  if (for_us && kernel_.enabled(port)) kernel_.deliver(port, m);
  if (op != kArpRequest || !for_us) {
    rte_pktmbuf_free(m);
    return;
  }
  // Turn the request into the reply in place.
  std::memcpy(eth, sha.data(), 6);
  std::memcpy(eth + 6, pi.mac.data(), 6);
  store_be16(arp + 6, kArpReply);
  std::memcpy(arp + 18, sha.data(), 6);
  store_be32(arp + 24, spa);
  std::memcpy(arp + 8, pi.mac.data(), 6);
  store_be32(arp + 14, pi.address);
  transmit(port, m);
}

void ControlLoop::send_arp_request(uint8_t port, uint32_t ip) {
  rte_mbuf* m = rte_pktmbuf_alloc(dp_.pool);
  if (!m) return;
  const PortInfo& pi = dp_.ports[port];
  uint8_t* eth = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, 60));
  if (!eth) {
    rte_pktmbuf_free(m);
    return;
  }
  std::memset(eth, 0, 60);
  std::memset(eth, 0xff, 6);
  std::memcpy(eth + 6, pi.mac.data(), 6);
  store_be16(eth + 12, kEtherTypeArp);
  uint8_t* arp = eth + kEthHeaderLen;
  store_be16(arp, 1);
  store_be16(arp + 2, kEtherTypeIpv4);
  arp[4] = 6;
  arp[5] = 4;
  store_be16(arp + 6, kArpRequest);
  std::memcpy(arp + 8, pi.mac.data(), 6);
  store_be32(arp + 14, pi.address);
  store_be32(arp + 24, ip);
  LOG_DEBUG("ARP who-has %s on port %s", Ipv4{ip}.str().c_str(), pi.name.c_str());
  transmit(port, m);
}

}  // namespace dptun
