// dpgw assembled: after EAL init, builds mempool, AEAD engine, ports, tables, sessions, workers and the
// control loop from a GatewayConfig, runs them, and tears everything down in the right order.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "dataplane/main_lcore/control_loop.hpp"
#include "dataplane/main_lcore/edge_control.hpp"
#include "dataplane/tables/dataplane.hpp"
#include "dataplane/main_lcore/gateway_state.hpp"
#include "dataplane/main_lcore/port.hpp"
#include "dataplane/loop/worker.hpp"

namespace dptun {

class Gateway {
 public:
  struct Options {
    bool launch_workers = true;  // false: the caller drives Worker::poll_once itself (benchmarks)
    bool control_socket = true;  // the control socket and the metrics endpoint
  };
  static std::unique_ptr<Gateway> create(const GatewayConfig& cfg, const Options& opt, std::string& error);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  Dataplane& dataplane() { return *dp_; }
  ControlLoop& control() { return *control_; }
  GatewayState& state() { return *state_; }
  // Launches the workers on their lcores and runs the control loop here until dp.stop; then joins them.
  int run();

 private:
  Gateway() = default;
  bool build(const Options& opt, std::string& error);
  static std::unique_ptr<Worker> make_worker(Dataplane& dp, uint16_t id, unsigned lcore, bool on_lcore,
                                             std::string& error);

  GatewayConfig cfg_;
  std::unique_ptr<Dataplane> dp_;
  std::unique_ptr<AeadEngine> engine_;
  std::unique_ptr<Reclaimer> reclaimer_;
  std::unique_ptr<SessionKeyManager> keys_;
  std::unique_ptr<GatewayState> state_;
  std::unique_ptr<EdgeControl> edge_;  // the edge role's keys and link (nullptr: none)
  std::vector<std::unique_ptr<PortGuard>> port_guards_;
  std::unique_ptr<ControlLoop> control_;
  std::vector<unsigned> worker_lcores_;
};

}  // namespace dptun
