// MASQUE clients on dpgw's fast path (docs/masque.md "Datagrams on the fast path", dataplane/masque/) on the real
// Worker (tests/support/pipeline_rig.hpp): session 22 is a client dpctld handed over after a CONNECT-UDP request on
// stream 4 to 192.168.50.5:53 through tunnel a (a visitor of it, with the QUIC connection's keys and the client's
// max_datagram_frame_size 1200). The client's packets are sealed, and what dpgw sends it opened, by the tests' own
// QUIC peer (tests/support/quic_peer.hpp); the HTTP Datagrams are written and read here byte by byte (RFC 9297 2.1,
// RFC 9298 4), not with proto/masque_datagram.hpp.
//  - an HTTP Datagram (Quarter Stream ID 1, context 0) reaches tunnel a's agent as an IPv4/UDP packet from the
//    client's handed-over address and port to the target, carrying exactly the payload, valid checksums, a new flow;
//    the next continues that flow; the target's reply comes back to the client from the QUIC port as one DATAGRAM
//    frame holding Quarter Stream ID 1, context 0 and exactly the reply's payload;
//  - another stream's datagram (masque_unknown_stream), a context ID other than 0 (masque_context), an empty one and
//    a Quarter Stream ID over 2^60 - 1 (masque_malformed) go nowhere, and so does a relay frame for the session
//    (a QUIC session has no relay keys);
//  - a reply whose DATAGRAM frame would pass the client's max_datagram_frame_size, or (on a smaller link) the MTU, is
//    dropped masque_too_large, one byte less goes whole; an agent's ICMP error about the target is counted
//    masque_target_unreachable and sent nowhere;
//  - with two workers the reply reaches the flow's worker from the agent's session's worker.
// Session 40022 is an HTTP/2 or HTTP/1.1 client whose capsules dpctld carries (request id, no QUIC connection;
// docs/masque.md "HTTP/2 and HTTP/1.1 fallback"), driven through the control lcore's MasqueCapsules and
// handle_control_line:
//  - payloads from dpctld reach the agent as IPv4/UDP packets of one flow from the gateway's address and the session
//    index to the target, exactly the payloads; the target's replies reach the control ring with the session's index,
//    serial and request id, and leave as masque_datagrams lines (consecutive ones of a session in one line);
//  - messages naming another request id, no session or the HTTP/3 client are dropped whole (masque_capsule_unknown),
//    a payload one byte over an mbuf's room masque_capsule_too_large, one whose session was replaced meanwhile at
//    the worker; replies with no controller or too much queued are counted;
//  - a relay frame naming the session is dropped masque_capsule_frame, a QUIC packet naming it opens nothing;
//  - masque_datagrams on the control socket: taken from the controller under its epoch and never answered, refused
//    from anyone else; undecodable ones counted, not answered.
#include <rte_ring.h>

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/line_server.hpp"
#include "crypto/quic_keys.hpp"
#include "dataplane/main_lcore/control_commands.hpp"
#include "dataplane/main_lcore/masque_capsules.hpp"
#include "packet/checksum.hpp"
#include "packet/headers.hpp"
#include "packet/ipv4_fragment.hpp"
#include "packet/parser.hpp"
#include "tests/support/pipeline_rig.hpp"
#include "tests/support/quic_peer.hpp"

using namespace dptun;
using namespace dptun::test;

namespace {

constexpr uint32_t kMasqueSession = 22;
constexpr uint32_t kMasqueClient = 0x0a630107;  // 10.99.1.7, on the public side
constexpr uint16_t kClientPort = 51234;
constexpr uint16_t kQuicPort = 443;             // dpgw.quic_port (default)
constexpr uint32_t kTarget = 0xc0a83205;        // 192.168.50.5:53, the route's target
constexpr uint16_t kTargetPort = 53;
constexpr uint64_t kStream = 4;                 // the request stream: Quarter Stream ID 1
constexpr uint64_t kMaxDatagramFrame = 1200;    // the client's max_datagram_frame_size
const std::array<uint8_t, 4> kTail = {0x5e, 0x6f, 0x70, 0x81};
const std::array<uint8_t, 8> kClientCid = {0x3c, 0x41, 0x9a, 0x07, 0xd2, 0x18, 0xe5, 0x6b};
constexpr uint32_t kCapsuleSession = 40022;     // a client whose capsules dpctld carries (an index dpctld gives)
constexpr uint64_t kRequestId = 0x1234567890;   // dpctld's id of its request

// A payload whose bytes tell where they are.
std::vector<uint8_t> payload_of(size_t n, uint8_t seed) {
  std::vector<uint8_t> p(n);
  for (size_t i = 0; i < n; ++i) p[i] = uint8_t(seed + i * 13);
  return p;
}

// A DATAGRAM frame (type 0x30, to the packet's end) whose data is `head` then `payload`.
std::vector<uint8_t> datagram_frame(std::vector<uint8_t> head, const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> f(1 + head.size() + payload.size());
  f[0] = 0x30;
  for (size_t i = 0; i < head.size(); ++i) f[1 + i] = head[i];
  for (size_t i = 0; i < payload.size(); ++i) f[1 + head.size() + i] = payload[i];
  return f;
}

struct Rig : PipelineRig {
  OpensslAead eng;
  QuicPacketKeys client_keys, gw_keys;
  uint64_t client_pn = 0;

