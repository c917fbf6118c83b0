// Flow lifetime rules: UDP TTL (refreshed only with keepalive), TCP states and timeouts following
// SYN / SYN-ACK / FIN / RST, and restarting a closed flow on a new client SYN (client port reuse).
// Every timeout in the config differs so a test cannot pass by picking the wrong one.
#include "tests/unit/cmocka.hpp"

#include "dataplane/tables/flow_tracking.hpp"
#include "packet/headers.hpp"

using namespace dptun;

namespace {

constexpr uint64_t kSec = 1'000'000'000ull;
constexpr uint64_t kUdpTtl = 11 * kSec;  // the entry point's TTL (differs from cfg.udp_ttl_ns on purpose)

FlowConfig config() {
  FlowConfig c;
  c.udp_ttl_ns = 5 * kSec;
  c.tcp_syn_timeout_ns = 3 * kSec;
  c.tcp_established_timeout_ns = 1000 * kSec;
  c.tcp_closing_timeout_ns = 50 * kSec;
  c.tcp_closed_timeout_ns = 7 * kSec;
  return c;
}

Flow make_flow(uint8_t proto) {
  Flow f;
  f.key.proto = proto;
  f.key.client = Ipv4{0x0a000001};
  f.key.local = Ipv4{0x0a000002};
  f.key.client_port = 40000;
  f.key.local_port = 80;
  f.in_use = true;
  return f;
}

// A TCP flow through SYN (t0) and SYN-ACK (t0 + 1 s): Established.
Flow established_flow(const FlowConfig& cfg, uint64_t t0) {
  Flow f = make_flow(kIpProtoTcp);
  flow_start(f, kTcpSyn, cfg, kUdpTtl, t0);
  flow_track(f, kTcpSyn | kTcpAck, false, cfg, kUdpTtl, t0 + kSec);
  return f;
}

}  // namespace

static void may_start(void**) {
  assert_true(flow_may_start(kIpProtoTcp, kTcpSyn));
  assert_true(flow_may_start(kIpProtoTcp, kTcpSyn | kTcpPsh));
  assert_true(flow_may_start(kIpProtoTcp, kTcpSyn | kTcpFin));
  assert_false(flow_may_start(kIpProtoTcp, kTcpSyn | kTcpAck));
  assert_false(flow_may_start(kIpProtoTcp, kTcpSyn | kTcpRst));
  assert_false(flow_may_start(kIpProtoTcp, kTcpAck));
  assert_false(flow_may_start(kIpProtoTcp, kTcpRst));
  assert_false(flow_may_start(kIpProtoTcp, kTcpFin | kTcpAck));
  assert_false(flow_may_start(kIpProtoTcp, 0));
  for (uint8_t flags : {uint8_t(0), kTcpAck, kTcpRst, uint8_t(kTcpSyn | kTcpAck)}) {
    assert_true(flow_may_start(kIpProtoUdp, flags));
    assert_true(flow_may_start(kIpProtoIcmp, flags));
  }
}

static void udp_without_keepalive(void**) {
  const FlowConfig cfg = config();
  Flow f = make_flow(kIpProtoUdp);
  const uint64_t t0 = 100 * kSec;
  flow_start(f, 0, cfg, kUdpTtl, t0);
  assert_int_equal(f.deadline_ns, t0 + kUdpTtl);
  assert_int_equal(f.last_seen_ns, t0);
  assert_int_equal(f.tcp_state, TcpState::None);
  flow_track(f, 0, false, cfg, kUdpTtl, t0 + 2 * kSec);  // the reply
  assert_int_equal(f.deadline_ns, t0 + kUdpTtl);
  assert_int_equal(f.last_seen_ns, t0 + 2 * kSec);
  flow_track(f, 0, true, cfg, kUdpTtl, t0 + 4 * kSec);
  assert_int_equal(f.deadline_ns, t0 + kUdpTtl);
  assert_int_equal(f.last_seen_ns, t0 + 4 * kSec);
  // TCP flag bits mean nothing for UDP.
  flow_track(f, kTcpRst, true, cfg, kUdpTtl, t0 + 5 * kSec);
  assert_int_equal(f.deadline_ns, t0 + kUdpTtl);
  assert_int_equal(f.tcp_state, TcpState::None);
}

