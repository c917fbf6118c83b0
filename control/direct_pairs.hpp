// dpctld's direct-path pairs (docs/nat-traversal.md): each visitor that reported candidates is paired with one agent
// of its tunnel that did too (the highest weight, then the lowest session index), and both ends get the other's
// candidates and a pair secret drawn for this pairing alone (control/control_protocol.hpp, "peer"). A pair is kept
// while both sessions keep their control connections and their candidates; when either changes, the pair ends
// ("peer_gone" to the end still there) and a new one, with a new id and a new secret, is made. The ends report what
// their checks found ("path"); a pair is direct when both ends say so. reconcile() works from the sessions as they
// are, so every way a session can go (closed, expired, revoked, replaced) ends its pairs the same way.
// A pair carries the visitor's flows too (pair frames: "data" in its offers) when the visitor named its service and
// the tunnel's rule for it has a target (the resolver decides); the visitor then keeps a block of flow tags
// (SnatCodec::pair_tag) for as long as its session lives, so its flows keep their tags, and their source at the
// target, across pairings. dpgw is told the pairs that carry data (pair_set), to forward their frames while the
// path is not direct.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "control/control_protocol.hpp"
#include "control/session_registry.hpp"
#include "proto/gateway_specs.hpp"

namespace dptun {

class DirectPairs {
 public:
  static constexpr size_t kMaxPairsPerAgent = 256;  // as dpagent's own limit (agent/direct_paths.hpp)

  struct Pair {
    uint32_t id = 0;
    uint32_t visitor = 0, agent = 0;          // session indexes
    uint64_t visitor_gen = 0, agent_gen = 0;  // their candidates reports' generations when paired
    std::optional<PathReport> visitor_path, agent_path;  // the ends' latest reports
    uint64_t made_unix_ns = 0;
    std::optional<PairDataOffer> data;  // the visitor's (with its target); nullopt: checks only, see no_data
    std::string no_data;                // why the pair carries no data
    std::optional<Endpoint> resolved;   // the visitor's target when paired (a rule that changes ends the pair)
    // Both ends have a direct path.
    bool direct() const {
      return visitor_path && agent_path && visitor_path->state == PathState::Direct &&
             agent_path->state == PathState::Direct;
    }
  };
  // A line for a session's control connection.
  struct Message {
    uint32_t session = 0;
    std::string line;
  };
  struct Stats {
    uint64_t made = 0, ended = 0;
    uint64_t path_reports = 0, path_reports_rejected = 0;  // rejected: malformed, or for a pair not of that session
    uint64_t became_direct = 0, fallbacks = 0;  // pairs that became direct at both ends / stopped being so
  };

  // Where a visitor's flows go (the target of its tunnel's rule for its service; port 0: the visitor's own port), or
  // nullopt with why not.
  using TargetResolver = std::function<std::optional<Endpoint>(const SessionRecord& visitor, std::string& why)>;

  DirectPairs();
  // Makes, keeps and ends pairs for `sessions` as they are now; returns what to send.
  // `rules_gen` changes whenever the hostname rules may have: only then are the pairs' targets looked up again.
  std::vector<Message> reconcile(const std::map<uint32_t, SessionRecord>& sessions, const TargetResolver& resolve,
                                 uint64_t rules_gen = 0);
  // The pairs that carry data, as dpgw is told them (pair_set); changes with each pairing made or ended.
  std::vector<PairSpec> relay_specs() const;
  uint64_t generation() const { return generation_; }
  // An end's report; false when the pair is not one of that session's.
  bool on_path(uint32_t session, const PathReport& r);
  void count_rejected_path() { stats_.path_reports_rejected++; }
  // Each session's pairs (one pass: dpctl session list asks for all of them).
  std::map<uint32_t, std::vector<const Pair*>> by_session() const;
  const std::map<uint32_t, Pair>& all() const { return pairs_; }
  const Stats& stats() const { return stats_; }

 private:
  // Whether a session can be an end: a control connection to tell it, candidates to give the other end.
  static bool can_pair(const SessionRecord& s);
  uint32_t new_id();
  void end(std::map<uint32_t, Pair>::iterator it, const std::map<uint32_t, SessionRecord>& sessions,
           std::vector<Message>& out);

  // A free block of flow tags for visitor session `visitor` (its own if it has one); nullopt when all are taken.
  std::optional<uint16_t> block_for(uint32_t visitor);

  std::map<uint32_t, Pair> pairs_;
  std::map<uint32_t, uint32_t> by_visitor_;  // visitor session -> pair id
  std::map<uint32_t, uint16_t> blocks_;      // visitor session -> its block of flow tags, while the session lives
  std::vector<bool> block_used_;
  uint32_t next_block_ = 0;
  uint64_t generation_ = 0;  // counts pairings made and ended
  uint64_t rules_gen_ = 0;   // the rules' generation the pairs' targets were last looked up at
  Stats stats_;
};

}  // namespace dptun
