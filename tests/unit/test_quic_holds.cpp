// QUIC entry points routed by the SNI of the client's Initials (dataplane/hostname/quic_hold.cpp, the QUIC branch of
// entry/entry_input.cpp; docs/hostname-routing.md "QUIC"), on dpgw's real Worker with dpagent's session crypto on
// the tunnel side (tests/support/pipeline_rig.hpp) and Initials sealed around OpenSSL's ClientHello
// (tests/support/quic_initial_sealer.hpp):
//  - a ClientHello in one Initial opens the flow to the rule's tunnel at once;
//  - one over two Initials is held, and both datagrams reach the agent in the order they came (either order), with
//    their own TOS and DF; other datagrams of the 4-tuple meanwhile are dropped, the hold kept;
//  - a hold that times out is forgotten; a client starting over (another DCID) replaces its hold; a hold of more
//    datagrams than a ClientHello needs is refused (binding_full); a full pool gives up its oldest hold;
//  - names without a usable rule (no_rule, private_rule, a tunnel without sessions) refuse every datagram held;
//  - a rule without a target: the held datagrams carry the name to the agent, which picks the target;
// and the counters of each: hostname_routed once per flow opened, never for a rule no session could take.
#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "packet/checksum.hpp"
#include "packet/headers.hpp"
#include "packet/parser.hpp"
#include "tests/support/pipeline_rig.hpp"
#include "tests/support/quic_initial_sealer.hpp"

using namespace dptun;
using namespace dptun::test;

namespace {

constexpr uint16_t kQuicPort = 443;
constexpr uint32_t kTarget = 0xc0a8070a;  // 192.168.7.10: the service behind tunnel a's agent
constexpr uint16_t kTargetPort = 4433;
constexpr uint64_t kHoldNs = 3'000'000'000ull;  // how long dpgw holds a flow (quic_hold.cpp, hostname-routing.md)

const std::vector<uint8_t> kDcidX = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88};
const std::vector<uint8_t> kDcidY = {0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xf0, 0x01, 0x02};

// A client's Initials for `sni` with Destination Connection ID `dcid`.
struct Initials {
  std::vector<uint8_t> whole;          // the whole ClientHello in one Initial
  std::vector<uint8_t> first, second;  // the ClientHello cut inside its server_name: neither names the host alone
  std::vector<uint8_t> ping;           // an Initial of the connection with a PING frame only
};

Initials initials(const std::string& sni, const std::vector<uint8_t>& dcid) {
  static InitialSealer sealer;
  const std::vector<uint8_t> hello = client_hello_message(sni.c_str());
  const auto it = std::search(hello.begin(), hello.end(), sni.begin(), sni.end());
  assert_true(it != hello.end());
  const size_t cut = size_t(it - hello.begin()) - 2;
  InitialSpec spec;
  spec.dcid = dcid;
  std::vector<uint8_t> all, p1, p2;
  crypto_frame(all, hello, 0, hello.size());
  crypto_frame(p1, hello, 0, cut);
  crypto_frame(p2, hello, cut, hello.size() - cut);
  Initials out;
  spec.pn = 0;
  out.whole = sealer.seal(spec, all);
  out.first = sealer.seal(spec, p1);
  spec.pn = 1;
  out.second = sealer.seal(spec, p2);
  spec.pn = 2;
  out.ping = sealer.seal(spec, std::vector<uint8_t>{0x01});
  return out;
}

// A UDP datagram from the client to the QUIC entry point, as an IP packet with `tos` and DF as given.
std::vector<uint8_t> client_datagram(uint16_t sport, const std::vector<uint8_t>& payload, uint8_t tos = 0,
                                     bool dont_fragment = false) {
  std::vector<uint8_t> p(kIpv4HeaderLen + kUdpHeaderLen + payload.size());
  write_ipv4_header(p.data(), uint16_t(p.size()), 7, kIpProtoUdp, kClient, kGwPublic);
  p[1] = tos;
  if (dont_fragment) p[6] |= 0x40;
  store_be16(p.data() + 10, 0);
  store_be16(p.data() + 10, ipv4_header_checksum({p.data(), kIpv4HeaderLen}));
  uint8_t* udp = p.data() + kIpv4HeaderLen;
  store_be16(udp, sport);
  store_be16(udp + 2, kQuicPort);
  store_be16(udp + 4, uint16_t(kUdpHeaderLen + payload.size()));
  std::copy(payload.begin(), payload.end(), udp + kUdpHeaderLen);
  const uint16_t sum = ipv4_l4_checksum(kClient, kGwPublic, kIpProtoUdp, {udp, kUdpHeaderLen + payload.size()});
  store_be16(udp + 6, sum ? sum : 0xffff);
  return p;
}

