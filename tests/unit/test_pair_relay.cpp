// Pair frames relayed by dpgw's real Worker (dataplane/relay/pair_relay.hpp; tests/support/pipeline_rig.hpp): a visitor
// of tunnel a (session 40000, on the public side, its endpoint learned from its own keepalive) and tunnel a's agent
// (static peer 1 on the underlay) are a pair, told to dpgw in a pair_set on the control socket (handle_control_line,
// as dpctld sends it). A pair frame -- relay frame v1 with the PAIR flag, the pair id as receiver index, bytes dpgw
// cannot open -- from either end's endpoint leaves towards the other end's: from dpgw's address on that side and the
// tunnel port, fresh IPv4 header (checksum right, TTL 64), UDP checksum 0, the payload byte for byte; counted
// (pair_frames_relayed, pair_bytes_relayed, in `dpgw stats --json` too), and neither session learns or counts
// anything from it. Dropped and counted: an unknown pair id (and before any pair_set), a source that is neither
// end's endpoint, a pair whose other session is gone or has no endpoint, a pair that is not a visitor and an agent of
// one tunnel or names a MASQUE client, a pair frame too short for a header and tag. A received IPv4 header with
// options and Ethernet padding behind the packet do not travel on. Another worker relays what reaches its queue
// without handing it over. A sync leaves the pairs alone unless it carries "pairs"; bad pair_sets are refused and
// change nothing.
#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/line_server.hpp"
#include "dataplane/main_lcore/control_commands.hpp"
#include "dataplane/main_lcore/stats_report.hpp"
#include "packet/checksum.hpp"
#include "proto/gateway_messages.hpp"
#include "tests/support/pipeline_rig.hpp"

using namespace dptun;
using namespace dptun::test;
using nlohmann::json;

