// dpgw's real Gateway and Workers in one process, on two ring-backed ports, with dpagent's session crypto
// (AgentSession) at the far end of every tunnel session: the rig of the pipeline tests (test_gateway_pipeline,
// test_hostname_binding, test_quic_holds, test_visitors). Packets go in as Ethernet frames on a port and come out
// as the frames the gateway sent; nothing of the gateway is replaced. Needs an EAL (run_pipeline_tests).
//
//   public port  "public"   10.99.1.1/24: clients (10.99.1.2), visitors
//   underlay     "underlay" 10.99.2.1/24: agents (tunnel a: session 1 at 10.99.2.2; tunnel b: session 2 at 10.99.2.3)
#pragma once
#include <rte_eal.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tests/support/eal_tests.hpp"
#include "tests/unit/cmocka.hpp"
#include "tests/unit/packet_builder.hpp"

#include "agent/agent_session.hpp"
#include "common/clock.hpp"
#include "common/log.hpp"
#include "crypto/aead_openssl.hpp"
#include "dataplane/main_lcore/gateway.hpp"
#include "packet/parser.hpp"
#include "tests/support/ring_port.hpp"

namespace dptun::test {

constexpr uint32_t kGwPublic = 0x0a630101;    // 10.99.1.1
constexpr uint32_t kClient = 0x0a630102;      // 10.99.1.2
constexpr uint32_t kGwUnderlay = 0x0a630201;  // 10.99.2.1
constexpr uint32_t kAgentA = 0x0a630202;      // 10.99.2.2
constexpr uint32_t kAgentB = 0x0a630203;      // 10.99.2.3
constexpr uint16_t kTunnelPort = 51900;

// Every host of the rig has the MAC 02:d0:<its IPv4 address>.
inline MacAddr mac_of(uint32_t ip) {
  return MacAddr{0x02, 0xd0, uint8_t(ip >> 24), uint8_t(ip >> 16), uint8_t(ip >> 8), uint8_t(ip)};
}
const MacAddr kClientMac = mac_of(kClient);
const MacAddr kAgentAMac = mac_of(kAgentA);
const MacAddr kAgentBMac = mac_of(kAgentB);

inline std::vector<uint8_t> key_of(uint8_t seed) { return std::vector<uint8_t>(32, seed); }

// A client's UDP datagram to the gateway's public address (`frag`: the IPv4 fragment field, 0 for a whole one).
inline std::vector<uint8_t> client_udp(uint16_t sport, uint16_t dport, size_t payload, uint16_t frag = 0) {
  FrameSpec s;
  s.src_ip = kClient;
  s.dst_ip = kGwPublic;
  s.src_port = sport;
  s.dst_port = dport;
  s.proto = kIpProtoUdp;
  s.payload = payload;
  s.frag = frag;
  return build_ipv4_frame(s);
}

// A frame opened as dpagent opens it.
struct Opened {
  FrameMeta meta;
  InnerHeader inner;
  std::vector<uint8_t> packet;  // the inner IP packet (a name trailer, if any, cut off into `name`)
  std::string name;
};

// What dpagent does with a frame from the gateway: check the outer headers (to `peer_ip` at `peer_mac` from the
// gateway's `gw_ip`, tunnel port to tunnel port) and open the relay frame.
inline Opened agent_open(AgentSession& a, const std::vector<uint8_t>& frame, const MacAddr& peer_mac, uint32_t peer_ip,
                         uint32_t gw_ip = kGwUnderlay) {
  PacketInfo pi;
  assert_int_equal(parse_ethernet(frame, pi), ParseStatus::Ok);
  assert_memory_equal(frame.data(), peer_mac.data(), 6);
  assert_int_equal(pi.dst_ip, peer_ip);
  assert_int_equal(pi.src_ip, gw_ip);
  assert_int_equal(pi.l4_proto, kIpProtoUdp);
  assert_int_equal(pi.dst_port, kTunnelPort);
  assert_int_equal(pi.src_port, kTunnelPort);
  std::vector<uint8_t> relay(frame.begin() + pi.l4_offset + 8, frame.begin() + pi.l4_offset + pi.l4_len);
  Opened o;
  assert_int_equal(a.open(relay, o.meta, 0), AgentSession::OpenResult::Ok);
  if (o.meta.type == FrameType::Data) {
    std::span<uint8_t> plain;
    assert_true(a.codec().read_inner(relay, o.inner, plain));
    size_t len = plain.size();
    std::string_view name;
    if (o.inner.flags & kInnerHasName) {
      assert_true(read_name_trailer(plain, name, len));
      o.name = std::string(name);
    }
    o.packet.assign(plain.begin(), plain.begin() + long(len));
  }
  return o;
}

// What dpagent (or dpagent visit) sends: `packet` sealed as a data frame for flow `flow_id`, with `flags` and, when
// `name` is given, a name trailer.
inline std::vector<uint8_t> agent_seal(AgentSession& a, uint64_t flow_id, uint8_t proto,
                                       const std::vector<uint8_t>& packet, uint8_t flags = 0,
                                       std::string_view name = {}) {
  const size_t trailer = name.empty() ? 0 : name.size() + 1;
  const FrameLayout& l = a.codec().layout();
  const uint32_t packet_len = uint32_t(packet.size() + trailer);
  std::vector<uint8_t> relay(l.frame_len(l.encrypted_len(packet_len)));
  a.codec().write_inner(relay.data(), InnerHeader{flow_id, proto, uint8_t(flags | (trailer ? kInnerHasName : 0))});
  uint8_t* p = relay.data() + l.packet_offset();
  std::memcpy(p, packet.data(), packet.size());
  if (trailer) write_name_trailer(p + packet.size(), name);
  assert_true(a.seal(FrameType::Data, 0, relay.data(), l.encrypted_len(packet_len), 0));
  return relay;
}

// The target's reply to `request` (an inner packet the agent delivered), addressed as the agent restores it:
// `payload` bytes, TCP flags `tcp_flags` (and `tcp_options`) for TCP.
inline std::vector<uint8_t> reply_to(const std::vector<uint8_t>& request, size_t payload, uint32_t dst_override = 0,
                                     uint8_t tcp_flags = kTcpAck, std::vector<uint8_t> tcp_options = {}) {
  PacketInfo pi;
  assert_int_equal(parse_ip(request, pi), ParseStatus::Ok);
  FrameSpec s;
  s.src_ip = pi.dst_ip;
  s.dst_ip = dst_override ? dst_override : pi.src_ip;
  s.src_port = pi.dst_port;
  s.dst_port = pi.src_port;
  s.proto = pi.l4_proto;
  s.payload = payload;
  s.tcp_flags = tcp_flags;
  s.tcp_options = std::move(tcp_options);
  auto f = build_ipv4_frame(s);
  return std::vector<uint8_t>(f.begin() + 14, f.end());
}

// A tunnel session's far end: an agent of the config's static peers, or a visitor the test added.
struct Peer {
  uint32_t ip = 0;
  uint8_t port = 0;  // the rig port it is on (0 public, 1 underlay)
  std::unique_ptr<AgentSession> session;
};

// A test that fails never destroys its rig (cmocka's assertions jump out of it): the next rig deletes the gateway
// it left, and with it the gateway's mbuf pool, so that one failure does not fail every test after it.
inline Gateway*& leftover_gateway() {
  static Gateway* g = nullptr;
  return g;
}

struct PipelineRig {
  RingPort pub, und;
  std::unique_ptr<Gateway> gw;
  OpensslAead engine{1};
  std::map<uint32_t, Peer> peers;  // by session index

