// What dpgw's control socket answers: one-shot stats ("json" / "text", used by `dpgw stats`) and dpctld's
// JSON messages -- hello, sync, tunnel/session/entry changes, ingress_set, pair_set, status, masque_datagrams
// (docs/control-plane.md).
//
// One controller at a time: the dpctld whose hello was accepted owns the gateway's managed state under an
// epoch (+1 at every takeover). A second dpctld's hello is refused (`controller_busy`) while the owner's
// connection is open and heard within kControllerLeaseNs; after that it takes over, and the previous owner's
// connection is closed with `fenced`. Changes from any connection but the owner's, or naming another epoch,
// are refused (`not_controller` / `fenced`) and change nothing; so are masque_datagrams (the UDP payloads of MASQUE
// clients whose capsules dpctld carries: MasqueCapsules::inject), which are never answered otherwise: the reply is
// empty (nothing written), a message that does not decode is counted masque_capsule_malformed.
#pragma once
#include <cstdint>
#include <string>

namespace dptun {

struct Dataplane;
class GatewayState;
class LineServer;
class MasqueCapsules;
class QuicSlowPath;

inline constexpr uint64_t kControllerLeaseNs = 10'000'000'000ull;

struct Controller {
  uint64_t conn = 0;          // the owner's control connection (LineServer id); 0: none yet
  uint64_t epoch = 0;         // +1 at every takeover
  std::string who;            // "dpctld pid 1234 on host (instance ...)", for refusals and logs
  std::string instance;       // the owner's instance id (random per dpctld start)
  uint64_t last_heard_ns = 0;
  uint64_t since_ns = 0;
};

struct ControlContext {
  Dataplane& dp;
  GatewayState& state;
  Controller& controller;
  const LineServer& server;
  uint64_t now_ns;
  QuicSlowPath* quic = nullptr;  // sessions its agent closed, told in status replies (nullptr: none)
  MasqueCapsules* masque = nullptr;  // masque_datagrams from the controller go there (nullptr: refused)
  uint64_t fence_conn = 0;  // out: a previous owner's connection to close with `fenced`
};

std::string handle_control_line(const std::string& line, bool& close, uint64_t conn, ControlContext& ctx);

}  // namespace dptun
