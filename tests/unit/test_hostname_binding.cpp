// Delayed binding on dpgw's real Worker (ring-backed ports, dpagent's session crypto on the tunnel side), segment
// by segment, as a TCP peer sees it:
//  - the client's first bytes in pieces, out of order, duplicated: each acknowledged (SACK for bytes beyond a
//    gap, the window's right edge never moving back), the target's SYN only once the head is complete;
//  - the target's side: the first bytes (and the client's FIN) go after its SYN-ACK, and are sent again until it
//    acknowledges them (after a timeout, after 3 duplicate ACKs); acknowledgments of less than dpgw acknowledged
//    never reach the client, data with them is raised to it;
//  - every TSval the client sees rises from the SYN-ACK on; the target sees the client's newest TSval;
//  - dpgw's own answers (431, 400): readable, sent again until acknowledged, the client's further bytes
//    acknowledged and dropped, counted;
//  - a target the agent reports unreachable (its ICMP error about dpgw's SYN): the client's 502 at once;
//  - the target's SYN with the MSS of the path to its agent; a rule no session can take: 502, not counted as routed.
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "common/clock.hpp"
#include "ingress/http_host.hpp"
#include "packet/checksum.hpp"
#include "packet/headers.hpp"
#include "packet/parser.hpp"
#include "packet/tcp_segment.hpp"
#include "tests/support/pipeline_rig.hpp"

using namespace dptun;
using namespace dptun::test;

namespace {

constexpr uint32_t kAgent = kAgentA;  // the agent, and the rule's target
constexpr uint32_t kClientIsn = 0xfffff000;  // the client's sequence numbers wrap during the test
constexpr uint32_t kServerIsn = 0x7000;

// A TCP segment as one side sees it.
struct Seg {
  uint32_t src_ip = 0, dst_ip = 0;
  uint16_t sport = 0, dport = 0;
  uint32_t seq = 0, ack = 0;
  uint8_t flags = 0;
  uint16_t window = 0;
  TcpHandshakeOptions opt;
  std::vector<std::pair<uint32_t, uint32_t>> sack;
  std::string payload;
};

Seg parse_segment(const uint8_t* ip) {
  PacketInfo pi;
  const uint16_t total = load_be16(ip + 2);
  assert_int_equal(parse_ip({ip, total}, pi), ParseStatus::Ok);
  assert_int_equal(pi.l4_proto, kIpProtoTcp);
  const uint8_t* t = ip + pi.l4_offset;
  assert_int_equal(csum_fold(csum_add({t, pi.l4_len}, ipv4_pseudo_sum(pi.src_ip, pi.dst_ip, kIpProtoTcp, pi.l4_len))),
                   0xffff);
  Seg s;
  s.src_ip = pi.src_ip;
  s.dst_ip = pi.dst_ip;
  s.sport = pi.src_port;
  s.dport = pi.dst_port;
  s.seq = load_be32(t + 4);
  s.ack = load_be32(t + 8);
  s.flags = t[13];
  s.window = load_be16(t + 14);
  s.opt = tcp_read_options(t, pi.tcp_header_len);
  for (size_t i = 20; i < pi.tcp_header_len;) {
    if (t[i] == 0) break;
    if (t[i] == 1) {
      ++i;
      continue;
    }
    if (t[i] == 5)
      for (size_t k = i + 2; k + 8 <= i + t[i + 1]; k += 8) s.sack.emplace_back(load_be32(t + k), load_be32(t + k + 4));
    i += t[i + 1];
  }
  s.payload.assign(reinterpret_cast<const char*>(t + pi.tcp_header_len), pi.l4_len - pi.tcp_header_len);
  return s;
}

// An IPv4 TCP packet (no Ethernet header) with timestamps (and `extra` options, a multiple of 4 bytes).
std::vector<uint8_t> tcp_packet(uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack,
                                uint8_t flags, const std::string& payload, uint32_t tsval, uint32_t tsecr,
                                std::vector<uint8_t> extra = {}, uint16_t window = 502) {
  std::vector<uint8_t> opts(12);
  tcp_write_timestamps(opts.data(), tsval, tsecr);
  opts.insert(opts.end(), extra.begin(), extra.end());
  std::vector<uint8_t> out(2048);
  const size_t n = tcp_write_packet(out, {src, dst, sport, dport, seq, ack, flags, window, opts,
                                          {reinterpret_cast<const uint8_t*>(payload.data()), payload.size()}, 1});
  out.resize(n);
  return out;
}

// The rig's gateway with an HTTP entry point (tcp/80) and one rule: app.example to tunnel a, target the agent's own
// address (the client's port).
struct Rig : PipelineRig {
  uint16_t client_port = 40000;
  uint32_t client_ts = 0x10000;  // the client's clock (TSval), ticks on every segment
  uint32_t cookie = 0;           // dpgw's ISN for the client (on client_port)
  std::map<uint16_t, uint32_t> cookies;  // by client port, for tests with many connections
  uint32_t echo = 0;             // the newest TSval from dpgw (the client's TSecr)
  std::vector<uint32_t> client_saw_ts;  // every TSval the client got from dpgw, in order
  uint64_t flow_id = 0;