// A datagram the agent delivered: checked as the client's, NAT-ed to `to_ip`:`to_port`; returns its payload.
std::vector<uint8_t> delivered(const Opened& o, uint16_t sport, uint32_t to_ip = kTarget, uint16_t to_port = kTargetPort) {
  assert_true(ipv4_checksums_ok(o.packet.data()));
  PacketInfo pi;
  assert_int_equal(parse_ip(o.packet, pi), ParseStatus::Ok);
  assert_int_equal(pi.l4_proto, kIpProtoUdp);
  assert_int_equal(pi.src_ip, kClient);
  assert_int_equal(pi.src_port, sport);
  assert_int_equal(pi.dst_ip, to_ip);
  assert_int_equal(pi.dst_port, to_port);
  return std::vector<uint8_t>(o.packet.begin() + pi.l4_offset + kUdpHeaderLen, o.packet.end());
}

// The gateway with a QUIC entry point (udp/443) and rules: quic.example and private.example (private) to tunnel a's
// service, agent.example to tunnel a without a target (its agent picks), dead.example to tunnel c, which has no
// session.
struct Rig : PipelineRig {
  Rig() : PipelineRig(1, [](GatewayConfig& c) { c.flow.table_size = 4096; }) {
    EntrySpec quic;
    quic.proto = kIpProtoUdp;
    quic.port = kQuicPort;
    quic.route = EntryRoute::QuicSni;
    set_entry(quic);
    std::string error;
    assert_true(gw->state().set_tunnel(TunnelSpec{Uuid::random_v4(), "c"}, error));
    const Endpoint target{Ipv4{kTarget}, kTargetPort};
    IngressRuleSpec pub{"quic.example", tunnel("a").id, target};
    IngressRuleSpec priv{"private.example", tunnel("a").id, target, true};
    IngressRuleSpec by_agent{"agent.example", tunnel("a").id, std::nullopt};
    IngressRuleSpec dead{"dead.example", tunnel("c").id, target};
    set_rules({pub, priv, by_agent, dead});
  }

  WorkerStats& stats() { return worker().stats; }
  uint64_t initials(QuicStatus s) { return stats().quic_initials[size_t(s)].get(); }
  // A datagram from the client; returns what the gateway sent the agent, opened.
  std::vector<Opened> client(uint16_t sport, const std::vector<uint8_t>& payload, uint8_t tos = 0, bool df = false) {
    inject_client_ip(client_datagram(sport, payload, tos, df));
    poll();
    std::vector<Opened> out;
    for (const auto& f : und.drain()) out.push_back(agent_open(agent(1), f, kAgentAMac, kAgentA));
    return out;
  }
  // The target's reply to `request` through the agent; returns what the gateway sent the client.
  std::vector<std::vector<uint8_t>> reply(const Opened& request, uint32_t from = 0, uint16_t from_port = 0) {
    std::vector<uint8_t> r = reply_to(request.packet, 40);
    if (from) {  // the agent picked the target: the reply comes from it
      store_be32(r.data() + 12, from);
      store_be16(r.data() + 20, from_port);
      store_be16(r.data() + 10, 0);
      store_be16(r.data() + 10, ipv4_header_checksum({r.data(), 20}));
      store_be16(r.data() + 26, 0);
      const uint16_t sum = ipv4_l4_checksum(from, kClient, kIpProtoUdp, {r.data() + 20, r.size() - 20});
      store_be16(r.data() + 26, sum ? sum : 0xffff);
    }
    return from_agent(agent_seal(agent(1), uint32_t(request.inner.flow_id), kIpProtoUdp, r), kAgentA);
  }
  // Nothing was opened or counted as opened.
  void assert_no_flow_opened() {
    assert_int_equal(stats().hostname_routed.get(), 0);
    assert_int_equal(stats().flows_created.get(), 0);
    assert_int_equal(tunnel_stats("a").flows_created.get(), 0);
  }
};

