// The data of dpagent's direct-path pairs (docs/nat-traversal.md "The pair's data"): pair frames -- relay frames v1
// with the PAIR flag (proto/relay_frame.hpp), receiver index = the pair id, keyed from the pair secret
// (derive_direct_data_secret, crypto/key_schedule.hpp; counters from 0: a secret serves one pairing only) -- that
// carry a visitor's flows to its agent and the replies back. The visitor (controlling end) keys like a gateway, the
// agent like an agent (AgentSession::End). A frame goes straight to the peer's address while this end's path is
// direct (DirectPaths), else to dpgw on the relay socket, which forwards it unopened; received frames are opened
// whichever way they came (one replay window per pair).
// Only pairs whose offer carries "data" are kept here. Main loop only (dpagent runs direct paths with one
// data-path thread).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "agent/agent_session.hpp"
#include "common/counter.hpp"
#include "common/inet.hpp"
#include "control/control_protocol.hpp"
#include "crypto/aead.hpp"
#include "packet/parser.hpp"

namespace dptun {

class PairData {
 public:
  // Sends a sealed pair frame straight to `to` (the direct-path socket) / to dpgw (the relay socket); false when it
  // could not be sent.
  using SendDirect = std::function<bool(Endpoint to, std::span<const uint8_t> frame)>;
  using SendRelay = std::function<bool(std::span<const uint8_t> frame)>;
  // The peer's address while this end's path to it is direct (DirectPaths::direct_remote).
  using DirectRemote = std::function<std::optional<Endpoint>(uint32_t pair)>;

  struct Pair {
    uint32_t id = 0;
    bool controlling = false;        // this end is the visitor
    uint16_t block = 0;              // the visitor's block of flow tags
    std::optional<Endpoint> target;  // where the visitor's flows go (port 0: the visitor's --local port)
    std::unique_ptr<AgentSession> session;
  };
  struct Stats {
    StatCounter frames_tx_direct = 0, frames_tx_relayed = 0, frames_rx_direct = 0, frames_rx_relayed = 0;
    StatCounter bytes_tx_direct = 0, bytes_tx_relayed = 0, bytes_rx_direct = 0, bytes_rx_relayed = 0;  // frames'
    StatCounter send_errors = 0, seal_errors = 0;
    StatCounter unknown_pair = 0;  // frames naming no pair of ours (an ended pairing, or forged)
    StatCounter auth_fail = 0, replay = 0, malformed = 0;
    StatCounter bad_tag = 0;       // opened frames whose flow tag is not in the pair's block
    StatCounter bad_target = 0;    // the agent: a pair whose target it must not send to (none, or in its TUN subnet)
    StatCounter no_pair = 0;       // replies of pair flows with no pair to go in (between pairings)
    StatCounter no_flow = 0;       // the visitor: replies naming no flow of its own
    StatCounter pairs = 0;         // pairings with data taken
  };

  // `engine_slot`: the engine's per-thread slot the pairs' sessions seal and open with (the calling thread's).
  PairData(AeadEngine& engine, uint8_t key_len, uint64_t rekey_interval_ns, SendDirect direct, SendRelay relay,
           DirectRemote remote, unsigned engine_slot = 0);
  // A pairing from dpctld; without "data" it is not kept here (a pair of the same id goes).
  void offer(const PeerOffer& o);
  void gone(uint32_t pair);
  void clear();  // a new registration
  Pair* by_id(uint32_t id);
  Pair* by_block(uint16_t block);  // the agent: the pair of a flow's tag
  Pair* visitor_pair();            // the visitor: its pair that carries data (one at a time), or nullptr
  // Is this end's path to pair `p` direct now.
  bool direct(const Pair& p) const { return bool(remote_(p.id)); }

  // Seals the data frame at `frame` (its plaintext of `plaintext_len` bytes behind the relay frame header, room for
  // the tag behind it) as a pair frame of `p` and sends it, straight or through dpgw.
  void send(Pair& p, uint8_t* frame, size_t plaintext_len, uint64_t now_ns);
  // A pair frame received (`relayed`: from dpgw), opened in place: its pair and its plaintext (inner header,
  // packet), or nullptr (counted).
  Pair* open(std::span<uint8_t> frame, bool relayed, std::span<uint8_t>& plaintext, uint64_t now_ns);
  // The agent's end: the visitor's packet `pkt` (IPv4, parsed into `pi`) of pair `p` is addressed to the pair's
  // target, whatever it said (port 0 in the target: the packet's own), as dpgw does for visitor frames. False (counted
  // bad_target) when the target lies in `own_net` (the agent's TUN subnet: other flows' translated sources).
  bool address_to_target(const Pair& p, uint8_t* pkt, const PacketInfo& pi, Ipv4Prefix own_net);
  Stats& stats() { return stats_; }
  std::string stats_json() const;

 private:
  AeadEngine& engine_;
  unsigned engine_slot_ = 0;
  uint8_t key_len_;
  uint64_t rekey_interval_ns_;
  SendDirect direct_;
  SendRelay relay_;
  DirectRemote remote_;
  std::map<uint32_t, Pair> pairs_;
  std::vector<uint32_t> block_pair_;  // the agent's: block -> the id of its pair (0: none)
  Stats stats_;
};

}  // namespace dptun