  Rig() {
    EntrySpec http;
    http.proto = kIpProtoTcp;
    http.port = 80;
    http.route = EntryRoute::HttpHost;
    set_entry(http);
    IngressRuleSpec rule;
    rule.hostname = "app.example";
    rule.tunnel = tunnel("a").id;
    rule.target = Endpoint{Ipv4{kAgent}, 0};
    set_rules({rule});
  }

  WorkerStats& stats() { return worker().stats; }

  // What dpgw sent the client (also its TSvals, in order).
  std::vector<Seg> to_client() {
    std::vector<Seg> out;
    for (const auto& f : pub.drain()) {
      Seg s = parse_segment(f.data() + 14);
      assert_int_equal(s.dst_ip, kClient);
      assert_int_equal(s.src_ip, kGwPublic);
      if (s.opt.has_ts) {
        client_saw_ts.push_back(s.opt.tsval);
        echo = s.opt.tsval;
      }
      out.push_back(s);
    }
    return out;
  }
  // What dpgw sent the target through the tunnel.
  std::vector<Seg> to_server() {
    std::vector<Seg> out;
    for (const auto& f : und.drain()) {
      Opened o = agent_open(agent(1), f, kAgentAMac, kAgent);
      if (o.meta.type != FrameType::Data) continue;
      flow_id = o.inner.flow_id;
      Seg s = parse_segment(o.packet.data());
      assert_int_equal(s.dst_ip, kAgent);
      out.push_back(s);
    }
    return out;
  }
  // A segment from the client; returns what dpgw sent the client in answer.
  std::vector<Seg> client(uint32_t seq, uint8_t flags, const std::string& payload, std::vector<uint8_t> extra = {},
                          uint32_t ack = 0) {
    auto p = tcp_packet(kClient, kGwPublic, client_port, 80, seq, ack ? ack : cookie + 1, flags, payload, ++client_ts,
                        echo, extra);
    inject_client_ip(p);
    poll();
    return to_client();
  }
  // A segment from the target (through the agent); returns what dpgw sent the client.
  std::vector<Seg> server(uint32_t seq, uint32_t ack, uint8_t flags, const std::string& payload, uint32_t tsval,
                          uint32_t tsecr, std::vector<uint8_t> extra = {}, uint16_t window = 502) {
    return from_agent(kIpProtoTcp,
                      tcp_packet(kAgent, kClient, 80, client_port, seq, ack, flags, payload, tsval, tsecr, extra, window));
  }
  // An inner packet of the flow from the agent; returns what dpgw sent the client.
  std::vector<Seg> from_agent(uint8_t proto, const std::vector<uint8_t>& p) {
    inject_from_agent(agent_seal(agent(1), flow_id, proto, p), kAgent);
    poll();
    return to_client();
  }
  // SYN (MSS 1460, SACK, TS, window scale 7) and the handshake's last ACK: a flow in WaitHello.
  void handshake() {
    std::vector<uint8_t> syn_opts = {2, 4, 0x05, 0xb4, 4, 2, 1, 1, 1, 3, 3, 7};  // MSS, SACK-permitted, NOP, NOP, WS
    auto p = tcp_packet(kClient, kGwPublic, client_port, 80, kClientIsn, 0, kTcpSyn, "", ++client_ts, 0, syn_opts);
    inject_client_ip(p);
    poll();
    auto out = to_client();
    assert_int_equal(out.size(), 1);
    assert_int_equal(out[0].flags, kTcpSyn | kTcpAck);
    assert_int_equal(out[0].ack, kClientIsn + 1);
    assert_true(out[0].opt.has_ts && out[0].opt.sack_ok && out[0].opt.wscale == 7);
    cookie = cookies[client_port] = out[0].seq;
    assert_int_equal(client(kClientIsn + 1, kTcpAck, "").size(), 0);  // the flow exists, nothing to say
  }
  // Every TSval the client saw rose (or stayed), from the SYN-ACK's on.
  void check_client_timestamps() const {
    for (size_t i = 1; i < client_saw_ts.size(); ++i)
      if (int32_t(client_saw_ts[i] - client_saw_ts[i - 1]) < 0)
        fail_msg("TSval %zu went back: %u after %u", i, client_saw_ts[i], client_saw_ts[i - 1]);
  }
};

const std::string kLine = "GET / HTTP/1.1\r\n";
const std::string kHost = "Host: app.example\r\n";
const std::string kEnd = "Connection: close\r\n\r\n";

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

}  // namespace