  explicit Rig(uint16_t workers = 1) : PipelineRig(workers) {
    QuicSessionSpec q;
    q.rx_secret.assign(32, 0x61);  // the client's 1-RTT secret
    q.tx_secret.assign(32, 0x72);
    q.cid_tails = {kTail};
    q.peer_cid = kClientCid;
    q.path = Endpoint{Ipv4{kMasqueClient}, kClientPort};
    q.max_datagram_frame_size = kMaxDatagramFrame;
    SessionSpec s;
    s.index = kMasqueSession;
    s.tunnel = tunnel("a").id;
    s.base_secret = key_of(22);
    s.visitor = true;
    s.quic = q;
    s.masque = MasqueSpec{kStream, Endpoint{Ipv4{kTarget}, kTargetPort}};
    std::string error;
    if (!gw->state().add_session(s, error)) fail_msg("add_session: %s", error.c_str());
    dp().neighbors.update(0, kMasqueClient, mac_of(kMasqueClient));
    QuicKdf kdf;
    assert_true(kdf.packet_keys(q.cipher, q.rx_secret, client_keys));
    assert_true(kdf.packet_keys(q.cipher, q.tx_secret, gw_keys));
  }

  // The client's packet with `frames`, to dpgw's QUIC port; returns what dpgw sent the underlay (to agents).
  std::vector<std::vector<uint8_t>> from_client_quic(std::vector<uint8_t> frames) {
    inject_from_agent(quic_seal(std::move(frames), client_keys, kMasqueSession, kTail, client_pn++, false, eng),
                      kMasqueClient, 0, kQuicPort, kClientPort);
    poll();
    return und.drain();
  }
  // What dpgw sent the client (every frame on the public port must be a QUIC packet to it): its DATAGRAM packets'
  // frames; ACK-only packets are counted in `acks`.
  std::vector<std::vector<uint8_t>> to_client(size_t* acks = nullptr) {
    std::vector<std::vector<uint8_t>> datagrams;
    for (const auto& f : pub.drain()) {
      assert_memory_equal(f.data(), mac_of(kMasqueClient).data(), 6);
      QuicPacket p;
      assert_true(quic_open(f, gw_keys, p));
      assert_int_equal(p.dst_ip, kMasqueClient);
      assert_int_equal(p.src_port, kQuicPort);
      assert_int_equal(p.dst_port, kClientPort);
      assert_memory_equal(p.dcid.data(), kClientCid.data(), 8);
      assert_true(ipv4_checksums_ok(f.data() + 14));
      assert_false(p.payload.empty());
      if (p.payload[0] == 0x02) {
        if (acks) ++*acks;
        continue;
      }
      datagrams.push_back(p.payload);
    }
    return datagrams;
  }
  // Session 40022: an HTTP/2 or HTTP/1.1 client whose capsules dpctld carries (request id kRequestId, no QUIC
  // connection), to the same target through tunnel a.
  void add_capsule_session(uint64_t request_id = kRequestId) {
    SessionSpec s;
    s.index = kCapsuleSession;
    s.tunnel = tunnel("a").id;
    s.base_secret = key_of(23);
    s.visitor = true;
    s.masque = MasqueSpec{0, Endpoint{Ipv4{kTarget}, kTargetPort}, request_id};
    std::string error;
    if (!gw->state().add_session(s, error)) fail_msg("add_session: %s", error.c_str());
  }
  uint64_t masque_rx() { return total(&WorkerStats::masque_datagrams_rx); }
  uint64_t masque_tx() { return total(&WorkerStats::masque_datagrams_tx); }
};

// The inner packet of the one frame `out` holds, as tunnel a's agent (session 1) opens it.
Opened at_agent(Rig& r, const std::vector<std::vector<uint8_t>>& out) {
  assert_int_equal(out.size(), 1);
  return agent_open(r.agent(1), out[0], kAgentAMac, kAgentA);
}

// Checks `o` is the client's UDP payload `payload` to the target, and returns its parsed headers.
PacketInfo check_to_target(const Opened& o, const std::vector<uint8_t>& payload) {
  PacketInfo pi;
  assert_int_equal(parse_ip(o.packet, pi), ParseStatus::Ok);
  assert_int_equal(o.inner.proto, kIpProtoUdp);
  assert_int_equal(pi.l4_proto, kIpProtoUdp);
  assert_int_equal(pi.src_ip, kMasqueClient);  // the client's handed-over address and port (docs/masque.md)
  assert_int_equal(pi.src_port, kClientPort);
  assert_int_equal(pi.dst_ip, kTarget);
  assert_int_equal(pi.dst_port, kTargetPort);
  assert_int_equal(pi.ip_total_len, o.packet.size());
  assert_int_equal(pi.l4_len, 8 + payload.size());
  assert_true(ipv4_checksums_ok(o.packet.data()));
  if (!payload.empty()) assert_memory_equal(o.packet.data() + 28, payload.data(), payload.size());
  return pi;
}

// The target's reply to `request` with `payload`, as the agent restores it, sealed for the request's flow.
std::vector<uint8_t> reply_frame(Rig& r, const Opened& request, const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> reply = reply_to(request.packet, payload.size());
  std::memcpy(reply.data() + 28, payload.data(), payload.size());
  store_be16(reply.data() + 26, 0);
  store_be16(reply.data() + 26, ipv4_l4_checksum(kTarget, kMasqueClient, kIpProtoUdp, {reply.data() + 20, reply.size() - 20}));
  return agent_seal(r.agent(1), uint32_t(request.inner.flow_id), kIpProtoUdp, reply);
}

// The agent's ICMP error (port unreachable) about `request`, which it quotes.
std::vector<uint8_t> icmp_frame(Rig& r, const Opened& request) {
  std::vector<uint8_t> p(28 + 28);
  write_ipv4_header(p.data(), uint16_t(p.size()), 1, kIpProtoIcmp, kTarget, kMasqueClient);
  p[20] = kIcmpDestUnreachable;
  p[21] = 3;
  std::memcpy(p.data() + 28, request.packet.data(), 28);
  store_be16(p.data() + 22, csum_finish(csum_add({p.data() + 20, p.size() - 20})));
  return agent_seal(r.agent(1), uint32_t(request.inner.flow_id), kIpProtoIcmp, p);
}

// `datagram` is one DATAGRAM frame of Quarter Stream ID 1 and context 0 holding exactly `payload`.
void check_to_client(const std::vector<uint8_t>& datagram, const std::vector<uint8_t>& payload) {
  assert_int_equal(datagram.size(), 3 + payload.size());
  assert_int_equal(datagram[0], 0x30);  // DATAGRAM to the packet's end: nothing behind the payload
  assert_int_equal(datagram[1], 0x01);  // Quarter Stream ID: stream 4 / 4
  assert_int_equal(datagram[2], 0x00);  // context ID 0: a UDP payload
  if (!payload.empty()) assert_memory_equal(datagram.data() + 3, payload.data(), payload.size());
}

void round_trip(Rig& r) {
  const std::vector<uint8_t> query = payload_of(40, 1);
  const Opened o = at_agent(r, r.from_client_quic(datagram_frame({0x01, 0x00}, query)));
  check_to_target(o, query);
  assert_true(o.inner.flags & kInnerFlowNew);
  assert_int_equal(r.masque_rx(), 1);
  assert_int_equal(r.total(&WorkerStats::visitor_flows), 1);
  size_t acks = 0;
  assert_int_equal(r.to_client(&acks).size(), 0);  // the client's packet is acknowledged, nothing else
  assert_int_equal(acks, 1);

  // The target's answer: back to the client as an HTTP Datagram.
  const std::vector<uint8_t> answer = payload_of(300, 7);
  r.inject_from_agent(reply_frame(r, o, answer), kAgentA);
  r.poll();
  auto back = r.to_client();
  assert_int_equal(back.size(), 1);
  check_to_client(back[0], answer);
  assert_int_equal(r.masque_tx(), 1);

  // The next datagram continues the flow; an empty UDP payload is one too.
  const Opened o2 = at_agent(r, r.from_client_quic(datagram_frame({0x01, 0x00}, {})));
  check_to_target(o2, {});
  assert_int_equal(o2.inner.flow_id, o.inner.flow_id);
  assert_false(o2.inner.flags & kInnerFlowNew);
  assert_int_equal(r.total(&WorkerStats::visitor_flows), 1);
  assert_int_equal(r.masque_rx(), 2);
  assert_int_equal(r.all_drops(), 0);
}

}  // namespace

