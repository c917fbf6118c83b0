// The control lcore of dpgw: ARP (answer, learn, resolve), tunnels/sessions/entry points and their keys
// (GatewayState), the QUIC slow path (QuicSlowPath), MASQUE clients whose capsules dpctld carries (MasqueCapsules),
// RCU reclamation, the kernel path, the control socket (stats, dpctld) and rate-limited
// warnings. Runs on the main lcore and sleeps between ticks.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/line_server.hpp"
#include "common/metrics_http.hpp"
#include "dataplane/main_lcore/control_commands.hpp"
#include "dataplane/main_lcore/edge_control.hpp"
#include "dataplane/tables/dataplane.hpp"
#include "dataplane/main_lcore/gateway_state.hpp"
#include "dataplane/main_lcore/kernel_path.hpp"
#include "dataplane/main_lcore/link_watch.hpp"
#include "dataplane/main_lcore/masque_capsules.hpp"
#include "dataplane/main_lcore/quic_slow_path.hpp"
#include "dataplane/main_lcore/socket_drops.hpp"
#include "dataplane/tables/reclaimer.hpp"

struct rte_mbuf;

namespace dptun {

class ControlLoop {
 public:
  // `edge`: the edge role's control (nullptr: none).
  ControlLoop(Dataplane& dp, GatewayState& state, Reclaimer& reclaimer, EdgeControl* edge = nullptr);
  bool open_control_socket(std::string& error);
  bool open_kernel_path(std::string& error) { return kernel_.open(error); }
  // Prometheus text on dpgw.metrics_listen, rendered here once a second (libmicrohttpd serves it).
  bool open_metrics(std::string& error);
  // Runs until dp.stop is set.
  void run();
  // One tick: drains rings, maintains keys, serves the stats socket.
  void tick(uint64_t now_ns);
  QuicSlowPath& quic_slow_path() { return quic_; }

 private:
  void handle_arp(rte_mbuf* m);
  void send_arp_request(uint8_t port, uint32_t ip);
  bool transmit(uint8_t port, rte_mbuf* m);  // via worker 0's TX queue; false (and freed) when its ring is full
  void report(uint64_t now_ns);
  // SIGHUP: reads the config file again and applies what can change while running (static tunnels, peers and
  // their keys, entry points); says which other changes need a restart. A bad file changes nothing.
  void reload();

  Dataplane& dp_;
  GatewayState& state_;
  Reclaimer& reclaimer_;
  EdgeControl* edge_;
  LineServer control_;
  Controller controller_;  // which dpctld controls the gateway (control_commands.hpp)
  MetricsHttp metrics_;
  KernelPath kernel_;
  QuicSlowPath quic_;  // QUIC frames the fast path leaves, path validation (quic_slow_path.hpp)
  MasqueCapsules masque_;  // MASQUE clients whose capsules dpctld carries (masque_capsules.hpp)
  SocketDrops socket_drops_;  // read every 100 ms into dp_.socket_rx_dropped
  LinkWatch links_;           // writes dp_.link every 250 ms; changes logged
  uint64_t last_socket_drops_ns_ = 0;
  std::unordered_map<uint64_t, uint64_t> arp_requested_ns_;
  uint64_t last_keys_ns_ = 0;
  uint64_t last_report_ns_ = 0;
  std::unordered_map<uint16_t, uint64_t> last_auth_fail_;
  std::unordered_map<uint32_t, Endpoint> last_endpoint_;
  std::unordered_map<uint32_t, uint64_t> last_endpoint_changes_;
  bool neighbor_full_warned_ = false;
};

}  // namespace dptun
