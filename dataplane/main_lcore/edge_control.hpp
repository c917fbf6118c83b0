// The edge role on the main lcore (docs/operations.md "Edge role"): makes the edge session the workers use
// (dataplane/edge/edge_peer.hpp) from the config before they start, then, every control tick, keeps its keys
// published ahead of use (its own SessionKeyManager: the edge's cipher may differ from dpgw.crypto's), moves its
// transmit counter up to the wall clock while the concentrator does not answer (a restarted concentrator has keys
// ready for the wall clock's epoch, as for a restarted dpagent), and logs when the tunnel comes up or goes down and
// when frames from the concentrator fail authentication.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "crypto/aead.hpp"
#include "dataplane/edge/edge_peer.hpp"
#include "dataplane/main_lcore/gateway_config.hpp"
#include "dataplane/tables/dataplane.hpp"
#include "dataplane/tables/reclaimer.hpp"

namespace dptun {

// The edge session as the workers will see it: agent side, counters that follow the wall clock (one epoch ahead of
// it at start, so a restarted edge never reuses a nonce), the concentrator as its configured endpoint, the RX worker
// picked by the index as for the gateway's own sessions. No keys yet (EdgeControl::start).
std::unique_ptr<EdgePeer> make_edge_peer(const EdgeConfig& cfg, uint16_t workers);

class EdgeControl {
 public:
  EdgeControl(Dataplane& dp, AeadEngine& engine, uint64_t rekey_interval_ns, Reclaimer& reclaimer);
  // The first keys, before the workers run; false with `error`.
  bool start(std::string& error);
  // Every control tick (about 10 ms): keys, the counter's anchor; logs once a second. now_ns: dp.clock; real_ns: wall.
  void tick(uint64_t now_ns, uint64_t real_ns);

 private:
  Dataplane& dp_;
  EdgePeer& edge_;
  SessionKeyManager keys_;
  enum class Link { Unknown, Up, Down } link_ = Link::Unknown;
  uint64_t started_ns_ = 0;
  uint64_t last_log_ns_ = 0;
  uint64_t auth_fail_reported_ = 0;
  uint64_t last_auth_report_ns_ = 0;
};

}  // namespace dptun