// The client's datagram of a reply from the QUIC entry point.
void assert_to_client(const std::vector<uint8_t>& frame, uint16_t sport) {
  PacketInfo pi;
  assert_int_equal(parse_ethernet(frame, pi), ParseStatus::Ok);
  assert_memory_equal(frame.data(), kClientMac.data(), 6);
  assert_int_equal(pi.src_ip, kGwPublic);
  assert_int_equal(pi.src_port, kQuicPort);
  assert_int_equal(pi.dst_ip, kClient);
  assert_int_equal(pi.dst_port, sport);
  assert_true(ipv4_checksums_ok(frame.data() + pi.l3_offset));
}

}  // namespace

static void hello_in_one_initial_routes_at_once(void**) {
  Rig r;
  const Initials x = initials("quic.example", kDcidX);
  auto out = r.client(50000, x.whole);
  assert_int_equal(out.size(), 1);
  assert_true(delivered(out[0], 50000) == x.whole);
  assert_true(out[0].inner.flags & kInnerFlowNew);
  assert_true(out[0].name.empty());
  assert_int_equal(r.initials(QuicStatus::Found), 1);
  assert_int_equal(r.stats().quic_flows_held.get(), 0);
  assert_int_equal(r.stats().hostname_routed.get(), 1);
  assert_int_equal(r.stats().flows_created.get(), 1);
  assert_int_equal(r.tunnel_stats("a").flows_created.get(), 1);
  assert_int_equal(r.tunnel_stats("b").flows_created.get(), 0);
  assert_int_equal(r.session(1).flows_pinned.load(), 1);
  // The server's answer reaches the client from the entry point.
  auto back = r.reply(out[0]);
  assert_int_equal(back.size(), 1);
  assert_to_client(back[0], 50000);
  // Later datagrams (short header: not Initials) follow the flow, not read again and not counted again.
  const uint64_t flow_id = out[0].inner.flow_id;
  const std::vector<uint8_t> short_header(60, 0x41);
  out = r.client(50000, short_header);
  assert_int_equal(out.size(), 1);
  assert_true(delivered(out[0], 50000) == short_header);
  assert_int_equal(out[0].inner.flags & kInnerFlowNew, 0);
  assert_int_equal(out[0].inner.flow_id, flow_id);
  assert_int_equal(r.initials(QuicStatus::Found), 1);
  assert_int_equal(r.initials(QuicStatus::NotInitial), 0);
  assert_int_equal(r.stats().hostname_routed.get(), 1);
  assert_int_equal(r.stats().flows_created.get(), 1);
  assert_int_equal(r.all_drops(), 0);
}

static void hello_over_two_initials_is_held_then_sent_in_order(void**) {
  Rig r;
  const Initials x = initials("quic.example", kDcidX);
  // The first Initial (ECN ECT(0), DF): held; nothing to the agent, nothing opened yet.
  assert_int_equal(r.client(50001, x.first, 0x02, true).size(), 0);
  assert_int_equal(r.stats().quic_flows_held.get(), 1);
  assert_int_equal(r.initials(QuicStatus::NeedMore), 1);
  assert_int_equal(r.worker().flows().size(), 1);
  r.assert_no_flow_opened();
  // Another datagram of the 4-tuple that is not an Initial: dropped, the hold kept.
  assert_int_equal(r.client(50001, std::vector<uint8_t>(60, 0x41)).size(), 0);
  assert_int_equal(r.drops(Drop::NoHostname), 1);
  assert_int_equal(r.initials(QuicStatus::NotInitial), 1);
  // The second names the host: both go to the agent, in the order they came, each with its own TOS and DF.
  auto out = r.client(50001, x.second);
  assert_int_equal(out.size(), 2);
  assert_true(delivered(out[0], 50001) == x.first);
  assert_true(delivered(out[1], 50001) == x.second);
  assert_true(out[0].inner.flags & kInnerFlowNew);
  assert_int_equal(out[1].inner.flags & kInnerFlowNew, 0);
  assert_int_equal(out[0].inner.flow_id, out[1].inner.flow_id);
  assert_int_equal(out[0].packet[1], 0x02);
  assert_true(out[0].packet[6] & 0x40);
  assert_int_equal(out[1].packet[1], 0);
  assert_false(out[1].packet[6] & 0x40);
  assert_int_equal(r.stats().quic_held_sent.get(), 1);
  assert_int_equal(r.initials(QuicStatus::Found), 1);
  assert_int_equal(r.stats().hostname_routed.get(), 1);
  assert_int_equal(r.stats().flows_created.get(), 1);
  assert_int_equal(r.tunnel_stats("a").flows_created.get(), 1);
  assert_int_equal(r.tunnel_stats("a").to_agent_packets.get(), 2);
  assert_int_equal(r.worker().flows().size(), 1);
  assert_int_equal(r.session(1).flows_pinned.load(), 1);
  auto back = r.reply(out[1]);
  assert_int_equal(back.size(), 1);
  assert_to_client(back[0], 50001);
  assert_int_equal(r.all_drops(), 1);  // the one above
}

