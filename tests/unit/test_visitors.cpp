// Visitors (dpagent visit; dataplane/hostname/visitor_input.cpp, docs/hostname-routing.md "Private rules and
// visitors") on dpgw's real Worker, with dpagent's session crypto at both ends (tests/support/pipeline_rig.hpp): a
// visitor session of tunnel a, as dpctld adds one, on the public side; tunnel a's two agents on the underlay, whose
// MTU is smaller.
//  - a frame naming a rule of the visitor's own tunnel opens a flow to one of the tunnel's agents, NAT-ed to the
//    rule's target, its SYN's MSS clamped for the path to that agent; the agent's reply comes back to the visitor
//    from the address it used;
//  - another tunnel's rule is refused (no_rule), a private rule of its own tunnel is not; no name: no_hostname; a
//    rule of a tunnel without agents: no_session, not counted as routed;
//  - direct mode off refuses DIRECT frames (direct_disabled), on lets them through to their own destination;
//  - the agent's session dies (its keepalives stop past session_timeout): the flow moves to the other agent of the
//    pool (flows_repinned), whose flows_pinned counts it while the old one's does not; replies for a visitor that
//    went are dropped (stale_flow);
// with the counters of each: visitor_packets, visitor_flows, hostname_routed and flows_created (per tunnel) once per
// flow opened, the tunnel's frame counters once per frame.
#include <thread>
#include <vector>

#include "crypto/quic_keys.hpp"
#include "dataplane/tables/quic_session.hpp"
#include "packet/parser.hpp"
#include "proto/quic_short_header.hpp"
#include "packet/tcp_mss.hpp"
#include "tests/support/pipeline_rig.hpp"

using namespace dptun;
using namespace dptun::test;

namespace {

constexpr uint32_t kVisitor = 0x0a630107;   // 10.99.1.7: the visitor's machine, on the public side
constexpr uint32_t kVisitor2 = 0x0a630108;  // 10.99.1.8: a visitor of tunnel c, which has no agent
constexpr uint32_t kAgentA2 = 0x0a630204;   // 10.99.2.4: tunnel a's second agent (session 3)
constexpr uint32_t kVisitorSession = 7;
constexpr uint32_t kProgram = 0x64600001;   // 100.96.0.1: a program on the visitor's TUN
constexpr uint32_t kLocal = 0x6460000a;     // 100.96.0.10:80, where dpagent visit puts the service
constexpr uint16_t kLocalPort = 80;
constexpr uint32_t kService = 0xc0a8070a;   // 192.168.7.10:8080, svc.example's target
constexpr uint16_t kServicePort = 8080;
constexpr uint32_t kPrivate = 0xc0a8070b;   // 192.168.7.11, priv.example's target (no port: the visitor's)
constexpr uint32_t kDirect = 0xc0a80714;    // 192.168.7.20:22, asked for directly
constexpr uint16_t kUnderlayMtu = 1400;     // the public side keeps 1500
constexpr uint64_t kSessionTimeoutNs = 200'000'000ull;

const std::vector<uint8_t> kMss1460 = {2, 4, 0x05, 0xb4};

// An IPv4 packet of a program on the visitor's machine to `dst` (TCP with `flags` and a 1460 MSS on SYN, or UDP).
std::vector<uint8_t> program_packet(uint8_t proto, uint16_t sport, uint8_t flags = kTcpSyn, uint32_t dst = kLocal,
                                    uint16_t dport = kLocalPort) {
  FrameSpec s;
  s.src_ip = kProgram;
  s.dst_ip = dst;
  s.src_port = sport;
  s.dst_port = dport;
  s.proto = proto;
  s.tcp_flags = flags;
  if (proto == kIpProtoTcp && (flags & kTcpSyn)) s.tcp_options = kMss1460;
  s.payload = proto == kIpProtoTcp ? 0 : 20;
  auto f = build_ipv4_frame(s);
  return std::vector<uint8_t>(f.begin() + 14, f.end());
}

struct AtAgent {
  uint32_t session;  // the agent's session index
  Opened o;
};

PacketInfo parsed(const std::vector<uint8_t>& packet) {
  PacketInfo pi;
  assert_int_equal(parse_ip(packet, pi), ParseStatus::Ok);
  assert_true(ipv4_checksums_ok(packet.data()));
  return pi;
}

// Tunnel a with a second agent, a visitor of it, and rules: svc.example (a), priv.example (a, private),
// other.example (b).
struct Rig : PipelineRig {
  AgentSession* visitor;

