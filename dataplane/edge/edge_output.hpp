// Edge output, targets -> concentrator (the edge role, docs/operations.md "Edge role"): a packet on the LAN port to an
// address of edge.snat_net is a target's reply (its destination names the flow's tag, SnatCodec), or an ICMP error
// about a flow's packet (its quoted source names the tag). Either goes to the concentrator in a frame of the flow, in
// the worker's pending burst (Encap: one AEAD call per key, counters reserved once per burst); the packet travels as
// the target sent it, since the concentrator rewrites the addresses from its own flow state. A datagram bigger than
// one frame travels as inner fragments (the LAN's fragments are put together first, by Fragments), unless its DF bit
// is set: then the target hears ICMP fragmentation needed with the frame's size, as from a router.
// Touches nothing of its own; reads the edge session; sends through Encap, answers through LocalInput. Counts
// edge_to_concentrator_* (in Encap), edge_icmp_errors_forwarded; drops no_snat unsupported_proto too_big no_route
// no_neighbor no_room (and Encap's).
#pragma once
#include <cstdint>

#include "dataplane/edge/edge_peer.hpp"
#include "dataplane/loop/local_input.hpp"
#include "dataplane/loop/tx.hpp"
#include "dataplane/loop/worker_context.hpp"
#include "dataplane/relay/encap.hpp"
#include "packet/parser.hpp"

struct rte_mbuf;

namespace dptun {

class EdgeOutput {
 public:
  EdgeOutput(WorkerContext& ctx, Tx& tx, LocalInput& local, Encap& encap)
      : ctx_(ctx), tx_(tx), local_(local), encap_(encap), edge_(ctx.dp.edge.get()) {}
  EdgeOutput(const EdgeOutput&) = delete;
  EdgeOutput& operator=(const EdgeOutput&) = delete;
  // `n` whole TCP/UDP packets received on the LAN port `port` to translated sources, with their parsed headers.
  void input(uint8_t port, rte_mbuf** pkts, const PacketInfo* info, uint16_t n);
  // ICMP to a translated source, received on `port` (whole, one mbuf).
  void icmp(uint8_t port, rte_mbuf* m, const PacketInfo& pi);
  // A datagram to a translated source reassembled from the LAN's fragments (Fragments), parsed as `pi`.
  void datagram(uint8_t port, rte_mbuf* m, const PacketInfo& pi);

 private:
  // `m` (`pi`: its headers, from its Ethernet header on) to the concentrator in a frame of flow `tag`.
  void send(uint8_t port, rte_mbuf* m, const PacketInfo& pi, uint32_t tag, uint8_t proto);
  bool concentrator_hop();  // the next hop towards the concentrator (looked up once per burst)

  WorkerContext& ctx_;
  Tx& tx_;
  LocalInput& local_;
  Encap& encap_;
  EdgePeer* const edge_;  // nullptr: this dpgw has no edge role
  bool hop_ok_ = false;
  MacAddr hop_mac_{};
  Drop hop_why_ = Drop::NoRoute;
};

}  // namespace dptun
