// dpgw's QUIC slow path, on the control lcore (docs/protocol.md "The slow path and path validation"): the frames of
// a QUIC session's packets that the workers' fast path does not take (everything but DATAGRAM, ACK, PADDING, PING),
// copied by the session's RX worker after it delivered the packet's DATAGRAMs and acknowledged it
// (HandoffMeta::QuicSlowPath on Dataplane::control_ring, a QuicSlowPathHeader first), and the news that an
// authenticated packet newer than all before came from an address other than the session's endpoint.
//  - Path validation (RFC 9000 8.2, 9.3): such an address becomes the session's candidate; PATH_CHALLENGE (8 random
//    bytes) goes there, again after kRetryNs while no answer came (at most kMaxChallenges), padded to 1200 bytes
//    unless 3x what the address sent forbids (8.1); given up after kValidationNs (counted, logged once). A
//    PATH_RESPONSE with the data of an outstanding challenge (from any address, 8.2.3) validates the candidate: then,
//    and only then, the session's endpoint moves there (written here: the control lcore is its only writer for a
//    QUIC session once known, TunnelSession::endpoint). A newer non-probing packet from the endpoint before that
//    (QuicSlowPathHeader::kBackHome) drops the candidate (9.3; counted paths_abandoned); packets of probing frames
//    only never propose an address (9.1).
//  - The agent's PATH_CHALLENGE is answered with PATH_RESPONSE to the address it came from (8.2.2).
//  - CONNECTION_CLOSE (0x1c, 0x1d) ends the session at once (GatewayState::remove_session: its flows re-pin to the
//    pool's other sessions), logged with its error code and reason phrase (sanitized, bounded); dpctld hears of it
//    in the next status reply (closed_for_status()).
//  - Other frames (NEW_CONNECTION_ID, RETIRE_CONNECTION_ID, MAX_*, *_BLOCKED, STREAM, NEW_TOKEN, ...) are counted by
//    type (the RX worker acknowledged them); a NEW_CONNECTION_ID whose Retire Prior To retires the connection ID dpgw
//    sends with is counted and logged: dpgw keeps that ID (switching it while workers send is not built).
// Frames to send never get a packet number or keys here: they go to the session's RX worker (HandoffMeta::QuicSend,
// a QuicSendHeader first), whose Encap::quic_frames numbers them from the session's one tx_counter. Counters:
// Dataplane::quic_control (tables/counters.hpp QuicControlStats). State: per session, owned here; forgotten when the
// session goes.
#pragma once
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "dataplane/main_lcore/gateway_state.hpp"
#include "dataplane/tables/dataplane.hpp"
#include "proto/quic_short_header.hpp"

struct rte_mbuf;

namespace dptun {

class QuicSlowPath {
 public:
  static constexpr uint64_t kRetryNs = 400'000'000;        // PATH_CHALLENGE again after this without an answer
  static constexpr uint32_t kMaxChallenges = 4;             // per candidate
  static constexpr uint64_t kValidationNs = 2'000'000'000;  // RFC 9000 8.2.4: max(3 PTO, 6 kInitialRtt = 2 s)
  static constexpr size_t kMaxReasonLog = 64;               // CONNECTION_CLOSE reason bytes logged

  QuicSlowPath(Dataplane& dp, GatewayState& state) : dp_(dp), state_(state) {}
  QuicSlowPath(const QuicSlowPath&) = delete;
  QuicSlowPath& operator=(const QuicSlowPath&) = delete;

  // A QuicSlowPath mbuf from a worker; consumed.
  void input(rte_mbuf* m, uint64_t now_ns);
  // The header and frames of one (what input() reads from the mbuf), for tests and input().
  void handle(const QuicSlowPathHeader& h, std::span<const uint8_t> frames, uint64_t now_ns);
  // Timers: PATH_CHALLENGE retries, validations given up, state of sessions that went.
  void tick(uint64_t now_ns);

  // A session ended by its agent's CONNECTION_CLOSE, told to dpctld once (status reply: "quic_closed").
  struct Closed {
    uint32_t index;
    uint64_t error_code;
    bool application;  // 0x1d: the application's code
    std::string reason;  // sanitized
  };
  // Those not told yet; they are told now (each once).
  std::vector<Closed> closed_for_status() { return std::exchange(closed_, {}); }
  // The candidate address of session `index` being validated, if any (stats).
  const Endpoint* candidate(uint32_t index) const {
    auto it = paths_.find(index);
    return it == paths_.end() ? nullptr : &it->second.candidate;
  }

 private:
  struct Path {
    uint32_t serial = 0;
    Endpoint candidate;
    std::array<std::array<uint8_t, kQuicPathDataLen>, kMaxChallenges> data{};
    uint32_t challenges = 0;
    uint64_t started_ns = 0, last_sent_ns = 0;
    uint64_t tx_bytes = 0;  // UDP payload bytes sent to the candidate (anti-amplification)
  };
  TunnelSession* session(uint32_t index, uint32_t serial) const;
  const char* tunnel_name(const TunnelSession& s) const;
  void new_path(TunnelSession& s, const Endpoint& from, uint64_t now_ns);
  void back_home(TunnelSession& s);
  void challenge(TunnelSession& s, Path& p, uint64_t now_ns);
  void path_response(TunnelSession& s, const std::array<uint8_t, kQuicPathDataLen>& data);
  // `packet_len`: the UDP payload length of the packet that carried the challenge.
  void answer_challenge(TunnelSession& s, const Endpoint& from, uint32_t packet_len,
                        const std::array<uint8_t, kQuicPathDataLen>& data);
  void connection_close(TunnelSession& s, const QuicFrame& f);
  // Bytes of frames a packet to `to` may carry: the padding target (1200-byte datagram) or less when the 3x limit
  // says so (`budget`: UDP payload bytes still allowed; ~0: no limit), 0 when not even the bare frame fits.
  static uint32_t frames_len(uint32_t frame_len, uint64_t budget);
  // `frames` (written into a QuicSend mbuf with its header) to session `s`'s RX worker, for `to`. False: not sent
  // (counted send_full).
  bool send(TunnelSession& s, const Endpoint& to, std::span<const uint8_t> frame, uint32_t padded_len);

  Dataplane& dp_;
  GatewayState& state_;
  std::unordered_map<uint32_t, Path> paths_;         // by session index: candidates being validated
  std::unordered_map<uint32_t, uint32_t> cid_noted_;  // session index -> serial: retired-CID log said once
  std::vector<Closed> closed_;
};

}  // namespace dptun