  explicit Rig(bool direct_mode = false)
      : PipelineRig(1, [&](GatewayConfig& c) {
          c.tunnels[0].peers.push_back(StaticPeerConfig{3, key_of(3), Endpoint{Ipv4{kAgentA2}, kTunnelPort}, 1});
          c.session_timeout_ns = kSessionTimeoutNs;
          c.direct_mode = direct_mode;
        }) {
    set_port_mtu(1, kUnderlayMtu);
    visitor = &add_visitor(kVisitorSession, "a", kVisitor);
    IngressRuleSpec svc{"svc.example", tunnel("a").id, Endpoint{Ipv4{kService}, kServicePort}};
    IngressRuleSpec priv{"priv.example", tunnel("a").id, Endpoint{Ipv4{kPrivate}, 0}, true};
    IngressRuleSpec other{"other.example", tunnel("b").id, Endpoint{Ipv4{0xc0a8080a}, 80}};
    set_rules({svc, priv, other});
  }

  WorkerStats& stats() { return worker().stats; }
  // A packet from the visitor (inner flags `flags`, naming `name`); returns what the agents got, opened.
  std::vector<AtAgent> from_visitor(const std::vector<uint8_t>& packet, std::string_view name, uint8_t flags = 0) {
    inject_from_agent(agent_seal(*visitor, 0, packet[9], packet, flags, name), kVisitor);
    poll();
    std::vector<AtAgent> out;
    for (const auto& f : und.drain()) {
      PacketInfo pi;
      assert_int_equal(parse_ethernet(f, pi), ParseStatus::Ok);
      const uint32_t index = pi.dst_ip == kAgentA ? 1 : pi.dst_ip == kAgentA2 ? 3 : 0;
      assert_true(index != 0);
      out.push_back(AtAgent{index, agent_open(agent(index), f, mac_of(pi.dst_ip), pi.dst_ip)});
    }
    return out;
  }
  // The target's reply to `at`'s packet, through the agent of session `via`; returns what the visitor got, opened.
  std::vector<Opened> reply(const AtAgent& at, uint32_t via, uint8_t tcp_flags, std::vector<uint8_t> options = {}) {
    const std::vector<uint8_t> r = reply_to(at.o.packet, 0, 0, tcp_flags, std::move(options));
    inject_from_agent(agent_seal(agent(via), uint32_t(at.o.inner.flow_id), r[9], r), peers.at(via).ip);
    poll();
    std::vector<Opened> out;
    for (const auto& f : pub.drain()) out.push_back(agent_open(*visitor, f, mac_of(kVisitor), kVisitor, kGwPublic));
    return out;
  }
  void assert_nothing_opened() {
    assert_int_equal(stats().visitor_flows.get(), 0);
    assert_int_equal(stats().hostname_routed.get(), 0);
    assert_int_equal(stats().flows_created.get(), 0);
    assert_int_equal(worker().flows().size(), 0);
  }
};

}  // namespace