static void second_initial_first(void**) {
  Rig r;
  const Initials x = initials("quic.example", kDcidX);
  assert_int_equal(r.client(50002, x.second).size(), 0);
  assert_int_equal(r.stats().quic_flows_held.get(), 1);
  r.assert_no_flow_opened();
  auto out = r.client(50002, x.first);
  assert_int_equal(out.size(), 2);
  assert_true(delivered(out[0], 50002) == x.second);  // the order they came
  assert_true(delivered(out[1], 50002) == x.first);
  assert_true(out[0].inner.flags & kInnerFlowNew);
  assert_int_equal(r.stats().quic_held_sent.get(), 1);
  assert_int_equal(r.stats().hostname_routed.get(), 1);
  assert_int_equal(r.stats().flows_created.get(), 1);
  assert_int_equal(r.all_drops(), 0);
}

static void client_starting_over_replaces_its_hold(void**) {
  Rig r;
  const Initials x = initials("quic.example", kDcidX), y = initials("quic.example", kDcidY);
  assert_int_equal(r.client(50003, x.first).size(), 0);
  // The client starts over on the same ports with a new connection ID: its hold replaces the first.
  assert_int_equal(r.client(50003, y.first).size(), 0);
  assert_int_equal(r.stats().quic_flows_held.get(), 2);
  assert_int_equal(r.worker().flows().size(), 1);
  auto out = r.client(50003, y.second);
  assert_int_equal(out.size(), 2);
  assert_true(delivered(out[0], 50003) == y.first);
  assert_true(delivered(out[1], 50003) == y.second);
  assert_int_equal(r.stats().hostname_routed.get(), 1);
  assert_int_equal(r.stats().flows_created.get(), 1);
  assert_int_equal(r.all_drops(), 0);
}

static void hold_that_times_out_is_forgotten(void**) {
  Rig r;
  const Initials x = initials("quic.example", kDcidX);
  assert_int_equal(r.client(50004, x.first).size(), 0);
  std::this_thread::sleep_for(std::chrono::nanoseconds(kHoldNs + 100'000'000ull));
  r.poll();
  // The second Initial after the hold ran out starts a hold of its own; the first datagram is never sent.
  assert_int_equal(r.client(50004, x.second).size(), 0);
  assert_int_equal(r.stats().quic_flows_held.get(), 2);
  assert_int_equal(r.worker().flows().size(), 1);
  r.assert_no_flow_opened();
  // The client sends its first Initial again: routed with what is held now.
  auto out = r.client(50004, x.first);
  assert_int_equal(out.size(), 2);
  assert_true(delivered(out[0], 50004) == x.second);
  assert_true(delivered(out[1], 50004) == x.first);
  assert_int_equal(r.stats().hostname_routed.get(), 1);
  assert_int_equal(r.all_drops(), 0);
}

static void too_many_datagrams_for_one_hold(void**) {
  Rig r;
  const Initials x = initials("quic.example", kDcidX);
  // Eight datagrams are held (the first Initial and seven that add nothing to the ClientHello); a ninth is more
  // than a ClientHello needs: the hold is refused and forgotten.
  assert_int_equal(r.client(50005, x.first).size(), 0);
  for (int i = 0; i < 7; ++i) assert_int_equal(r.client(50005, x.ping).size(), 0);
  assert_int_equal(r.drops(Drop::BindingFull), 0);
  assert_int_equal(r.client(50005, x.ping).size(), 0);
  assert_int_equal(r.drops(Drop::BindingFull), 1);
  assert_int_equal(r.worker().flows().size(), 0);
  // What the client sends next starts afresh: the second Initial alone is held, not routed.
  assert_int_equal(r.client(50005, x.second).size(), 0);
  assert_int_equal(r.stats().quic_flows_held.get(), 2);
  r.assert_no_flow_opened();
}