// Pieces, a gap, a duplicate: acknowledged as a TCP receiver does. Then the target's side, with losses.
static void first_bytes_acknowledged_and_delivered(void**) {
  Rig r;
  r.handshake();
  const uint32_t base = kClientIsn + 1;
  // The request line: acknowledged at once (nothing for the target yet).
  auto out = r.client(base, kTcpAck | kTcpPsh, kLine);
  assert_int_equal(out.size(), 1);
  assert_int_equal(out[0].flags, kTcpAck);
  assert_int_equal(out[0].ack, base + kLine.size());
  assert_int_equal(out[0].seq, r.cookie + 1);
  const uint32_t right_edge = out[0].ack + (uint32_t(out[0].window) << 7);
  assert_true(right_edge - base >= 32768);  // room for a whole head
  assert_int_equal(r.to_server().size(), 0);
  // The end of the head before the Host line (a gap): the same acknowledgment, and a SACK block for it.
  const uint32_t end_at = base + kLine.size() + kHost.size();
  out = r.client(end_at, kTcpAck | kTcpPsh, kEnd);
  assert_int_equal(out.size(), 1);
  assert_int_equal(out[0].ack, base + kLine.size());
  assert_int_equal(out[0].sack.size(), 1);
  assert_int_equal(out[0].sack[0].first, end_at);
  assert_int_equal(out[0].sack[0].second, end_at + kEnd.size());
  assert_true(out[0].ack + (uint32_t(out[0].window) << 7) >= right_edge);  // the right edge never moves back
  // The request line again (our ACK was lost, say): acknowledged again, nothing else.
  out = r.client(base, kTcpAck | kTcpPsh, kLine);
  assert_int_equal(out.size(), 1);
  assert_int_equal(out[0].ack, base + kLine.size());
  assert_int_equal(r.to_server().size(), 0);
  // The Host line fills the gap: everything acknowledged, and the target called with the client's own ISN and
  // newest TSval.
  out = r.client(base + kLine.size(), kTcpAck | kTcpPsh, kHost);
  const uint32_t all = base + uint32_t(kLine.size() + kHost.size() + kEnd.size());
  assert_int_equal(out.size(), 1);
  assert_int_equal(out[0].ack, all);
  assert_int_equal(out[0].sack.size(), 0);
  auto srv = r.to_server();
  assert_int_equal(srv.size(), 1);
  assert_int_equal(srv[0].flags, kTcpSyn);
  assert_int_equal(srv[0].seq, kClientIsn);
  assert_int_equal(srv[0].opt.tsval, r.client_ts);
  assert_int_equal(r.stats().hostname_routed.get(), 1);

  // The target answers; dpgw sends it the head. It gets lost.
  assert_int_equal(r.server(kServerIsn, base, kTcpSyn | kTcpAck, "", 5000, srv[0].opt.tsval,
                            {2, 4, 0x05, 0xb4, 4, 2, 1, 1, 1, 3, 3, 7}).size(), 0);
  srv = r.to_server();
  assert_int_equal(srv.size(), 1);
  assert_int_equal(srv[0].seq, base);
  assert_int_equal(srv[0].ack, kServerIsn + 1);
  assert_string_equal(srv[0].payload.c_str(), (kLine + kHost + kEnd).c_str());
  assert_int_equal(srv[0].opt.tsecr, 5000);
  // Meanwhile the client acknowledges nothing new and sends nothing: after the retransmission timeout (at least
  // 200 ms) dpgw sends the head again.
  sleep_ms(260);
  for (int i = 0; i < 50; ++i) r.poll();
  srv = r.to_server();
  assert_int_equal(srv.size(), 1);
  assert_string_equal(srv[0].payload.c_str(), (kLine + kHost + kEnd).c_str());
  assert_true(r.stats().binding_retransmits.get() >= 1);
  // The target acknowledges part of it: a bare ACK of less than the client has from dpgw tells the client nothing.
  assert_int_equal(r.server(kServerIsn + 1, base + 10, kTcpAck, "", 5001, 0).size(), 0);
  // Three more of the same (duplicates): the rest is sent again at once.
  for (int i = 0; i < 3; ++i) assert_int_equal(r.server(kServerIsn + 1, base + 10, kTcpAck, "", 5001, 0).size(), 0);
  srv = r.to_server();
  assert_int_equal(srv.size(), 1);
  assert_int_equal(srv[0].seq, base + 10);
  // The answer comes with an acknowledgment of the first 10 bytes only: the client sees all of its head
  // acknowledged (never less than dpgw told it), the window shrunk by the difference.
  const std::string answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  out = r.server(kServerIsn + 1, base + 10, kTcpAck | kTcpPsh, answer, 5002, 0, {}, 100);
  assert_int_equal(out.size(), 1);
  assert_int_equal(out[0].seq, r.cookie + 1);
  assert_int_equal(out[0].ack, all);
  assert_int_equal(out[0].window, (100 * 128 - (all - base - 10)) >> 7);
  assert_string_equal(out[0].payload.c_str(), answer.c_str());
  // The target gets everything: dpgw lets go, the splice goes on by itself.
  out = r.server(kServerIsn + 1 + answer.size(), all, kTcpAck, "", 5003, 0);
  assert_int_equal(out.size(), 1);
  assert_int_equal(out[0].ack, all);
  sleep_ms(260);
  for (int i = 0; i < 50; ++i) r.poll();
  assert_int_equal(r.to_server().size(), 0);  // nothing sent again
  // The client's ACK of the answer reaches the target in its numbers, with the client's TSval.
  r.client(all, kTcpAck, "", {}, r.cookie + 1 + answer.size());
  srv = r.to_server();
  assert_int_equal(srv.size(), 1);
  assert_int_equal(srv[0].ack, kServerIsn + 1 + answer.size());
  assert_int_equal(srv[0].opt.tsval, r.client_ts);
  r.check_client_timestamps();
  assert_int_equal(r.stats().bindings_spliced.get(), 1);
}