static void datagrams_round_trip(void**) {
  Rig r;
  round_trip(r);
}

// Two workers: session 22's packets are opened on worker 0 (22 % 2), which owns its flow; tunnel a's agent's session
// 1 on worker 1 (every packet arrives on queue 0): its reply is handed from worker 1 to the flow's worker 0.
static void datagrams_round_trip_two_workers(void**) {
  Rig r(2);
  round_trip(r);
}

static void datagrams_dropped(void**) {
  Rig r;
  const std::vector<uint8_t> p = payload_of(20, 3);
  struct Case {
    std::vector<uint8_t> head;
    Drop why;
  };
  const Case cases[] = {
      {{0x02, 0x00}, Drop::MasqueUnknownStream},  // stream 8
      {{0x00, 0x00}, Drop::MasqueUnknownStream},  // stream 0
      {{0x01, 0x01}, Drop::MasqueContext},        // context ID 1
      {{0x01, 0x40, 0x02}, Drop::MasqueContext},  // context ID 2, in two bytes
      {{0xd0, 0, 0, 0, 0, 0, 0, 0, 0x00}, Drop::MasqueMalformed},  // Quarter Stream ID 2^60: over 2^60 - 1
  };
  for (const Case& c : cases) {
    const uint64_t before = r.drops(c.why);
    assert_int_equal(r.from_client_quic(datagram_frame(c.head, p)).size(), 0);
    assert_int_equal(r.drops(c.why), before + 1);
  }
  // Cut short: an empty HTTP Datagram (a DATAGRAM with Length 0, the PADDING behind it), and a Quarter Stream ID
  // whose varint runs past the end.
  assert_int_equal(r.from_client_quic({0x31, 0x00}).size(), 0);
  assert_int_equal(r.from_client_quic(datagram_frame({0x41}, {})).size(), 0);
  assert_int_equal(r.drops(Drop::MasqueMalformed), 3);
  assert_int_equal(r.all_drops(), 7);
  assert_int_equal(r.masque_rx(), 0);
  assert_int_equal(r.total(&WorkerStats::visitor_flows), 0);
  size_t acks = 0;
  assert_int_equal(r.to_client(&acks).size(), 0);  // (each packet is acknowledged: it was authenticated)
  assert_true(acks >= 1);
  // The Quarter Stream ID 1 in a longer encoding is the session's stream all the same.
  at_agent(r, r.from_client_quic(datagram_frame({0x40, 0x01, 0x00}, p)));
  assert_int_equal(r.masque_rx(), 1);

}

