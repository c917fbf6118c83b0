// STUN input: Binding requests (RFC 8489) to the gateway, answered by the worker itself, in place, from the address
// and port they came to and out of the port they came in on: the client learns its address and port as dpgw sees
// them (XOR-MAPPED-ADDRESS; MAPPED-ADDRESS for RFC 3489 clients on the STUN port). What classify sends here
// (loop/worker.cpp; docs/operations.md "STUN"): UDP to the gateway's address on dpgw.stun_port, and on the tunnel
// and QUIC ports the datagrams RFC 7983 tells apart as STUN (first byte 0x00 with the magic cookie at 4..7 on the
// tunnel port, 0x00..0x03 with the cookie on the QUIC port). The wire format is proto/stun.hpp's.
// Touches: Tx (the answers), the context (counters, IPv4 ids). Counts stun_requests, stun_responses; drops
// stun_malformed (not STUN, wrong UDP checksum, a source that cannot be a host), stun_not_request (indications,
// responses, other methods), stun_limited (over the worker's answer rate: an answer is a little larger than its
// request, so a spoofed flood must not make dpgw a reflector at line rate), no_room (an answer that does not fit
// the mbuf). No allocation, no syscall.
#pragma once
#include <cstdint>

#include "common/token_bucket.hpp"

#include "dataplane/loop/tx.hpp"
#include "dataplane/loop/worker_context.hpp"
#include "packet/parser.hpp"

struct rte_mbuf;

namespace dptun {

class StunInput {
 public:
  // Answers per second and burst, per worker: room for 100 000 agents refreshing their mapping every 25 s on one
  // worker, and a reflection flood bounded to ~10 Mbit/s per worker.
  static constexpr uint64_t kAnswersPerSecond = 10000, kAnswerBurst = 256;

  StunInput(WorkerContext& ctx, Tx& tx);
  // A burst of UDP datagrams to the gateway (whole, single-segment, parsed in `info`) received on `port`; each is
  // answered (the mbuf becomes the answer) or dropped.
  void input(uint8_t port, rte_mbuf** pkts, const PacketInfo* info, uint16_t n);

 private:
  void answer(uint8_t port, rte_mbuf* m, const PacketInfo& pi);

  WorkerContext& ctx_;
  Tx& tx_;
  TokenBucket answer_bucket_{kAnswersPerSecond, kAnswerBurst};
};

}  // namespace dptun