static void visitor_reaches_a_rule_of_its_own_tunnel(void**) {
  Rig r;
  auto out = r.from_visitor(program_packet(kIpProtoTcp, 40000), "svc.example");
  assert_int_equal(out.size(), 1);
  const AtAgent syn = out[0];
  PacketInfo pi = parsed(syn.o.packet);
  assert_int_equal(pi.src_ip, kProgram);
  assert_int_equal(pi.src_port, 40000);
  assert_int_equal(pi.dst_ip, kService);
  assert_int_equal(pi.dst_port, kServicePort);
  assert_int_equal(pi.tcp_flags, kTcpSyn);
  // Clamped for the path to the agent (the underlay's MTU), not the visitor's.
  assert_int_equal(tcp_find_mss(syn.o.packet.data() + pi.l4_offset, pi.tcp_header_len), inner_tcp_mss(kUnderlayMtu));
  assert_true(syn.o.inner.flags & kInnerFlowNew);
  assert_true(syn.o.name.empty());
  const uint32_t other = syn.session == 1 ? 3 : 1;
  assert_int_equal(r.session(syn.session).flows_pinned.load(), 1);
  assert_int_equal(r.session(other).flows_pinned.load(), 0);
  assert_int_equal(r.session(kVisitorSession).flows_pinned.load(), 0);  // a visitor's session carries no flows
  assert_int_equal(r.stats().visitor_packets.get(), 1);
  assert_int_equal(r.stats().visitor_flows.get(), 1);
  assert_int_equal(r.stats().hostname_routed.get(), 1);
  assert_int_equal(r.stats().flows_created.get(), 1);
  assert_int_equal(r.tunnel_stats("a").flows_created.get(), 1);
  assert_int_equal(r.tunnel_stats("b").flows_created.get(), 0);
  // Frames in the tunnel's sessions, the visitor's included: each counted once.
  assert_int_equal(r.tunnel_stats("a").from_agent_packets.get(), 1);
  assert_int_equal(r.tunnel_stats("a").to_agent_packets.get(), 1);

  // The service answers (MSS 1460): to the visitor, from the local address its program used, clamped too.
  auto back = r.reply(syn, syn.session, kTcpSyn | kTcpAck, kMss1460);
  assert_int_equal(back.size(), 1);
  pi = parsed(back[0].packet);
  assert_int_equal(pi.src_ip, kLocal);
  assert_int_equal(pi.src_port, kLocalPort);
  assert_int_equal(pi.dst_ip, kProgram);
  assert_int_equal(pi.dst_port, 40000);
  assert_int_equal(pi.tcp_flags, kTcpSyn | kTcpAck);
  assert_int_equal(tcp_find_mss(back[0].packet.data() + pi.l4_offset, pi.tcp_header_len), inner_tcp_mss(kUnderlayMtu));
  assert_int_equal(r.tunnel_stats("a").from_agent_packets.get(), 2);
  assert_int_equal(r.tunnel_stats("a").to_agent_packets.get(), 2);

  // The program's ACK: the same flow, the same agent, nothing opened again.
  out = r.from_visitor(program_packet(kIpProtoTcp, 40000, kTcpAck), "svc.example");
  assert_int_equal(out.size(), 1);
  assert_int_equal(out[0].session, syn.session);
  assert_int_equal(out[0].o.inner.flow_id, syn.o.inner.flow_id);
  assert_int_equal(out[0].o.inner.flags & kInnerFlowNew, 0);
  assert_int_equal(r.stats().visitor_packets.get(), 2);
  assert_int_equal(r.stats().visitor_flows.get(), 1);
  assert_int_equal(r.stats().hostname_routed.get(), 1);
  assert_int_equal(r.stats().flows_created.get(), 1);
  assert_int_equal(r.tunnel_stats("a").to_agent_packets.get(), 3);
  assert_int_equal(r.all_drops(), 0);
}

