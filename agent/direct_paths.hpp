// dpagent's direct paths (docs/nat-traversal.md): the pairs dpctld made for this agent or visitor ("peer" messages,
// control/control_protocol.hpp) and the connectivity checks that find out whether the two ends reach each other
// through their NATs -- hole punching: both ends send checks to each other's candidates at the same time, so that each
// NAT sees traffic leave towards the other before the other's checks arrive. A check is a STUN Binding request
// authenticated with the pair's check key (proto/stun.hpp, derived from the pair secret: crypto/key_schedule.hpp);
// only an authenticated success response, from the address the request went to, to a check sent less than
// kConsentTimeoutNs ago and not answered before, makes a path direct or keeps it so. A check's transaction ID
// starts with its pair's id (the rest random), so an answer finds its pair without a search. Checks go out of the direct-path socket (agent/endpoint_discovery.hpp), which hands back
// what is not a STUN server's answer.
//
// A pair's path (PathState):
//   checking  a check every kCheckIntervalNs (longer with many pairs checking: kChecksPerSecond in all), to each
//             candidate in turn (server reflexive first, then host, then peer reflexive ones: addresses an
//             authenticated check came from), for kCheckWindowNs;
//   direct    the first candidate that answered; a check to it every kConsentIntervalNs keeps the NAT mappings open
//             and shows the peer still answers (RFC 7675's consent, in spirit); kConsentTimeoutNs without an answer:
//   relayed   consent_lost (checking again after kRecheckAfterLossNs), or checks_unanswered after a window without an
//             answer (checking again after kRecheckAfterFailureNs).
// Every change is reported to dpctld ("path"). Authenticated checks from the peer are answered in every state.
// Main loop only; tick() about every 100 ms.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/inet.hpp"
#include "control/control_protocol.hpp"
#include "crypto/key_schedule.hpp"
#include "proto/stun.hpp"

namespace dptun {

class DirectPaths {
 public:
  static constexpr size_t kMaxPairs = 256;
  static constexpr size_t kMaxRemotes = 12;  // the peer's candidates and peer-reflexive addresses learned
  static constexpr size_t kPending = 16;     // checks in flight per pair (older ones are forgotten)
  static constexpr uint64_t kCheckIntervalNs = 100'000'000ull;
  // All pairs' checks while checking, per second (as ICE paces them, RFC 8445 14.2): with more than 5 pairs checking
  // each checks less often. Whatever candidates a peer names, this end sends them no more than that.
  static constexpr uint64_t kChecksPerSecond = 50;
  static constexpr uint64_t kCheckWindowNs = 10'000'000'000ull;
  static constexpr uint64_t kConsentIntervalNs = 1'000'000'000ull;
  static constexpr uint64_t kConsentTimeoutNs = 3'000'000'000ull;
  static constexpr uint64_t kRecheckAfterLossNs = 5'000'000'000ull;
  static constexpr uint64_t kRecheckAfterFailureNs = 30'000'000'000ull;

  // Sends a datagram from the direct-path socket; false when the kernel refused it.
  using Send = std::function<bool(Endpoint to, std::span<const uint8_t> data)>;
  // A pair's new path, for dpctld.
  using Report = std::function<void(const PathReport& r)>;

  struct Stats {
    uint64_t checks_tx = 0, checks_rx = 0;        // requests sent / authenticated requests received
    uint64_t answers_tx = 0, answers_rx = 0;      // responses sent / authenticated responses to our checks
    uint64_t auth_failures = 0;                   // checks of a known pair whose integrity did not verify
    uint64_t unknown_pair = 0;                    // checks naming no pair of ours, or a response to no check
    uint64_t reflected = 0;                       // requests carrying our own role (our checks sent back to us)
    uint64_t not_checks = 0;                      // datagrams that are no check at all
    uint64_t send_errors = 0;
    uint64_t directs = 0, unanswered = 0, fallbacks = 0;  // paths made direct / windows without an answer / lost
    uint64_t pairs_refused = 0;                   // offers over kMaxPairs
  };

  DirectPaths(Send send, Report report);
  // A pairing from dpctld (replaces a pair of the same id); checking starts at once.
  void offer(const PeerOffer& o, uint64_t now_ns);
  void gone(uint32_t pair);
  void clear();  // a new registration: dpctld pairs the new session afresh
  // A datagram the direct-path socket received that no STUN server sent.
  void datagram(Endpoint from, std::span<const uint8_t> data, uint64_t now_ns);
  void tick(uint64_t now_ns);
  size_t pairs() const { return pairs_.size(); }
  // The peer's address while pair `pair`'s path is direct, else nullopt.
  std::optional<Endpoint> direct_remote(uint32_t pair) const {
    auto it = pairs_.find(pair);
    if (it == pairs_.end() || it->second.state != PathState::Direct) return std::nullopt;
    return it->second.selected;
  }
  const Stats& stats() const { return stats_; }
  std::string stats_json() const;  // a JSON object: the counters and each pair's path

 private:
  struct Check {
    StunTransactionId id{};
    Endpoint to;
    uint64_t sent_ns = 0;
  };
  struct Pair {
    uint32_t id = 0;
    bool controlling = false;
    std::array<uint8_t, kDirectCheckKeyLen> key{};
    uint32_t peer_session = 0;
    std::string peer_name;
    std::vector<Endpoint> remotes;
    size_t next_remote = 0;
    PathState state = PathState::Checking;
    PathReason reason = PathReason::None;
    std::optional<Endpoint> selected;
    uint64_t phase_ns = 0;       // when the current state began
    uint64_t next_check_ns = 0;  // checking, direct: the next check; relayed: when checking starts again
    uint64_t last_answer_ns = 0;
    uint64_t rtt_ns = 0;
    std::array<Check, kPending> pending{};
    size_t pending_next = 0;
    ~Pair();
  };

  void send_check(Pair& p, Endpoint to, uint64_t now_ns);
  void set_state(Pair& p, PathState s, PathReason why, uint64_t now_ns);
  void request(const StunCheck& c, Endpoint from, std::span<const uint8_t> data, uint64_t now_ns);
  void response(const StunCheck& c, Endpoint from, std::span<const uint8_t> data, uint64_t now_ns);
  char role(const Pair& p) const { return p.controlling ? 'c' : 'd'; }

  Send send_;
  Report report_;
  std::map<uint32_t, Pair> pairs_;
  Stats stats_;
};

}  // namespace dptun