static void udp_with_keepalive(void**) {
  const FlowConfig cfg = config();
  Flow f = make_flow(kIpProtoUdp);
  f.keepalive = true;
  const uint64_t t0 = 100 * kSec;
  flow_start(f, 0, cfg, kUdpTtl, t0);
  assert_int_equal(f.deadline_ns, t0 + kUdpTtl);
  flow_track(f, 0, false, cfg, kUdpTtl, t0 + 3 * kSec);
  assert_int_equal(f.deadline_ns, t0 + 3 * kSec + kUdpTtl);
  flow_track(f, 0, true, cfg, kUdpTtl, t0 + 7 * kSec);
  assert_int_equal(f.deadline_ns, t0 + 7 * kSec + kUdpTtl);
  flow_track(f, 0, false, cfg, kUdpTtl, t0 + 8 * kSec);
  assert_int_equal(f.deadline_ns, t0 + 8 * kSec + kUdpTtl);
  assert_int_equal(f.last_seen_ns, t0 + 8 * kSec);
  // A different TTL (another entry point) is the one used.
  flow_track(f, 0, true, cfg, 2 * kSec, t0 + 9 * kSec);
  assert_int_equal(f.deadline_ns, t0 + 11 * kSec);
}

static void tcp_handshake(void**) {
  const FlowConfig cfg = config();
  Flow f = make_flow(kIpProtoTcp);
  const uint64_t t0 = 1000 * kSec;
  flow_start(f, kTcpSyn, cfg, kUdpTtl, t0);
  assert_int_equal(f.tcp_state, TcpState::SynSent);
  assert_int_equal(f.deadline_ns, t0 + cfg.tcp_syn_timeout_ns);
  assert_int_equal(f.fin_seen, 0);
  assert_int_equal(f.last_seen_ns, t0);

  // Neither a client SYN-ACK nor a bare ACK from the target completes the handshake.
  flow_track(f, kTcpSyn | kTcpAck, true, cfg, kUdpTtl, t0 + 1);
  assert_int_equal(f.tcp_state, TcpState::SynSent);
  flow_track(f, kTcpAck, false, cfg, kUdpTtl, t0 + 2);
  assert_int_equal(f.tcp_state, TcpState::SynSent);
  flow_track(f, kTcpSyn, true, cfg, kUdpTtl, t0 + 3);  // client retransmits its SYN
  assert_int_equal(f.tcp_state, TcpState::SynSent);
  assert_int_equal(f.deadline_ns, t0 + cfg.tcp_syn_timeout_ns);

  flow_track(f, kTcpSyn | kTcpAck, false, cfg, kUdpTtl, t0 + kSec);
  assert_int_equal(f.tcp_state, TcpState::Established);
  assert_int_equal(f.deadline_ns, t0 + kSec + cfg.tcp_established_timeout_ns);
  assert_int_equal(f.last_seen_ns, t0 + kSec);
}

static void tcp_data_extends_established(void**) {
  const FlowConfig cfg = config();
  const uint64_t t0 = 1000 * kSec;
  Flow f = established_flow(cfg, t0);
  flow_track(f, kTcpAck, true, cfg, kUdpTtl, t0 + 10 * kSec);
  assert_int_equal(f.tcp_state, TcpState::Established);
  assert_int_equal(f.deadline_ns, t0 + 10 * kSec + cfg.tcp_established_timeout_ns);
  flow_track(f, kTcpAck | kTcpPsh, false, cfg, kUdpTtl, t0 + 500 * kSec);
  assert_int_equal(f.deadline_ns, t0 + 500 * kSec + cfg.tcp_established_timeout_ns);
  assert_int_equal(f.last_seen_ns, t0 + 500 * kSec);
  assert_int_equal(f.fin_seen, 0);
}

static void tcp_fin_from_client_then_target(void**) {
  const FlowConfig cfg = config();
  const uint64_t t0 = 1000 * kSec;
  Flow f = established_flow(cfg, t0);
  const uint64_t t1 = t0 + 20 * kSec;
  flow_track(f, kTcpFin | kTcpAck, true, cfg, kUdpTtl, t1);
  assert_int_equal(f.tcp_state, TcpState::Closing);
  assert_int_equal(f.fin_seen, 1);
  assert_int_equal(f.deadline_ns, t1 + cfg.tcp_closing_timeout_ns);
  // Half-closed: the target may keep sending; its traffic keeps the flow for another closing period.
  flow_track(f, kTcpAck, false, cfg, kUdpTtl, t1 + kSec);
  assert_int_equal(f.tcp_state, TcpState::Closing);
  assert_int_equal(f.deadline_ns, t1 + kSec + cfg.tcp_closing_timeout_ns);
  flow_track(f, kTcpAck | kTcpPsh, false, cfg, kUdpTtl, t1 + 100 * kSec);
  assert_int_equal(f.deadline_ns, t1 + 100 * kSec + cfg.tcp_closing_timeout_ns);
  // The target's FIN: both sides closed, the deadline is shortened to the closed timeout.
  const uint64_t t2 = t1 + 102 * kSec;
  flow_track(f, kTcpFin | kTcpAck, false, cfg, kUdpTtl, t2);
  assert_int_equal(f.fin_seen, 3);
  assert_int_equal(f.deadline_ns, t2 + cfg.tcp_closed_timeout_ns);
  // The last ACK does not extend it.
  flow_track(f, kTcpAck, true, cfg, kUdpTtl, t2 + kSec);
  assert_int_equal(f.deadline_ns, t2 + cfg.tcp_closed_timeout_ns);
}

