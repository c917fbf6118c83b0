// dpctld's direct-path pairs (docs/nat-traversal.md): each visitor that reported candidates is paired with one agent
// of its tunnel that did too (the highest weight, then the lowest session index), and both ends get the other's
// candidates and a pair secret drawn for this pairing alone (control/control_protocol.hpp, "peer"). A pair is kept
// while both sessions keep their control connections and their candidates; when either changes, the pair ends
// ("peer_gone" to the end still there) and a new one, with a new id and a new secret, is made. The ends report what
// their checks found ("path"); a pair is direct when both ends say so. reconcile() works from the sessions as they
// are, so every way a session can go (closed, expired, revoked, replaced) ends its pairs the same way.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "control/control_protocol.hpp"
#include "control/session_registry.hpp"

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

  DirectPairs();
  // Makes, keeps and ends pairs for `sessions` as they are now; returns what to send.
  std::vector<Message> reconcile(const std::map<uint32_t, SessionRecord>& sessions);
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

  std::map<uint32_t, Pair> pairs_;
  std::map<uint32_t, uint32_t> by_visitor_;  // visitor session -> pair id
  Stats stats_;
};

}  // namespace dptun
