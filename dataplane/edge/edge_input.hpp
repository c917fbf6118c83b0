// Edge input, concentrator -> targets (the edge role, docs/operations.md "Edge role"): relay frames from the
// concentrator on the underlay port are read through the codec, checked against the edge session's replay window (on
// the session's RX worker: frames another worker received are handed over), opened in one AEAD call per key, and
// their inner packets get the flow's translated source (SnatCodec: a function of the flow's tag, no state) and leave
// on the LAN port to their target, with the next hop's MAC from the neighbour table. Inner fragments are reassembled
// first (Fragments), and a datagram bigger than the LAN's MTU leaves in IPv4 fragments. On the RX worker, tick()
// also sends the edge's keepalives: every edge.keepalive, every 250 ms while the concentrator does not answer.
// Touches the edge session's replay window, receive epoch and last-RX time (its RX worker only) and its transmit
// counter (keepalives); hands inner fragments to Fragments; sends through Tx. Counts edge_from_concentrator_*,
// edge_keepalives_*, edge_auth_fail; drops frame_malformed unknown_session replay stale_counter auth_fail
// key_unavailable crypto_error bad_inner no_route no_neighbor too_big no_room no_mbuf.
#pragma once
#include <cstdint>

#include "dataplane/edge/edge_peer.hpp"
#include "dataplane/loop/fragments.hpp"
#include "dataplane/loop/tx.hpp"
#include "dataplane/loop/worker_context.hpp"
#include "packet/parser.hpp"
#include "proto/relay_frame.hpp"

struct rte_mbuf;

namespace dptun {

class EdgeInput {
 public:
  EdgeInput(WorkerContext& ctx, Tx& tx, Fragments& frags);
  EdgeInput(const EdgeInput&) = delete;
  EdgeInput& operator=(const EdgeInput&) = delete;
  // `n` UDP datagrams from the concentrator to the edge's port received on `port`, with their parsed headers.
  void input(uint8_t port, rte_mbuf** pkts, const PacketInfo* info, uint16_t n);
  // Once per poll: the keepalive when it is due (on the edge session's RX worker; nothing elsewhere).
  void tick() {
    if (edge_ && edge_->session.rx_worker == ctx_.id && ctx_.now_ns >= next_keepalive_ns_) send_keepalive();
  }

 private:
  template <bool kTrace>  // compiled with and without trace points, picked once per burst
  void burst(uint8_t port, rte_mbuf** pkts, const PacketInfo* info, uint16_t n);
  // An inner packet of flow `tag` (`m` from its IP header on): translated and sent to its target on the LAN.
  void deliver(rte_mbuf* m, uint32_t tag, uint8_t proto);
  void send_keepalive();

  WorkerContext& ctx_;
  Tx& tx_;
  Fragments& frags_;
  EdgePeer* const edge_;  // nullptr: this dpgw has no edge role
  RelayCodec codec_;      // the tunnel framing: where a frame's parts lie
  uint64_t next_keepalive_ns_ = 0;
  // The last target's next hop in this burst (a burst's packets mostly go to one target).
  uint32_t hop_ip_ = 0;
  MacAddr hop_mac_{};
  bool hop_ok_ = false;
};

}  // namespace dptun