// A request and FIN together: the FIN is acknowledged with the bytes, and delivered after them.
static void fin_with_the_request(void**) {
  Rig r;
  r.handshake();
  const uint32_t base = kClientIsn + 1;
  const std::string req = kLine + kHost + kEnd;
  auto out = r.client(base, kTcpAck | kTcpPsh | kTcpFin, req);
  assert_int_equal(out.size(), 1);
  assert_int_equal(out[0].ack, base + req.size() + 1);
  auto srv = r.to_server();
  assert_int_equal(srv.size(), 1);
  r.server(kServerIsn, base, kTcpSyn | kTcpAck, "", 9000, srv[0].opt.tsval);
  srv = r.to_server();
  assert_int_equal(srv.size(), 1);
  assert_true(srv[0].flags & kTcpFin);
  assert_string_equal(srv[0].payload.c_str(), req.c_str());
  // The target's ACK of the FIN passes to the client (it acknowledges no less than dpgw did).
  out = r.server(kServerIsn + 1, base + req.size() + 1, kTcpAck, "", 9001, 0);
  assert_int_equal(out.size(), 1);
  assert_int_equal(out[0].ack, base + req.size() + 1);
  r.check_client_timestamps();
}

// A head over 32 KiB: dpgw's 431, readable (sent again until acknowledged; the client's further bytes
// acknowledged and dropped); an absolute-form target with another Host: 400. Both counted.
static void answers_of_our_own(void**) {
  Rig r;
  r.handshake();
  const uint32_t base = kClientIsn + 1;
  std::string head = kLine + kHost;
  while (head.size() < 40000) head += "Cookie: " + std::string(1990, 'c') + "\r\n";
  uint32_t off = 0;
  std::vector<Seg> answer;
  while (answer.empty() && off < head.size()) {  // until dpgw answers (past 32 KiB)
    const std::string piece = head.substr(off, 1400);
    for (Seg& s : r.client(base + off, kTcpAck, piece))
      if (!s.payload.empty()) answer.push_back(s);
    off += uint32_t(piece.size());
  }
  assert_true(off > kMaxRequestHead && off < kMaxRequestHead + 1400);
  assert_int_equal(answer.size(), 1);
  assert_true(answer[0].flags & kTcpFin);
  assert_int_equal(answer[0].seq, r.cookie + 1);
  assert_true(answer[0].payload.rfind("HTTP/1.1 431 ", 0) == 0);
  assert_int_equal(r.drops(Drop::HeadTooBig), 1);
  assert_int_equal(r.to_server().size(), 0);
  // It was lost: sent again after the timeout.
  sleep_ms(260);
  for (int i = 0; i < 50; ++i) r.poll();
  auto again = r.to_client();
  assert_int_equal(again.size(), 1);
  assert_string_equal(again[0].payload.c_str(), answer[0].payload.c_str());
  // The rest of the head: acknowledged (and dropped), the answer with it while the client has not acknowledged it.
  auto out = r.client(base + off, kTcpAck, head.substr(off, 1400));
  assert_int_equal(out.size(), 1);
  assert_int_equal(out[0].ack, base + off + 1400);
  assert_string_equal(out[0].payload.c_str(), answer[0].payload.c_str());
  off += 1400;
  // The client acknowledges the answer and its FIN, and closes: acknowledged, and the connection is over.
  const uint32_t answer_end = r.cookie + 1 + uint32_t(answer[0].payload.size()) + 1;
  out = r.client(base + off, kTcpAck | kTcpFin, "", {}, answer_end);
  assert_int_equal(out.size(), 1);
  assert_int_equal(out[0].seq, answer_end);
  assert_int_equal(out[0].ack, base + off + 1);
  assert_int_equal(r.dp().workers[0]->flows().size(), 0);
  r.check_client_timestamps();
}

