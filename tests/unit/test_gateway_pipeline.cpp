// dpgw's worker pipeline in one process, on ring-backed ports: a client packet is encapsulated and opens on
// the agent side (dpagent's AgentSession); the agent's reply comes back NAT-reversed; and the gateway refuses
// replays, tampered frames, unknown sessions, replies from the wrong session, TCP without a flow, and answers
// oversized packets with ICMP or inner fragments. Datagrams of any size cross in fragments both ways (client
// fragments reassembled, one worker per datagram with two workers; inner fragments one frame each), and hostile
// fragments are counted. Failed flows: ports without an entry point answered like a host (RST, ICMP port
// unreachable, a token bucket), agents' ICMP errors passed to the client as a NAT would, TCP flows that never got an
// answer counted; and `dpgw trace` following packets through the stages, across workers. Real Gateway, Worker,
// cryptodev and agent code throughout.
#include <rte_ethdev.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <ios>
#include <memory>
#include <random>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "agent/datagram_reassembler.hpp"
#include "dataplane/main_lcore/stats_report.hpp"
#include "dataplane/loop/trace.hpp"
#include "dataplane/main_lcore/trace_command.hpp"
#include "packet/icmp_error.hpp"
#include "packet/ipv4_fragment.hpp"
#include "packet/ipv4_rewrite.hpp"
#include "packet/parser.hpp"
#include "packet/tcp_mss.hpp"
#include "tests/support/pipeline_rig.hpp"

using namespace dptun;
using namespace dptun::test;

namespace {

// The rig's gateway with its entry points: udp/5201 and tcp/5201 to tunnel a (target 10.99.2.2), udp/6000 to
// tunnel b (target 10.99.2.3).
struct Rig : PipelineRig {
  AgentSession* agent_a;
  AgentSession* agent_b;

  explicit Rig(uint16_t workers = 1, uint64_t reassembly_timeout_ns = 2'000'000'000ull,
               const std::function<void(GatewayConfig&)>& tweak = {})
      : PipelineRig(workers, [&](GatewayConfig& cfg) {
          cfg.reassembly.timeout_ns = reassembly_timeout_ns;
          auto entry = [&](uint8_t proto, uint16_t port, uint16_t tunnel, uint32_t target) {
            EntryPointConfig e;
            e.proto = proto;
            e.port = port;
            e.tunnel = tunnel;
            e.target = Endpoint{Ipv4{target}, port};
            e.keepalive = true;
            e.udp_ttl_ns = 5'000'000'000ull;
            cfg.entry_points.push_back(e);
          };
          entry(kIpProtoUdp, 5201, 0, kAgentA);
          entry(kIpProtoTcp, 5201, 0, kAgentA);
          entry(kIpProtoUdp, 6000, 1, kAgentB);
          if (tweak) tweak(cfg);
        }),
        agent_a(&agent(1)),
        agent_b(&agent(2)) {}
};

// An IP packet (or an Ethernet frame's, from `l3` on) cut into IPv4 fragments of at most `max_packet` bytes,
// each behind a copy of the frame's first `l3` bytes: what a client's kernel, or an agent, sends.
std::vector<std::vector<uint8_t>> cut(const std::vector<uint8_t>& frame, size_t l3, uint32_t max_packet) {
  const uint8_t* ip = frame.data() + l3;
  const uint32_t hl = uint32_t(ip[0] & 15) * 4;
  const uint32_t payload = load_be16(ip + 2) - hl;
  const FragmentPlan plan = plan_ipv4_fragments(hl, payload, max_packet);
  std::vector<std::vector<uint8_t>> out;
  for (uint32_t k = 0; k < plan.count; ++k) {
    const uint32_t off = k * plan.chunk;
    const uint32_t len = std::min(plan.chunk, payload - off);
    std::vector<uint8_t> f(frame.begin(), frame.begin() + long(l3));
    f.resize(l3 + 60 + len);
    const size_t fh = write_ipv4_fragment_header(f.data() + l3, {ip, hl}, load_be16(ip + 4), off, len,
                                                 k + 1 < plan.count);
    std::memcpy(f.data() + l3 + fh, ip + hl + off, len);
    f.resize(l3 + fh + len);
    out.push_back(std::move(f));
  }
  return out;
}

std::vector<uint8_t> client_datagram(uint16_t sport, size_t payload, uint16_t id, uint16_t dport = 5201) {
  auto f = client_udp(sport, dport, payload);
  store_be16(f.data() + 14 + 4, id);
  store_be16(f.data() + 14 + 10, 0);
  store_be16(f.data() + 14 + 10, ipv4_header_checksum({f.data() + 14, 20}));
  return f;
}

ReassemblyLimits agent_limits() {
  ReassemblyLimits l;
  l.datagrams = 64;
  return l;
}

// What dpagent does with the frames the gateway sent it: open each (every one fits the underlay MTU) and put the
// inner fragments together. Returns the whole inner datagrams, in the order they completed.
std::vector<std::vector<uint8_t>> agent_receives(AgentSession& a, const std::vector<std::vector<uint8_t>>& frames,
                                                 std::set<uint64_t>* flow_ids = nullptr) {
  DatagramReassembler ra(agent_limits(), 1);
  std::vector<std::vector<uint8_t>> whole;
  for (const auto& f : frames) {
    assert_true(f.size() <= 14 + 1500);
    Opened o = agent_open(a, f, kAgentAMac, kAgentA);
    if (flow_ids) flow_ids->insert(o.inner.flow_id);
    if (!ipv4_is_fragment(o.packet.data())) {
      whole.push_back(o.packet);
      continue;
    }
    PacketInfo pi;
    assert_int_equal(parse_ip(o.packet, pi), ParseStatus::Ok);
    assert_int_equal(pi.ip_total_len, o.packet.size());
    auto w = ra.add(o.packet, o.inner.flow_id, 0);
    if (!w.empty()) whole.emplace_back(w.begin(), w.end());
  }
  return whole;
}

// The same on the client's side: Ethernet frames of IPv4 fragments (or whole packets) to whole IP packets.
std::vector<std::vector<uint8_t>> client_receives(const std::vector<std::vector<uint8_t>>& frames) {
  DatagramReassembler rc(agent_limits(), 2);
  std::vector<std::vector<uint8_t>> whole;
  for (const auto& f : frames) {
    assert_true(f.size() <= 14 + 1500);
    assert_memory_equal(f.data(), kClientMac.data(), 6);
    std::vector<uint8_t> ip(f.begin() + 14, f.end());
    if (!ipv4_is_fragment(ip.data())) {
      whole.push_back(ip);
      continue;
    }
    auto w = rc.add(ip, 0, 0);
    if (!w.empty()) whole.emplace_back(w.begin(), w.end());
  }
  return whole;
}

// The payload bytes build_ipv4_frame writes.
void assert_payload(const std::vector<uint8_t>& ip, size_t payload) {
  PacketInfo pi;
  assert_true(parse_tunnel_packet(ip, pi));
  assert_int_equal(pi.l4_len, 8 + payload);
  const uint8_t* p = ip.data() + pi.l4_offset + 8;
  for (size_t i = 0; i < payload; ++i)
    if (p[i] != uint8_t(i * 7 + 3)) fail_msg("payload byte %zu differs", i);
  assert_true(ipv4_checksums_ok(ip.data()));
}

}  // namespace