static void full_pool_gives_up_its_oldest_hold(void**) {
  Rig r;
  const Initials x = initials("quic.example", kDcidX);
  const uint32_t pool = QuicHolds::kBuffers;
  // A hold for every buffer of the worker, then one more: the oldest (port 20000) gives way.
  for (uint32_t i = 0; i <= pool; ++i) {
    r.inject_client_ip(client_datagram(uint16_t(20000 + i), x.first));
    if (i % 256 == 255) r.poll();
  }
  r.poll();
  assert_int_equal(r.und.drain().size(), 0);
  assert_int_equal(r.stats().quic_flows_held.get(), pool + 1);
  assert_int_equal(r.stats().quic_holds_evicted.get(), 1);
  assert_int_equal(r.worker().flows().size(), pool);
  // The newest and the second oldest are routed with both their datagrams; the oldest starts over.
  assert_int_equal(r.client(uint16_t(20000 + pool), x.second).size(), 2);
  assert_int_equal(r.client(20001, x.second).size(), 2);
  assert_int_equal(r.client(20000, x.second).size(), 0);
  assert_int_equal(r.stats().quic_flows_held.get(), pool + 2);
  assert_int_equal(r.stats().hostname_routed.get(), 2);
  assert_int_equal(r.all_drops(), 0);
}

static void names_without_a_usable_rule(void**) {
  Rig r;
  // No rule: the datagram, and every datagram held before it, counted.
  const Initials none = initials("nothing.example", kDcidX);
  assert_int_equal(r.client(50010, none.whole).size(), 0);
  assert_int_equal(r.drops(Drop::NoRule), 1);
  assert_int_equal(r.client(50011, none.first).size(), 0);
  assert_int_equal(r.client(50011, none.second).size(), 0);
  assert_int_equal(r.drops(Drop::NoRule), 3);
  // A private rule is not for a public entry point.
  const Initials priv = initials("private.example", kDcidX);
  assert_int_equal(r.client(50012, priv.whole).size(), 0);
  assert_int_equal(r.drops(Drop::PrivateRule), 1);
  // The rule matches, but its tunnel has no session to take the flow: refused, and not counted as routed.
  const Initials dead = initials("dead.example", kDcidX);
  assert_int_equal(r.client(50013, dead.whole).size(), 0);
  assert_int_equal(r.drops(Drop::NoSession), 1);
  assert_int_equal(r.client(50014, dead.first).size(), 0);
  assert_int_equal(r.client(50014, dead.second).size(), 0);
  assert_int_equal(r.drops(Drop::NoSession), 3);
  r.assert_no_flow_opened();
  assert_int_equal(r.tunnel_stats("c").flows_created.get(), 0);
  assert_int_equal(r.initials(QuicStatus::Found), 5);
  assert_int_equal(r.worker().flows().size(), 0);
  assert_int_equal(r.all_drops(), 7);
}

static void rule_without_target_lets_the_agent_pick(void**) {
  Rig r;
  const Initials x = initials("agent.example", kDcidX);
  assert_int_equal(r.client(50020, x.first).size(), 0);
  auto out = r.client(50020, x.second);
  assert_int_equal(out.size(), 2);
  // Both held datagrams go to 0.0.0.0 (the entry point's port) with the name for the agent.
  for (const Opened& o : out) assert_string_equal(o.name.c_str(), "agent.example");
  assert_true(delivered(out[0], 50020, 0, kQuicPort) == x.first);
  assert_true(delivered(out[1], 50020, 0, kQuicPort) == x.second);
  assert_int_equal(r.stats().hostname_routed.get(), 1);
  // The agent's pick answers; from then on the flow goes to it, without the name.
  auto back = r.reply(out[1], kTarget, kTargetPort);
  assert_int_equal(back.size(), 1);
  assert_to_client(back[0], 50020);
  const std::vector<uint8_t> short_header(60, 0x41);
  out = r.client(50020, short_header);
  assert_int_equal(out.size(), 1);
  assert_true(out[0].name.empty());
  assert_true(delivered(out[0], 50020) == short_header);
  assert_int_equal(r.all_drops(), 0);
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(hello_in_one_initial_routes_at_once),
      cmocka_unit_test(hello_over_two_initials_is_held_then_sent_in_order),
      cmocka_unit_test(second_initial_first),
      cmocka_unit_test(client_starting_over_replaces_its_hold),
      cmocka_unit_test(hold_that_times_out_is_forgotten),
      cmocka_unit_test(too_many_datagrams_for_one_hold),
      cmocka_unit_test(full_pool_gives_up_its_oldest_hold),
      cmocka_unit_test(names_without_a_usable_rule),
      cmocka_unit_test(rule_without_target_lets_the_agent_pick),
  };
  return run_pipeline_tests("test_quic_holds", tests, sizeof tests / sizeof tests[0]);
}