// An absolute-form target naming one host and a Host line another: 400, counted, nothing to a target.
static void conflicting_host(void**) {
  Rig r2;
  r2.handshake();
  auto out = r2.client(kClientIsn + 1, kTcpAck | kTcpPsh, "GET http://app.example/ HTTP/1.1\r\nHost: other.example\r\n\r\n");
  assert_int_equal(out.size(), 1);
  assert_true(out[0].payload.rfind("HTTP/1.1 400 ", 0) == 0);
  assert_int_equal(r2.drops(Drop::AmbiguousHost), 1);
  assert_int_equal(r2.to_server().size(), 0);
  // The same connection's retransmission gets the answer again (with the acknowledgment).
  out = r2.client(kClientIsn + 1, kTcpAck | kTcpPsh, "GET http://app.example/ HTTP/1.1\r\nHost: other.example\r\n\r\n");
  assert_int_equal(out.size(), 1);
  assert_true(out[0].payload.rfind("HTTP/1.1 400 ", 0) == 0);
  r2.check_client_timestamps();
}

// More heads than large buffers: the one reading longest gives way (RST); when every large buffer belongs to a
// connection waiting for its target, a head that needs one gets a 503 (binding_full).
static void large_buffers_run_out(void**) {
  Rig r;
  const std::string big = kLine + kHost + "Cookie: " + std::string(5000, 'c') + "\r\n";  // no end yet
  const auto send_big = [&](uint16_t port) {
    r.client_port = port;
    r.cookie = r.cookies[port];
    std::vector<Seg> all;
    for (uint32_t off = 0; off < big.size(); off += 1400)
      for (Seg& s : r.client(kClientIsn + 1 + off, kTcpAck, big.substr(off, 1400))) all.push_back(s);
    return all;
  };
  const uint32_t large = TcpBinding::kLargeBuffers;
  for (uint16_t i = 0; i <= large + 1; ++i) {
    r.client_port = uint16_t(20000 + i);
    r.handshake();
  }
  for (uint16_t i = 0; i < large; ++i) send_big(uint16_t(20000 + i));
  assert_int_equal(r.stats().bindings_grown.get(), large);
  // One more: the first gives way, with a RST to its client.
  bool reset = false;
  for (const Seg& s : send_big(uint16_t(20000 + large))) reset |= (s.flags & kTcpRst) && s.dport == 20000;
  assert_true(reset);
  r.client_port = 20000;
  auto again = r.client(kClientIsn + 1 + uint32_t(big.size()), kTcpAck, "x");  // its flow is gone
  assert_int_equal(again.size(), 0);
  assert_int_equal(r.stats().bindings_evicted.get(), 1);
  assert_int_equal(r.stats().bindings_grown.get(), large + 1);
  // The others end their heads: all waiting for the target now.
  for (uint16_t i = 1; i <= large; ++i) {
    r.client_port = uint16_t(20000 + i);
    r.cookie = r.cookies[r.client_port];
    r.client(kClientIsn + 1 + uint32_t(big.size()), kTcpAck, "\r\n");
  }
  assert_int_equal(r.to_server().size(), large);  // a SYN each
  // The next big head finds no large buffer and none that may give way: 503.
  std::vector<Seg> out = send_big(uint16_t(20000 + large + 1));
  bool unavailable = false;
  for (const Seg& s : out) unavailable |= s.payload.rfind("HTTP/1.1 503 ", 0) == 0;
  assert_true(unavailable);
  assert_int_equal(r.drops(Drop::BindingFull), 1);
}

