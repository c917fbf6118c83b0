// Fragments, the slow path (docs/protocol.md "Datagrams bigger than a frame", architecture.md "Fragments"):
// - client fragments are steered to one worker per datagram and reassembled there; the whole datagram then goes to
//   the worker its 5-tuple hashes to and into entry input like any packet (on an edge, the LAN's fragments to a
//   translated source go the same way, into edge output);
// - fragments inside relay frames (an agent's datagram too big for one frame) are reassembled on the session's RX
//   worker, which decrypts every frame of the session;
// - a datagram too big for the link to its client leaves as IPv4 fragments.
// Touches its two reassembly tables (rte_mbuf chains held until complete, bounded by dpgw.reassembly); hands
// packets to entry input, edge output, local input (closed ports) and Tx. Counts frag_*, inner_frag_*; drops frag_* fragment
// too_big no_mbuf no_room bad_inner.
#pragma once
#include <cstdint>

#include "dataplane/edge/edge_output.hpp"
#include "dataplane/entry/entry_input.hpp"
#include "dataplane/loop/local_input.hpp"
#include "dataplane/loop/tx.hpp"
#include "dataplane/loop/worker_context.hpp"
#include "packet/ipv4_reassembly.hpp"
#include "packet/parser.hpp"
#include "proto/frame_codec.hpp"

struct rte_mbuf;

namespace dptun {

class Fragments {
 public:
  Fragments(WorkerContext& ctx, Tx& tx, LocalInput& local, EntryInput& entry, EdgeOutput& edge_out);
  ~Fragments();  // frees what the tables still hold
  Fragments(const Fragments&) = delete;
  Fragments& operator=(const Fragments&) = delete;

  // A client's IPv4 fragment received on `port` (classify's verdict); consumed.
  void client_fragment(uint8_t port, rte_mbuf* m, const PacketInfo& pi);
  // A client datagram reassembled on another worker, handed to this one (its 5-tuple's); consumed.
  void datagram_input(uint8_t port, rte_mbuf* m);
  // A decrypted inner fragment of session `s` (`m` holds it, and a name trailer with kInnerHasName): held until its
  // datagram is whole. True with `m` the whole datagram (and its trailer again); false when held or dropped.
  bool inner_fragment(rte_mbuf*& m, const InnerHeader& ih, const TunnelSession& s);
  // `m` (from its IP header on) to `mac` out of `port` as IPv4 fragments of the link's MTU; consumed.
  void send_ip_fragments(uint8_t port, const MacAddr& mac, rte_mbuf* m);
  // After every poll: datagrams that waited too long give up their fragments (counted), oldest first, at most 64 per
  // table and call. Two loads when no datagram is in progress; else one comparison unless the oldest is due.
  void expire() {
    if (!client_frags_.empty() || !inner_frags_.empty()) expire_due();
  }

 private:
  struct Sink {  // what a reassembly table gives up: dropped, counted by reason
    WorkerContext& ctx;
    Counter& timeouts;
    Counter& evictions;
    void fragment_dropped(rte_mbuf* m, FragDrop why);
    void datagram_dropped(FragDrop why);
  };
  rte_mbuf* reassembled(const Ipv4Reassembly<rte_mbuf*>& table);
  void expire_due();

  WorkerContext& ctx_;
  Tx& tx_;
  LocalInput& local_;
  EntryInput& entry_;
  EdgeOutput& edge_out_;
  Ipv4Reassembly<rte_mbuf*> client_frags_;  // client fragments whose datagram hashes to this worker
  Ipv4Reassembly<rte_mbuf*> inner_frags_;   // fragments inside the frames of sessions this worker decrypts
};

}  // namespace dptun