static void tcp_fin_from_target_first(void**) {
  const FlowConfig cfg = config();
  const uint64_t t0 = 1000 * kSec;
  Flow f = established_flow(cfg, t0);
  const uint64_t t1 = t0 + 20 * kSec;
  flow_track(f, kTcpFin | kTcpAck, false, cfg, kUdpTtl, t1);
  assert_int_equal(f.tcp_state, TcpState::Closing);
  assert_int_equal(f.fin_seen, 2);
  assert_int_equal(f.deadline_ns, t1 + cfg.tcp_closing_timeout_ns);
  // A FIN retransmitted by the same side does not count as both sides (and, half-closed, extends the flow).
  flow_track(f, kTcpFin | kTcpAck, false, cfg, kUdpTtl, t1 + kSec);
  assert_int_equal(f.fin_seen, 2);
  assert_int_equal(f.deadline_ns, t1 + kSec + cfg.tcp_closing_timeout_ns);
  // The client's FIN, late in the closing period: shortening never extends the deadline.
  const uint64_t t2 = t1 + 49 * kSec;  // t2 + closed (7 s) would be past t1 + 1 s + closing (50 s)
  flow_track(f, kTcpFin | kTcpAck, true, cfg, kUdpTtl, t2);
  assert_int_equal(f.fin_seen, 3);
  assert_int_equal(f.deadline_ns, t1 + kSec + cfg.tcp_closing_timeout_ns);
}

static void tcp_rst(void**) {
  const FlowConfig cfg = config();
  const uint64_t t0 = 1000 * kSec;
  // RST from the target while established.
  Flow f = established_flow(cfg, t0);
  flow_track(f, kTcpRst, false, cfg, kUdpTtl, t0 + 5 * kSec);
  assert_int_equal(f.tcp_state, TcpState::Closed);
  assert_int_equal(f.deadline_ns, t0 + 5 * kSec + cfg.tcp_closed_timeout_ns);
  // Later packets do not extend a closed flow.
  flow_track(f, kTcpAck, true, cfg, kUdpTtl, t0 + 6 * kSec);
  assert_int_equal(f.tcp_state, TcpState::Closed);
  assert_int_equal(f.deadline_ns, t0 + 5 * kSec + cfg.tcp_closed_timeout_ns);

  // RST|ACK from the target answering the SYN (port closed).
  Flow g = make_flow(kIpProtoTcp);
  flow_start(g, kTcpSyn, cfg, kUdpTtl, t0);
  flow_track(g, kTcpRst | kTcpAck, false, cfg, kUdpTtl, t0 + 1);
  assert_int_equal(g.tcp_state, TcpState::Closed);
  assert_int_equal(g.deadline_ns, t0 + 1 + cfg.tcp_closed_timeout_ns);

  // RST from the client while closing.
  Flow h = established_flow(cfg, t0);
  flow_track(h, kTcpFin | kTcpAck, true, cfg, kUdpTtl, t0 + 2 * kSec);
  flow_track(h, kTcpRst, true, cfg, kUdpTtl, t0 + 3 * kSec);
  assert_int_equal(h.tcp_state, TcpState::Closed);
  assert_int_equal(h.deadline_ns, t0 + 3 * kSec + cfg.tcp_closed_timeout_ns);
}