// The target's SYN carries the MSS of the path to its agent (inner_tcp_mss() of the underlay's MTU), not of the
// client's side, and the connection counts once as routed; a rule whose tunnel has no session gets the client a
// 502 (no_session) and is not counted as routed.
static void path_mss_and_a_rule_no_session_takes(void**) {
  Rig r;
  r.set_port_mtu(0, 1400);  // the client's side; the underlay keeps 1500
  std::string error;
  assert_true(r.gw->state().set_tunnel(TunnelSpec{Uuid::random_v4(), "c"}, error));
  IngressRuleSpec app{"app.example", r.tunnel("a").id, Endpoint{Ipv4{kAgent}, 0}};
  IngressRuleSpec dead{"dead.example", r.tunnel("c").id, Endpoint{Ipv4{kAgent}, 0}};
  r.set_rules({app, dead});
  r.handshake();
  r.client(kClientIsn + 1, kTcpAck | kTcpPsh, kLine + kHost + kEnd);
  auto srv = r.to_server();
  assert_int_equal(srv.size(), 1);
  assert_int_equal(srv[0].flags, kTcpSyn);
  assert_int_equal(srv[0].opt.mss, inner_tcp_mss(1500));
  assert_int_equal(r.stats().hostname_routed.get(), 1);
  assert_int_equal(r.stats().flows_created.get(), 1);
  assert_int_equal(r.tunnel_stats("a").flows_created.get(), 1);
  assert_int_equal(r.session(1).flows_pinned.load(), 1);

  r.check_client_timestamps();
  r.client_port = 40001;  // another connection (TSvals rise per connection)
  r.client_saw_ts.clear();
  r.handshake();
  auto out = r.client(kClientIsn + 1, kTcpAck | kTcpPsh, kLine + "Host: dead.example\r\n" + kEnd);
  bool bad_gateway = false;
  for (const Seg& s : out) bad_gateway |= s.payload.rfind("HTTP/1.1 502 ", 0) == 0;
  assert_true(bad_gateway);
  assert_int_equal(r.drops(Drop::NoSession), 1);
  assert_int_equal(r.to_server().size(), 0);
  assert_int_equal(r.stats().hostname_routed.get(), 1);
  assert_int_equal(r.stats().flows_created.get(), 1);
  assert_int_equal(r.tunnel_stats("c").flows_created.get(), 0);
  r.check_client_timestamps();
}