// A relay frame for the session (sealed with its base secret, which dpctld and dpgw alone hold) asking for another
// address directly, before and after the control lcore's tick: a QUIC session has no relay keys (the relay key
// schedule skips it), so it opens nothing (key_unavailable) and no flow starts.
static void relay_frames_open_nothing(void**) {
  Rig r;
  FrameSpec f;
  f.src_ip = kMasqueClient;
  f.dst_ip = 0xc0a83206;
  f.src_port = 40000;
  f.dst_port = 22;
  f.proto = kIpProtoUdp;
  const std::vector<uint8_t> e = build_ipv4_frame(f);
  const std::vector<uint8_t> packet(e.begin() + 14, e.end());
  AgentSession relay(kMasqueSession, key_of(22), 16, 120'000'000'000ull, r.engine, AgentSession::CounterMode::FromZero);
  for (int k = 0; k < 2; ++k) {
    r.inject_from_agent(agent_seal(relay, 0, kIpProtoUdp, packet, kInnerDirect), kMasqueClient);
    r.poll();
    r.gw->state().maintain(r.dp().clock.now_ns(), realtime_ns());
  }
  assert_int_equal(r.und.drain().size(), 0);
  assert_int_equal(r.drops(Drop::KeyUnavailable), 2);
  assert_int_equal(r.all_drops(), 2);
  assert_int_equal(r.total(&WorkerStats::visitor_flows), 0);
}

// Replies the client's limits do not take: its max_datagram_frame_size 1200 (type, Quarter Stream ID, context ID:
// 3 bytes) carries a 1197-byte payload, not 1198; on a 600-byte link, a packet of 28 + 13 + 3 + payload + 16 bytes
// carries 540, not 541. Never fragmented: dropped masque_too_large. An ICMP error about the target ends nowhere.
static void replies_too_large_and_unreachable(void**) {
  Rig r;
  const Opened o = at_agent(r, r.from_client_quic(datagram_frame({0x01, 0x00}, payload_of(10, 5))));
  r.to_client();
  auto reply = [&](size_t n) {
    const std::vector<uint8_t> answer = payload_of(n, uint8_t(n));
    r.inject_from_agent(reply_frame(r, o, answer), kAgentA);
    r.poll();
    auto back = r.to_client();
    if (!back.empty()) {
      assert_int_equal(back.size(), 1);
      check_to_client(back[0], answer);
    }
    return back.size();
  };
  assert_int_equal(reply(kMaxDatagramFrame - 3), 1);
  assert_int_equal(r.drops(Drop::MasqueTooLarge), 0);
  assert_int_equal(reply(kMaxDatagramFrame - 2), 0);
  assert_int_equal(r.drops(Drop::MasqueTooLarge), 1);
  r.set_port_mtu(0, 600);
  assert_int_equal(reply(540), 1);
  assert_int_equal(reply(541), 0);
  assert_int_equal(r.drops(Drop::MasqueTooLarge), 2);
  assert_int_equal(r.masque_tx(), 2);

  r.inject_from_agent(icmp_frame(r, o), kAgentA);
  r.poll();
  assert_int_equal(r.pub.drain().size(), 0);
  assert_int_equal(r.drops(Drop::MasqueTargetUnreachable), 1);
  assert_int_equal(r.tunnel_stats("a").targets_unreachable.get(), 1);
  assert_int_equal(r.all_drops(), 3);
}

// --- Clients whose capsules dpctld carries (docs/masque.md "HTTP/2 and HTTP/1.1 fallback") ---

namespace {

// What the control lcore pushes to the controller's connection: every line, decoded; `answer` says what became of it.
struct Pushed {
  std::vector<MasqueDatagrams> messages;
  MasqueCapsules::Push answer = MasqueCapsules::Push::Queued;
  MasqueCapsules::Pusher pusher() {
    return [this](const std::string& line) {
      assert_true(!line.empty() && line.back() == '\n');
      assert_int_equal(std::count(line.begin(), line.end(), '\n'), 1);
      messages.push_back(decode_masque_datagrams(nlohmann::json::parse(line)));
      return answer;
    };
  }
};

// The target's reply to capsule request `request` with `payload`, as the agent restores it, sealed for its flow.
std::vector<uint8_t> capsule_reply_frame(Rig& r, const Opened& request, const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> reply = reply_to(request.packet, payload.size());
  std::memcpy(reply.data() + 28, payload.data(), payload.size());
  store_be16(reply.data() + 26, 0);
  store_be16(reply.data() + 26,
             ipv4_l4_checksum(kTarget, kGwPublic, kIpProtoUdp, {reply.data() + 20, reply.size() - 20}));
  return agent_seal(r.agent(1), uint32_t(request.inner.flow_id), kIpProtoUdp, reply);
}

// The target's reply to capsule request `request` with `payload` bytes, as dpagent sends one too big for a frame:
// IPv4 fragments of at most 1428 bytes, each sealed in a frame of the flow.
std::vector<std::vector<uint8_t>> capsule_reply_fragments(Rig& r, const Opened& request, const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> reply = reply_to(request.packet, payload.size());
  std::memcpy(reply.data() + 28, payload.data(), payload.size());
  store_be16(reply.data() + 4, 0x5a5a);  // an IPv4 id of its own
  store_be16(reply.data() + 10, 0);
  store_be16(reply.data() + 10, ipv4_header_checksum({reply.data(), 20}));
  store_be16(reply.data() + 26, 0);
  store_be16(reply.data() + 26,
             ipv4_l4_checksum(kTarget, kGwPublic, kIpProtoUdp, {reply.data() + 20, reply.size() - 20}));
  const uint32_t body = uint32_t(reply.size() - 20);
  const FragmentPlan plan = plan_ipv4_fragments(20, body, 1428);
  std::vector<std::vector<uint8_t>> frames;
  for (uint32_t k = 0; k < plan.count; ++k) {
    const uint32_t off = k * plan.chunk, len = std::min(plan.chunk, body - off);
    std::vector<uint8_t> f(60 + len);
    const size_t h = write_ipv4_fragment_header(f.data(), {reply.data(), 20}, 0x5a5a, off, len, k + 1 < plan.count);
    std::memcpy(f.data() + h, reply.data() + 20 + off, len);
    f.resize(h + len);
    frames.push_back(agent_seal(r.agent(1), uint32_t(request.inner.flow_id), kIpProtoUdp, f));
  }
  return frames;
}

// `o` is capsule session 40022's UDP payload `payload` to the target: from the gateway's first address and the session
// index as port (docs/masque.md), valid checksums.
void check_capsule_to_target(const Opened& o, const std::vector<uint8_t>& payload) {
  PacketInfo pi;
  assert_int_equal(parse_ip(o.packet, pi), ParseStatus::Ok);
  assert_int_equal(o.inner.proto, kIpProtoUdp);
  assert_int_equal(pi.l4_proto, kIpProtoUdp);
  assert_int_equal(pi.src_ip, kGwPublic);
  assert_int_equal(pi.src_port, kCapsuleSession);
  assert_int_equal(pi.dst_ip, kTarget);
  assert_int_equal(pi.dst_port, kTargetPort);
  assert_int_equal(pi.ip_total_len, o.packet.size());
  assert_int_equal(pi.l4_len, 8 + payload.size());
  assert_true(ipv4_checksums_ok(o.packet.data()));
  if (!payload.empty()) assert_memory_equal(o.packet.data() + 28, payload.data(), payload.size());
}

void capsule_round_trip(Rig& r) {
  r.add_capsule_session();
  MasqueCapsules mc(r.dp(), r.gw->state());
  MasqueControlStats& st = r.dp().masque_control;
  const std::vector<uint8_t> query = payload_of(40, 1);
  mc.inject(MasqueDatagrams{kCapsuleSession, kRequestId, {query}});
  assert_int_equal(st.rx.get(), 1);
  r.poll();
  const Opened o = at_agent(r, r.und.drain());
  check_capsule_to_target(o, query);
  assert_true(o.inner.flags & kInnerFlowNew);
  assert_int_equal(r.masque_rx(), 1);
  assert_int_equal(r.total(&WorkerStats::visitor_flows), 1);

  // The target's answer: on the control ring, its payload behind the session's index, serial and request id.
  const std::vector<uint8_t> answer = payload_of(300, 7);
  r.inject_from_agent(capsule_reply_frame(r, o, answer), kAgentA);
  r.poll();
  assert_int_equal(r.pub.drain().size(), 0);  // nothing to the network
  assert_int_equal(rte_ring_count(r.dp().masque_ring), 1);
  void* obj = nullptr;
  assert_int_equal(rte_ring_sc_dequeue(r.dp().masque_ring, &obj), 0);
  rte_mbuf* m = static_cast<rte_mbuf*>(obj);
  MasqueReplyHeader h;
  assert_int_equal(m->nb_segs, 1);
  assert_int_equal(m->data_len, sizeof h + answer.size());
  std::memcpy(&h, rte_pktmbuf_mtod(m, const void*), sizeof h);
  assert_int_equal(h.index, kCapsuleSession);
  assert_int_equal(h.serial, r.session(kCapsuleSession).serial);
  assert_int_equal(h.request_id, kRequestId);
  assert_memory_equal(rte_pktmbuf_mtod_offset(m, const uint8_t*, sizeof h), answer.data(), answer.size());
  assert_int_equal(rte_ring_enqueue(r.dp().masque_ring, m), 0);  // (back, for drain)
  assert_int_equal(r.masque_tx(), 1);

  // Drained into one masque_datagrams line to the controller.
  Pushed pushed;
  assert_int_equal(mc.drain(pushed.pusher()), 1);
  assert_int_equal(pushed.messages.size(), 1);
  assert_int_equal(pushed.messages[0].index, kCapsuleSession);
  assert_int_equal(pushed.messages[0].request_id, kRequestId);
  assert_int_equal(pushed.messages[0].datagrams.size(), 1);
  assert_true(pushed.messages[0].datagrams[0] == answer);
  assert_int_equal(st.tx.get(), 1);

  // Three more payloads in one message continue the flow, in order (an empty one too); their answers leave in one
  // message, in order.
  const std::vector<std::vector<uint8_t>> more = {payload_of(1, 2), {}, payload_of(1400, 3)};
  mc.inject(MasqueDatagrams{kCapsuleSession, kRequestId, more});
  r.poll();
  const auto out = r.und.drain();
  assert_int_equal(out.size(), 3);
  std::vector<std::vector<uint8_t>> answers;
  for (size_t i = 0; i < out.size(); ++i) {
    const Opened oi = agent_open(r.agent(1), out[i], kAgentAMac, kAgentA);
    check_capsule_to_target(oi, more[i]);
    assert_int_equal(oi.inner.flow_id, o.inner.flow_id);
    answers.push_back(payload_of(10 + i, uint8_t(i)));
    r.inject_from_agent(capsule_reply_frame(r, oi, answers.back()), kAgentA);
  }
  r.poll();
  assert_int_equal(mc.drain(pushed.pusher()), 3);
  assert_int_equal(pushed.messages.size(), 2);
  assert_true(pushed.messages[1].datagrams == answers);
  // A reply bigger than a frame (and than one mbuf), which the agent sends in fragments: whole, read across the
  // reassembled datagram's buffers.
  const std::vector<uint8_t> big = payload_of(9000, 11);
  const auto frags = capsule_reply_fragments(r, o, big);
  assert_true(frags.size() >= 7);
  for (auto it = frags.rbegin(); it != frags.rend(); ++it) r.inject_from_agent(*it, kAgentA);  // (last first)
  r.poll();
  assert_int_equal(mc.drain(pushed.pusher()), 1);
  assert_int_equal(pushed.messages.size(), 3);
  assert_int_equal(pushed.messages[2].datagrams.size(), 1);
  assert_true(pushed.messages[2].datagrams[0] == big);
  assert_int_equal(st.rx.get(), 4);
  assert_int_equal(st.tx.get(), 5);
  assert_int_equal(r.masque_rx(), 4);
  assert_int_equal(r.masque_tx(), 5);
  assert_int_equal(r.total(&WorkerStats::visitor_flows), 1);
  assert_int_equal(r.all_drops(), 0);
  assert_int_equal(st.unknown.get() + st.too_large.get() + st.send_full.get() + st.backlog.get() +
                       st.no_controller.get() + st.malformed.get(),
                   0);
}

}  // namespace

static void capsule_datagrams_round_trip(void**) {
  Rig r;
  capsule_round_trip(r);
}

// Two workers: session 40022's payloads go to worker 0 (40022 % 2), which owns its flow; the reply reaches it from agent
// session 1's worker.
static void capsule_datagrams_round_trip_two_workers(void**) {
  Rig r(2);
  capsule_round_trip(r);
}

// Messages naming no capsule session (gone, never there, the HTTP/3 client's), or another request id, are dropped
// whole; a payload whose packet does not fit one mbuf is dropped, one byte less goes; a payload whose session went
// (or whose index serves another session) before the worker took it is dropped there.
static void capsule_datagrams_dropped(void**) {
  Rig r;
  r.add_capsule_session();
  MasqueCapsules mc(r.dp(), r.gw->state());
  MasqueControlStats& st = r.dp().masque_control;
  const std::vector<uint8_t> p = payload_of(20, 3);
  mc.inject(MasqueDatagrams{kCapsuleSession, kRequestId + 1, {p, p}});
  mc.inject(MasqueDatagrams{kCapsuleSession + 1, kRequestId, {p}});
  mc.inject(MasqueDatagrams{kMasqueSession, kRequestId, {p}});
  assert_int_equal(st.unknown.get(), 4);
  assert_int_equal(st.rx.get(), 0);
  r.poll();
  assert_int_equal(r.und.drain().size(), 0);

  const size_t fits = rte_pktmbuf_data_room_size(r.dp().pool) - RTE_PKTMBUF_HEADROOM - 14 - 28;
  mc.inject(MasqueDatagrams{kCapsuleSession, kRequestId, {std::vector<uint8_t>(fits + 1, 1)}});
  assert_int_equal(st.too_large.get(), 1);
  assert_int_equal(st.rx.get(), 0);
  mc.inject(MasqueDatagrams{kCapsuleSession, kRequestId, {std::vector<uint8_t>(fits, 1)}});
  assert_int_equal(st.rx.get(), 1);
  r.poll();
  assert_true(r.und.drain().size() >= 1);  // (in inner fragments: the underlay's MTU is smaller)
  assert_int_equal(r.masque_rx(), 1);

  // Handed to the worker, then the session is replaced (a new serial) before it polls.
  mc.inject(MasqueDatagrams{kCapsuleSession, kRequestId, {p}});
  std::string error;
  assert_true(r.gw->state().remove_session(kCapsuleSession, error));
  r.add_capsule_session();
  r.poll();
  assert_int_equal(r.drops(Drop::UnknownSession), 1);
  assert_int_equal(r.masque_rx(), 1);
  assert_int_equal(r.und.drain().size(), 0);

  // The controller is gone, or its connection holds too much already: the replies are dropped, counted.
  mc.inject(MasqueDatagrams{kCapsuleSession, kRequestId, {p}});
  r.poll();
  const Opened o = at_agent(r, r.und.drain());
  for (MasqueCapsules::Push answer : {MasqueCapsules::Push::NoController, MasqueCapsules::Push::Backlog}) {
    r.inject_from_agent(capsule_reply_frame(r, o, p), kAgentA);
    r.inject_from_agent(capsule_reply_frame(r, o, p), kAgentA);
    r.poll();
    Pushed pushed;
    pushed.answer = answer;
    assert_int_equal(mc.drain(pushed.pusher()), 2);
  }
  assert_int_equal(st.no_controller.get(), 2);
  assert_int_equal(st.backlog.get(), 2);
  assert_int_equal(st.tx.get(), 0);
  assert_int_equal(r.all_drops(), 1);
}

// Nothing of a capsule client comes from the network: a relay frame naming its index, sealed with its session's
// secret, is dropped masque_capsule_frame (before and after the control lcore's key maintenance), and a QUIC packet
// to its index finds no QUIC connection (the port is closed to it); no flow starts.
static void capsule_session_takes_no_frames(void**) {
  Rig r;
  r.add_capsule_session();
  FrameSpec f;
  f.src_ip = kMasqueClient;
  f.dst_ip = kTarget;
  f.src_port = 40000;
  f.dst_port = kTargetPort;
  f.proto = kIpProtoUdp;
  const std::vector<uint8_t> e = build_ipv4_frame(f);
  const std::vector<uint8_t> packet(e.begin() + 14, e.end());
  AgentSession relay(kCapsuleSession, key_of(23), 16, 120'000'000'000ull, r.engine, AgentSession::CounterMode::FromZero);
  for (int k = 0; k < 2; ++k) {
    r.inject_from_agent(agent_seal(relay, 0, kIpProtoUdp, packet, kInnerDirect), kMasqueClient);
    r.poll();
    r.gw->state().maintain(r.dp().clock.now_ns(), realtime_ns());
  }
  assert_int_equal(r.drops(Drop::MasqueCapsuleFrame), 2);
  assert_int_equal(r.all_drops(), 2);
  r.inject_from_agent(quic_seal(datagram_frame({0x01, 0x00}, packet), r.client_keys, kCapsuleSession, kTail,
                                r.client_pn++, false, r.eng),
                      kMasqueClient, 0, kQuicPort, kClientPort);
  r.poll();
  r.pub.drain();
  assert_int_equal(r.und.drain().size(), 0);
  assert_int_equal(r.masque_rx(), 0);
  assert_int_equal(r.total(&WorkerStats::visitor_flows), 0);
  assert_int_equal(rte_ring_count(r.dp().masque_ring), 0);
}

// GatewayState takes a capsule session only as one: the visitor role, no QUIC connection, stream 0, an IPv4 target.
static void capsule_session_refusals(void**) {
  Rig r;
  auto spec = [&] {
    SessionSpec s;
    s.index = kCapsuleSession;
    s.tunnel = r.tunnel("a").id;
    s.base_secret = key_of(23);
    s.visitor = true;
    s.masque = MasqueSpec{0, Endpoint{Ipv4{kTarget}, kTargetPort}, kRequestId};
    return s;
  };
  std::string error;
  SessionSpec bad = spec();
  bad.visitor = false;
  assert_false(r.gw->state().add_session(bad, error));
  assert_non_null(strstr(error.c_str(), "MASQUE"));
  bad = spec();
  bad.masque->stream_id = 4;
  assert_false(r.gw->state().add_session(bad, error));
  bad = spec();
  bad.quic = QuicSessionSpec{};
  bad.quic->rx_secret.assign(32, 0x61);
  bad.quic->tx_secret.assign(32, 0x72);
  bad.quic->cid_tails = {kTail};
  bad.quic->path = Endpoint{Ipv4{kMasqueClient}, kClientPort};
  assert_false(r.gw->state().add_session(bad, error));
  bad = spec();
  bad.masque->target = Endpoint{Ipv4{kTarget}, 0};
  assert_false(r.gw->state().add_session(bad, error));
  assert_null(r.dp().sessions.find(kCapsuleSession));
  assert_true(r.gw->state().add_session(spec(), error));
  const TunnelSession& s = r.session(kCapsuleSession);
  assert_true(s.masque && !s.quic && s.visitor);
  assert_int_equal(s.masque->request_id, kRequestId);
  assert_int_equal(s.masque->source.ip.v4(), kGwPublic);
  assert_int_equal(s.masque->source.port, kCapsuleSession);
  for (int k = 0; k < KeySlots::kSlots; ++k) assert_null(s.rx_keys.slot[k].load());  // no relay keys
}

// masque_datagrams on the control socket (handle_control_line): from the controller, under its epoch, the payloads
// go to the worker and nothing is answered (an empty reply writes nothing); a message that does not decode is
// counted and not answered either; from another connection, or naming another epoch, it is refused as a change is.
static void capsule_control_messages(void**) {
  Rig r;
  r.add_capsule_session();
  MasqueCapsules mc(r.dp(), r.gw->state());
  LineServer server;  // (not listening: no connection is open, which only hello asks about)
  Controller c;
  c.conn = 5;
  c.epoch = 3;
  c.who = "dpctld pid 1 on test";
  ControlContext ctx{r.dp(), r.gw->state(), c, server, r.dp().clock.now_ns(), nullptr, &mc};
  MasqueControlStats& st = r.dp().masque_control;
  const std::vector<uint8_t> p = payload_of(30, 9);
  const std::string line = encode_masque_datagrams(MasqueDatagrams{kCapsuleSession, kRequestId, {p}}).dump();
  bool close = false;
  assert_string_equal(handle_control_line(line, close, 5, ctx).c_str(), "");
  assert_false(close);
  assert_int_equal(st.rx.get(), 1);
  r.poll();
  check_capsule_to_target(at_agent(r, r.und.drain()), p);
  nlohmann::json with_epoch = nlohmann::json::parse(line);
  with_epoch["epoch"] = 3;
  assert_string_equal(handle_control_line(with_epoch.dump(), close, 5, ctx).c_str(), "");
  assert_int_equal(st.rx.get(), 2);

  for (const char* bad : {R"({"type":"masque_datagrams","index":23,"request_id":1,"datagrams":["AQID"]})",  // static
                          R"({"type":"masque_datagrams","index":40000,"request_id":1,"datagrams":["AQI"]})",
                          R"({"type":"masque_datagrams","index":40000,"request_id":0,"datagrams":["AQID"]})"}) {
    assert_string_equal(handle_control_line(bad, close, 5, ctx).c_str(), "");
    assert_false(close);
  }
  assert_int_equal(st.malformed.get(), 3);
  assert_int_equal(st.rx.get(), 2);

  std::string reply = handle_control_line(line, close, 6, ctx);  // another connection
  assert_true(close);
  assert_non_null(strstr(reply.c_str(), "\"error\""));
  assert_non_null(strstr(reply.c_str(), "masque_datagrams"));
  close = false;
  with_epoch["epoch"] = 2;
  reply = handle_control_line(with_epoch.dump(), close, 5, ctx);  // an older epoch
  assert_true(close);
  assert_non_null(strstr(reply.c_str(), "\"error\""));
  assert_int_equal(st.rx.get(), 2);
  assert_int_equal(st.unknown.get(), 0);
}

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(datagrams_round_trip),
      cmocka_unit_test(datagrams_round_trip_two_workers),
      cmocka_unit_test(datagrams_dropped),
      cmocka_unit_test(relay_frames_open_nothing),
      cmocka_unit_test(replies_too_large_and_unreachable),
      cmocka_unit_test(capsule_datagrams_round_trip),
      cmocka_unit_test(capsule_datagrams_round_trip_two_workers),
      cmocka_unit_test(capsule_datagrams_dropped),
      cmocka_unit_test(capsule_session_takes_no_frames),
      cmocka_unit_test(capsule_session_refusals),
      cmocka_unit_test(capsule_control_messages),
  };
  return run_pipeline_tests("test_masque", tests, sizeof tests / sizeof tests[0]);
}
