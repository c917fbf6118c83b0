// MASQUE clients whose DATAGRAM capsules dpctld carries (HTTP/2, HTTP/1.1; docs/masque.md "HTTP/2 and HTTP/1.1
// fallback"), on the control lcore. Such a client's session (MasqueState::request_id) has no QUIC connection and
// takes nothing from the network: its UDP payloads come from dpctld in masque_datagrams messages on the control
// socket (proto/gateway_messages.hpp), and the target's replies go back to dpctld the same way.
//  - inject(): the payloads of one message (from the controller, decoded by control_commands.cpp) go one by one to
//    the session's RX worker (HandoffMeta::MasqueInject, a MasqueInjectHeader first), each in an mbuf of its own laid
//    out as a received frame would be (the IPv4 and UDP headers the worker writes land where a frame's would, so the
//    encapsulation to the agent has a frame's headroom: VisitorInput::forward, Encap::inner), where
//    MasqueInput::inject sends it to the target. A message naming no capsule session, or one with another request
//    id (the index serves another client now), is dropped whole: masque_capsule_unknown. A payload whose packet does
//    not fit one mbuf (dp.pool's data room less a frame's headroom and Ethernet header): masque_capsule_too_large;
//    the handoff ring full or no mbuf: masque_capsule_send_full.
//  - drain(): at most kDrainPerTick replies from Dataplane::masque_ring (MasqueInput::deliver; one read across its
//    segments when the agent sent it in fragments), consecutive ones of
//    one session grouped into messages of at most MasqueDatagrams::kMaxMasqueDatagrams payloads, each pushed as a
//    line to the controller's connection. No controller: masque_capsule_no_controller; its connection with
//    LineServer::Limits::max_pushed bytes queued already: masque_capsule_backlog (the payloads of that message).
// Counters: Dataplane::masque_control (tables/counters.hpp MasqueControlStats). No state of its own.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "dataplane/main_lcore/gateway_state.hpp"
#include "dataplane/tables/dataplane.hpp"
#include "proto/gateway_messages.hpp"

namespace dptun {

class MasqueCapsules {
 public:
  static constexpr unsigned kDrainPerTick = 256;  // replies taken from the ring per control lcore tick

  MasqueCapsules(Dataplane& dp, GatewayState& state) : dp_(dp), state_(state) {}
  MasqueCapsules(const MasqueCapsules&) = delete;
  MasqueCapsules& operator=(const MasqueCapsules&) = delete;

  void inject(const MasqueDatagrams& d);

  // What became of one line given to the controller's connection.
  enum class Push : uint8_t { Queued, Backlog, NoController };
  using Pusher = std::function<Push(const std::string& line)>;
  // Returns how many replies it took from the ring.
  unsigned drain(const Pusher& push);

 private:
  void send(MasqueDatagrams& d, const Pusher& push);

  Dataplane& dp_;
  GatewayState& state_;
};

}  // namespace dptun