static void only_its_own_tunnels_rules_private_ones_included(void**) {
  Rig r;
  // Another tunnel's rule, a name without a rule, no name at all: refused, nothing opened.
  assert_int_equal(r.from_visitor(program_packet(kIpProtoUdp, 41000), "other.example").size(), 0);
  assert_int_equal(r.drops(Drop::NoRule), 1);
  assert_int_equal(r.from_visitor(program_packet(kIpProtoUdp, 41001), "nothing.example").size(), 0);
  assert_int_equal(r.drops(Drop::NoRule), 2);
  assert_int_equal(r.from_visitor(program_packet(kIpProtoUdp, 41002), "").size(), 0);
  assert_int_equal(r.drops(Drop::NoHostname), 1);
  r.assert_nothing_opened();
  assert_int_equal(r.tunnel_stats("b").flows_created.get(), 0);
  // A private rule of its own tunnel: reached, on the port the visitor's program used (the rule has none).
  auto out = r.from_visitor(program_packet(kIpProtoUdp, 41003), "priv.example");
  assert_int_equal(out.size(), 1);
  const PacketInfo pi = parsed(out[0].o.packet);
  assert_int_equal(pi.dst_ip, kPrivate);
  assert_int_equal(pi.dst_port, kLocalPort);
  assert_int_equal(r.stats().visitor_packets.get(), 4);
  assert_int_equal(r.stats().visitor_flows.get(), 1);
  assert_int_equal(r.stats().hostname_routed.get(), 1);
  assert_int_equal(r.tunnel_stats("a").flows_created.get(), 1);
  auto back = r.reply(out[0], out[0].session, 0);
  assert_int_equal(back.size(), 1);
  assert_int_equal(parsed(back[0].packet).src_ip, kLocal);
  assert_int_equal(r.all_drops(), 3);
  // A visitor of a tunnel that has no agent: its rule matches, no session takes the flow; not counted as routed.
  std::string error;
  assert_true(r.gw->state().set_tunnel(TunnelSpec{Uuid::random_v4(), "c"}, error));
  IngressRuleSpec c_rule{"c.example", r.tunnel("c").id, Endpoint{Ipv4{kService}, kServicePort}};
  IngressRuleSpec priv{"priv.example", r.tunnel("a").id, Endpoint{Ipv4{kPrivate}, 0}, true};
  r.set_rules({priv, c_rule});
  AgentSession& lonely = r.add_visitor(8, "c", kVisitor2);
  const auto p = program_packet(kIpProtoUdp, 41004);
  r.inject_from_agent(agent_seal(lonely, 0, kIpProtoUdp, p, 0, "c.example"), kVisitor2);
  r.poll();
  assert_int_equal(r.und.drain().size(), 0);
  assert_int_equal(r.drops(Drop::NoSession), 1);
  assert_int_equal(r.stats().visitor_flows.get(), 1);
  assert_int_equal(r.stats().hostname_routed.get(), 1);
  assert_int_equal(r.stats().flows_created.get(), 1);
  assert_int_equal(r.tunnel_stats("c").flows_created.get(), 0);
}

static void direct_mode(void**) {
  {
    Rig off;
    const auto p = program_packet(kIpProtoTcp, 42000, kTcpSyn, kDirect, 22);
    assert_int_equal(off.from_visitor(p, "", kInnerDirect).size(), 0);
    assert_int_equal(off.drops(Drop::DirectDisabled), 1);
    off.assert_nothing_opened();
  }
  Rig on(true);
  auto out = on.from_visitor(program_packet(kIpProtoTcp, 42000, kTcpSyn, kDirect, 22), "", kInnerDirect);
  assert_int_equal(out.size(), 1);
  const PacketInfo pi = parsed(out[0].o.packet);
  assert_int_equal(pi.dst_ip, kDirect);
  assert_int_equal(pi.dst_port, 22);
  assert_int_equal(tcp_find_mss(out[0].o.packet.data() + pi.l4_offset, pi.tcp_header_len), inner_tcp_mss(kUnderlayMtu));
  assert_int_equal(on.stats().visitor_flows.get(), 1);
  assert_int_equal(on.stats().hostname_routed.get(), 0);  // no rule involved
  assert_int_equal(on.stats().flows_created.get(), 1);
  assert_int_equal(on.tunnel_stats("a").flows_created.get(), 1);
  auto back = on.reply(out[0], out[0].session, kTcpSyn | kTcpAck, kMss1460);
  assert_int_equal(back.size(), 1);
  assert_int_equal(parsed(back[0].packet).src_ip, kDirect);  // (the address the program asked for)
  assert_int_equal(on.all_drops(), 0);
}