// The agent reports the target unreachable (an ICMP error about dpgw's SYN) while dpgw waits for its SYN-ACK: the
// client gets the 502 at once, counted as target_unreachable, instead of waiting for target_timeout.
static void unreachable_target(void**) {
  Rig r;
  r.handshake();
  const uint32_t base = kClientIsn + 1;
  auto out = r.client(base, kTcpAck | kTcpPsh, kLine + kHost + kEnd);
  assert_int_equal(out.size(), 1);
  auto srv = r.to_server();
  assert_int_equal(srv.size(), 1);
  assert_int_equal(srv[0].flags, kTcpSyn);
  // What dpagent's kernel says about that SYN (translated source, as dpagent sends it), from a router on the way.
  auto syn = tcp_packet(0x64400002, kAgent, 32773, 80, srv[0].seq, 0, kTcpSyn, "", srv[0].opt.tsval, 0);
  std::vector<uint8_t> icmp(28 + syn.size());
  write_ipv4_header(icmp.data(), uint16_t(icmp.size()), 1, kIpProtoIcmp, 0x0a630401, 0x64400002);
  icmp[20] = kIcmpDestUnreachable;
  icmp[21] = 1;  // host unreachable
  std::memcpy(icmp.data() + 28, syn.data(), syn.size());
  store_be16(icmp.data() + 22, csum_finish(csum_add({icmp.data() + 20, icmp.size() - 20})));
  out = r.from_agent(kIpProtoIcmp, icmp);
  assert_int_equal(out.size(), 1);
  assert_true(out[0].payload.rfind("HTTP/1.1 502 ", 0) == 0);
  assert_true(out[0].flags & kTcpFin);
  assert_int_equal(r.drops(Drop::TargetUnreachable), 1);
  assert_int_equal(r.tunnel_stats("a").targets_unreachable.get(), 1);
  assert_int_equal(r.to_server().size(), 0);
  r.check_client_timestamps();
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(first_bytes_acknowledged_and_delivered),
      cmocka_unit_test(fin_with_the_request),
      cmocka_unit_test(answers_of_our_own),
      cmocka_unit_test(conflicting_host),
      cmocka_unit_test(large_buffers_run_out),
      cmocka_unit_test(unreachable_target),
      cmocka_unit_test(path_mss_and_a_rule_no_session_takes),
  };
  return run_pipeline_tests("test_hostname_binding", tests, sizeof tests / sizeof tests[0]);
}
