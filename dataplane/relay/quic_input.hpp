// QUIC input, agent -> client: UDP datagrams to dpgw.quic_port that no entry point takes (docs/protocol.md "QUIC
// framing"). A short-header packet of a QUIC session is opened on the session's RX worker (others are handed
// over): header protection removed (the burst's masks in one call per session's hp key), the packet number rebuilt
// against the replay window,
// one AEAD call per key in the burst (the key for the packet-number length), then by its frames: a DATAGRAM's inner
// packet goes the way a relay frame's does (TunnelInput::from_agent; a packet's second and later DATAGRAMs, rare, in
// mbufs of their own), a MASQUE client's DATAGRAM (an HTTP Datagram, not an inner packet) to MasqueInput;
// ACK-only and PING packets are consumed (the agent's largest acknowledged number kept); the
// frames of packets with others (PATH_CHALLENGE, CONNECTION_CLOSE, NEW_CONNECTION_ID, STREAM, ...) go, copied, to the
// control lcore's slow path (main_lcore/quic_slow_path.hpp, on a ring of its own; a full ring: quic_slow_path_full; a session past its share: quic_slow_path_limit). An authenticated
// packet newer than all before from an address other than the endpoint does not move it: the address is proposed to
// the control lcore for path validation (QuicSessionState::proposed). Long headers and packets for no QUIC session go to the kernel path, where
// dpctld's QUIC port handshakes. Every authenticated packet that asks for an ACK (DATAGRAM, PING, and the slow
// path's, which the agent would otherwise send again forever) is acknowledged with an ACK-only packet through Encap
// (docs/protocol.md "ACK generation"): at most one per session per burst and per kAckIntervalNs, the ACK held back
// by that interval sent by send_owed_acks() (the worker calls it every poll). Key updates (RFC 9001 6,
// docs/protocol.md "Key updates"): a packet in the other key phase is opened with the next generation's keys (made
// ahead by the control lcore) when its number is above the first of the current generation, and once one opens
// the receive and transmit generations move to it (quic_key_updates_rx); below, with the previous generation's
// while they are kept; dpgw starts an update of its own after QuicSessionState::update_after_packets packets, once
// the agent has acknowledged one of the current generation (quic_key_updates_tx). Touches the sessions' replay windows,
// receive epochs, endpoints (only while unknown) and QUIC receive, ACK and proposed-path state (their RX worker
// only). Drops frame_malformed quic_bad_connection_id replay key_unavailable auth_fail quic_slow_path_full quic_slow_path_limit.
#pragma once
#include <array>
#include <cstdint>

#include "dataplane/loop/local_input.hpp"
#include "dataplane/loop/tx.hpp"
#include "dataplane/loop/worker_context.hpp"
#include "dataplane/masque/masque_input.hpp"
#include "dataplane/relay/encap.hpp"
#include "dataplane/relay/tunnel_input.hpp"
#include "packet/parser.hpp"

struct rte_mbuf;

namespace dptun {

class QuicInput {
 public:
  // ACK cadence: at most one ACK packet per session this often (well inside ngtcp2's default max_ack_delay of
  // 25 ms, RFC 9000 13.2.1), so an ack-eliciting packet waits at most about this long for its ACK.
  static constexpr uint64_t kAckIntervalNs = 1'000'000;
  // The ACK Delay field's unit, 2^exponent us: dpgw's own exponent, as dpctld advertised it for the connection
  // (RFC 9000 19.3 scales an ACK's delay by its sender's ack_delay_exponent; dpctld sets kQuicAckDelayExponent).
  static constexpr uint32_t kAckDelayExponent = kQuicAckDelayExponent;
  static constexpr size_t kMaxOwedAcks = 256;       // sessions with an ACK held back (more: sent at once)

  QuicInput(WorkerContext& ctx, Tx& tx, LocalInput& local, TunnelInput& tunnel, MasqueInput& masque, Encap& encap)
      : ctx_(ctx), tx_(tx), local_(local), tunnel_(tunnel), masque_(masque), encap_(encap) {}
  QuicInput(const QuicInput&) = delete;
  QuicInput& operator=(const QuicInput&) = delete;
  // `n` UDP datagrams to the QUIC port received on `port`, with their parsed headers.
  void input(uint8_t port, rte_mbuf** pkts, const PacketInfo* info, uint16_t n);
  // Sessions whose ACK the interval held back: sends those now due (they join Encap's burst; flush after).
  bool acks_owed() const { return n_owed_ != 0; }
  void send_owed_acks();

 private:
  // `s` received ack-eliciting packets: an ACK now, or once the interval since its last one has passed.
  void want_ack(TunnelSession& s);
  void send_ack(TunnelSession& s);
  // A copy of `frame`'s decrypted frames (or, for a new path alone, none) with a QuicSlowPathHeader to the control
  // lcore (HandoffMeta::QuicSlowPath); counted to_control, or dropped quic_slow_path_full / quic_slow_path_limit / no_mbuf.
  // False when it did not go (counted).
  bool to_slow_path(TunnelSession& s, std::span<const uint8_t> frame, uint64_t pn, const PacketInfo& pi, uint8_t flags);
  // The second and later DATAGRAM frames of a packet (rare): each copied into an mbuf of its own and delivered.
  void extra_datagrams(TunnelSession& s, std::span<const uint8_t> frame);
  // A packet of the next key generation opened (its number `pn`): the agent updated its keys; dpgw's follow.
  void follow_key_update(TunnelSession& s, uint64_t pn);
  // After an ACK from the agent: dpgw's own key update when its generation has sent enough (RFC 9001 6.1, 6.6).
  void maybe_update_keys(TunnelSession& s);

  WorkerContext& ctx_;
  Tx& tx_;
  LocalInput& local_;
  TunnelInput& tunnel_;
  MasqueInput& masque_;
  Encap& encap_;
  // Sessions owed an ACK, by index and serial: a session may be removed (and freed after this worker's quiescent
  // state) while listed, so the list holds no pointer across polls.
  struct Owed {
    uint32_t index, serial;
  };
  std::array<Owed, kMaxOwedAcks> owed_;
  uint16_t n_owed_ = 0;
};

}  // namespace dptun
