// Direct paths, both halves (docs/nat-traversal.md). dpagent's DirectPaths (agent/direct_paths.hpp): two real
// instances, a visitor's and an agent's, joined by a wire this test carries (each datagram delivered with its source
// address, or dropped while the wire is cut): the checks make the pair direct at both ends, consent keeps it so,
// a cut wire makes it relayed (consent_lost) within kConsentTimeoutNs and checking again later makes it direct
// again; a peer that never answers leaves it relayed (checks_unanswered); checks with another pair's key, a request
// sent back to its sender, answers from an address the check did not go to and an answer replayed are counted and
// change nothing; many pairs checking at once share kChecksPerSecond;
// pairs over kMaxPairs are refused. dpctld's DirectPairs (control/direct_pairs.hpp): which agent a visitor is paired
// with, a new pair (new id) when candidates change, peer_gone to the end still there when a session goes, and path
// reports only from a pair's own ends.
#include <cstring>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "agent/direct_paths.hpp"
#include "control/direct_pairs.hpp"
#include "proto/stun.hpp"
#include "tests/unit/cmocka.hpp"

using namespace dptun;

namespace {

constexpr uint64_t kMs = 1'000'000;
const Endpoint kVisitorAddr{Ipv4{0xc6336402}, 42000};  // 198.51.100.2
const Endpoint kAgentAddr{Ipv4{0xcb007105}, 41000};    // 203.0.113.5

struct Datagram {
  Endpoint from, to;
  std::vector<uint8_t> bytes;
};

// Two ends and the wire between them.
struct Net {
  std::deque<Datagram> wire;
  bool cut = false;
  std::vector<PathReport> visitor_reports, agent_reports;
  DirectPaths visitor{[this](Endpoint to, std::span<const uint8_t> d) { return put(kVisitorAddr, to, d); },
                      [this](const PathReport& r) { visitor_reports.push_back(r); }};
  DirectPaths agent{[this](Endpoint to, std::span<const uint8_t> d) { return put(kAgentAddr, to, d); },
                    [this](const PathReport& r) { agent_reports.push_back(r); }};
  uint64_t now = 1'000 * kMs;

