// Direct-path candidates (docs/nat-traversal.md): the report dpagent makes of its STUN answers
// (agent/endpoint_discovery.hpp, make_candidate_report: the NAT's mapping behaviour from the answers of two or
// more servers, srflx before host, what a peer must never be sent to left out) and the candidates message both
// ends share (control/control_protocol.hpp): written by the agent, read back by dpctld; every refusal dpctld makes
// of a report (it ignores the report, the session goes on), and the addresses no candidate may have.
#include <cstring>
#include <string>
#include <vector>

#include "agent/endpoint_discovery.hpp"
#include "control/control_protocol.hpp"
#include "tests/unit/cmocka.hpp"

using namespace dptun;

namespace {

Endpoint ep(const char* text) {
  const auto e = Endpoint::parse(text);
  if (!e) fail_msg("bad endpoint %s", text);
  return *e;
}

const Endpoint kHost = ep("10.0.0.2:41000");
const Endpoint kStunA = ep("192.0.2.10:3478"), kStunB = ep("192.0.2.10:51900"), kCoturn = ep("192.0.2.20:3478");

void no_answer_is_unknown(void**) {
  const std::vector<Endpoint> hosts{kHost};
  const std::vector<StunObservation> seen{{kStunA, std::nullopt}, {kStunB, std::nullopt}};
  const CandidateReport r = make_candidate_report(hosts, seen);
  assert_int_equal(int(r.nat), int(NatMapping::Unknown));
  assert_int_equal(r.candidates.size(), 1);
  assert_true(r.candidates[0] == (Candidate{CandidateType::Host, kHost}));
}

void one_mapping_everywhere_is_endpoint_independent(void**) {
  const std::vector<Endpoint> hosts{kHost};
  const Endpoint mapped = ep("198.51.100.7:41000");
  const std::vector<StunObservation> seen{{kStunA, mapped}, {kStunB, mapped}, {kCoturn, mapped}};
  const CandidateReport r = make_candidate_report(hosts, seen);
  assert_int_equal(int(r.nat), int(NatMapping::EndpointIndependent));
  assert_int_equal(r.candidates.size(), 2);
  assert_true(r.candidates[0] == (Candidate{CandidateType::ServerReflexive, mapped}));
  assert_true(r.candidates[1] == (Candidate{CandidateType::Host, kHost}));
  // One answer tells the address, not the behaviour.
  const std::vector<StunObservation> one{{kStunA, mapped}, {kStunB, std::nullopt}};
  const CandidateReport r1 = make_candidate_report(hosts, one);
  assert_int_equal(int(r1.nat), int(NatMapping::Unknown));
  assert_int_equal(r1.candidates.size(), 2);
}

void a_mapping_per_server_is_endpoint_dependent(void**) {
  const std::vector<Endpoint> hosts{kHost};
  const std::vector<StunObservation> seen{{kStunA, ep("198.51.100.7:40001")}, {kStunB, ep("198.51.100.7:52113")}};
  const CandidateReport r = make_candidate_report(hosts, seen);
  assert_int_equal(int(r.nat), int(NatMapping::EndpointDependent));
  assert_int_equal(r.candidates.size(), 3);  // both mappings, then the host
  assert_int_equal(int(r.candidates[0].type), int(CandidateType::ServerReflexive));
  assert_int_equal(int(r.candidates[1].type), int(CandidateType::ServerReflexive));
  assert_int_equal(int(r.candidates[2].type), int(CandidateType::Host));
}

void a_host_address_seen_is_no_nat(void**) {
  const std::vector<Endpoint> hosts{ep("203.0.113.5:41000"), kHost};
  const std::vector<StunObservation> seen{{kStunA, ep("203.0.113.5:41000")}, {kStunB, ep("203.0.113.5:41000")}};
  const CandidateReport r = make_candidate_report(hosts, seen);
  assert_int_equal(int(r.nat), int(NatMapping::None));
  assert_int_equal(r.candidates.size(), 2);  // no srflx that repeats a host candidate
  for (const Candidate& c : r.candidates) assert_int_equal(int(c.type), int(CandidateType::Host));
  // Only one server answering still shows no NAT.
  const std::vector<StunObservation> one{{kStunA, ep("203.0.113.5:41000")}};
  assert_int_equal(int(make_candidate_report(hosts, one).nat), int(NatMapping::None));
}

void what_a_peer_must_not_be_sent_to_is_left_out(void**) {
  // A STUN server that lies (loopback, multicast) or hosts on odd addresses: none of them becomes a candidate.
  const std::vector<Endpoint> hosts{ep("127.0.0.2:41000"), kHost};
  const std::vector<StunObservation> seen{{kStunA, ep("127.0.0.1:22")}, {kStunB, ep("224.0.0.251:5353")}};
  const CandidateReport r = make_candidate_report(hosts, seen);
  assert_int_equal(r.candidates.size(), 1);
  assert_true(r.candidates[0] == (Candidate{CandidateType::Host, kHost}));
  assert_false(candidate_address_ok(ep("0.1.2.3:5")));
  assert_false(candidate_address_ok(ep("255.255.255.255:5")));
  assert_false(candidate_address_ok(ep("240.0.0.1:5")));
  assert_false(candidate_address_ok(Endpoint{Ipv4{0x0a000001}, 0}));
  assert_true(candidate_address_ok(ep("223.255.255.254:65535")));
  // At most kMaxCandidates, srflx first.
  std::vector<Endpoint> many;
  for (int i = 0; i < 12; ++i) many.push_back(Endpoint{Ipv4{0x0a000100u + uint32_t(i)}, 41000});
  const std::vector<StunObservation> mapped{{kStunA, ep("198.51.100.7:41000")}};
  const CandidateReport big = make_candidate_report(many, mapped);
  assert_int_equal(big.candidates.size(), kMaxCandidates);
  assert_int_equal(int(big.candidates[0].type), int(CandidateType::ServerReflexive));
}

void message_round_trip(void**) {
  CandidateReport r;
  r.nat = NatMapping::EndpointDependent;
  r.candidates = {{CandidateType::ServerReflexive, ep("198.51.100.7:40001")}, {CandidateType::Host, kHost}};
  const std::string line = candidates_message(r);
  assert_string_equal(line.c_str(),
                      "{\"candidates\":[{\"address\":\"198.51.100.7:40001\",\"type\":\"srflx\"},"
                      "{\"address\":\"10.0.0.2:41000\",\"type\":\"host\"}],\"nat\":\"endpoint-dependent\","
                      "\"type\":\"candidates\"}");
  const AgentMessage m = parse_agent_message(line);
  assert_int_equal(int(m.kind), int(AgentMessage::Kind::Candidates));
  assert_string_equal(m.error.c_str(), "");
  assert_true(m.candidates == r);
  for (int n = 0; n <= int(NatMapping::Count); ++n) assert_non_null(nat_mapping_name(NatMapping(n)));
  for (int t = 0; t <= int(CandidateType::Count); ++t) assert_non_null(candidate_type_name(CandidateType(t)));
  // A candidate twice is kept once.
  const AgentMessage twice = parse_agent_message(
      R"({"type":"candidates","nat":"none","candidates":[{"type":"host","address":"10.0.0.2:41000"},)"
      R"({"type":"host","address":"10.0.0.2:41000"}]})");
  assert_string_equal(twice.error.c_str(), "");
  assert_int_equal(twice.candidates.candidates.size(), 1);
}

// A registration's name is cut to 64 bytes at a character boundary, so that dpctld can write it into the peer's
// pairing message; a name that is not UTF-8 at all is written with replacement characters, never thrown at.
void names_stay_utf8(void**) {
  const std::string name = std::string(63, 'a') + "\xc3\xa9";  // 63 bytes, then U+00E9 (2 bytes)
  const AgentMessage reg = parse_agent_message(
      R"({"type":"register","version":1,"tunnel":"web","name":")" + name + R"("})");
  assert_int_equal(int(reg.kind), int(AgentMessage::Kind::Register));
  assert_string_equal(reg.name.c_str(), std::string(63, 'a').c_str());
  PeerOffer o;
  o.pair = 9;
  o.session = 40001;
  o.name = reg.name;
  ControllerMessage back = parse_controller_message(peer_message(o));
  assert_int_equal(int(back.kind), int(ControllerMessage::Kind::Peer));
  assert_string_equal(back.peer.name.c_str(), reg.name.c_str());
  o.name = "\xff\xfe";
  back = parse_controller_message(peer_message(o));  // would throw with nlohmann's strict default
  assert_int_equal(int(back.kind), int(ControllerMessage::Kind::Peer));
}

// A pairing that carries data: the visitor's block and its target go to both ends; a pairing's data that is out of
// range, or without a target, makes the whole message unreadable (the agent logs it and keeps the pair out). A visitor names its service.
void pair_data_offer(void**) {
  PeerOffer o;
  o.pair = 0x12345678;
  o.controlling = true;
  o.session = 40001;
  o.data = PairDataOffer{17, ep("10.99.3.2:8080")};
  const std::string line = peer_message(o);
  assert_non_null(strstr(line.c_str(), R"("data":{"block":17,"target":"10.99.3.2:8080"})"));
  ControllerMessage back = parse_controller_message(line);
  assert_int_equal(int(back.kind), int(ControllerMessage::Kind::Peer));
  assert_true(back.peer.data == o.data);
  o.data->target->port = 0;  // a rule's target without a port: the visitor's own
  assert_non_null(strstr(peer_message(o).c_str(), R"("target":"10.99.3.2"})"));
  back = parse_controller_message(peer_message(o));
  assert_true(back.peer.data == o.data);
  o.data.reset();
  back = parse_controller_message(peer_message(o));
  assert_int_equal(int(back.kind), int(ControllerMessage::Kind::Peer));
  assert_false(back.peer.data.has_value());
  std::string base = peer_message(o);
  base.pop_back();
  for (const char* bad : {R"({"block":16384,"target":"10.0.0.1"})", R"({"block":-1,"target":"10.0.0.1"})",
                          R"({"block":1})", R"({"block":"1"})", R"(7)",
                          R"({"block":1,"target":"10.0.0.1:x"})", R"({"block":1,"target":"[::1]:80"})",
                          R"({"block":1,"target":"0.0.0.0:80"})"}) {
    back = parse_controller_message(base + R"(,"data":)" + bad + "}");
    if (back.kind != ControllerMessage::Kind::Invalid) fail_msg("data %s was taken", bad);
    assert_non_null(strstr(back.error.c_str(), "'data."));
  }
  const AgentMessage reg = parse_agent_message(
      R"({"type":"register","version":1,"tunnel":"web","role":"visitor","service":"Svc.Example"})");
  assert_int_equal(int(reg.kind), int(AgentMessage::Kind::Register));
  assert_string_equal(reg.service.c_str(), "svc.example");
  for (const char* bad : {R"("role":"agent","service":"svc.example")", R"("role":"visitor","service":"")",
                          R"("role":"visitor","service":"a b")", R"("role":"visitor","service":7)"}) {
    const AgentMessage m =
        parse_agent_message(std::string(R"({"type":"register","version":1,"tunnel":"web",)") + bad + "}");
    if (m.kind != AgentMessage::Kind::Invalid) fail_msg("registration with %s was taken", bad);
  }
}

void expect_ignored(const std::string& line, const char* why_part) {
  const AgentMessage m = parse_agent_message(line);
  assert_int_equal(int(m.kind), int(AgentMessage::Kind::Candidates));
  if (m.error.find(why_part) == std::string::npos) fail_msg("%s: error '%s' lacks '%s'", line.c_str(), m.error.c_str(), why_part);
}

void forged_reports_are_refused(void**) {
  expect_ignored(R"({"type":"candidates","candidates":[]})", "'nat'");
  expect_ignored(R"({"type":"candidates","nat":"full-cone","candidates":[]})", "'nat'");
  expect_ignored(R"({"type":"candidates","nat":"none"})", "array");
  expect_ignored(R"({"type":"candidates","nat":"none","candidates":{}})", "array");
  expect_ignored(R"({"type":"candidates","nat":"none","candidates":[1]})", "object");
  expect_ignored(R"({"type":"candidates","nat":"none","candidates":[{"type":"relay","address":"10.0.0.2:1"}]})", "'type'");
  expect_ignored(R"({"type":"candidates","nat":"none","candidates":[{"type":"host"}]})", "'address'");
  expect_ignored(R"({"type":"candidates","nat":"none","candidates":[{"type":"host","address":"127.0.0.1:22"}]})",
                 "'address'");
  expect_ignored(R"({"type":"candidates","nat":"none","candidates":[{"type":"host","address":"10.0.0.2:0"}]})",
                 "'address'");
  expect_ignored(R"({"type":"candidates","nat":"none","candidates":[{"type":"host","address":"[::1]:80"}]})",
                 "'address'");
  expect_ignored(R"({"type":"candidates","nat":"none","candidates":[{"type":"srflx","address":"239.1.1.1:80"}]})",
                 "'address'");
  std::string many = R"({"type":"candidates","nat":"none","candidates":[)";
  for (int i = 0; i < 9; ++i) many += std::string(i ? "," : "") + R"({"type":"host","address":"10.0.0.)" + std::to_string(i + 1) + R"(:5"})";
  expect_ignored(many + "]}", "more than 8");
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(no_answer_is_unknown),
      cmocka_unit_test(one_mapping_everywhere_is_endpoint_independent),
      cmocka_unit_test(a_mapping_per_server_is_endpoint_dependent),
      cmocka_unit_test(a_host_address_seen_is_no_nat),
      cmocka_unit_test(what_a_peer_must_not_be_sent_to_is_left_out),
      cmocka_unit_test(message_round_trip),
      cmocka_unit_test(forged_reports_are_refused),
      cmocka_unit_test(names_stay_utf8),
      cmocka_unit_test(pair_data_offer),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