  ~PipelineRig() { leftover_gateway() = nullptr; }  // (gw, a member, is deleted right after)

  // The gateway of the layout above (tunnels a and b, no entry points), `workers` workers with one queue pair each
  // on both ports; `tweak` changes the config before the gateway is made (its static peers get an AgentSession
  // each, their MACs in the neighbour table).
  explicit PipelineRig(uint16_t workers = 1, const std::function<void(GatewayConfig&)>& tweak = {}) {
    static int n = 0;
    ++n;
    pub = make_ring_port("pub" + std::to_string(n), workers);
    und = make_ring_port("und" + std::to_string(n), workers);
    GatewayConfig cfg;
    cfg.workers = workers;
    cfg.mbufs = 4095;
    cfg.reassembly.fragments = 4095 / (4 * workers);
    cfg.ports.push_back(PortConfig{"public", pub.name, Ipv4Prefix{Ipv4{kGwPublic}, 24}, {}, 0, 256, 256, ""});
    cfg.ports.push_back(PortConfig{"underlay", und.name, Ipv4Prefix{Ipv4{kGwUnderlay}, 24}, {}, 0, 256, 256, ""});
    cfg.flow.table_size = 1024;
    for (int t = 0; t < 2; ++t) {
      TunnelConfig tc;
      tc.id = Uuid::random_v4();
      tc.name = t ? "b" : "a";
      tc.peers.push_back(StaticPeerConfig{uint32_t(t + 1), key_of(uint8_t(t + 1)),
                                          Endpoint{Ipv4{t ? kAgentB : kAgentA}, kTunnelPort}, 1});
      cfg.tunnels.push_back(tc);
    }
    if (tweak) tweak(cfg);
    std::string error;
    delete leftover_gateway();
    leftover_gateway() = nullptr;
    gw = Gateway::create(cfg, Gateway::Options{false, false}, error);
    if (!gw) fprintf(stderr, "gateway: %s\n", error.c_str());
    assert_non_null(gw.get());
    leftover_gateway() = gw.get();
    dp().neighbors.update(0, kClient, kClientMac);
    for (const TunnelConfig& tc : cfg.tunnels)
      for (const StaticPeerConfig& p : tc.peers)
        if (p.endpoint)
          add_peer(p.index, p.endpoint->ip.v4(),
                   std::make_unique<AgentSession>(p.index, p.psk, 16, 120'000'000'000ull, engine));
  }

  Dataplane& dp() { return gw->dataplane(); }
  Worker& worker(size_t i = 0) { return *dp().workers.at(i); }
  AgentSession& agent(uint32_t index) { return *peers.at(index).session; }
  TunnelSession& session(uint32_t index) {
    TunnelSession* s = dp().sessions.find(index);
    assert_non_null(s);
    return *s;
  }
  const GatewayState::TunnelRec& tunnel(std::string_view name) {
    for (const auto& [id, t] : gw->state().tunnels())
      if (t.name == name) return t;
    fail_msg("no tunnel %.*s", int(name.size()), name.data());
    abort();
  }
  TunnelStats& tunnel_stats(std::string_view name, size_t w = 0) { return worker(w).tunnel_stats.at(tunnel(name).slot); }

  // A visitor of `tunnel_name` (dpagent visit) at `ip`, as dpctld adds one: session `index`, its AgentSession
  // counting from zero as dpagent's control-plane sessions do.
  AgentSession& add_visitor(uint32_t index, std::string_view tunnel_name, uint32_t ip) {
    SessionSpec spec;
    spec.index = index;
    spec.tunnel = tunnel(tunnel_name).id;
    spec.base_secret = key_of(uint8_t(index));
    spec.visitor = true;
    std::string error;
    if (!gw->state().add_session(spec, error)) fail_msg("add_session: %s", error.c_str());
    return add_peer(index, ip, std::make_unique<AgentSession>(index, key_of(uint8_t(index)), 16, 120'000'000'000ull,
                                                              engine, AgentSession::CounterMode::FromZero));
  }
  // The MTU of rig port `port` (0 public, 1 underlay) as the gateway knows it (PortInfo, read from the device at
  // start). The ring PMD has no MTU to set, so this stands in for a link of another MTU; before any traffic.
  void set_port_mtu(uint8_t port, uint16_t mtu) { dp().ports.at(port).mtu = mtu; }
  void set_entry(const EntrySpec& e) {
    std::string error;
    if (!gw->state().set_entry(e, error)) fail_msg("set_entry: %s", error.c_str());
  }
  // The hostname rules, compiled off the control lcore: waits until the new table is published.
  void set_rules(std::vector<IngressRuleSpec> rules) {
    const IngressTable* before = dp().ingress.load();
    gw->state().set_ingress(std::move(rules));
    for (int i = 0; i < 1000 && dp().ingress.load() == before; ++i) {
      gw->state().maintain(dp().clock.now_ns(), realtime_ns());
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    assert_true(dp().ingress.load() != before);
  }

  // Every worker polls until none has anything left (handoffs between workers take more than one poll). The control
  // lcore's timed work runs first, as dpgw's does between polls: a test that crosses an epoch boundary finds the
  // keys of the new epoch installed (without it, a frame sealed with them was dropped as key_unavailable).
  void poll() {
    gw->state().maintain(dp().clock.now_ns(), realtime_ns());
    for (int round = 0; round < 64; ++round) {
      unsigned work = 0;
      for (auto& w : dp().workers) work += w->poll_once();
      if (!work) return;
    }
  }
  uint64_t drops(Drop d) {
    uint64_t v = 0;
    for (auto& w : dp().workers) v += w->stats.drops[size_t(d)].get();
    return v;
  }
  uint64_t total(Counter WorkerStats::*c) {
    uint64_t v = 0;
    for (auto& w : dp().workers) v += (w->stats.*c).get();
    return v;
  }
  uint64_t all_drops() {
    uint64_t v = 0;
    for (size_t d = 0; d < size_t(Drop::Count); ++d) v += drops(Drop(d));
    return v;
  }

  // Client -> gateway -> underlay frame; returns what the underlay port sent.
  std::vector<std::vector<uint8_t>> from_client(const std::vector<uint8_t>& frame) {
    pub.inject(dp().pool, frame);
    poll();
    return und.drain();
  }
  // An IP packet from the client, in an Ethernet frame from its MAC on the public port.
  void inject_client_ip(std::span<const uint8_t> packet) {
    std::vector<uint8_t> frame(14);
    std::memcpy(frame.data() + 6, kClientMac.data(), 6);
    store_be16(frame.data() + 12, kEtherTypeIpv4);
    frame.insert(frame.end(), packet.begin(), packet.end());
    pub.inject(dp().pool, frame);
  }
  // Agent frame (relay frame bytes) -> gateway; returns what the public port sent.
  std::vector<std::vector<uint8_t>> from_agent(const std::vector<uint8_t>& relay, uint32_t agent_ip) {
    inject_from_agent(relay, agent_ip);
    poll();
    return pub.drain();
  }
  // A relay frame from `ip` (an agent's or a visitor's tunnel port) to the gateway's tunnel port on the rig port
  // of that address, queue `queue` (to `port`: another of the gateway's UDP ports, such as its QUIC port; from
  // `src_port`, 0: the same port).
  void inject_from_agent(const std::vector<uint8_t>& relay, uint32_t ip, size_t queue = 0, uint16_t port = kTunnelPort,
                         uint16_t src_port = 0) {
    const bool public_side = (ip >> 8) == (kGwPublic >> 8);
    std::vector<uint8_t> f(14 + 20 + 8 + relay.size());
    const MacAddr src = mac_of(ip);
    std::memcpy(f.data() + 6, src.data(), 6);
    store_be16(f.data() + 12, kEtherTypeIpv4);
    uint8_t* ip_hdr = f.data() + 14;
    ip_hdr[0] = 0x45;
    store_be16(ip_hdr + 2, uint16_t(20 + 8 + relay.size()));
    ip_hdr[8] = 64;
    ip_hdr[9] = kIpProtoUdp;
    store_be32(ip_hdr + 12, ip);
    store_be32(ip_hdr + 16, public_side ? kGwPublic : kGwUnderlay);
    store_be16(ip_hdr + 10, ipv4_header_checksum({ip_hdr, 20}));
    uint8_t* udp = ip_hdr + 20;
    store_be16(udp, src_port ? src_port : port);
    store_be16(udp + 2, port);
    store_be16(udp + 4, uint16_t(8 + relay.size()));
    std::memcpy(udp + 8, relay.data(), relay.size());
    (public_side ? pub : und).inject(dp().pool, f, queue);
  }

 private:
  AgentSession& add_peer(uint32_t index, uint32_t ip, std::unique_ptr<AgentSession> session) {
    const uint8_t port = (ip >> 8) == (kGwPublic >> 8) ? 0 : 1;
    dp().neighbors.update(port, ip, mac_of(ip));
    Peer& p = peers[index];
    p.ip = ip;
    p.port = port;
    p.session = std::move(session);
    return *p.session;
  }
};

// The test program's main (run_eal_tests), with dptun's own log at warnings and above.
inline int run_pipeline_tests(const char* program, const CMUnitTest* tests, size_t count) {
  log_set_level(LogLevel::Warn);
  return run_eal_tests(program, tests, count);
}

}  // namespace dptun::test