static void udp_round_trip(void**) {
  Rig r;
  auto out = r.from_client(client_udp(40000, 5201, 100));
  assert_int_equal(out.size(), 1);
  Opened o = agent_open(*r.agent_a, out[0], kAgentAMac, kAgentA);
  assert_int_equal(o.meta.receiver_index, 1);
  assert_true(o.inner.flags & kInnerFlowNew);
  assert_int_equal(o.inner.proto, kIpProtoUdp);
  PacketInfo pi;
  assert_int_equal(parse_ip(o.packet, pi), ParseStatus::Ok);
  assert_int_equal(pi.dst_ip, kAgentA);  // NAT-ed to the entry point's target
  assert_int_equal(pi.dst_port, 5201);
  assert_int_equal(pi.src_ip, kClient);
  assert_int_equal(pi.src_port, 40000);
  assert_true(ipv4_checksums_ok(o.packet.data()));

  // The reply comes back to the client from the entry point's address and port.
  auto back = r.from_agent(agent_seal(*r.agent_a, o.inner.flow_id, kIpProtoUdp, reply_to(o.packet, 300)), kAgentA);
  assert_int_equal(back.size(), 1);
  assert_memory_equal(back[0].data(), kClientMac.data(), 6);
  assert_int_equal(parse_ethernet(back[0], pi), ParseStatus::Ok);
  assert_int_equal(pi.src_ip, kGwPublic);
  assert_int_equal(pi.src_port, 5201);
  assert_int_equal(pi.dst_ip, kClient);
  assert_int_equal(pi.dst_port, 40000);
  assert_int_equal(pi.l4_len, 8 + 300);
  assert_true(ipv4_checksums_ok(back[0].data() + 14));

  // The second packet of the flow is not new.
  out = r.from_client(client_udp(40000, 5201, 10));
  o = agent_open(*r.agent_a, out[0], kAgentAMac, kAgentA);
  assert_false(o.inner.flags & kInnerFlowNew);
  TunnelStats& ts = r.dp().workers[0]->tunnel_stats[0];
  assert_int_equal(ts.to_agent_packets.get(), 2);
  assert_int_equal(ts.from_agent_packets.get(), 1);
  assert_int_equal(ts.flows_created.get(), 1);
}

