#include "dataplane/gateway.hpp"

#include <rte_eal.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include "common/clock.hpp"
#include "common/log.hpp"
#include "crypto/aead_cryptodev.hpp"
#include "crypto/aead_openssl.hpp"

namespace dptun {

std::unique_ptr<Gateway> Gateway::create(const GatewayConfig& cfg, const Options& opt, std::string& error) {
  std::unique_ptr<Gateway> gw(new Gateway());
  gw->cfg_ = cfg;
  gw->dp_.cfg = &gw->cfg_;
  if (!gw->build(opt, error)) return nullptr;
  return gw;
}

bool Gateway::build(const Options& opt, std::string& error) {
  const GatewayConfig& cfg = cfg_;
  const int socket = int(rte_socket_id());
  dp_.handoff_offset = register_handoff_field();
  if (dp_.handoff_offset < 0) {
    error = "cannot register the mbuf handoff field";
    return false;
  }
  dp_.pool = rte_pktmbuf_pool_create("dptun_mbufs", cfg.mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, socket);
  if (!dp_.pool) {
    error = "cannot allocate " + std::to_string(cfg.mbufs) + " mbufs (raise dpgw.eal.memory_mb)";
    return false;
  }

  if (cfg.crypto.engine == "cryptodev") {
    size_t sessions = 0;
    for (const auto& t : cfg.tunnels) sessions += t.peers.size();
    engine_ = CryptodevAead::open(cfg.crypto.device, unsigned(sessions * 2 * KeySlots::kSlots * 2 + 64), error);
    if (!engine_) return false;
  } else {
    engine_ = std::make_unique<OpensslAead>(cfg.workers);
  }
  LOG_INFO("AEAD engine: %s (%s)", engine_->name(), cfg.crypto.key_len == 16 ? "aes-128-gcm" : "aes-256-gcm");

  for (const PortConfig& pc : cfg.ports) {
    PortInfo info;
    if (!setup_port(pc, cfg.workers, dp_.pool, info, error)) return false;
    port_guards_.push_back(std::make_unique<PortGuard>(info.port_id));
    dp_.ports.push_back(info);
  }
  std::vector<RouteTable::Interface> ifaces;
  for (const PortConfig& pc : cfg.ports) ifaces.push_back({pc.address, pc.gateway ? pc.gateway->value : 0});
  dp_.routes = std::make_unique<RouteTable>(std::move(ifaces));
  dp_.entries = std::make_unique<EntryTable>(cfg.entry_points);

  for (size_t t = 0; t < cfg.tunnels.size(); ++t) {
    const TunnelConfig& tc = cfg.tunnels[t];
    Tunnel tunnel{tc.id, tc.name, {}, 0};
    for (const StaticPeerConfig& pc : tc.peers) {
      auto s = std::make_unique<TunnelSession>();
      s->index = pc.index;
      s->tunnel = uint16_t(t);
      s->weight = pc.weight;
      s->rx_worker = uint16_t(pc.index % cfg.workers);
      s->base_secret = pc.psk;
      s->clock_counters = true;
      if (pc.endpoint) s->endpoint.store(pc.endpoint->pack());
      // Static keys outlive restarts: start the counter at the wall clock in ns so a restarted gateway never
      // reuses a nonce (docs/protocol.md, "Static peers").
      s->tx_counter.store(realtime_ns());
      tunnel.total_weight += pc.weight;
      tunnel.sessions.push_back(&dp_.sessions.add(std::move(s)));
    }
    dp_.tunnels.push_back(std::move(tunnel));
  }

  size_t rcu_size = rte_rcu_qsbr_get_memsize(cfg.workers);
  dp_.rcu = static_cast<rte_rcu_qsbr*>(rte_zmalloc("dptun_rcu", rcu_size, RTE_CACHE_LINE_SIZE));
  if (!dp_.rcu || rte_rcu_qsbr_init(dp_.rcu, cfg.workers) != 0) {
    error = "cannot set up RCU";
    return false;
  }
  keys_ = std::make_unique<SessionKeyManager>(*engine_, cfg.crypto.key_len, cfg.crypto.rekey_interval_ns, dp_.rcu);
  dp_.started_ns = dp_.clock.now_ns();
  const uint64_t real = realtime_ns();
  dp_.realtime_offset_ns.store(int64_t(real) - int64_t(dp_.started_ns));
  for (const auto& s : dp_.sessions.all()) {
    if (!keys_->maintain(*s, dp_.started_ns, real)) {
      error = "cannot create keys for session " + std::to_string(s->index);
      return false;
    }
  }

  dp_.control_ring = rte_ring_create("dptun_control", 1024, socket, RING_F_SC_DEQ);
  dp_.resolve_ring = rte_ring_create_elem("dptun_resolve", sizeof(uint64_t), 1024, socket, RING_F_SC_DEQ);
  if (!dp_.control_ring || !dp_.resolve_ring) {
    error = "cannot create control rings";
    return false;
  }

  if (opt.launch_workers) {
    unsigned lcore;
    RTE_LCORE_FOREACH_WORKER(lcore) worker_lcores_.push_back(lcore);
    if (worker_lcores_.size() != cfg.workers) {
      error = "EAL has " + std::to_string(worker_lcores_.size()) + " worker lcores but dpgw.workers = " +
              std::to_string(cfg.workers) + " (fix dpgw.eal.lcores)";
      return false;
    }
  } else {
    worker_lcores_.assign(cfg.workers, rte_lcore_id());
  }
  for (uint16_t w = 0; w < cfg.workers; ++w)
    dp_.workers.push_back(std::make_unique<Worker>(dp_, w, worker_lcores_[w]));

  control_ = std::make_unique<ControlLoop>(dp_, *keys_);
  if (opt.stats_socket && !control_->open_stats_socket(error)) return false;
  return true;
}

static int worker_main(void* arg) { return static_cast<Worker*>(arg)->run(); }

int Gateway::run() {
  for (auto& w : dp_.workers) {
    if (rte_eal_remote_launch(worker_main, w.get(), w->lcore()) != 0) {
      LOG_ERROR("cannot launch worker %u on lcore %u", w->id(), w->lcore());
      dp_.stop = true;
      break;
    }
  }
  LOG_INFO("running: %zu worker(s), %zu port(s), %zu tunnel(s), %zu entry point(s)", dp_.workers.size(),
           dp_.ports.size(), dp_.tunnels.size(), dp_.entries->size());
  control_->run();
  rte_eal_mp_wait_lcore();
  return 0;
}

Gateway::~Gateway() {
  control_.reset();
  // Free what workers still hold before the pool and ports go away.
  for (auto& w : dp_.workers) {
    void* m;
    while (w->handoff_ring() && rte_ring_dequeue(w->handoff_ring(), &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
  }
  dp_.workers.clear();
  if (dp_.control_ring) {
    void* m;
    while (rte_ring_dequeue(dp_.control_ring, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
  }
  rte_ring_free(dp_.control_ring);
  rte_ring_free(dp_.resolve_ring);
  if (keys_) {
    for (const auto& s : dp_.sessions.all()) keys_->release(*s);
    keys_.reset();
  }
  port_guards_.clear();
  engine_.reset();
  rte_free(dp_.rcu);
  rte_mempool_free(dp_.pool);
}

}  // namespace dptun