static void flow_moves_when_its_agent_goes_quiet(void**) {
  Rig r;
  auto out = r.from_visitor(program_packet(kIpProtoTcp, 43000), "svc.example");
  assert_int_equal(out.size(), 1);
  const AtAgent syn = out[0];
  const uint32_t first = syn.session, second = first == 1 ? 3 : 1;
  assert_int_equal(r.reply(syn, first, kTcpSyn | kTcpAck, kMss1460).size(), 1);  // the first agent is heard from
  assert_int_equal(r.session(first).flows_pinned.load(), 1);
  // Its keepalives stop (nothing more from it) past session_timeout; the other agent, never heard from, has a
  // configured endpoint and stays usable.
  std::this_thread::sleep_for(std::chrono::nanoseconds(kSessionTimeoutNs + 100'000'000ull));
  out = r.from_visitor(program_packet(kIpProtoTcp, 43000, kTcpAck), "svc.example");
  assert_int_equal(out.size(), 1);
  assert_int_equal(out[0].session, second);
  assert_int_equal(out[0].o.inner.flow_id, syn.o.inner.flow_id);
  assert_int_equal(r.stats().flows_repinned.get(), 1);
  assert_int_equal(r.session(second).flows_pinned.load(), 1);
  assert_int_equal(r.session(first).flows_pinned.load(), 0);
  assert_int_equal(r.session(second).flows_total.load(), 1);
  assert_int_equal(r.session(first).flows_total.load(), 1);
  // Still one flow opened; replies through the new agent reach the visitor.
  assert_int_equal(r.stats().visitor_flows.get(), 1);
  assert_int_equal(r.stats().flows_created.get(), 1);
  assert_int_equal(r.stats().hostname_routed.get(), 1);
  assert_int_equal(r.reply(out[0], second, kTcpAck).size(), 1);
  // The visitor goes (dpctld removes its session): what the agents send for its flows is dropped.
  std::string error;
  assert_true(r.gw->state().remove_session(kVisitorSession, error));
  assert_int_equal(r.reply(out[0], second, kTcpAck).size(), 0);
  assert_int_equal(r.drops(Drop::StaleFlow), 1);
  assert_int_equal(r.all_drops(), 1);
}

