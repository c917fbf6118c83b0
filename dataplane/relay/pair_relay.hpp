// Pair relay: pair frames between the two ends of a direct-path pair (docs/nat-traversal.md "The pair's data"), sent
// on unopened, as a DERP server does. A pair frame is a relay frame v1 (proto/relay_frame.hpp) with kFlagPair in its
// flags byte, its receiver index (header bytes 4..7, big-endian) the pair id, sealed with a key dpgw does not have.
// When the ends cannot reach each other directly, each sends its pair frames to dpgw's tunnel port over its own relay
// socket (the 5-tuple of its session's frames); classify (loop/worker.cpp) sends here the UDP datagrams to the tunnel
// port whose payload's byte 0 is kRelayVersion and byte 2 has kFlagPair.
//
// For each: the pair id is looked up in the pair table dpctld sent (pair_set: tables/pair_table.hpp, read once per
// burst); the datagram's source address and port must be the current endpoint (TunnelSession::peer, learned from
// the session's authenticated frames) of one of the pair's two sessions; the frame then goes to the other session's
// endpoint from dpgw's address on the port that reaches it and the session's local port (the tunnel port), as every
// frame dpgw sends an agent: new Ethernet, IPv4 (20 bytes, TTL 64, a new id, checksum) and UDP headers (checksum 0:
// RFC 768 allows it over IPv4; the ends' AEAD protects the payload, as in dpgw's own frames), the UDP payload
// untouched. dpgw never opens, counts as a session's traffic, or learns an endpoint from a pair frame.
//
// Touches: the context (pair table, session table, counters, IPv4 ids), Tx (next hop, send). Counts
// pair_frames_relayed and pair_bytes_relayed (the UDP payloads' bytes). Drops: frame_malformed (shorter than a relay
// frame's header and tag), pair_unknown, pair_wrong_source, pair_no_peer, pair_bad_session (counters.hpp),
// no_route / no_neighbor (the other end's next hop), too_big (bigger than the output port's MTU: never fragmented).
// No allocation, no syscall, no per-session state written: any worker relays any pair's frames.
#pragma once
#include <cstdint>

#include "dataplane/loop/tx.hpp"
#include "dataplane/loop/worker_context.hpp"
#include "packet/parser.hpp"
#include "proto/relay_frame.hpp"

struct rte_mbuf;

namespace dptun {

class PairTable;

class PairRelay {
 public:
  PairRelay(WorkerContext& ctx, Tx& tx);
  // A burst of whole, single-segment UDP datagrams to the tunnel port received on `port`, parsed in `info`, whose
  // payload is a pair frame (as classify tells it); each is sent on or dropped (counted).
  void input(uint8_t port, rte_mbuf** pkts, const PacketInfo* info, uint16_t n);

 private:
  void relay(const PairTable* pairs, rte_mbuf* m, const PacketInfo& pi);

  WorkerContext& ctx_;
  Tx& tx_;
  RelayCodec codec_;  // where a frame's receiver index lies
};

}  // namespace dptun
