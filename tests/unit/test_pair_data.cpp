// A direct-path pair's data (docs/nat-traversal.md "The pair's data"): two PairData, the visitor's and the agent's,
// made from the same offer as dpctld writes it, exchange pair frames through the callbacks dpagent gives them (the
// direct-path socket while the path is direct, dpgw otherwise); frames open at the other end only, once (replay),
// not with another pairing's secret, not for a pair without data. And the visitor's flow table: which way each flow
// goes, chosen when it starts and kept; indexes name flows both ways; idle flows end; a new registration forgets the
// pair's flows but not dpgw's.
#include <ios>

#include "tests/unit/cmocka.hpp"

#include <cstring>
#include <optional>
#include <vector>

#include "agent/pair_data.hpp"
#include "agent/visitor_flows.hpp"
#include "crypto/aead_openssl.hpp"
#include "packet/checksum.hpp"
#include "packet/headers.hpp"
#include "packet/parser.hpp"
#include "proto/relay_frame.hpp"

using namespace dptun;

namespace {

constexpr uint64_t kSec = 1'000'000'000ull;

struct Wire {
  std::vector<std::vector<uint8_t>> direct, relayed;
  std::optional<Endpoint> direct_to;  // the path, as DirectPaths would say it
  Endpoint last_to;
};

struct End {
  Wire wire;
  PairData data;
  explicit End(AeadEngine& engine)
      : data(engine, 16, 120 * kSec,
             [this](Endpoint to, std::span<const uint8_t> f) {
               wire.last_to = to;
               wire.direct.emplace_back(f.begin(), f.end());
               return true;
             },
             [this](std::span<const uint8_t> f) {
               wire.relayed.emplace_back(f.begin(), f.end());
               return true;
             },
             [this](uint32_t) { return wire.direct_to; }) {}
};

PeerOffer offer(uint32_t pair, bool controlling, uint8_t secret_seed) {
  PeerOffer o;
  o.pair = pair;
  o.controlling = controlling;
  o.session = controlling ? 40002 : 40001;
  for (size_t i = 0; i < o.secret.size(); ++i) o.secret[i] = uint8_t(secret_seed + i);
  o.data = PairDataOffer{5, Endpoint::parse("10.99.3.2:8080")};
  return o;
}

// Builds a data frame carrying `payload` as its plaintext (an inner header and a packet) and sends it on `p`.
void send(End& e, PairData::Pair& p, uint8_t fill, size_t len = 60) {
  std::vector<uint8_t> frame(RelayCodec::kLayout.frame_len(uint32_t(len)));
  uint8_t* plain = frame.data() + RelayCodec::kLayout.inner_offset();
  const InnerHeader ih{SnatCodec::pair_tag(5, 9), kIpProtoUdp, 0};
  encode_inner_header(plain, ih);
  std::memset(plain + kInnerHeaderLen, fill, len - kInnerHeaderLen);
  e.data.send(p, frame.data(), len, 1 * kSec);
}

void frames_cross_once_either_way(void**) {
  OpensslAead engine;
  End visitor(engine), agent(engine);
  visitor.data.offer(offer(0x0a0b0c0d, true, 1));
  agent.data.offer(offer(0x0a0b0c0d, false, 1));
  PairData::Pair* vp = visitor.data.visitor_pair();
  assert_non_null(vp);
  assert_true(vp->target.has_value());
  PairData::Pair* ap = agent.data.by_block(5);
  assert_non_null(ap);
  assert_null(agent.data.visitor_pair());
  assert_null(agent.data.by_block(6));

  // Not direct: the frame goes to dpgw; direct: to the peer's address.
  send(visitor, *vp, 0x11);
  visitor.wire.direct_to = Endpoint::parse("10.99.5.2:41000");
  send(visitor, *vp, 0x22);
  assert_int_equal(visitor.wire.relayed.size(), 1);
  assert_int_equal(visitor.wire.direct.size(), 1);
  assert_true(visitor.wire.last_to == *Endpoint::parse("10.99.5.2:41000"));
  assert_int_equal(visitor.data.stats().frames_tx_relayed.get(), 1);
  assert_int_equal(visitor.data.stats().frames_tx_direct.get(), 1);
  std::vector<uint8_t> f1 = visitor.wire.relayed[0], f2 = visitor.wire.direct[0];
  assert_int_equal(f1[2] & kFlagPair, kFlagPair);
  // The cleartext header names the pair; the packet is not in clear.
  assert_int_equal(load_be32(f1.data() + 4), 0x0a0b0c0d);
  assert_null(memmem(f1.data(), f1.size(), std::vector<uint8_t>(16, 0x11).data(), 16));

  for (auto* f : {&f1, &f2}) {
    std::vector<uint8_t> copy = *f;
    std::span<uint8_t> plain;
    assert_ptr_equal(agent.data.open(copy, f == &f1, plain, 1 * kSec), ap);
    assert_int_equal(plain.size(), 60);
    const InnerHeader ih = decode_inner_header(plain.data());
    assert_int_equal(uint32_t(ih.flow_id), SnatCodec::pair_tag(5, 9));
    assert_int_equal(plain[kInnerHeaderLen], f == &f1 ? 0x11 : 0x22);
    // Again: a replay.
    copy = *f;
    assert_null(agent.data.open(copy, false, plain, 1 * kSec));
  }
  assert_int_equal(agent.data.stats().frames_rx_relayed.get(), 1);
  assert_int_equal(agent.data.stats().frames_rx_direct.get(), 1);
  assert_int_equal(agent.data.stats().replay.get(), 2);

  // The visitor's own frames do not open at the visitor (the directions' keys differ), the agent's do.
  std::vector<uint8_t> own = visitor.wire.direct[0];
  std::span<uint8_t> plain;
  assert_null(visitor.data.open(own, false, plain, 1 * kSec));
  assert_int_equal(visitor.data.stats().auth_fail.get(), 1);
  send(agent, *ap, 0x33);
  assert_int_equal(agent.wire.relayed.size(), 1);
  std::vector<uint8_t> reply = agent.wire.relayed[0];
  assert_ptr_equal(visitor.data.open(reply, true, plain, 1 * kSec), vp);
  assert_int_equal(plain[kInnerHeaderLen], 0x33);
  // A flipped bit anywhere, header included: refused.
  for (size_t at : {size_t(3), size_t(12), size_t(40), agent.wire.relayed[0].size() - 1}) {
    send(agent, *ap, 0x44);
    std::vector<uint8_t> bad = agent.wire.relayed.back();
    bad[at] ^= 0x01;
    assert_null(visitor.data.open(bad, true, plain, 1 * kSec));
  }
}

void other_pairings_do_not_open(void**) {
  OpensslAead engine;
  End visitor(engine), agent(engine), stranger(engine);
  visitor.data.offer(offer(77, true, 1));
  agent.data.offer(offer(77, false, 2));  // another secret: another pairing's
  stranger.data.offer(offer(78, false, 1));
  send(visitor, *visitor.data.visitor_pair(), 0x55);
  std::vector<uint8_t> f = visitor.wire.relayed[0];
  std::span<uint8_t> plain;
  assert_null(agent.data.open(f, true, plain, kSec));
  assert_int_equal(agent.data.stats().auth_fail.get(), 1);
  f = visitor.wire.relayed[0];
  assert_null(stranger.data.open(f, true, plain, kSec));
  assert_int_equal(stranger.data.stats().unknown_pair.get(), 1);
  // A pairing without data is not kept (and replaces one of its id that had data); gone and clear forget pairs.
  PeerOffer checks_only = offer(77, false, 1);
  checks_only.data.reset();
  agent.data.offer(checks_only);
  assert_null(agent.data.by_id(77));
  agent.data.offer(offer(77, false, 1));
  assert_non_null(agent.data.by_id(77));
  agent.data.gone(77);
  assert_null(agent.data.by_id(77));
  visitor.data.clear();
  assert_null(visitor.data.visitor_pair());
}

void flows_keep_their_way(void**) {
  VisitorFlows flows;
  const uint32_t prog = 0x64600001;
  // Started without a direct path: through dpgw, and it stays there once the path is direct.
  assert_int_equal(flows.from_program(kIpProtoTcp, prog, 40000, kTcpSyn, false, 0), VisitorFlows::kNone);
  assert_int_equal(flows.from_program(kIpProtoTcp, prog, 40000, kTcpAck, true, kSec), VisitorFlows::kNone);
  // Started while direct: on the pair, with its own index, kept when the path is no longer direct.
  const uint32_t a = flows.from_program(kIpProtoTcp, prog, 40001, kTcpSyn, true, kSec);
  const uint32_t b = flows.from_program(kIpProtoUdp, prog, 40001, 0, true, kSec);
  assert_int_not_equal(a, VisitorFlows::kNone);
  assert_int_not_equal(b, VisitorFlows::kNone);
  assert_int_not_equal(a, b);
  assert_int_equal(flows.from_program(kIpProtoTcp, prog, 40001, kTcpAck, false, 2 * kSec), a);
  // Replies find the program by index and protocol.
  auto to = flows.reply(a, kIpProtoTcp, kTcpAck, 2 * kSec);
  assert_true(to && to->ip == prog && to->port == 40001);
  assert_false(flows.reply(a, kIpProtoUdp, 0, 2 * kSec).has_value());
  assert_false(flows.reply(12345, kIpProtoTcp, 0, 2 * kSec).has_value());
  assert_false(flows.reply(SnatCodec::kPairBlockFlows, kIpProtoTcp, 0, 2 * kSec).has_value());
  assert_int_equal(flows.pair_flows(), 2);
  assert_int_equal(flows.gateway_flows(), 1);
  // UDP ends after its idle time, TCP lives on; a closing TCP flow ends sooner.
  flows.expire(2 * kSec + VisitorFlows::kUdpIdleNs);
  assert_false(flows.reply(b, kIpProtoUdp, 0, 0).has_value());
  assert_true(flows.reply(a, kIpProtoTcp, kTcpFin, 2 * kSec + VisitorFlows::kUdpIdleNs).has_value());
  flows.expire(3 * kSec + VisitorFlows::kUdpIdleNs + VisitorFlows::kClosingIdleNs);
  assert_false(flows.reply(a, kIpProtoTcp, 0, 0).has_value());
  assert_int_equal(flows.stats().expired.get(), 2);
  // A SYN on the port of a closed connection starts a new flow, which picks its way afresh.
  assert_int_equal(flows.from_program(kIpProtoTcp, prog, 40000, kTcpRst, false, 5 * kSec), VisitorFlows::kNone);
  assert_int_not_equal(flows.from_program(kIpProtoTcp, prog, 40000, kTcpSyn, true, 6 * kSec), VisitorFlows::kNone);
  // A new registration: the pair's flows are forgotten, dpgw's kept.
  flows.from_program(kIpProtoUdp, prog, 50000, 0, false, 6 * kSec);
  flows.forget_pair_flows();
  assert_int_equal(flows.pair_flows(), 0);
  assert_int_equal(flows.gateway_flows(), 1);
  assert_int_equal(flows.from_program(kIpProtoUdp, prog, 50000, 0, true, 7 * kSec), VisitorFlows::kNone);
}

void a_full_block_sends_through_dpgw(void**) {
  VisitorFlows flows;
  for (uint32_t i = 0; i < SnatCodec::kPairBlockFlows; ++i)
    assert_int_not_equal(flows.from_program(kIpProtoUdp, 0x64600001 + (i >> 16), uint16_t(i), 0, true, kSec),
                         VisitorFlows::kNone);
  assert_int_equal(flows.from_program(kIpProtoUdp, 0x64700001, 1, 0, true, kSec), VisitorFlows::kNone);
  assert_int_equal(flows.stats().pair_full.get(), 1);
  flows.expire(kSec + VisitorFlows::kUdpIdleNs);
  assert_int_equal(flows.pair_flows(), 0);
  assert_int_not_equal(flows.from_program(kIpProtoUdp, 0x64700001, 2, 0, true, 2 * kSec), VisitorFlows::kNone);
}

// The agent sends a visitor's packet to the pair's target whatever the visitor wrote: another host, another port,
// or another flow's translated source in the agent's own TUN subnet are never reached; a target in that subnet is
// refused. Checksums stay right (the kernel would drop the packet otherwise).
void the_agent_sends_to_the_target_only(void**) {
  OpensslAead engine;
  End agent(engine);
  agent.data.offer(offer(9, false, 1));
  PairData::Pair* p = agent.data.by_block(5);
  assert_non_null(p);
  const Ipv4Prefix tun = *Ipv4Prefix::parse("100.64.0.1/16");
  for (const char* forged : {"10.99.3.2:8080", "192.168.1.1:22", "100.64.128.7:33000", "10.99.3.2:9999"}) {
    // A UDP packet from the visitor's program to `forged`.
    std::vector<uint8_t> pkt(28 + 4, 0xab);
    const Endpoint to = *Endpoint::parse(forged);
    write_ipv4_header(pkt.data(), uint16_t(pkt.size()), 7, kIpProtoUdp, 0x64600001, to.ip.v4());
    store_be16(pkt.data() + 20, 40000);
    store_be16(pkt.data() + 22, to.port);
    store_be16(pkt.data() + 24, 12);
    store_be16(pkt.data() + 26, 0);
    store_be16(pkt.data() + 26, ipv4_l4_checksum(0x64600001, to.ip.v4(), kIpProtoUdp, {pkt.data() + 20, 12}));
    PacketInfo pi;
    assert_true(parse_ip(pkt, pi) == ParseStatus::Ok);
    assert_true(agent.data.address_to_target(*p, pkt.data(), pi, tun));
    assert_int_equal(load_be32(pkt.data() + 16), 0x0a630302);  // 10.99.3.2
    assert_int_equal(load_be16(pkt.data() + 22), 8080);
    assert_int_equal(ipv4_header_checksum({pkt.data(), 20}), 0);
    assert_int_equal(ipv4_l4_checksum(0x64600001, 0x0a630302, kIpProtoUdp, {pkt.data() + 20, 12}), 0);
  }
  // A target inside the agent's own subnet: refused.
  PeerOffer inside = offer(10, false, 1);
  inside.data = PairDataOffer{6, Endpoint::parse("100.64.128.9:80")};
  agent.data.offer(inside);
  std::vector<uint8_t> pkt(28, 0);
  PacketInfo pi{};
  pi.l4_offset = 20;
  pi.l4_proto = kIpProtoUdp;
  assert_false(agent.data.address_to_target(*agent.data.by_block(6), pkt.data(), pi, tun));
  assert_int_equal(agent.data.stats().bad_target.get(), 1);
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(frames_cross_once_either_way),
      cmocka_unit_test(other_pairings_do_not_open),
      cmocka_unit_test(flows_keep_their_way),
      cmocka_unit_test(a_full_block_sends_through_dpgw),
      cmocka_unit_test(the_agent_sends_to_the_target_only),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