// A visitor whose session uses the QUIC framing (docs/protocol.md "QUIC framing"): its short-header packets to the
// gateway's QUIC port, sealed here as the visitor's QUIC stack would (its 1-RTT key, header protection, every
// packet-number length), are opened on the fast path and go on like a relay frame's inner packet: a new flow to
// svc.example, through the tunnel's agents. Then what must not pass: the same packet again (replay), a tampered
// one, another DCID tail, a packet with a frame the fast path leaves to the slow path, a packet in the other key
// phase that the next generation's key does not open (sealed with the current key: no key update, the generation
// stays), and a long header (to the kernel path, which this rig's ports lack: counted as no_entry_point).
static void quic_visitor(void**) {
  Rig r;
  constexpr uint32_t kQuicVisitor = 11;
  constexpr uint16_t kQuicPort = 443;
  QuicSessionSpec q;
  q.rx_secret.assign(32, 0x31);  // the visitor's (client's) 1-RTT secret
  q.tx_secret.assign(32, 0x53);
  // Every connection ID dpctld issued (the agent may switch to any, RFC 9000 5.1.1): dpgw accepts each tail.
  q.cid_tails = {{0xa1, 0xb2, 0xc3, 0xd4}, {0x0e, 0x1f, 0x20, 0x31}, {0x42, 0x53, 0x64, 0x75}};
  q.peer_cid = {0, 0, 0, 7, 1, 2, 3, 4};
  SessionSpec spec;
  spec.index = kQuicVisitor;
  spec.tunnel = r.tunnel("a").id;
  spec.base_secret = key_of(11);
  spec.visitor = true;
  spec.quic = q;
  std::string error;
  assert_true(r.gw->state().add_session(spec, error));

  // The visitor's side: its key from its secret, its codec sending to dpgw's connection ID.
  QuicKdf kdf;
  QuicPacketKeys visitor_keys;
  assert_true(kdf.packet_keys(QuicCipher::Aes128Gcm, q.rx_secret, visitor_keys));
  OpensslAead eng;
  auto seal_packet = [&](uint64_t pn, uint32_t pn_len, const std::vector<uint8_t>& packet, std::string_view name,
                         std::array<uint8_t, 4> tail, uint8_t extra_frame = 0, const QuicPacketKeys* other = nullptr,
                         uint32_t index = 0) {  // 0: the first QUIC visitor's
    const QuicPacketKeys& keys = other ? *other : visitor_keys;
    QuicDatagramCodec::Config c;
    const uint32_t to = index ? index : kQuicVisitor;  // dpgw's connection ID: its session index | tail
    c.tx_dcid = {uint8_t(to >> 24), uint8_t(to >> 16), uint8_t(to >> 8), uint8_t(to), tail[0], tail[1], tail[2], tail[3]};
    c.tx_hp = c.rx_hp = keys.hp_bytes();
    c.tx_pn_len = pn_len;
    QuicDatagramCodec codec(c);
    const FrameLayout& l = codec.layout();
    const uint32_t trailer = uint32_t(name.size() + 1);
    const uint32_t enc = l.encrypted_len(uint32_t(packet.size()) + trailer) + (extra_frame ? 1 : 0);
    std::vector<uint8_t> f(l.frame_len(enc));
    uint32_t at = 0;
    if (extra_frame) f[l.header_len] = extra_frame, at = 1;  // a frame in front of the DATAGRAM
    codec.write_inner(f.data() + at, InnerHeader{0, packet[9], kInnerHasName});
    std::memcpy(f.data() + at + l.packet_offset(), packet.data(), packet.size());
    write_name_trailer(f.data() + at + l.packet_offset() + packet.size(), name);
    if (extra_frame) f[l.header_len] = extra_frame;
    codec.write_header(f.data(), FrameMeta{FrameType::Data, 0, to, pn});
    auto key = eng.make_key(keys.key_bytes(), AeadDirection::Encrypt, l.header_len);
    uint8_t iv[kAeadIvLen];
    quic_nonce(iv, keys.iv.data(), pn);
    const AeadOp op = codec.seal_op(f.data(), enc, iv);
    int32_t status = -1;
    key->process({&op, 1}, {&status, 1}, 0);
    assert_int_equal(status, 0);
    codec.protect(f);
    return f;
  };
  auto send = [&](const std::vector<uint8_t>& f) {
    r.inject_from_agent(f, kVisitor, 0, kQuicPort);
    r.poll();
    return r.und.drain();
  };

  uint64_t pn = 0;
  for (uint32_t pn_len = 1; pn_len <= 4; ++pn_len, ++pn) {
    const auto p = program_packet(kIpProtoUdp, uint16_t(43000 + pn_len));
    auto out = send(seal_packet(pn, pn_len, p, "svc.example", q.cid_tails[0]));
    assert_int_equal(out.size(), 1);
    PacketInfo pi;
    assert_int_equal(parse_ethernet(out[0], pi), ParseStatus::Ok);
    const uint32_t index = pi.dst_ip == kAgentA ? 1 : 3;
    const Opened o = agent_open(r.agent(index), out[0], mac_of(pi.dst_ip), pi.dst_ip);
    const PacketInfo inner = parsed(o.packet);
    assert_int_equal(inner.dst_ip, kService);
    assert_int_equal(inner.dst_port, kServicePort);
    assert_int_equal(inner.src_port, 43000 + pn_len);
    assert_true(o.inner.flags & kInnerFlowNew);
  }
  assert_int_equal(r.stats().visitor_flows.get(), 4);
  assert_int_equal(r.all_drops(), 0);
  assert_true(r.session(kQuicVisitor).peer() == (Endpoint{Ipv4{kVisitor}, kQuicPort}));

  const auto again = seal_packet(pn++, 2, program_packet(kIpProtoUdp, 43100), "svc.example", q.cid_tails[0]);
  assert_int_equal(send(again).size(), 1);
  assert_int_equal(send(again).size(), 0);
  assert_int_equal(r.drops(Drop::Replay), 1);
  auto tampered = seal_packet(pn++, 4, program_packet(kIpProtoUdp, 43101), "svc.example", q.cid_tails[0]);
  tampered[tampered.size() - 20] ^= 1;
  assert_int_equal(send(tampered).size(), 0);
  assert_int_equal(r.drops(Drop::AuthFail), 1);
  assert_int_equal(send(seal_packet(pn++, 4, program_packet(kIpProtoUdp, 43102), "svc.example", {9, 9, 9, 9})).size(), 0);
  assert_int_equal(r.drops(Drop::QuicBadConnectionId), 1);
  // HANDSHAKE_DONE (0x1e) in front of the DATAGRAM: a frame for the slow path, which gets a copy; the DATAGRAM is
  // delivered all the same. MAX_DATA (0x10) there reads the DATAGRAM's type byte as its value, and then the inner
  // header as a frame type: malformed, dropped.
  const uint64_t to_control = r.total(&WorkerStats::to_control);
  assert_int_equal(send(seal_packet(pn++, 4, program_packet(kIpProtoUdp, 43103), "svc.example", q.cid_tails[0], 0x1e)).size(), 1);
  assert_int_equal(r.total(&WorkerStats::to_control), to_control + 1);
  assert_int_equal(r.drops(Drop::QuicSlowPathFull), 0);
  r.gw->control().tick(r.dp().clock.now_ns());
  assert_int_equal(r.dp().quic_control.slow_path_rx.get(), 1);
  assert_int_equal(r.dp().quic_control.frames_rx[kQuicFrameHandshakeDone].get(), 1);
  assert_int_equal(r.dp().quic_control.frames_rx[kQuicFrameSlotDatagram].get(), 1);
  assert_int_equal(send(seal_packet(pn++, 4, program_packet(kIpProtoUdp, 43105), "svc.example", q.cid_tails[0], 0x10)).size(), 0);
  assert_int_equal(r.drops(Drop::FrameMalformed), 1);
  auto next_phase = seal_packet(pn++, 4, program_packet(kIpProtoUdp, 43104), "svc.example", q.cid_tails[0]);
  next_phase[0] ^= kQuicKeyPhaseBit;  // header protection is an XOR: the gateway reads the other key phase
  assert_int_equal(send(next_phase).size(), 0);
  assert_int_equal(r.drops(Drop::AuthFail), 2);  // tried with generation 1's key, which did not open it
  assert_int_equal(r.session(kQuicVisitor).quic->rx_generation.load(), 0);
  std::vector<uint8_t> long_header(1200, 0);
  long_header[0] = 0xc0;  // a long-header Initial: for dpctld, through the kernel path
  long_header[4] = 1;
  assert_int_equal(send(long_header).size(), 0);
  assert_int_equal(r.drops(Drop::NoEntryPoint), 1);
  assert_int_equal(r.all_drops(), 6);
  // Legitimate traffic goes on, to any connection ID issued (the agent switched); a tail of another connection,
  // or one that differs in one bit from an issued one, is refused before any AES.
  assert_int_equal(send(seal_packet(pn++, 4, program_packet(kIpProtoUdp, 43110), "svc.example", q.cid_tails[0])).size(), 1);
  assert_int_equal(send(seal_packet(pn++, 4, program_packet(kIpProtoUdp, 43111), "svc.example", q.cid_tails[2])).size(), 1);
  assert_int_equal(send(seal_packet(pn++, 2, program_packet(kIpProtoUdp, 43112), "svc.example", q.cid_tails[1])).size(), 1);
  assert_int_equal(send(seal_packet(pn++, 4, program_packet(kIpProtoUdp, 43113), "svc.example", {0x42, 0x53, 0x64, 0x74})).size(), 0);
  assert_int_equal(r.drops(Drop::QuicBadConnectionId), 2);
  assert_int_equal(send(seal_packet(pn++, 4, program_packet(kIpProtoUdp, 43114), "svc.example", q.cid_tails[0])).size(), 1);
  assert_int_equal(r.all_drops(), 7);

  // Two QUIC sessions in one burst: the header-protection masks are computed per session's key.
  QuicSessionSpec q2 = q;
  q2.rx_secret.assign(32, 0x77);
  q2.cid_tails = {{5, 6, 7, 8}};
  spec.index = kQuicVisitor + 1;
  spec.base_secret = key_of(12);
  spec.quic = q2;
  assert_true(r.gw->state().add_session(spec, error));
  QuicPacketKeys keys2;
  assert_true(kdf.packet_keys(QuicCipher::Aes128Gcm, q2.rx_secret, keys2));
  uint64_t pn2 = 0;
  for (int k = 0; k < 6; ++k) {
    const auto packet = program_packet(kIpProtoUdp, uint16_t(43200 + k));
    r.inject_from_agent(k % 2 ? seal_packet(pn2++, 2, packet, "svc.example", q2.cid_tails[0], 0, &keys2, kQuicVisitor + 1)
                              : seal_packet(pn++, 3, packet, "svc.example", q.cid_tails[0]),
                        kVisitor, 0, kQuicPort);
  }
  r.poll();
  assert_int_equal(r.und.drain().size(), 6);
  assert_int_equal(r.all_drops(), 7);  // none more
}