static void tcp_restart_on_closed_flow(void**) {
  const FlowConfig cfg = config();
  const uint64_t t0 = 1000 * kSec;
  Flow f = established_flow(cfg, t0);
  flow_track(f, kTcpRst, false, cfg, kUdpTtl, t0 + 2 * kSec);
  assert_int_equal(f.tcp_state, TcpState::Closed);

  assert_true(flow_restarts(f, kTcpSyn));
  assert_false(flow_restarts(f, kTcpSyn | kTcpAck));
  assert_false(flow_restarts(f, kTcpAck));
  assert_false(flow_restarts(f, 0));

  // A client SYN-ACK or ACK on the closed flow changes nothing.
  flow_track(f, kTcpSyn | kTcpAck, true, cfg, kUdpTtl, t0 + 3 * kSec);
  assert_int_equal(f.tcp_state, TcpState::Closed);
  assert_int_equal(f.deadline_ns, t0 + 2 * kSec + cfg.tcp_closed_timeout_ns);
  flow_track(f, kTcpAck, true, cfg, kUdpTtl, t0 + 3 * kSec);
  assert_int_equal(f.tcp_state, TcpState::Closed);
  assert_int_equal(f.deadline_ns, t0 + 2 * kSec + cfg.tcp_closed_timeout_ns);
  // Nor does a SYN from the target side.
  flow_track(f, kTcpSyn, false, cfg, kUdpTtl, t0 + 3 * kSec);
  assert_int_equal(f.tcp_state, TcpState::Closed);

  // The client reuses its port: a new SYN starts the connection over.
  const uint64_t t1 = t0 + 4 * kSec;
  flow_track(f, kTcpSyn, true, cfg, kUdpTtl, t1);
  assert_int_equal(f.tcp_state, TcpState::SynSent);
  assert_int_equal(f.deadline_ns, t1 + cfg.tcp_syn_timeout_ns);
  assert_int_equal(f.fin_seen, 0);
  assert_int_equal(f.last_seen_ns, t1);
  flow_track(f, kTcpSyn | kTcpAck, false, cfg, kUdpTtl, t1 + 1);
  assert_int_equal(f.tcp_state, TcpState::Established);
  assert_int_equal(f.deadline_ns, t1 + 1 + cfg.tcp_established_timeout_ns);
}

static void tcp_restart_after_both_fins(void**) {
  const FlowConfig cfg = config();
  const uint64_t t0 = 1000 * kSec;
  Flow f = established_flow(cfg, t0);
  flow_track(f, kTcpFin | kTcpAck, true, cfg, kUdpTtl, t0 + 2 * kSec);
  assert_false(flow_restarts(f, kTcpSyn));  // only one side closed: a SYN here is not a new connection
  flow_track(f, kTcpFin | kTcpAck, false, cfg, kUdpTtl, t0 + 3 * kSec);
  assert_int_equal(f.fin_seen, 3);
  assert_true(flow_restarts(f, kTcpSyn));
  flow_track(f, kTcpSyn, true, cfg, kUdpTtl, t0 + 4 * kSec);
  assert_int_equal(f.tcp_state, TcpState::SynSent);
  assert_int_equal(f.fin_seen, 0);
  assert_int_equal(f.deadline_ns, t0 + 4 * kSec + cfg.tcp_syn_timeout_ns);

  // UDP flows never restart.
  Flow u = make_flow(kIpProtoUdp);
  u.tcp_state = TcpState::Closed;
  u.fin_seen = 3;
  assert_false(flow_restarts(u, kTcpSyn));
}

// A flow ends unanswered when it is TCP, still in SYN state: the target sent nothing (a SYN-ACK, a RST or an ICMP
// error close or establish it). Client SYNs again do not count as an answer; UDP and hostname connections never
// count (the latter have target_timeout).
static void unanswered(void**) {
  const FlowConfig cfg = config();
  Flow f = make_flow(kIpProtoTcp);
  flow_start(f, kTcpSyn, cfg, kUdpTtl, 0);
  assert_true(flow_unanswered(f));
  flow_track(f, kTcpSyn, true, cfg, kUdpTtl, kSec);  // the client's retransmission
  assert_true(flow_unanswered(f));
  Flow answered = f;
  flow_track(answered, kTcpSyn | kTcpAck, false, cfg, kUdpTtl, 2 * kSec);
  assert_false(flow_unanswered(answered));
  Flow refused = f;
  flow_track(refused, kTcpRst | kTcpAck, false, cfg, kUdpTtl, 2 * kSec);
  assert_false(flow_unanswered(refused));
  Flow hostname = f;
  hostname.binding = Binding::WaitServer;
  assert_false(flow_unanswered(hostname));
  Flow u = make_flow(kIpProtoUdp);
  flow_start(u, 0, cfg, kUdpTtl, 0);
  assert_false(flow_unanswered(u));
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(may_start),
      cmocka_unit_test(udp_without_keepalive),
      cmocka_unit_test(udp_with_keepalive),
      cmocka_unit_test(tcp_handshake),
      cmocka_unit_test(tcp_data_extends_established),
      cmocka_unit_test(tcp_fin_from_client_then_target),
      cmocka_unit_test(tcp_fin_from_target_first),
      cmocka_unit_test(tcp_rst),
      cmocka_unit_test(tcp_restart_on_closed_flow),
      cmocka_unit_test(tcp_restart_after_both_fins),
      cmocka_unit_test(unanswered),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
