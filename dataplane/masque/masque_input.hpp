// MASQUE clients on the fast path (docs/masque.md "Datagrams on the fast path"): a session dpctld handed over after
// answering a CONNECT-UDP request (a visitor of the route's tunnel over the QUIC framing, TunnelSession::masque)
// sends HTTP Datagrams (RFC 9297 2.1) in its DATAGRAM frames, each a UDP payload for the route's target (context ID
// 0, RFC 9298 4). Each is read (proto/masque_datagram.hpp), put in an IPv4/UDP packet from MasqueState::source to
// the target, and sent the way a visitor's packet goes (VisitorInput::forward: one flow per session, to the tunnel's
// agents). The target's replies on that flow come back here: their UDP payload, behind the session's HTTP Datagram
// header, leaves in one DATAGRAM frame (Encap::app_datagram). No allocation: every packet is rewritten in its mbuf.
// A client whose DATAGRAM capsules dpctld carries (HTTP/2, HTTP/1.1; MasqueState::request_id) has no QUIC connection:
// its payloads come from the control lcore (inject) and its replies go back there (Dataplane::masque_ring).
// Touches VisitorInput (forward, the flow's visitor), Encap. Counts masque_datagrams_rx (masque_datagrams_tx: Encap,
// and here for capsule sessions); drops masque_unknown_stream masque_context masque_malformed masque_too_large
// masque_capsule_full stale_flow no_room (and what forward drops).
#pragma once
#include <cstdint>
#include <span>

#include "dataplane/hostname/visitor_input.hpp"
#include "dataplane/loop/worker_context.hpp"
#include "dataplane/relay/encap.hpp"
#include "packet/parser.hpp"

struct rte_mbuf;

namespace dptun {

class MasqueInput {
 public:
  MasqueInput(WorkerContext& ctx, VisitorInput& visitors, Encap& encap)
      : ctx_(ctx), visitors_(visitors), encap_(encap) {}
  MasqueInput(const MasqueInput&) = delete;
  MasqueInput& operator=(const MasqueInput&) = delete;
  // `datagram`: the data of a DATAGRAM frame of MASQUE session `s` (on its RX worker), inside `m`. Another request
  // stream's datagram is dropped masque_unknown_stream, a context ID other than 0 masque_context, a cut varint or a
  // Quarter Stream ID over 2^60 - 1 masque_malformed (RFC 9297 2.1 makes the latter a connection error,
  // H3_DATAGRAM_ERROR; dpgw drops and counts it and leaves the connection to the client).
  void input(rte_mbuf* m, std::span<uint8_t> datagram, TunnelSession& s);
  // `m` (one segment) holds exactly one UDP payload of capsule session `s` (MasqueState::request_id, on its RX
  // worker) that dpctld carried (HandoffMeta::MasqueInject), with a received frame's headroom in front: it goes to the
  // target as input()'s payloads do, counted masque_datagrams_rx.
  void inject(rte_mbuf* m, TunnelSession& s);
  // A reply on MASQUE flow `f` (`m` from its IPv4 header on, parsed into `pi`, a UDP datagram from the target): its
  // payload goes back to the client in a DATAGRAM frame of its session; a capsule session's goes on
  // Dataplane::masque_ring behind a MasqueReplyHeader, for the control lcore to send to dpctld (a reassembled one as
  // its chain of segments; counted masque_datagrams_tx there as well; a full ring drops it masque_capsule_full).
  void deliver(rte_mbuf* m, Flow& f, const PacketInfo& pi);

 private:
  // `m`'s data (one segment) is the UDP payload: an IPv4 and a UDP header from MasqueState::source to the target go
  // in front of it, and the packet to VisitorInput::forward (Aim::Granted).
  void to_target(rte_mbuf* m, TunnelSession& s);
  void to_control(rte_mbuf* m, const TunnelSession& v, const PacketInfo& pi);

  WorkerContext& ctx_;
  VisitorInput& visitors_;
  Encap& encap_;
};

}  // namespace dptun
