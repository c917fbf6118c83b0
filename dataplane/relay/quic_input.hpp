// QUIC input, agent -> client: UDP datagrams to dpgw.quic_port that no entry point takes (docs/protocol.md "QUIC
// framing"). A short-header packet of a QUIC session is opened on the session's RX worker (others are handed
// over): header protection removed (the burst's masks in one call per session's hp key), the packet number rebuilt
// against the replay window,
// one AEAD call per key in the burst (the key for the packet-number length), then by its frames: a DATAGRAM's inner
// packet goes the way a relay frame's does (TunnelInput::from_agent); ACK-only and PING packets are consumed (the
// agent's largest acknowledged number kept); packets with other frames are counted and dropped until the control
// lcore takes them (quic_slow_path). Long headers and packets for no QUIC session go to the kernel path, where
// dpctld's QUIC port handshakes. Touches the sessions' replay windows, receive epochs, endpoints and QUIC receive
// state (their RX worker only). Drops frame_malformed quic_bad_connection_id replay key_unavailable auth_fail
// quic_slow_path.
#pragma once
#include <cstdint>

#include "dataplane/loop/local_input.hpp"
#include "dataplane/loop/tx.hpp"
#include "dataplane/loop/worker_context.hpp"
#include "dataplane/relay/tunnel_input.hpp"
#include "packet/parser.hpp"

struct rte_mbuf;

namespace dptun {

class QuicInput {
 public:
  QuicInput(WorkerContext& ctx, Tx& tx, LocalInput& local, TunnelInput& tunnel)
      : ctx_(ctx), tx_(tx), local_(local), tunnel_(tunnel) {}
  QuicInput(const QuicInput&) = delete;
  QuicInput& operator=(const QuicInput&) = delete;
  // `n` UDP datagrams to the QUIC port received on `port`, with their parsed headers.
  void input(uint8_t port, rte_mbuf** pkts, const PacketInfo* info, uint16_t n);

 private:
  WorkerContext& ctx_;
  Tx& tx_;
  LocalInput& local_;
  TunnelInput& tunnel_;
};

}  // namespace dptun