static void replay_tamper_and_unknown_sessions_are_dropped(void**) {
  Rig r;
  Opened o = agent_open(*r.agent_a, r.from_client(client_udp(40001, 5201, 50))[0], kAgentAMac, kAgentA);
  auto frame = agent_seal(*r.agent_a, o.inner.flow_id, kIpProtoUdp, reply_to(o.packet, 40));
  assert_int_equal(r.from_agent(frame, kAgentA).size(), 1);
  // The same frame again: a replay.
  assert_int_equal(r.from_agent(frame, kAgentA).size(), 0);
  assert_int_equal(r.drops(Drop::Replay), 1);
  // One flipped ciphertext bit: the tag fails, and the window is not touched.
  auto next = agent_seal(*r.agent_a, o.inner.flow_id, kIpProtoUdp, reply_to(o.packet, 40));
  auto bad = next;
  bad[40] ^= 0x20;
  assert_int_equal(r.from_agent(bad, kAgentA).size(), 0);
  assert_int_equal(r.drops(Drop::AuthFail), 1);
  assert_int_equal(r.dp().workers[0]->tunnel_stats[0].auth_fail.get(), 1);
  assert_int_equal(r.from_agent(next, kAgentA).size(), 1);
  // A flipped header bit (AAD) fails too.
  auto hdr = agent_seal(*r.agent_a, o.inner.flow_id, kIpProtoUdp, reply_to(o.packet, 40));
  hdr[3] ^= 1;
  assert_int_equal(r.from_agent(hdr, kAgentA).size(), 0);
  assert_int_equal(r.drops(Drop::AuthFail), 2);
  // A receiver index the gateway does not have.
  AgentSession stranger(99, key_of(1), 16, 120'000'000'000ull, r.engine);
  assert_int_equal(r.from_agent(agent_seal(stranger, o.inner.flow_id, kIpProtoUdp, reply_to(o.packet, 1)), kAgentA).size(), 0);
  assert_int_equal(r.drops(Drop::UnknownSession), 1);
  // Garbage on the tunnel port: too short for a frame, or not relay frame v1, is malformed whatever its index...
  std::vector<uint8_t> junk(31, 0x01);
  assert_int_equal(r.from_agent(junk, kAgentA).size(), 0);
  assert_int_equal(r.drops(Drop::FrameMalformed), 1);
  junk.assign(80, 0x09);
  assert_int_equal(r.from_agent(junk, kAgentA).size(), 0);
  assert_int_equal(r.drops(Drop::FrameMalformed), 2);
  // ... and so is a frame of a session the gateway has that breaks the header's rules (an agent of another version:
  // the docs point operators at it); it is judged on the worker that owns the session.
  auto typeless = agent_seal(*r.agent_a, o.inner.flow_id, kIpProtoUdp, reply_to(o.packet, 40));
  typeless[1] = 7;  // no such frame type
  assert_int_equal(r.from_agent(typeless, kAgentA).size(), 0);
  assert_int_equal(r.drops(Drop::FrameMalformed), 3);
  // Anything else that long names a receiver index first: an unknown one is an unknown session.
  junk.assign(40, 0x01);
  assert_int_equal(r.from_agent(junk, kAgentA).size(), 0);
  assert_int_equal(r.drops(Drop::UnknownSession), 2);
}

static void replies_only_from_the_flows_session(void**) {
  Rig r;
  Opened o = agent_open(*r.agent_a, r.from_client(client_udp(40002, 5201, 50))[0], kAgentAMac, kAgentA);
  // Agent b authenticates fine but does not own tunnel a's flow.
  auto frame = agent_seal(*r.agent_b, o.inner.flow_id, kIpProtoUdp, reply_to(o.packet, 40));
  assert_int_equal(r.from_agent(frame, kAgentB).size(), 0);
  assert_int_equal(r.drops(Drop::FlowMismatch), 1);
  // A made-up flow (a slot nobody uses).
  assert_int_equal(r.from_agent(agent_seal(*r.agent_a, o.inner.flow_id ^ 7, kIpProtoUdp, reply_to(o.packet, 40)),
                                kAgentA)
                       .size(),
                   0);
  assert_int_equal(r.drops(Drop::StaleFlow), 1);
  // The right flow, but not from its target: refused.
  auto spoof = reply_to(o.packet, 40);
  store_be32(spoof.data() + 12, 0x0a0a0a0a);
  store_be16(spoof.data() + 10, 0);
  store_be16(spoof.data() + 10, ipv4_header_checksum({spoof.data(), 20}));
  assert_int_equal(r.from_agent(agent_seal(*r.agent_a, o.inner.flow_id, kIpProtoUdp, spoof), kAgentA).size(), 0);
  assert_int_equal(r.drops(Drop::FlowMismatch), 2);
  // Agents know flows by tag only: a reply carrying just the low 32 bits of the flow id is delivered.
  auto tag_only = r.from_agent(agent_seal(*r.agent_a, uint32_t(o.inner.flow_id), kIpProtoUdp, reply_to(o.packet, 40)),
                               kAgentA);
  assert_int_equal(tag_only.size(), 1);
  // The agent cannot choose where the reply goes: whatever it writes, the client of the flow gets it.
  auto back = r.from_agent(agent_seal(*r.agent_a, o.inner.flow_id, kIpProtoUdp, reply_to(o.packet, 40, 0x08080808)),
                           kAgentA);
  assert_int_equal(back.size(), 1);
  PacketInfo pi;
  assert_int_equal(parse_ethernet(back[0], pi), ParseStatus::Ok);
  assert_int_equal(pi.dst_ip, kClient);
  assert_int_equal(pi.dst_port, 40002);
  assert_true(ipv4_checksums_ok(back[0].data() + 14));
}

static void keepalive_is_answered_and_teaches_the_endpoint(void**) {
  Rig r;
  std::vector<uint8_t> ka(32);
  assert_true(r.agent_a->seal(FrameType::Keepalive, 0, ka.data(), 0, 0));
  assert_int_equal(r.from_agent(ka, kAgentA).size(), 0);
  auto out = r.und.drain();
  assert_int_equal(out.size(), 1);
  Opened o = agent_open(*r.agent_a, out[0], kAgentAMac, kAgentA);
  assert_int_equal(o.meta.type, FrameType::Keepalive);
  assert_true(o.meta.flags & kFlagKeepaliveReply);
  assert_int_equal(r.dp().workers[0]->stats.keepalives_rx.get(), 1);
  assert_int_equal(r.dp().workers[0]->stats.keepalives_tx.get(), 1);
  TunnelSession* s = r.dp().sessions.find(1);
  assert_non_null(s);
  assert_true(s->last_rx_ns.load() > 0);
  // A worker's stamp can be newer than the main lcore's reading of the clock: the age is 0 then, not 2^64 ns.
  s->last_rx_ns.store(r.dp().clock.now_ns() + 5 * kNsPerSec);
  const nlohmann::json stats = nlohmann::json::parse(stats_json(r.dp()));
  bool seen = false;
  for (const auto& t : stats["tunnels"])
    for (const auto& sess : t["sessions"])
      if (sess["index"] == 1) {
        assert_true(sess["last_rx_age_s"].get<double>() == 0.0);
        seen = true;
      }
  assert_true(seen);
  const std::string prom = stats_prometheus(r.dp(), 0);
  const size_t at = prom.find("dptun_gw_session_last_rx_age_seconds{");
  assert_true(at != std::string::npos);
  const std::string line = prom.substr(at, prom.find('\n', at) - at);
  assert_true(line.size() > 2 && line.substr(line.size() - 2) == " 0");
}

static void tcp_needs_syn_and_gets_mss_clamped(void**) {
  Rig r;
  FrameSpec s;
  s.src_ip = kClient;
  s.dst_ip = kGwPublic;
  s.src_port = 41000;
  s.dst_port = 5201;
  s.tcp_flags = kTcpAck;
  s.payload = 0;
  assert_int_equal(r.from_client(build_ipv4_frame(s)).size(), 0);
  assert_int_equal(r.drops(Drop::TcpNoFlow), 1);
  s.tcp_flags = kTcpSyn;
  s.tcp_options = {2, 4, 0x05, 0xb4};  // MSS 1460
  auto out = r.from_client(build_ipv4_frame(s));
  assert_int_equal(out.size(), 1);
  Opened o = agent_open(*r.agent_a, out[0], kAgentAMac, kAgentA);
  PacketInfo pi;
  assert_int_equal(parse_ip(o.packet, pi), ParseStatus::Ok);
  assert_int_equal(tcp_find_mss(o.packet.data() + pi.l4_offset, pi.tcp_header_len), 1500 - 72 - 40);
  assert_true(ipv4_checksums_ok(o.packet.data()));
}

static void oversized_udp(void**) {
  Rig r;
  // DF set: ICMP fragmentation-needed back to the client, nothing towards the agent.
  auto big_df = client_udp(42000, 5201, 1472, kIpv4FlagDf);
  assert_int_equal(r.from_client(big_df).size(), 0);
  auto icmp = r.pub.drain();
  assert_int_equal(icmp.size(), 1);
  PacketInfo pi;
  assert_int_equal(parse_ethernet(icmp[0], pi), ParseStatus::Ok);
  assert_int_equal(pi.l4_proto, kIpProtoIcmp);
  assert_int_equal(pi.icmp_type, kIcmpDestUnreachable);
  assert_int_equal(pi.icmp_code, kIcmpFragNeeded);
  assert_int_equal(load_be16(icmp[0].data() + pi.l4_offset + 6), 1500 - 72);
  assert_int_equal(pi.dst_ip, kClient);
  assert_int_equal(r.drops(Drop::TooBig), 1);
  // DF clear: two inner fragments, each in a frame of its own that fits the underlay; put together by the agent.
  auto out = r.from_client(client_udp(42001, 5201, 1472));
  assert_int_equal(out.size(), 2);
  std::set<uint64_t> flows;
  auto whole = agent_receives(*r.agent_a, out, &flows);
  assert_int_equal(flows.size(), 1);
  assert_int_equal(whole.size(), 1);
  assert_int_equal(whole[0].size(), 1500);
  assert_payload(whole[0], 1472);
  assert_int_equal(r.dp().workers[0]->stats.fragments_tx.get(), 2);
}

static void client_datagrams_in_fragments_reach_the_agent_whole(void**) {
  Rig r;
  uint16_t id = 100;
  for (size_t payload : {3000u, 9000u, 65507u}) {
    for (bool reverse : {false, true}) {
      auto frags = cut(client_datagram(44000, payload, ++id), 14, 1500);  // the client's link: 1500
      if (reverse) std::reverse(frags.begin(), frags.end());
      for (const auto& f : frags) r.pub.inject(r.dp().pool, f);
      r.poll();
      auto frames = r.und.drain();
      // One frame per inner fragment of <= 1428 bytes (the 1500-byte underlay less 72).
      assert_int_equal(frames.size(), (20 + 8 + payload - 20 + 1407) / 1408);
      std::set<uint64_t> flows;
      auto whole = agent_receives(*r.agent_a, frames, &flows);
      assert_int_equal(whole.size(), 1);
      assert_int_equal(flows.size(), 1);
      PacketInfo pi;
      assert_true(parse_tunnel_packet(whole[0], pi));
      assert_int_equal(pi.dst_ip, kAgentA);  // NAT-ed to the target, as a whole packet would be
      assert_int_equal(pi.dst_port, 5201);
      assert_int_equal(pi.src_ip, kClient);
      assert_int_equal(pi.src_port, 44000);
      assert_payload(whole[0], payload);
    }
  }
  Worker& w = *r.dp().workers[0];
  assert_int_equal(w.stats.frag_reassembled.get(), 6);
  assert_int_equal(w.stats.flows_created.get(), 1);  // every datagram of the flow met the same flow
  assert_int_equal(r.all_drops(), 0);
}

static void agent_datagrams_in_fragments_reach_the_client(void**) {
  Rig r;
  Opened o = agent_open(*r.agent_a, r.from_client(client_udp(45000, 5201, 20))[0], kAgentAMac, kAgentA);
  for (size_t payload : {3000u, 9000u, 65507u}) {
    // The target's reply, as dpagent sends it: fragments of <= 1428 bytes, one sealed frame each.
    auto reply = reply_to(o.packet, payload);
    store_be16(reply.data() + 4, uint16_t(payload));
    store_be16(reply.data() + 10, 0);
    store_be16(reply.data() + 10, ipv4_header_checksum({reply.data(), 20}));
    auto frags = cut(reply, 0, 1428);
    std::shuffle(frags.begin(), frags.end(), std::mt19937(uint32_t(payload)));
    for (const auto& f : frags) r.inject_from_agent(agent_seal(*r.agent_a, uint32_t(o.inner.flow_id), kIpProtoUdp, f), kAgentA);
    r.poll();
    // To the client: IPv4 fragments that fit its link, from the entry point, put together by the client.
    auto whole = client_receives(r.pub.drain());
    assert_int_equal(whole.size(), 1);
    PacketInfo pi;
    assert_true(parse_tunnel_packet(whole[0], pi));
    assert_int_equal(pi.src_ip, kGwPublic);
    assert_int_equal(pi.src_port, 5201);
    assert_int_equal(pi.dst_ip, kClient);
    assert_int_equal(pi.dst_port, 45000);
    assert_payload(whole[0], payload);
  }
  Worker& w = *r.dp().workers[0];
  assert_int_equal(w.stats.inner_frag_reassembled.get(), 3);
  assert_int_equal(r.all_drops(), 0);
  // With DF set, a reassembled datagram cannot be split again: a whole one bigger than the link is refused.
  auto df = reply_to(o.packet, 1600);
  store_be16(df.data() + 6, kIpv4FlagDf);
  store_be16(df.data() + 10, 0);
  store_be16(df.data() + 10, ipv4_header_checksum({df.data(), 20}));
  assert_int_equal(r.from_agent(agent_seal(*r.agent_a, uint32_t(o.inner.flow_id), kIpProtoUdp, df), kAgentA).size(), 0);
  assert_int_equal(r.drops(Drop::TooBig), 1);
}

static void two_workers_take_each_datagram_on_one(void**) {
  Rig r(2);
  // 40 datagrams whose fragments arrive on alternating queues (as RSS or a fanout may spread them).
  size_t n_frags = 0;
  for (uint16_t id = 1; id <= 40; ++id) {
    auto frags = cut(client_datagram(46000, 3000, id), 14, 1500);
    for (size_t k = 0; k < frags.size(); ++k) r.pub.inject(r.dp().pool, frags[k], (k + id) % 2);
    n_frags += frags.size();
  }
  r.poll();
  std::set<uint64_t> flows;
  auto whole = agent_receives(*r.agent_a, r.und.drain(), &flows);
  assert_int_equal(whole.size(), 40);
  for (const auto& w : whole) assert_payload(w, 3000);
  assert_int_equal(flows.size(), 1);  // one flow: reassembled datagrams go to the worker of their 5-tuple
  assert_int_equal(r.total(&WorkerStats::flows_created), 1);
  // Every datagram was put together on one worker; fragments that came in elsewhere were handed over.
  Worker& w0 = *r.dp().workers[0];
  Worker& w1 = *r.dp().workers[1];
  assert_int_equal(w0.stats.frag_reassembled.get() + w1.stats.frag_reassembled.get(), 40);
  assert_true(w0.stats.frag_reassembled.get() > 0 && w1.stats.frag_reassembled.get() > 0);
  assert_int_equal(w0.stats.frag_rx.get() + w1.stats.frag_rx.get(), n_frags);
  assert_true(r.total(&WorkerStats::frag_steered) > 0);
  assert_int_equal(r.all_drops(), 0);
}

static void hostile_fragments_are_counted_and_traffic_goes_on(void**) {
  Rig r(1, 50'000'000);  // a 50 ms timeout, to watch it
  auto inject_all = [&](const std::vector<std::vector<uint8_t>>& fs) {
    for (const auto& f : fs) r.pub.inject(r.dp().pool, f);
    r.poll();
  };
  auto refix = [](std::vector<uint8_t>& f, uint16_t frag_field, uint16_t total) {
    uint8_t* ip = f.data() + 14;
    store_be16(ip + 6, frag_field);
    store_be16(ip + 2, total);
    store_be16(ip + 10, 0);
    store_be16(ip + 10, ipv4_header_checksum({ip, 20}));
    f.resize(14 + total);
  };
  // Overlap: the second fragment starts 8 bytes early; the datagram is dropped (both fragments counted).
  auto frags = cut(client_datagram(47000, 3000, 1), 14, 1500);
  refix(frags[1], uint16_t(kIpv4FlagMf | (1480 / 8 - 1)), 1500);
  inject_all(frags);
  assert_int_equal(r.drops(Drop::FragOverlap), 3);
  // Ping of death: a last fragment at offset 65528.
  auto pod = cut(client_datagram(47000, 3000, 2), 14, 1500);
  refix(pod[2], uint16_t(65528 / 8), 20 + 40);
  inject_all({pod[2]});
  assert_int_equal(r.drops(Drop::FragOversize), 1);
  // A fragment before the last that is not a multiple of 8 bytes.
  auto odd = cut(client_datagram(47000, 3000, 3), 14, 1500);
  refix(odd[0], kIpv4FlagMf, 20 + 1001);
  inject_all({odd[0]});
  assert_int_equal(r.drops(Drop::FragMalformed), 1);
  // A flood of first fragments that never complete: the table stays within its bounds; the oldest are evicted (or,
  // on a machine slow enough that the flood outlasts the 50 ms timeout, time out first: counted either way).
  for (uint16_t id = 1000; id < 4000; ++id) {
    auto f = cut(client_datagram(47001, 3000, id), 14, 1500);
    r.pub.inject(r.dp().pool, f[0]);
    if (id % 256 == 0) r.poll();
  }
  r.poll();
  Worker& w = *r.dp().workers[0];
  assert_true(w.stats.frag_evictions.get() + w.stats.frag_timeouts.get() >= 3000 - 1023);
  assert_int_equal(r.drops(Drop::FragEvicted), w.stats.frag_evictions.get());
  // Meanwhile, legitimate traffic: a whole packet and a fragmented datagram go through.
  assert_int_equal(r.from_client(client_udp(47002, 5201, 100)).size(), 1);
  inject_all(cut(client_datagram(47003, 5000, 9), 14, 1500));
  auto whole = agent_receives(*r.agent_a, r.und.drain());
  assert_int_equal(whole.size(), 1);
  assert_payload(whole[0], 5000);
  // What is left times out, counted, and gives its mbufs back.
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  r.poll();
  // Housekeeping is paced by time (a bounded number of expiries per sweep): poll until every held datagram timed out
  // and gave its mbufs back, for at most 5 s (a bound on a loaded machine, not a timing the test asserts).
  auto all_back = [&] { return rte_mempool_avail_count(r.dp().pool) > 4095 - 600; };
  for (auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
       !all_back() && std::chrono::steady_clock::now() < until;) {
    r.poll();
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  assert_true(w.stats.frag_timeouts.get() > 0);
  assert_int_equal(r.drops(Drop::FragTimeout), w.stats.frag_timeouts.get());
  // Reassembled datagrams to the tunnel port are not relay frames: dropped.
  inject_all(cut(client_datagram(47004, 3000, 10, 51900), 14, 1500));
  assert_int_equal(r.drops(Drop::Fragment), 1);
  // Every mbuf came back: the pool is full again but for what the ports hold.
  assert_true(rte_mempool_avail_count(r.dp().pool) > 4095 - 600);
}

static void junk_is_counted_not_fatal(void**) {
  Rig r;
  uint32_t seed = 7;
  for (int i = 0; i < 500; ++i) {
    std::vector<uint8_t> f(14 + (seed = seed * 1103515245u + 12345u) % 200);
    for (auto& b : f) b = uint8_t((seed = seed * 1103515245u + 12345u) >> 16);
    f[12] = 0x08, f[13] = i % 3 ? 0x00 : 0x06;
    r.pub.inject(r.dp().pool, f);
    r.und.inject(r.dp().pool, f);
    if (i % 32 == 31) r.poll();
  }
  r.poll();
  r.pub.drain();
  r.und.drain();
  // An IPv6 frame and a fragment to an entry point.
  std::vector<uint8_t> v6(14 + 40 + 8, 0);
  v6[12] = 0x86, v6[13] = 0xdd, v6[14] = 0x60, v6[19] = 8, v6[20] = 17, v6[59] = 8;  // UDP, length 8
  r.pub.inject(r.dp().pool, v6);
  r.pub.inject(r.dp().pool, client_udp(43000, 5201, 100, kIpv4FlagMf));
  r.poll();
  assert_true(r.drops(Drop::Ipv6) >= 1);
  assert_true(r.dp().workers[0]->stats.frag_rx.get() >= 1);  // held for reassembly
  assert_true(r.drops(Drop::ParseError) > 0);
  // Still forwarding.
  assert_int_equal(r.from_client(client_udp(43001, 5201, 10)).size(), 1);
  std::string json = stats_json(r.dp());
  assert_non_null(strstr(json.c_str(), "\"parse_error\":"));
}

namespace {

std::vector<uint8_t> client_tcp(uint16_t sport, uint16_t dport, uint8_t flags, size_t payload = 0) {
  FrameSpec s;
  s.src_ip = kClient;
  s.dst_ip = kGwPublic;
  s.src_port = sport;
  s.dst_port = dport;
  s.proto = kIpProtoTcp;
  s.tcp_flags = flags;
  s.payload = payload;
  return build_ipv4_frame(s);
}

constexpr uint32_t kTranslated = 0x64400002;  // 100.64.0.2: what dpagent makes the source of a flow
constexpr uint32_t kAgentRouter = 0x0a630401;  // 10.99.4.1

// What dpagent's kernel routes into the TUN when `inner` (a packet the agent delivered, its source translated as
// dpagent does) cannot reach its target: an ICMP error from `from`, quoting up to 548 bytes of it.
std::vector<uint8_t> icmp_about(std::vector<uint8_t> inner, uint8_t type, uint8_t code,
                                uint32_t from = kAgentRouter) {
  PacketInfo pi;
  assert_int_equal(parse_ip(inner, pi), ParseStatus::Ok);
  ipv4_rewrite_src(inner.data(), inner.data() + pi.l4_offset, pi.l4_proto, kTranslated, 32773);
  const size_t quote = std::min<size_t>(inner.size(), 548);
  std::vector<uint8_t> p(28 + quote);
  write_ipv4_header(p.data(), uint16_t(p.size()), 1, kIpProtoIcmp, from, kTranslated);
  p[20] = type;
  p[21] = code;
  std::memcpy(p.data() + 28, inner.data(), quote);
  store_be16(p.data() + 22, csum_finish(csum_add({p.data() + 20, p.size() - 20})));
  return p;
}

}  // namespace

static void closed_ports_answer_like_a_host(void**) {
  Rig r;
  // A SYN to a port without an entry point: RST+ACK acknowledging the SYN (RFC 793 closed state).
  auto syn = client_tcp(50000, 9999, kTcpSyn);
  assert_int_equal(r.from_client(syn).size(), 0);
  auto out = r.pub.drain();
  assert_int_equal(out.size(), 1);
  PacketInfo pi;
  assert_int_equal(parse_ethernet(out[0], pi), ParseStatus::Ok);
  assert_memory_equal(out[0].data(), syn.data() + 6, 6);  // back to the sender's MAC
  assert_int_equal(pi.src_ip, kGwPublic);
  assert_int_equal(pi.dst_ip, kClient);
  assert_int_equal(pi.src_port, 9999);
  assert_int_equal(pi.dst_port, 50000);
  assert_int_equal(pi.tcp_flags, kTcpRst | kTcpAck);
  const uint8_t* tcp = out[0].data() + pi.l4_offset;
  assert_int_equal(load_be32(tcp + 4), 0);
  assert_int_equal(load_be32(tcp + 8), 1000 + 1);  // the SYN's sequence number (packet_builder: 1000) + 1
  assert_true(ipv4_checksums_ok(out[0].data() + 14));
  // A segment with ACK (and 10 bytes): RST with the segment's acknowledgment number as its sequence number.
  assert_int_equal(r.from_client(client_tcp(50001, 9999, kTcpAck, 10)).size(), 0);
  out = r.pub.drain();
  assert_int_equal(out.size(), 1);
  assert_int_equal(parse_ethernet(out[0], pi), ParseStatus::Ok);
  assert_int_equal(pi.tcp_flags, kTcpRst);
  assert_int_equal(load_be32(out[0].data() + pi.l4_offset + 4), 2000);
  // A RST is never answered.
  assert_int_equal(r.from_client(client_tcp(50002, 9999, kTcpRst)).size(), 0);
  assert_int_equal(r.pub.drain().size(), 0);
  // UDP: ICMP port unreachable, quoting the datagram's IP header and 8 bytes.
  auto udp = client_udp(50003, 9999, 40);
  assert_int_equal(r.from_client(udp).size(), 0);
  out = r.pub.drain();
  assert_int_equal(out.size(), 1);
  IcmpError e;
  assert_true(parse_icmp_error({out[0].data() + 14, out[0].size() - 14}, e));
  assert_int_equal(e.type, kIcmpDestUnreachable);
  assert_int_equal(e.code, kIcmpPortUnreachable);
  assert_int_equal(e.from, kGwPublic);
  assert_int_equal(e.to, kClient);
  assert_int_equal(out[0].size(), 14 + 20 + 8 + 28);
  assert_memory_equal(out[0].data() + 14 + 28, udp.data() + 14, 28);
  // Not to a source that cannot be one host (multicast, 0.0.0.0), but counted all the same.
  auto mcast = client_udp(50004, 9999, 40);
  store_be32(mcast.data() + 14 + 12, 0xe0000001);
  store_be16(mcast.data() + 14 + 10, 0);
  store_be16(mcast.data() + 14 + 10, ipv4_header_checksum({mcast.data() + 14, 20}));
  store_be16(mcast.data() + 14 + 26, 0);  // (no UDP checksum)
  assert_int_equal(r.from_client(mcast).size(), 0);
  assert_int_equal(r.pub.drain().size(), 0);
  Worker& w = *r.dp().workers[0];
  assert_int_equal(w.stats.closed_port_rsts.get(), 2);
  assert_int_equal(w.stats.closed_port_unreachables.get(), 1);
  assert_int_equal(r.drops(Drop::NoEntryPoint), 5);
  // A flood: at most a burst of answers (64) and what the rate adds meanwhile; the rest counted, not answered.
  for (uint16_t i = 0; i < 300; ++i) r.pub.inject(r.dp().pool, client_tcp(uint16_t(51000 + i), 9999, kTcpSyn));
  r.poll();
  const size_t answered = r.pub.drain().size();
  assert_true(answered >= 60 && answered < 150);
  assert_int_equal(answered + w.stats.closed_port_limited.get(), 300);
  assert_int_equal(r.drops(Drop::NoEntryPoint), 305);
  // Text stats say so.
  const std::string text = stats_text(r.dp());
  assert_non_null(strstr(text.c_str(), "no_entry_point 305"));
  assert_non_null(strstr(text.c_str(), "ICMP port unreachable for ports without an entry point"));
}

static void agent_icmp_errors_reach_the_client(void**) {
  Rig r;
  // UDP: the agent's kernel says the target's host is unreachable; the client hears it from the entry point, about
  // its own datagram.
  auto udp = client_udp(52000, 5201, 60);
  Opened o = agent_open(*r.agent_a, r.from_client(udp)[0], kAgentAMac, kAgentA);
  auto back = r.from_agent(agent_seal(*r.agent_a, uint32_t(o.inner.flow_id), kIpProtoIcmp,
                                      icmp_about(o.packet, kIcmpDestUnreachable, 1)),
                           kAgentA);
  assert_int_equal(back.size(), 1);
  assert_memory_equal(back[0].data(), kClientMac.data(), 6);
  IcmpError e;
  assert_true(parse_icmp_error({back[0].data() + 14, back[0].size() - 14}, e));
  assert_int_equal(e.type, kIcmpDestUnreachable);
  assert_int_equal(e.code, 1);
  assert_int_equal(e.from, kGwPublic);
  assert_int_equal(e.to, kClient);
  assert_int_equal(back[0].size(), 14 + 20 + 8 + 28);
  assert_memory_equal(back[0].data() + 14 + 28, udp.data() + 14, 28);  // the client's own header and 8 bytes
  assert_int_equal(csum_fold(csum_add({back[0].data() + 14, 20})), 0xffff);
  Worker& w = *r.dp().workers[0];
  assert_int_equal(w.stats.icmp_errors_forwarded.get(), 1);
  assert_int_equal(w.tunnel_stats[0].targets_unreachable.get(), 1);

  // TCP: the SYN's error quotes the client's sequence number, and the flow is closed (not "unanswered").
  auto syn = client_tcp(52001, 5201, kTcpSyn);
  o = agent_open(*r.agent_a, r.from_client(syn)[0], kAgentAMac, kAgentA);
  back = r.from_agent(agent_seal(*r.agent_a, uint32_t(o.inner.flow_id), kIpProtoIcmp,
                                 icmp_about(o.packet, kIcmpDestUnreachable, 13)),
                      kAgentA);
  assert_int_equal(back.size(), 1);
  assert_true(parse_icmp_error({back[0].data() + 14, back[0].size() - 14}, e));
  assert_int_equal(e.code, 13);
  assert_int_equal(e.proto, kIpProtoTcp);
  assert_int_equal(e.src_port, 52001);
  assert_int_equal(e.dst_port, 5201);
  assert_memory_equal(back[0].data() + 14 + 28, syn.data() + 14, 28);

  // Not the flow's: another target quoted, another tunnel's agent, a flow that does not exist, a broken message.
  auto other = o.packet;
  store_be32(other.data() + 16, 0x0a0a0a0a);
  store_be16(other.data() + 10, 0);
  store_be16(other.data() + 10, ipv4_header_checksum({other.data(), 20}));
  assert_int_equal(r.from_agent(agent_seal(*r.agent_a, uint32_t(o.inner.flow_id), kIpProtoIcmp,
                                           icmp_about(other, kIcmpDestUnreachable, 1)),
                                kAgentA)
                       .size(),
                   0);
  assert_int_equal(r.drops(Drop::FlowMismatch), 1);
  assert_int_equal(r.from_agent(agent_seal(*r.agent_b, uint32_t(o.inner.flow_id), kIpProtoIcmp,
                                           icmp_about(o.packet, kIcmpDestUnreachable, 1)),
                                kAgentB)
                       .size(),
                   0);
  assert_int_equal(r.drops(Drop::FlowMismatch), 2);
  assert_int_equal(r.from_agent(agent_seal(*r.agent_a, uint32_t(o.inner.flow_id) ^ 9, kIpProtoIcmp,
                                           icmp_about(o.packet, kIcmpDestUnreachable, 1)),
                                kAgentA)
                       .size(),
                   0);
  assert_int_equal(r.drops(Drop::StaleFlow), 1);
  auto broken = icmp_about(o.packet, kIcmpDestUnreachable, 1);
  broken[30] ^= 0xff;
  assert_int_equal(
      r.from_agent(agent_seal(*r.agent_a, uint32_t(o.inner.flow_id), kIpProtoIcmp, broken), kAgentA).size(), 0);
  assert_int_equal(r.drops(Drop::BadInner), 1);
  assert_int_equal(w.stats.icmp_errors_forwarded.get(), 2);
  assert_int_equal(w.tunnel_stats[0].targets_unreachable.get(), 2);
}

static void unanswered_syns_are_counted(void**) {
  Rig r(1, 2'000'000'000ull, [](GatewayConfig& c) {
    c.flow.tcp_syn_timeout_ns = 50'000'000;
    c.flow.tcp_closed_timeout_ns = 50'000'000;
    for (auto& e : c.entry_points) e.udp_ttl_ns = 50'000'000;
  });
  // Three connection attempts: one the target never answers, one it refuses (RST), one the agent reports
  // unreachable; and a UDP flow. Only the first is unanswered when they expire.
  Opened quiet = agent_open(*r.agent_a, r.from_client(client_tcp(53000, 5201, kTcpSyn))[0], kAgentAMac, kAgentA);
  (void)quiet;
  Opened refused = agent_open(*r.agent_a, r.from_client(client_tcp(53001, 5201, kTcpSyn))[0], kAgentAMac, kAgentA);
  auto rst = reply_to(refused.packet, 0);
  rst[20 + 13] = kTcpRst | kTcpAck;
  store_be16(rst.data() + 20 + 16, 0);
  store_be16(rst.data() + 20 + 16, ipv4_l4_checksum(load_be32(rst.data() + 12), load_be32(rst.data() + 16),
                                                    kIpProtoTcp, {rst.data() + 20, rst.size() - 20}));
  assert_int_equal(r.from_agent(agent_seal(*r.agent_a, uint32_t(refused.inner.flow_id), kIpProtoTcp, rst), kAgentA)
                       .size(),
                   1);
  Opened unreachable =
      agent_open(*r.agent_a, r.from_client(client_tcp(53002, 5201, kTcpSyn))[0], kAgentAMac, kAgentA);
  assert_int_equal(r.from_agent(agent_seal(*r.agent_a, uint32_t(unreachable.inner.flow_id), kIpProtoIcmp,
                                           icmp_about(unreachable.packet, kIcmpDestUnreachable, 1)),
                                kAgentA)
                       .size(),
                   1);
  assert_int_equal(r.from_client(client_udp(53003, 5201, 10)).size(), 1);
  Worker& w = *r.dp().workers[0];
  assert_int_equal(w.flows().size(), 4);
  std::this_thread::sleep_for(std::chrono::milliseconds(80));
  r.poll();  // 80 ms is more than the flow table's sweep period (a quarter of these 50 ms timeouts): one whole sweep
  assert_int_equal(w.flows().size(), 0);
  assert_int_equal(w.stats.flows_unanswered.get(), 1);
  assert_int_equal(w.tunnel_stats[0].flows_unanswered.get(), 1);
  // The client tries again after the flow expired: that attempt, too, is counted when it ends unanswered.
  assert_int_equal(r.from_client(client_tcp(53000, 5201, kTcpSyn)).size(), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(80));
  assert_int_equal(r.from_client(client_tcp(53000, 5201, kTcpSyn)).size(), 1);  // (expired: erased on lookup)
  assert_int_equal(w.stats.flows_unanswered.get(), 2);
  const std::string json = stats_json(r.dp());
  assert_non_null(strstr(json.c_str(), "\"flows_unanswered\":2"));
}

namespace {

nlohmann::json trace_op(Rig& r, nlohmann::json req) {
  req["type"] = "trace";
  return trace_request(r.dp(), req, r.dp().clock.now_ns());
}

// Starts a trace, runs `traffic`, and returns the stopped trace's result (after its packets have all ended).
nlohmann::json run_trace(Rig& r, uint32_t packets, const std::string& filter, const std::function<void()>& traffic) {
  auto started = trace_op(r, {{"op", "start"}, {"packets", packets}, {"filter", filter}, {"timeout", 5}});
  const uint32_t gen = started["generation"];
  r.poll();  // workers see the trace armed
  traffic();
  r.poll();
  auto polled = trace_op(r, {{"op", "poll"}, {"generation", gen}});
  assert_true(polled["done"].get<bool>());
  return trace_op(r, {{"op", "stop"}, {"generation", gen}});
}

std::vector<std::string> stages_of(const nlohmann::json& packet) {
  std::vector<std::string> out;
  for (const auto& s : packet["steps"]) out.push_back(s["stage"]);
  return out;
}

}  // namespace

static void trace_follows_packets_through_the_stages(void**) {
  Rig r;
  Opened o;
  // Client packets to an entry point: the second is not a new flow; a TCP packet does not match the filter.
  auto res = run_trace(r, 2, "udp,port=5201", [&] {
    o = agent_open(*r.agent_a, r.from_client(client_udp(54000, 5201, 20))[0], kAgentAMac, kAgentA);
    assert_int_equal(r.from_client(client_tcp(54001, 9999, kTcpSyn)).size(), 0);
    assert_int_equal(r.from_client(client_udp(54000, 5201, 20)).size(), 1);
  });
  assert_int_equal(res["taken"].get<int>(), 2);
  assert_int_equal(res["packets"].size(), 2);
  const auto& p1 = res["packets"][0];
  assert_true(p1["complete"].get<bool>());
  assert_true(stages_of(p1) == (std::vector<std::string>{"rx", "classify", "flow", "nat", "encap", "tx"}));
  assert_string_equal(p1["steps"][0]["port"].get<std::string>().c_str(), "public");
  assert_string_equal(p1["steps"][0]["src"].get<std::string>().c_str(), "10.99.1.2:54000");
  assert_string_equal(p1["steps"][1]["result"].get<std::string>().c_str(), "entry_point");
  assert_string_equal(p1["steps"][1]["entry_point"].get<std::string>().c_str(), "udp/5201");
  assert_true(p1["steps"][2]["new"].get<bool>());
  assert_string_equal(p1["steps"][2]["tunnel"].get<std::string>().c_str(), "a");
  assert_int_equal(p1["steps"][2]["session"].get<int>(), 1);
  assert_string_equal(p1["steps"][3]["target"].get<std::string>().c_str(), "10.99.2.2:5201");
  assert_string_equal(p1["steps"][4]["agent"].get<std::string>().c_str(), "10.99.2.2:51900");
  assert_string_equal(p1["steps"][5]["port"].get<std::string>().c_str(), "underlay");
  assert_false(res["packets"][1]["steps"][2]["new"].get<bool>());

  // The agent's reply, from the underlay port: decapsulated, delivered to the client.
  res = run_trace(r, 1, "rx=underlay", [&] {
    r.from_agent(agent_seal(*r.agent_a, uint32_t(o.inner.flow_id), kIpProtoUdp, reply_to(o.packet, 30)), kAgentA);
  });
  assert_true(stages_of(res["packets"][0]) ==
              (std::vector<std::string>{"rx", "classify", "decap", "deliver", "tx"}));
  assert_string_equal(res["packets"][0]["steps"][2]["frame"].get<std::string>().c_str(), "data");
  assert_string_equal(res["packets"][0]["steps"][3]["client"].get<std::string>().c_str(), "10.99.1.2:54000");

  // An agent's ICMP error: decapsulated, read, passed on.
  res = run_trace(r, 1, "rx=underlay", [&] {
    r.from_agent(agent_seal(*r.agent_a, uint32_t(o.inner.flow_id), kIpProtoIcmp,
                            icmp_about(o.packet, kIcmpDestUnreachable, 3)),
                 kAgentA);
  });
  assert_true(stages_of(res["packets"][0]) ==
              (std::vector<std::string>{"rx", "classify", "decap", "icmp_error", "tx"}));
  assert_string_equal(res["packets"][0]["steps"][3]["reason"].get<std::string>().c_str(), "port_unreachable");

  // A port without an entry point: the answer and the drop reason. And the text dpgw trace prints.
  res = run_trace(r, 1, "tcp", [&] { r.from_client(client_tcp(54002, 9999, kTcpSyn)); });
  assert_true(stages_of(res["packets"][0]) ==
              (std::vector<std::string>{"rx", "classify", "answer", "drop"}));
  assert_string_equal(res["packets"][0]["steps"][3]["reason"].get<std::string>().c_str(), "no_entry_point");
  const std::string text = trace_text(res);
  assert_non_null(strstr(text.c_str(), "1 packet traced"));
  assert_non_null(strstr(text.c_str(), "10.99.1.2:54002 -> 10.99.1.1:9999 tcp [S]"));
  assert_non_null(strstr(text.c_str(), "no_entry_point"));
  assert_non_null(strstr(text.c_str(), "rst"));
  r.pub.drain();

  // Once stopped, nothing more is recorded.
  const uint32_t gen = res["generation"];
  uint64_t lost = 0;
  const size_t before = r.dp().tracer->collect(gen, lost).size();
  r.poll();
  r.from_client(client_tcp(54003, 9999, kTcpSyn));
  assert_int_equal(r.dp().tracer->collect(gen, lost).size(), before);
}

static void trace_follows_handoffs_between_workers(void**) {
  Rig r(2);
  const uint16_t rx_worker = r.dp().sessions.find(1)->rx_worker;
  // A client flow made on the other worker: the agent's frame arrives there too, is handed to the session's RX
  // worker to be opened, and its inner packet back to the flow's worker.
  const size_t q = 1 - rx_worker;
  r.pub.inject(r.dp().pool, client_udp(55000, 5201, 20), q);
  r.poll();
  Opened o = agent_open(*r.agent_a, r.und.drain()[0], kAgentAMac, kAgentA);
  assert_int_equal(FlowTable::worker_of(o.inner.flow_id), q);
  auto res = run_trace(r, 1, "", [&] {
    auto frame = agent_seal(*r.agent_a, uint32_t(o.inner.flow_id), kIpProtoUdp, reply_to(o.packet, 30));
    r.inject_from_agent(frame, kAgentA);  // (queue 0)
  });
  // Injected on queue 0, which may or may not be the RX worker's.
  const auto st = stages_of(res["packets"][0]);
  assert_string_equal(st.front().c_str(), "rx");
  assert_string_equal(st.back().c_str(), "tx");
  const bool handed_to_rx = rx_worker != 0;
  size_t handoffs = 0;
  for (const auto& s : res["packets"][0]["steps"])
    if (s["stage"] == "handoff_out") ++handoffs;
  assert_int_equal(handoffs, (handed_to_rx ? 1 : 0) + (q != rx_worker ? 1 : 0));
  // The last steps happen on the flow's worker.
  assert_int_equal(res["packets"][0]["steps"].back()["worker"].get<int>(), int(q));
  assert_int_equal(r.pub.drain().size(), 1);
}

static void trace_requests_and_filters(void**) {
  Rig r;
  TraceFilter f;
  std::string error;
  const std::vector<std::string> ports{"public", "underlay"};
  assert_true(parse_trace_filter("", ports, f, error));
  assert_int_equal(f.pack(), TraceFilter{}.pack());
  assert_true(parse_trace_filter("tcp, port=443 host=10.0.0.1,rx=underlay", ports, f, error));
  assert_int_equal(f.proto, kIpProtoTcp);
  assert_int_equal(f.port, 443);
  assert_int_equal(f.host, 0x0a000001);
  assert_int_equal(f.rx_port, 1);
  assert_int_equal(TraceFilter::unpack(f.pack()).pack(), f.pack());
  assert_true(parse_trace_filter("proto=17", ports, f, error));
  assert_int_equal(f.proto, 17);
  for (const char* bad : {"port=0", "port=65536", "host=10.0.0", "rx=eth0", "sctp", "port", "tcp;udp"}) {
    error.clear();
    assert_false(parse_trace_filter(bad, ports, f, error));
    assert_true(!error.empty());
  }
  // Requests out of range are refused with a reason; so is asking about a trace that another replaced.
  bool threw = false;
  try {
    trace_op(r, {{"op", "start"}, {"packets", 1001}});
  } catch (const std::exception& e) {
    threw = strstr(e.what(), "packets") != nullptr;
  }
  assert_true(threw);
  const uint32_t g1 = trace_op(r, {{"op", "start"}, {"packets", 1}})["generation"];
  const uint32_t g2 = trace_op(r, {{"op", "start"}, {"packets", 1}, {"timeout", 0.1}})["generation"];
  assert_true(g2 != g1);
  threw = false;
  try {
    trace_op(r, {{"op", "poll"}, {"generation", g1}});
  } catch (const std::exception& e) {
    threw = strstr(e.what(), "replaced") != nullptr;
  }
  assert_true(threw);
  // A trace nothing matches ends at its timeout, with no packets.
  std::this_thread::sleep_for(std::chrono::milliseconds(120));
  r.poll();
  assert_true(trace_op(r, {{"op", "poll"}, {"generation", g2}})["done"].get<bool>());
  auto res = trace_op(r, {{"op", "stop"}, {"generation", g2}});
  assert_int_equal(res["packets"].size(), 0);
  assert_true(res["timed_out"].get<bool>());
  assert_non_null(strstr(trace_text(res).c_str(), "timed out"));
}

// dpgw's tunnel table compares names as dpctld and the config files do (common/tunnel_names.hpp): a tunnel dpctld
// adds as "A" clashes with the config's "a", and a reloaded config cannot name a tunnel "WEB" while dpctld's
// "web" exists.
static void tunnel_names_clash_without_regard_to_case(void**) {
  PipelineRig r;
  std::string error;
  assert_false(r.gw->state().set_tunnel(TunnelSpec{Uuid::random_v4(), "A", false}, error));
  assert_string_equal(error.c_str(), "another tunnel is already named 'A'");
  assert_true(r.gw->state().set_tunnel(TunnelSpec{Uuid::random_v4(), "web", false}, error));
  GatewayConfig reload = *r.dp().cfg;
  TunnelConfig tc;
  tc.id = Uuid::random_v4();
  tc.name = "WEB";
  tc.peers.push_back(StaticPeerConfig{9, key_of(9), std::nullopt, 1});
  reload.tunnels.push_back(tc);
  assert_false(r.gw->state().apply_config(reload, error));
  assert_string_equal(error.c_str(), ("tunnel WEB (" + tc.id.str() + ") is managed by dpctld already").c_str());
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(udp_round_trip),
      cmocka_unit_test(replay_tamper_and_unknown_sessions_are_dropped),
      cmocka_unit_test(replies_only_from_the_flows_session),
      cmocka_unit_test(keepalive_is_answered_and_teaches_the_endpoint),
      cmocka_unit_test(tcp_needs_syn_and_gets_mss_clamped),
      cmocka_unit_test(oversized_udp),
      cmocka_unit_test(client_datagrams_in_fragments_reach_the_agent_whole),
      cmocka_unit_test(agent_datagrams_in_fragments_reach_the_client),
      cmocka_unit_test(two_workers_take_each_datagram_on_one),
      cmocka_unit_test(hostile_fragments_are_counted_and_traffic_goes_on),
      cmocka_unit_test(junk_is_counted_not_fatal),
      cmocka_unit_test(closed_ports_answer_like_a_host),
      cmocka_unit_test(agent_icmp_errors_reach_the_client),
      cmocka_unit_test(unanswered_syns_are_counted),
      cmocka_unit_test(trace_follows_packets_through_the_stages),
      cmocka_unit_test(trace_follows_handoffs_between_workers),
      cmocka_unit_test(trace_requests_and_filters),
      cmocka_unit_test(tunnel_names_clash_without_regard_to_case),
  };
  return run_pipeline_tests("test_gateway_pipeline", tests, sizeof tests / sizeof tests[0]);
}