namespace {

constexpr uint32_t kVisitor = 0x0a630107;  // 10.99.1.7: the visitor's machine, on the public side
constexpr uint16_t kVisitorPort = 40123;   // its relay socket (behind a NAT, say: not the tunnel port)
constexpr uint32_t kVisitorSession = 40000;
constexpr uint32_t kPair = 0xdeadbeef;

// A pair frame: relay frame v1 header (data, PAIR flag, receiver index `pair`, a counter), then `len` bytes dpgw cannot
// read (the ends' ciphertext and tag).
std::vector<uint8_t> pair_frame(uint32_t pair, size_t len = 120, uint8_t seed = 1) {
  std::vector<uint8_t> f(16 + len);
  f[0] = kRelayVersion;
  f[1] = uint8_t(FrameType::Data);
  f[2] = kFlagPair;
  store_be32(f.data() + 4, pair);
  store_be64(f.data() + 8, 77);
  for (size_t i = 16; i < f.size(); ++i) f[i] = uint8_t(seed + i * 13);
  return f;
}

struct Rig : PipelineRig {
  LineServer server;  // (not listening: only hello asks about connections)
  Controller controller;
  explicit Rig(uint16_t workers = 1) : PipelineRig(workers) {
    controller.conn = 5;
    controller.epoch = 1;
    controller.who = "dpctld pid 1 on test";
    // The visitor, heard from: its keepalive teaches dpgw its endpoint (answered; the answer is drained).
    AgentSession& v = add_visitor(kVisitorSession, "a", kVisitor);
    std::vector<uint8_t> ka(32);
    assert_true(v.seal(FrameType::Keepalive, 0, ka.data(), 0, 0));
    inject_from_agent(ka, kVisitor, 0, kTunnelPort, kVisitorPort);
    poll();
    assert_int_equal(pub.drain().size(), 1);
    assert_true(session(kVisitorSession).peer() == (Endpoint{Ipv4{kVisitor}, kVisitorPort}));
    assert_int_equal(all_drops(), 0);
  }
  // One line on the control socket from the controller; the reply.
  json control(const json& msg) {
    ControlContext ctx{dp(), gw->state(), controller, server, dp().clock.now_ns()};
    bool close = false;
    const std::string reply = handle_control_line(msg.dump(), close, controller.conn, ctx);
    return json::parse(reply);
  }
  void set_pairs(const std::vector<PairSpec>& pairs) {
    const json reply = control(pair_set_message(pairs));
    assert_string_equal(reply.dump().c_str(), R"({"type":"ok"})");
  }
  uint64_t relayed() { return total(&WorkerStats::pair_frames_relayed); }
};

// Checks `out` is `payload` relayed to `to_ip`:`to_port` (MAC mac_of(to_ip)) from `gw_ip`:tunnel port out of rig port
// `port`.
void check_relayed(Rig& r, const std::vector<uint8_t>& out, const std::vector<uint8_t>& payload, uint32_t to_ip,
                   uint16_t to_port, uint32_t gw_ip, uint8_t port) {
  PacketInfo pi;
  assert_int_equal(parse_ethernet(out, pi), ParseStatus::Ok);
  assert_int_equal(out.size(), 14 + 20 + 8 + payload.size());
  assert_memory_equal(out.data(), mac_of(to_ip).data(), 6);
  assert_memory_equal(out.data() + 6, r.dp().ports.at(port).mac.data(), 6);
  assert_int_equal(pi.ip_header_len, 20);
  assert_int_equal(ipv4_header_checksum({out.data() + 14, 20}), 0);
  assert_int_equal(out[14 + 8], 64);  // TTL
  assert_int_equal(pi.l4_proto, kIpProtoUdp);
  assert_int_equal(pi.src_ip, gw_ip);
  assert_int_equal(pi.dst_ip, to_ip);
  assert_int_equal(pi.src_port, kTunnelPort);
  assert_int_equal(pi.dst_port, to_port);
  assert_int_equal(pi.l4_len, 8 + payload.size());
  assert_int_equal(load_be16(out.data() + pi.l4_offset + 6), 0);  // no UDP checksum, as dpgw's own frames
  assert_memory_equal(out.data() + pi.l4_offset + 8, payload.data(), payload.size());
}

void relayed_both_ways(void**) {
  Rig r;
  r.set_pairs({{kPair, kVisitorSession, 1}});
  const uint64_t visitor_rx = r.session(kVisitorSession).last_rx_ns.load();
  const uint64_t agent_rx = r.session(1).last_rx_ns.load();
  const uint64_t decap = r.total(&WorkerStats::decap_packets);  // (the visitor's keepalive)
  const uint64_t moves = r.session(kVisitorSession).endpoint_changes.load();  // (learned from it)
  // Visitor -> agent: in on the public port, out of the underlay port to the agent's tunnel port.
  const std::vector<uint8_t> up = pair_frame(kPair, 120, 1);
  r.inject_from_agent(up, kVisitor, 0, kTunnelPort, kVisitorPort);
  r.poll();
  auto out = r.und.drain();
  assert_int_equal(out.size(), 1);
  assert_true(r.pub.drain().empty());
  check_relayed(r, out[0], up, kAgentA, kTunnelPort, kGwUnderlay, 1);
  // Agent -> visitor: to the visitor's NAT-ed port, from the public address.
  const std::vector<uint8_t> down = pair_frame(kPair, 1300, 9);
  r.inject_from_agent(down, kAgentA);
  r.poll();
  out = r.pub.drain();
  assert_int_equal(out.size(), 1);
  assert_true(r.und.drain().empty());
  check_relayed(r, out[0], down, kVisitor, kVisitorPort, kGwPublic, 0);

  assert_int_equal(r.relayed(), 2);
  assert_int_equal(r.total(&WorkerStats::pair_bytes_relayed), up.size() + down.size());
  assert_int_equal(r.all_drops(), 0);
  // Unopened: no session heard from, nothing decrypted, no endpoint moved.
  assert_int_equal(r.session(kVisitorSession).last_rx_ns.load(), visitor_rx);
  assert_int_equal(r.session(1).last_rx_ns.load(), agent_rx);
  assert_int_equal(r.total(&WorkerStats::decap_packets), decap);
  assert_int_equal(r.session(kVisitorSession).endpoint_changes.load(), moves);
  assert_true(r.session(1).peer() == (Endpoint{Ipv4{kAgentA}, kTunnelPort}));
  const json stats = json::parse(stats_json(r.dp()));
  assert_int_equal(stats["workers"][0]["pair_frames_relayed"].get<uint64_t>(), 2);
  assert_int_equal(stats["workers"][0]["pair_bytes_relayed"].get<uint64_t>(), up.size() + down.size());
  assert_int_equal(stats["workers"][0]["drops"]["pair_unknown"].get<uint64_t>(), 0);
}

void dropped_and_counted(void**) {
  Rig r;
  // Before any pair_set: no pair is known.
  r.inject_from_agent(pair_frame(kPair), kVisitor, 0, kTunnelPort, kVisitorPort);
  r.poll();
  assert_int_equal(r.drops(Drop::PairUnknown), 1);
  // A visitor of tunnel a that was never heard from (no endpoint), and a MASQUE client whose capsules dpctld carries.
  r.add_visitor(40001, "a", 0x0a630109);
  SessionSpec capsule;
  capsule.index = 40002;
  capsule.tunnel = r.tunnel("a").id;
  capsule.base_secret = key_of(23);
  capsule.visitor = true;
  capsule.masque = MasqueSpec{0, Endpoint{Ipv4{0xc0a83205}, 53}, 1};
  std::string error;
  if (!r.gw->state().add_session(capsule, error)) fail_msg("add_session: %s", error.c_str());
  r.set_pairs({{kPair, kVisitorSession, 1},
               {2, kVisitorSession, 45000},  // an agent's session dpgw does not have (yet)
               {3, 40001, 1},                // a visitor without an endpoint
               {4, kVisitorSession, 2},      // an agent of another tunnel
               {5, 1, kVisitorSession},      // the roles the wrong way round
               {6, 40002, 1}});              // a MASQUE client
  struct Case {
    uint32_t pair, src;
    uint16_t sport;
    Drop why;
  } cases[] = {
      {12345, kVisitor, kVisitorPort, Drop::PairUnknown},
      {kPair, kVisitor, kVisitorPort + 1, Drop::PairWrongSource},  // the visitor's address, another port
      {kPair, kClient, kVisitorPort, Drop::PairWrongSource},       // another address, the visitor's port
      {kPair, kAgentB, kTunnelPort, Drop::PairWrongSource},        // an agent, not of this pair
      {2, kVisitor, kVisitorPort, Drop::PairNoPeer},
      {3, kAgentA, kTunnelPort, Drop::PairNoPeer},
      {3, 0x0a630109, kTunnelPort, Drop::PairWrongSource},  // from where the unheard visitor may be: not known
      {4, kVisitor, kVisitorPort, Drop::PairBadSession},
      {5, kAgentA, kTunnelPort, Drop::PairBadSession},
      {6, kAgentA, kTunnelPort, Drop::PairBadSession},
  };
  uint64_t before[size_t(Drop::Count)];
  for (const Case& c : cases) {
    for (size_t d = 0; d < size_t(Drop::Count); ++d) before[d] = r.drops(Drop(d));
    r.inject_from_agent(pair_frame(c.pair), c.src, 0, kTunnelPort, c.sport);
    r.poll();
    assert_true(r.pub.drain().empty());
    assert_true(r.und.drain().empty());
    for (size_t d = 0; d < size_t(Drop::Count); ++d)
      if (r.drops(Drop(d)) != before[d] + (Drop(d) == c.why ? 1 : 0))
        fail_msg("pair %u from %08x:%u: drop %s is %llu, was %llu", c.pair, c.src, c.sport, drop_reason_name(Drop(d)),
                 (unsigned long long)r.drops(Drop(d)), (unsigned long long)before[d]);
  }
  // Too short for a relay frame's header and tag (32 bytes), with the PAIR flag: malformed.
  std::vector<uint8_t> shorty = pair_frame(kPair, 15);
  r.inject_from_agent(shorty, kVisitor, 0, kTunnelPort, kVisitorPort);
  r.poll();
  assert_int_equal(r.drops(Drop::FrameMalformed), 1);
  // The session goes: its pair stays, and relays nothing.
  assert_true(r.gw->state().remove_session(kVisitorSession, error));
  r.inject_from_agent(pair_frame(kPair), kAgentA);
  r.poll();
  assert_int_equal(r.drops(Drop::PairNoPeer), 3);
  assert_true(r.und.drain().empty() && r.pub.drain().empty());
  assert_int_equal(r.relayed(), 0);
  const json stats = json::parse(stats_json(r.dp()));
  assert_int_equal(stats["workers"][0]["drops"]["pair_unknown"].get<uint64_t>(), 2);
  assert_int_equal(stats["workers"][0]["drops"]["pair_wrong_source"].get<uint64_t>(), 4);
  assert_int_equal(stats["workers"][0]["drops"]["pair_no_peer"].get<uint64_t>(), 3);
  assert_int_equal(stats["workers"][0]["drops"]["pair_bad_session"].get<uint64_t>(), 3);
}

// A received IPv4 header with options, and Ethernet padding behind the packet: neither travels on.
void odd_headers_not_carried(void**) {
  Rig r;
  r.set_pairs({{kPair, kVisitorSession, 1}});
  const std::vector<uint8_t> payload = pair_frame(kPair, 40, 3);
  std::vector<uint8_t> f(14 + 24 + 8 + payload.size() + 10, 0xee);  // 10 bytes of padding
  std::memcpy(f.data(), mac_of(kGwPublic).data(), 6);
  std::memcpy(f.data() + 6, mac_of(kVisitor).data(), 6);
  store_be16(f.data() + 12, kEtherTypeIpv4);
  uint8_t* ip = f.data() + 14;
  std::memset(ip, 0, 24);
  ip[0] = 0x46;
  store_be16(ip + 2, uint16_t(24 + 8 + payload.size()));
  ip[8] = 9;
  ip[9] = kIpProtoUdp;
  store_be32(ip + 12, kVisitor);
  store_be32(ip + 16, kGwPublic);
  ip[20] = 1, ip[21] = 1, ip[22] = 1, ip[23] = 0;  // NOP NOP NOP EOL
  store_be16(ip + 10, ipv4_header_checksum({ip, 24}));
  uint8_t* udp = ip + 24;
  store_be16(udp, kVisitorPort);
  store_be16(udp + 2, kTunnelPort);
  store_be16(udp + 4, uint16_t(8 + payload.size()));
  store_be16(udp + 6, 0);
  std::memcpy(udp + 8, payload.data(), payload.size());
  r.pub.inject(r.dp().pool, f);
  r.poll();
  const auto out = r.und.drain();
  assert_int_equal(out.size(), 1);
  check_relayed(r, out[0], payload, kAgentA, kTunnelPort, kGwUnderlay, 1);
  assert_int_equal(r.all_drops(), 0);
}

// Two workers: a pair frame reaching the second worker's queue is relayed there, not handed to a session's RX worker.
void any_worker_relays(void**) {
  Rig r(2);
  r.set_pairs({{kPair, kVisitorSession, 1}});
  const uint64_t handoffs = r.total(&WorkerStats::handoff_tx);
  for (size_t q = 0; q < 2; ++q) r.inject_from_agent(pair_frame(kPair, 64, uint8_t(q)), kAgentA, q);
  r.poll();
  assert_int_equal(r.pub.drain().size(), 2);
  assert_int_equal(r.worker(0).stats.pair_frames_relayed.get(), 1);
  assert_int_equal(r.worker(1).stats.pair_frames_relayed.get(), 1);
  assert_int_equal(r.total(&WorkerStats::handoff_tx), handoffs);
  assert_int_equal(r.all_drops(), 0);
}

// The control socket: pair_set replaces the whole list; a sync without "pairs" leaves it, one with "pairs" replaces it;
// a bad pair_set is refused with the field named and changes nothing.
void control_messages(void**) {
  Rig r;
  assert_false(json::parse(stats_json(r.dp())).contains("pairs"));  // none told yet
  auto relays = [&](uint32_t pair) {
    const uint64_t before = r.relayed();
    r.inject_from_agent(pair_frame(pair), kAgentA);
    r.poll();
    r.pub.drain();
    return r.relayed() == before + 1;
  };
  r.set_pairs({{kPair, kVisitorSession, 1}});
  assert_true(relays(kPair));
  assert_int_equal(r.gw->state().pairs().size(), 1);
  r.set_pairs({{7, kVisitorSession, 1}, {70, kVisitorSession, 45000}});  // the whole list: kPair is gone
  assert_int_equal(json::parse(stats_json(r.dp()))["pairs"].get<uint64_t>(), 2);
  assert_false(relays(kPair));
  assert_true(relays(7));
  assert_int_equal(r.drops(Drop::PairUnknown), 1);

  json bad = json::parse(R"({"type":"pair_set","pairs":[{"pair":0,"sessions":[40000,1]}]})");
  json reply = r.control(bad);
  assert_string_equal(reply["type"].get<std::string>().c_str(), "error");
  assert_string_equal(reply["request"].get<std::string>().c_str(), "pair_set");
  assert_non_null(strstr(reply["reason"].get<std::string>().c_str(), "'pairs[0].pair'"));
  reply = r.control(json::parse(R"({"type":"pair_set"})"));
  assert_string_equal(reply["type"].get<std::string>().c_str(), "error");
  assert_true(relays(7));  // unchanged

  // Only the controller sets pairs.
  ControlContext ctx{r.dp(), r.gw->state(), r.controller, r.server, r.dp().clock.now_ns()};
  bool close = false;
  reply = json::parse(handle_control_line(pair_set_message(std::vector<PairSpec>{}).dump(), close, 6, ctx));
  assert_true(close);
  assert_string_equal(reply["type"].get<std::string>().c_str(), "error");
  assert_string_equal(reply["request"].get<std::string>().c_str(), "pair_set");
  assert_true(relays(7));

  // A sync without "pairs" (the visitor's session becomes an orphan and still forwards): the pairs stay.
  const json sync = gateway_message(GatewayMessageType::Sync, {{"tunnels", json::array()},
                                                               {"sessions", json::array()},
                                                               {"entry_points", json::array()}});
  assert_string_equal(r.control(sync).dump().c_str(), R"({"type":"ok"})");
  assert_true(relays(7));
  // With "pairs": they are replaced; a bad list fails the whole sync.
  json with_pairs = sync;
  with_pairs["pairs"] = json::parse(R"([{"pair":9,"sessions":[40000,40000]}])");
  reply = r.control(with_pairs);
  assert_string_equal(reply["type"].get<std::string>().c_str(), "error");
  assert_true(relays(7));
  with_pairs["pairs"] = encode_pairs(std::vector<PairSpec>{{8, kVisitorSession, 1}});
  assert_string_equal(r.control(with_pairs).dump().c_str(), R"({"type":"ok"})");
  assert_false(relays(7));
  assert_true(relays(8));
  with_pairs["pairs"] = json::array();
  assert_string_equal(r.control(with_pairs).dump().c_str(), R"({"type":"ok"})");
  assert_false(relays(8));
  assert_true(r.gw->state().pairs().empty());
  assert_int_equal(json::parse(stats_json(r.dp()))["pairs"].get<uint64_t>(), 0);
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(relayed_both_ways),
      cmocka_unit_test(dropped_and_counted),
      cmocka_unit_test(odd_headers_not_carried),
      cmocka_unit_test(any_worker_relays),
      cmocka_unit_test(control_messages),
  };
  return run_pipeline_tests("test_pair_relay", tests, sizeof tests / sizeof tests[0]);
}
