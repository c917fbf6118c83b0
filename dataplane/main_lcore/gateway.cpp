#include "dataplane/main_lcore/gateway.hpp"

#include <rte_eal.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include <openssl/rand.h>

#include "common/clock.hpp"
#include "common/log.hpp"
#include "crypto/aead_cryptodev.hpp"
#include "crypto/aead_cryptodev_async.hpp"
#include "crypto/aead_ipsec_mb.hpp"
#include "crypto/aead_openssl.hpp"
#include "crypto/hp_ipsec_mb.hpp"

namespace dptun {

std::unique_ptr<Gateway> Gateway::create(const GatewayConfig& cfg, const Options& opt, std::string& error) {
  std::unique_ptr<Gateway> gw(new Gateway());
  gw->cfg_ = cfg;
  gw->dp_ = std::make_unique<Dataplane>(cfg.max_tunnels);
  gw->dp_->cfg = &gw->cfg_;
  if (!gw->build(opt, error)) return nullptr;
  return gw;
}

bool Gateway::build(const Options& opt, std::string& error) {
  const GatewayConfig& cfg = cfg_;
  Dataplane& dp = *dp_;
  const int socket = int(rte_socket_id());
  dp.handoff_offset = register_handoff_field();
  if (dp.handoff_offset < 0) {
    error = "cannot register the mbuf handoff field";
    return false;
  }
  dp.tracer = std::make_unique<Tracer>(cfg.workers);
  if (!dp.tracer->register_mbuf_fields(error)) return false;
  if (RAND_bytes(dp.syn_cookie_key.data(), int(dp.syn_cookie_key.size())) != 1) {
    error = "cannot draw the SYN cookie key";
    return false;
  }
  dp.pool = rte_pktmbuf_pool_create("dptun_mbufs", cfg.mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, socket);
  if (!dp.pool) {
    error = "cannot allocate " + std::to_string(cfg.mbufs) + " mbufs (raise dpgw.eal.memory_mb)";
    return false;
  }

  // Sessions come and go at runtime: size the cryptodev session pool for many (each has up to 2 x 8 epoch keys in
  // use and a few retired ones waiting for their grace period).
  constexpr unsigned kMaxKeys = 32768;
  if (cfg.crypto.uses_device()) {
    if (cfg.crypto.engine == "cryptodev")
      engine_ = CryptodevAead::open(cfg.crypto.device, kMaxKeys, error);
    else  // one queue pair per worker
      engine_ = CryptodevAsyncAead::open(cfg.crypto.device, cfg.workers, kMaxKeys, error);
    if (!engine_) {
      error = (cfg.crypto.device_where.empty() ? "" : cfg.crypto.device_where + ": ") + error;
      return false;
    }
  } else if (cfg.crypto.engine == "ipsec-mb") {  // one ipsec-mb manager per worker (`thread` is the worker's id)
    auto e = IpsecMbAead::open(cfg.workers, error);
    if (!e) {
      error = "dpgw.crypto.engine \"ipsec-mb\" (the default) cannot run: " + error +
              "; on a CPU without AES-NI set dpgw.crypto.engine = \"openssl\"";
      return false;
    }
    LOG_INFO("ipsec-mb: %s code", e->arch());
    engine_ = std::move(e);
  } else {
    engine_ = std::make_unique<OpensslAead>(cfg.workers);
  }
  LOG_INFO("AEAD engine: %s (%s)", engine_->name(), cfg.crypto.key_len == 16 ? "aes-128-gcm" : "aes-256-gcm");
  {  // QUIC sessions' header protection on the workers' side (every worker sends to every session)
    std::string hp_error;
    dp.quic_hp = IpsecMbHeaderProtection::open(cfg.workers, hp_error);
    if (!dp.quic_hp) LOG_WARN("QUIC sessions will be refused: ipsec-mb (header protection): %s", hp_error.c_str());
  }

  for (const PortConfig& pc : cfg.ports) {
    PortInfo info;
    if (!setup_port(pc, cfg.workers, dp.pool, info, error)) return false;
    port_guards_.push_back(std::make_unique<PortGuard>(info.port_id));
    dp.ports.push_back(info);
  }
  std::vector<RouteTable::Interface> ifaces;
  for (const PortConfig& pc : cfg.ports) ifaces.push_back({pc.address, pc.gateway ? pc.gateway->value : 0});
  dp.routes = std::make_unique<RouteTable>(std::move(ifaces));

  // The edge role: its session exists before the workers (their stages hold it); its keys come below.
  if (cfg.edge) dp.edge = make_edge_peer(*cfg.edge, cfg.workers);

  size_t rcu_size = rte_rcu_qsbr_get_memsize(cfg.workers);
  dp.rcu = static_cast<rte_rcu_qsbr*>(rte_zmalloc("dptun_rcu", rcu_size, RTE_CACHE_LINE_SIZE));
  if (!dp.rcu || rte_rcu_qsbr_init(dp.rcu, cfg.workers) != 0) {
    error = "cannot set up RCU";
    return false;
  }
  dp.control_ring = rte_ring_create("dptun_control", 1024, socket, RING_F_SC_DEQ);
  dp.quic_slow_ring = rte_ring_create("dptun_quic_slow", 512, socket, RING_F_SC_DEQ);
  dp.masque_ring = rte_ring_create("dptun_masque", 2048, socket, RING_F_SC_DEQ);
  dp.resolve_ring = rte_ring_create_elem("dptun_resolve", sizeof(uint64_t), 1024, socket, RING_F_SC_DEQ);
  dp.kernel_ring = rte_ring_create("dptun_kernel", 4096, socket, RING_F_SC_DEQ);
  if (!dp.control_ring || !dp.quic_slow_ring || !dp.masque_ring || !dp.resolve_ring || !dp.kernel_ring) {
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
  for (uint16_t w = 0; w < cfg.workers; ++w) {
    std::unique_ptr<Worker> worker = make_worker(dp, w, worker_lcores_[w], opt.launch_workers, error);
    if (!worker) return false;
    dp.workers.push_back(std::move(worker));
  }

  // Tunnels, sessions and entry points: the config's static ones now, dpctld's at runtime.
  dp.started_ns = dp.clock.now_ns();
  dp.realtime_offset_ns.store(int64_t(realtime_ns()) - int64_t(dp.started_ns));
  reclaimer_ = std::make_unique<Reclaimer>(dp.rcu);
  keys_ = std::make_unique<SessionKeyManager>(*engine_, cfg.crypto.key_len, cfg.crypto.rekey_interval_ns, *reclaimer_);
  state_ = std::make_unique<GatewayState>(dp, *keys_, *reclaimer_);
  if (!state_->apply_config(cfg, error)) return false;
  state_->publish_all();
  if (dp.edge) {
    edge_ = std::make_unique<EdgeControl>(dp, *engine_, cfg.crypto.rekey_interval_ns, *reclaimer_);
    if (!edge_->start(error)) return false;
  }

  control_ = std::make_unique<ControlLoop>(dp, *state_, *reclaimer_, edge_.get());
  if (opt.control_socket && (!control_->open_control_socket(error) || !control_->open_metrics(error))) return false;
  if (!control_->open_kernel_path(error)) return false;
  return true;
}

static int worker_main(void* arg) { return static_cast<Worker*>(arg)->run(); }

namespace {
struct WorkerToMake {
  Dataplane& dp;
  uint16_t id;
  unsigned lcore;
  std::string error;
  std::unique_ptr<Worker> made;
};
int make_on_lcore(void* arg) {
  auto& m = *static_cast<WorkerToMake*>(arg);
  m.made = Worker::create(m.dp, m.id, m.lcore, m.error);
  return m.made ? 0 : -1;
}
}  // namespace

// A worker made on its own lcore (`on_lcore`), so that its memory is first touched, and placed, on that lcore's
// NUMA node; otherwise (benchmark, tests: one thread) here.
std::unique_ptr<Worker> Gateway::make_worker(Dataplane& dp, uint16_t id, unsigned lcore, bool on_lcore,
                                             std::string& error) {
  WorkerToMake m{dp, id, lcore, {}, nullptr};
  if (!on_lcore) {
    make_on_lcore(&m);
  } else if (rte_eal_remote_launch(make_on_lcore, &m, lcore) != 0) {
    m.error = "worker " + std::to_string(id) + ": lcore " + std::to_string(lcore) + " is busy";
  } else {
    rte_eal_wait_lcore(lcore);
  }
  if (!m.made) error = m.error;
  return std::move(m.made);
}

int Gateway::run() {
  Dataplane& dp = *dp_;
  for (auto& w : dp.workers) {
    if (rte_eal_remote_launch(worker_main, w.get(), w->lcore()) != 0) {
      LOG_ERROR("cannot launch worker %u on lcore %u", w->id(), w->lcore());
      dp.stop = true;
      break;
    }
  }
  LOG_INFO("running: %zu worker(s), %zu port(s), %zu tunnel(s), %zu entry point(s)", dp.workers.size(),
           dp.ports.size(), state_->tunnels().size(), state_->entries().size());
  control_->run();
  rte_eal_mp_wait_lcore();
  return 0;
}

Gateway::~Gateway() {
  if (!dp_) return;
  Dataplane& dp = *dp_;
  control_.reset();
  // Workers are stopped: sessions, tables and keys can go at once (before the engine that made the keys).
  state_.reset();
  edge_.reset();
  dp.edge.reset();  // (its keys, before the engine that made them)
  keys_.reset();
  reclaimer_.reset();
  for (auto& w : dp.workers) {
    void* m;
    while (w->handoff_ring() && rte_ring_dequeue(w->handoff_ring(), &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
  }
  dp.workers.clear();
  for (rte_ring* r : {dp.control_ring, dp.quic_slow_ring, dp.masque_ring, dp.kernel_ring}) {
    void* m;
    while (r && rte_ring_dequeue(r, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
    rte_ring_free(r);
  }
  rte_ring_free(dp.resolve_ring);
  port_guards_.clear();
  engine_.reset();
  rte_free(dp.rcu);
  rte_mempool_free(dp.pool);
}

}  // namespace dptun