  bool put(Endpoint from, Endpoint to, std::span<const uint8_t> d) {
    if (!cut) wire.push_back({from, to, {d.begin(), d.end()}});
    return true;
  }
  void deliver() {
    while (!wire.empty()) {
      Datagram d = std::move(wire.front());
      wire.pop_front();
      if (d.to == kAgentAddr) agent.datagram(d.from, d.bytes, now);
      else if (d.to == kVisitorAddr) visitor.datagram(d.from, d.bytes, now);
    }
  }
  // Runs both ends' ticks every 100 ms for `ms`, the wire delivering in between.
  void run(uint64_t ms) {
    for (uint64_t t = 0; t < ms; t += 100) {
      now += 100 * kMs;
      visitor.tick(now);
      agent.tick(now);
      deliver();
    }
  }
};

PeerOffer offer(uint32_t pair, bool controlling, Endpoint peer, uint8_t secret_byte = 7) {
  PeerOffer o;
  o.pair = pair;
  o.controlling = controlling;
  o.secret.fill(secret_byte);
  o.session = controlling ? 40001 : 40002;
  o.name = controlling ? "agent" : "visitor";
  o.peer.nat = NatMapping::EndpointIndependent;
  o.peer.candidates = {{CandidateType::Host, Endpoint{Ipv4{0x0a000002}, 9}},  // unreachable: tried after the srflx
                       {CandidateType::ServerReflexive, peer}};
  return o;
}

PathState last_state(const std::vector<PathReport>& r) { return r.empty() ? PathState::Count : r.back().state; }

void checks_make_a_pair_direct_and_consent_keeps_it(void**) {
  Net n;
  n.visitor.offer(offer(0x11, true, kAgentAddr), n.now);
  n.agent.offer(offer(0x11, false, kVisitorAddr), n.now);
  assert_int_equal(int(last_state(n.visitor_reports)), int(PathState::Checking));
  n.run(1000);
  assert_int_equal(int(last_state(n.visitor_reports)), int(PathState::Direct));
  assert_int_equal(int(last_state(n.agent_reports)), int(PathState::Direct));
  assert_true(n.visitor_reports.back().remote == kAgentAddr);
  assert_true(n.agent_reports.back().remote == kVisitorAddr);
  // Consent: a minute later still direct, one check a second each way, nothing new reported.
  const size_t reports = n.visitor_reports.size();
  const uint64_t checks = n.visitor.stats().checks_tx;
  n.run(60'000);
  assert_int_equal(n.visitor_reports.size(), reports);
  assert_in_range(n.visitor.stats().checks_tx - checks, 55, 65);
  assert_int_equal(n.visitor.stats().auth_failures + n.agent.stats().auth_failures, 0);
}

void a_silent_peer_falls_back_and_comes_back(void**) {
  Net n;
  n.visitor.offer(offer(0x22, true, kAgentAddr), n.now);
  n.agent.offer(offer(0x22, false, kVisitorAddr), n.now);
  n.run(1000);
  assert_int_equal(int(last_state(n.visitor_reports)), int(PathState::Direct));
  n.cut = true;
  const uint64_t cut_at = n.now;
  while (last_state(n.visitor_reports) == PathState::Direct && n.now - cut_at < 10'000 * kMs) n.run(100);
  const uint64_t took = n.now - cut_at;
  assert_int_equal(int(last_state(n.visitor_reports)), int(PathState::Relayed));
  assert_int_equal(int(n.visitor_reports.back().reason), int(PathReason::ConsentLost));
  assert_true(took <= DirectPaths::kConsentTimeoutNs + DirectPaths::kConsentIntervalNs);
  assert_int_equal(n.visitor.stats().fallbacks, 1);
  n.cut = false;
  n.run(DirectPaths::kRecheckAfterLossNs / kMs + 2000);
  assert_int_equal(int(last_state(n.visitor_reports)), int(PathState::Direct));
  assert_int_equal(int(last_state(n.agent_reports)), int(PathState::Direct));
}

void no_answer_leaves_it_relayed(void**) {
  Net n;
  n.visitor.offer(offer(0x33, true, kAgentAddr), n.now);  // the agent never hears of the pair
  n.run(DirectPaths::kCheckWindowNs / kMs + 200);
  assert_int_equal(int(last_state(n.visitor_reports)), int(PathState::Relayed));
  assert_int_equal(int(n.visitor_reports.back().reason), int(PathReason::ChecksUnanswered));
  assert_true(n.agent.stats().unknown_pair > 0);  // its checks named a pair the agent does not have
  assert_int_equal(n.agent.stats().answers_tx, 0);
  // Checking starts again after kRecheckAfterFailureNs; with the agent told now, the pair becomes direct.
  n.agent.offer(offer(0x33, false, kVisitorAddr), n.now);
  n.run(DirectPaths::kRecheckAfterFailureNs / kMs + 1000);
  assert_int_equal(int(last_state(n.visitor_reports)), int(PathState::Direct));
}

void what_is_not_the_peer_changes_nothing(void**) {
  Net n;
  // Another secret at the agent: every check fails its integrity check, nothing is answered.
  n.visitor.offer(offer(0x44, true, kAgentAddr, 7), n.now);
  n.agent.offer(offer(0x44, false, kVisitorAddr, 8), n.now);
  n.run(2000);
  assert_true(n.agent.stats().auth_failures > 0 && n.visitor.stats().auth_failures > 0);
  assert_int_equal(n.agent.stats().answers_tx + n.visitor.stats().answers_tx, 0);
  assert_int_not_equal(int(last_state(n.visitor_reports)), int(PathState::Direct));
  // A visitor's check sent back to the visitor (same role): counted as reflected, not answered.
  Net r;
  r.visitor.offer(offer(0x55, true, kAgentAddr), r.now);
  r.now += 100 * kMs;
  r.visitor.tick(r.now);
  assert_false(r.wire.empty());
  Datagram d = r.wire.front();
  r.wire.clear();
  r.visitor.datagram(kAgentAddr, d.bytes, r.now);
  assert_int_equal(r.visitor.stats().reflected, 1);
  assert_true(r.wire.empty());
  // The agent's genuine answer, arriving from an address the check did not go to: not taken.
  r.agent.offer(offer(0x55, false, kVisitorAddr), r.now);
  r.agent.datagram(kVisitorAddr, d.bytes, r.now);
  assert_int_equal(r.agent.stats().answers_tx, 1);
  Datagram answer = r.wire.back();
  r.wire.clear();
  r.visitor.datagram(Endpoint{Ipv4{0xc6336463}, 1234}, answer.bytes, r.now);
  assert_int_equal(r.visitor.stats().answers_rx, 0);
  assert_int_equal(r.visitor.stats().unknown_pair, 1);
  r.visitor.datagram(kAgentAddr, answer.bytes, r.now);  // from where it went: direct
  assert_int_equal(int(last_state(r.visitor_reports)), int(PathState::Direct));
  // The same answer again (replayed by someone on the path): it answered its check already, it keeps nothing alive.
  r.visitor.datagram(kAgentAddr, answer.bytes, r.now);
  assert_int_equal(r.visitor.stats().answers_rx, 1);
  assert_int_equal(r.visitor.stats().unknown_pair, 2);
  // Garbage is no check.
  const uint8_t junk[] = {1, 2, 3};
  r.visitor.datagram(kAgentAddr, junk, r.now);
  assert_int_equal(r.visitor.stats().not_checks, 1);
}

void many_pairs_share_the_check_rate(void**) {
  Net n;
  for (uint32_t i = 1; i <= 100; ++i) n.agent.offer(offer(i, false, kVisitorAddr), n.now);
  n.now += 100 * kMs;
  n.agent.tick(n.now);  // (the first tick: every pair's first check)
  const uint64_t first = n.agent.stats().checks_tx;
  for (int t = 0; t < 50; ++t) {  // 5 s more
    n.now += 100 * kMs;
    n.agent.tick(n.now);
  }
  const uint64_t later = n.agent.stats().checks_tx - first;
  assert_true(later <= 5 * DirectPaths::kChecksPerSecond + 100);  // (each pair's next check is due at most once more)
  n.wire.clear();
}

void too_many_pairs_are_refused(void**) {
  Net n;
  for (uint32_t i = 1; i <= DirectPaths::kMaxPairs + 1; ++i) n.agent.offer(offer(i, false, kVisitorAddr), n.now);
  assert_int_equal(n.agent.pairs(), DirectPaths::kMaxPairs);
  assert_int_equal(n.agent.stats().pairs_refused, 1);
  assert_int_equal(int(n.agent_reports.back().reason), int(PathReason::TooManyPairs));
  n.agent.gone(1);
  assert_int_equal(n.agent.pairs(), DirectPaths::kMaxPairs - 1);
  n.agent.clear();
  assert_int_equal(n.agent.pairs(), 0);
}

// dpctld's side.
SessionRecord session(uint32_t index, bool visitor, uint8_t weight, uint64_t channel, const char* tunnel) {
  SessionRecord s;
  s.index = index;
  s.visitor = visitor;
  s.weight = weight;
  s.channel = channel;
  s.tunnel = *Uuid::parse(tunnel);
  s.agent_name = "s" + std::to_string(index);
  s.candidates = CandidateReport{NatMapping::EndpointIndependent,
                                 {{CandidateType::ServerReflexive, Endpoint{Ipv4{0xcb007100u + index % 200}, 41000}}}};
  s.candidates_gen = 1;
  s.pair_data = true;
  return s;
}
const char* kT1 = "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f";
const char* kT2 = "7f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f";

// dpctld's lookup of a visitor's service (Dpctld::visitor_target): one rule here.
const Endpoint kTarget = *Endpoint::parse("192.168.77.2:80");
std::optional<Endpoint> g_target = kTarget;  // the rule's target now (tests change the rule)
std::optional<Endpoint> resolve(const SessionRecord& v, std::string& why) {
  if (v.service == "svc.example" && g_target) return g_target;
  why = "no rule of the tunnel names '" + v.service + "'";
  return std::nullopt;
}

// The "type" of each message, with the session it goes to.
std::multimap<uint32_t, std::string> kinds(const std::vector<DirectPairs::Message>& m) {
  std::multimap<uint32_t, std::string> out;
  for (const auto& x : m) {
    const ControllerMessage c = parse_controller_message(x.line);
    out.emplace(x.session, c.kind == ControllerMessage::Kind::Peer       ? "peer"
                           : c.kind == ControllerMessage::Kind::PeerGone ? "peer_gone"
                                                                         : "other");
  }
  return out;
}

void dpctld_pairs_a_visitor_with_its_tunnels_best_agent(void**) {
  std::map<uint32_t, SessionRecord> s;
  s[40001] = session(40001, false, 1, 11, kT1);
  s[40002] = session(40002, false, 200, 12, kT1);  // the highest weight
  s[40003] = session(40003, false, 255, 13, kT2);  // another tunnel's
  s[40004] = session(40004, true, 1, 14, kT1);     // the visitor
  s[40005] = session(40005, true, 1, 15, kT1);
  s[40005].candidates.reset();  // no candidates: not paired
  DirectPairs pairs;
  const auto m = pairs.reconcile(s, resolve);
  assert_int_equal(m.size(), 2);
  const auto k = kinds(m);
  assert_int_equal(k.count(40004), 1);
  assert_int_equal(k.count(40002), 1);
  const ControllerMessage to_visitor = parse_controller_message(m[0].session == 40004 ? m[0].line : m[1].line);
  const ControllerMessage to_agent = parse_controller_message(m[0].session == 40004 ? m[1].line : m[0].line);
  assert_true(to_visitor.peer.controlling && !to_agent.peer.controlling);
  assert_int_equal(to_visitor.peer.session, 40002);
  assert_int_equal(to_agent.peer.session, 40004);
  assert_true(to_visitor.peer.secret == to_agent.peer.secret);  // one secret, both ends
  assert_true(to_visitor.peer.peer == *s[40002].candidates);
  // No service named: the pair checks its path, its data goes through dpgw; dpgw relays nothing for it.
  assert_false(to_visitor.peer.data.has_value() || to_agent.peer.data.has_value());
  assert_true(pairs.relay_specs().empty());
  assert_true(pairs.reconcile(s, resolve).empty());  // nothing changed, nothing sent
  // Path reports: only from the pair's ends.
  const uint32_t id = to_visitor.peer.pair;
  assert_false(pairs.on_path(40001, PathReport{id, PathState::Direct, PathReason::None, kAgentAddr, 1}));
  assert_true(pairs.on_path(40004, PathReport{id, PathState::Direct, PathReason::None, kAgentAddr, 1}));
  assert_false(pairs.all().at(id).direct());
  assert_true(pairs.on_path(40002, PathReport{id, PathState::Direct, PathReason::None, kVisitorAddr, 1}));
  assert_true(pairs.all().at(id).direct());
  assert_int_equal(pairs.stats().became_direct, 1);
  assert_true(pairs.on_path(40002, PathReport{id, PathState::Relayed, PathReason::ConsentLost, std::nullopt, 0}));
  assert_false(pairs.all().at(id).direct());
  assert_int_equal(pairs.stats().fallbacks, 1);
  assert_int_equal(pairs.stats().path_reports_rejected, 1);
  // New candidates at the agent: the pair ends (peer_gone to both) and a new one, with a new id, is made.
  s[40002].candidates_gen++;
  const auto again = pairs.reconcile(s, resolve);
  const auto k2 = kinds(again);
  assert_int_equal(k2.size(), 4);
  assert_int_equal(pairs.all().size(), 1);
  assert_int_not_equal(pairs.all().begin()->first, id);
  // The agent's connection closes: peer_gone to the visitor only; it is paired with the next agent.
  s[40002].channel = 0;
  const auto third = pairs.reconcile(s, resolve);
  const auto k3 = kinds(third);
  assert_int_equal(k3.count(40002), 0);
  assert_int_equal(pairs.all().size(), 1);
  assert_int_equal(pairs.all().begin()->second.agent, 40001);
  assert_int_equal(pairs.stats().made, 3);
  assert_int_equal(pairs.stats().ended, 2);
  // The visitor goes: the pair ends, the agent is told.
  s.erase(40004);
  const auto last = kinds(pairs.reconcile(s, resolve));
  assert_int_equal(last.size(), 1);
  assert_int_equal(last.count(40001), 1);
  assert_true(pairs.all().empty());
}

// Pairs that carry data: each visitor whose service resolves gets a block of flow tags of its own, both ends learn
// it, only the visitor the target; the block stays with the visitor's session across pairings and is freed with it;
// dpgw is told exactly the pairs with data (relay_specs), and each change of the pairs moves the generation.
void pairs_carry_data_with_a_block_per_visitor(void**) {
  std::map<uint32_t, SessionRecord> s;
  s[40001] = session(40001, false, 1, 11, kT1);
  s[40004] = session(40004, true, 1, 14, kT1);
  s[40005] = session(40005, true, 1, 15, kT1);
  s[40006] = session(40006, true, 1, 16, kT1);
  s[40004].service = s[40005].service = "svc.example";
  s[40006].service = "other.example";
  DirectPairs pairs;
  const uint64_t gen0 = pairs.generation();
  std::map<uint32_t, ControllerMessage> to;
  for (const auto& m : pairs.reconcile(s, resolve)) {
    const ControllerMessage c = parse_controller_message(m.line);
    if (m.session != 40001) to[m.session] = c;
    else to[c.peer.session + 100000] = c;  // the agent's offers, by visitor
  }
  assert_int_equal(to.size(), 6);
  assert_true(to[40004].peer.data && to[40005].peer.data);
  assert_true(to[40004].peer.data->target == kTarget);
  assert_int_not_equal(to[40004].peer.data->block, to[40005].peer.data->block);
  assert_true(to[140004].peer.data && to[140004].peer.data->target == kTarget);  // the agent enforces it
  assert_int_equal(to[140004].peer.data->block, to[40004].peer.data->block);
  assert_false(to[40006].peer.data.has_value() || to[140006].peer.data.has_value());
  const DirectPairs::Pair& no_data = pairs.all().at(to[40006].peer.pair);
  assert_non_null(strstr(no_data.no_data.c_str(), "other.example"));
  auto specs = pairs.relay_specs();
  assert_int_equal(specs.size(), 2);
  for (const PairSpec& p : specs) assert_true(p.b == 40001 && (p.a == 40004 || p.a == 40005));
  assert_int_not_equal(pairs.generation(), gen0);
  const uint64_t gen1 = pairs.generation();
  const uint16_t block4 = to[40004].peer.data->block;
  // New candidates at visitor 40004: a new pairing, the same block.
  s[40004].candidates_gen++;
  uint16_t again = 0xffff;
  for (const auto& m : pairs.reconcile(s, resolve)) {
    const ControllerMessage c = parse_controller_message(m.line);
    if (m.session == 40004 && c.kind == ControllerMessage::Kind::Peer) again = c.peer.data->block;
  }
  assert_int_equal(again, block4);
  assert_int_not_equal(pairs.generation(), gen1);
  // The visitor goes: its pair and its block go; the next visitor may get any free block, never one in use.
  s.erase(40004);
  pairs.reconcile(s, resolve);
  assert_int_equal(pairs.relay_specs().size(), 1);
  s[40007] = session(40007, true, 1, 17, kT1);
  s[40007].service = "svc.example";
  for (const auto& m : pairs.reconcile(s, resolve)) {
    const ControllerMessage c = parse_controller_message(m.line);
    if (m.session == 40007) assert_int_not_equal(c.peer.data->block, to[40005].peer.data->block);
  }
  assert_int_equal(pairs.relay_specs().size(), 2);
  // Pair ids are never the STUN magic cookie (the direct-path socket tells checks and pair frames apart by it).
  for (const auto& [id, p] : pairs.all()) assert_int_not_equal(id, kStunMagicCookie);
  // The rule changes its target: the pairs that carry data are made again with the new one (the visitors keep their
  // blocks); the rule goes: made again without data.
  const uint32_t id5 = pairs.by_session().at(40005)[0]->id;
  g_target = Endpoint::parse("192.168.77.3:80");
  assert_true(kinds(pairs.reconcile(s, resolve)).empty());  // rules the same generation: not looked up again
  auto k = kinds(pairs.reconcile(s, resolve, 1));
  assert_int_equal(k.count(40005), 2);  // peer_gone, then peer
  const DirectPairs::Pair* p5 = pairs.by_session().at(40005)[0];
  assert_int_not_equal(p5->id, id5);
  assert_true(p5->data && p5->data->target == g_target && p5->data->block == to[40005].peer.data->block);
  assert_true(kinds(pairs.reconcile(s, resolve, 1)).empty());  // and then left alone
  g_target.reset();
  pairs.reconcile(s, resolve, 2);
  assert_false(pairs.by_session().at(40005)[0]->data.has_value());
  assert_true(pairs.relay_specs().empty());
  assert_true(kinds(pairs.reconcile(s, resolve, 3)).empty());
  g_target = kTarget;
  // An end whose dpagent does not say "pair_data": the pair only checks.
  s[40005].pair_data = false;
  s[40005].candidates_gen++;
  pairs.reconcile(s, resolve, 3);
  const DirectPairs::Pair* old_agent = pairs.by_session().at(40005)[0];
  assert_false(old_agent->data.has_value());
  assert_non_null(strstr(old_agent->no_data.c_str(), "no pair data"));
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(checks_make_a_pair_direct_and_consent_keeps_it),
      cmocka_unit_test(a_silent_peer_falls_back_and_comes_back),
      cmocka_unit_test(no_answer_leaves_it_relayed),
      cmocka_unit_test(what_is_not_the_peer_changes_nothing),
      cmocka_unit_test(many_pairs_share_the_check_rate),
      cmocka_unit_test(too_many_pairs_are_refused),
      cmocka_unit_test(dpctld_pairs_a_visitor_with_its_tunnels_best_agent),
      cmocka_unit_test(pairs_carry_data_with_a_block_per_visitor),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