// A QUIC session reaches dpgw only with SessionAdd (its hand-over): a sync (dpctld reconnecting, or a new dpgw after a
// restart) does not create one, since an earlier dpgw may have sent any packet number under its keys; one this dpgw
// holds stays as it is, its transmit packet numbers going on from where they were.
static void quic_session_only_by_hand_over(void**) {
  Rig r;
  QuicSessionSpec q;
  q.rx_secret.assign(32, 0x31);
  q.tx_secret.assign(32, 0x53);
  q.cid_tails = {{1, 2, 3, 4}};
  q.peer_cid = {0, 0, 0, 7, 1, 2, 3, 4};
  SessionSpec spec;
  spec.index = 40000;
  spec.tunnel = r.tunnel("a").id;
  spec.base_secret = key_of(40);
  spec.quic = q;
  std::string error;
  assert_true(r.gw->state().sync({}, {spec}, {}, error));
  assert_int_equal(r.gw->state().sessions().count(spec.index), 0);
  assert_true(r.gw->state().add_session(spec, error));
  TunnelSession* s = r.gw->state().sessions().at(spec.index);
  s->tx_counter.fetch_add(1000);
  assert_true(r.gw->state().sync({}, {spec}, {}, error));
  assert_ptr_equal(r.gw->state().sessions().at(spec.index), s);
  assert_int_equal(s->tx_counter.load(), q.first_tx_pn + 1000);
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(visitor_reaches_a_rule_of_its_own_tunnel),
      cmocka_unit_test(only_its_own_tunnels_rules_private_ones_included),
      cmocka_unit_test(direct_mode),
      cmocka_unit_test(flow_moves_when_its_agent_goes_quiet),
      cmocka_unit_test(quic_visitor),
      cmocka_unit_test(quic_session_only_by_hand_over),
  };
  return run_pipeline_tests("test_visitors", tests, sizeof tests / sizeof tests[0]);
}
