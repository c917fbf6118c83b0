// dpgw's transmit side of the QUIC framing (docs/protocol.md "QUIC framing", "ACK generation") on the real Worker
// (tests/support/pipeline_rig.hpp): tunnel q, whose one session speaks QUIC (as dpctld hands a finished connection
// over: both 1-RTT secrets, the agent's connection ID, the first packet number 2^30), next to the rig's relay
// tunnels. What dpgw sends is checked by the tests' own decoder (tests/support/quic_peer.hpp), not the codec's read
// path: keys derived from the spec's tx_secret (QuicKdf), header protection removed with the OpenSSL reference
// (crypto/header_protection.hpp), the payload opened with OpenSSL's EVP AES-128-GCM, the frames parsed here.
//  - a client packet to tunnel q's entry point leaves as a short-header packet to the agent's connection ID, with
//    consecutive packet numbers from 2^30, key phase 0, one DATAGRAM frame holding the inner header and the NAT-ed
//    packet; the relay tunnel's packets in the same burst still leave as relay frames; a packet the QUIC framing's
//    budget still carries (2 bytes more than a relay frame's) goes whole, one byte more gets frag-needed with the
//    QUIC budget; the agent's DATAGRAM reply reaches the client;
//  - two workers send to the one session at once (per-worker ipsec-mb managers, one counter);
//  - the agent's ack-eliciting packets get one ACK packet per burst acknowledging exactly the packet numbers seen,
//    with numbers from the same counter as the data; one held back by the cadence still goes (housekeeping);
//    ACK-only packets from the agent get none; slow-path packets are acknowledged although dropped; a burst after
//    burst gets no more ACKs than one per millisecond of the gateway's clock;
//  - the independent decoder refuses what a broken sender would write (another key, a flipped byte).
#include <openssl/evp.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <thread>
#include <vector>

#include "crypto/header_protection.hpp"
#include "crypto/quic_keys.hpp"
#include "dataplane/tables/quic_session.hpp"
#include "packet/parser.hpp"
#include "proto/quic_short_header.hpp"
#include "tests/support/pipeline_rig.hpp"
#include "tests/support/quic_peer.hpp"

using namespace dptun;
using namespace dptun::test;

namespace {

constexpr uint32_t kAgentQ = 0x0a630205;  // 10.99.2.5: tunnel q's QUIC agent
constexpr uint16_t kAgentQPort = 50443;
constexpr uint32_t kQuicSession = 5;
constexpr uint16_t kQuicPort = 443;       // dpgw.quic_port (default)
constexpr uint32_t kTargetQ = 0xc0a80901;  // 192.168.9.1:53, tunnel q's entry point target
constexpr uint16_t kEntryQ = 5353, kEntryB = 6000;
constexpr uint64_t kFirstPn = uint64_t(1) << 30;
const std::array<uint8_t, 8> kPeerCid = {0x8c, 0x1f, 0x07, 0xe2, 0x5a, 0x90, 0x33, 0xc4};  // as ngtcp2 would: random
const std::array<uint8_t, 4> kOurTail = {0xa1, 0xb2, 0xc3, 0xd4};

// A data packet's frames: exactly one DATAGRAM frame (type 0x30) to the end.
struct Datagram {
  InnerHeader ih;
  std::vector<uint8_t> packet;
};
Datagram datagram_of(const QuicPacket& p) {
  assert_true(p.payload.size() >= 1 + 12 + 20);
  assert_int_equal(p.payload[0], 0x30);
  Datagram d;
  d.ih.flow_id = load_be64(p.payload.data() + 1);
  d.ih.proto = p.payload[9];
  d.ih.flags = p.payload[10];
  d.packet.assign(p.payload.begin() + 13, p.payload.end());
  return d;
}

// An ACK-only packet's frames: one ACK frame (type 0x02), then PADDING only. Returns the acknowledged numbers.
std::set<uint64_t> acked_by(const QuicPacket& p, uint64_t* ack_delay = nullptr) {
  const uint8_t* q = p.payload.data();
  const uint8_t* end = q + p.payload.size();
  assert_true(q < end);
  assert_int_equal(*q++, 0x02);
  uint64_t largest = 0, delay = 0, count = 0, first = 0;
  assert_true(read_varint(q, end, largest) && read_varint(q, end, delay) && read_varint(q, end, count) &&
              read_varint(q, end, first));
  if (ack_delay) *ack_delay = delay;
  std::set<uint64_t> acked;
  assert_true(first <= largest);
  uint64_t hi = largest, lo = largest - first;
  for (uint64_t n = lo; n <= hi; ++n) acked.insert(n);
  for (uint64_t r = 0; r < count; ++r) {  // RFC 9000 19.3.1: gap, range length
    uint64_t gap = 0, range = 0;
    assert_true(read_varint(q, end, gap) && read_varint(q, end, range));
    assert_true(lo >= gap + 2 + range);
    hi = lo - gap - 2;
    lo = hi - range;
    for (uint64_t n = lo; n <= hi; ++n) acked.insert(n);
  }
  for (; q < end; ++q) assert_int_equal(*q, 0x00);  // PADDING
  return acked;
}

// ---- The rig

// Tunnels a and b of the rig (relay frames) and tunnel q, whose one session speaks QUIC; entry points udp/6000 to
// tunnel b (target the agent at 10.99.2.3) and udp/5353 to tunnel q (target 192.168.9.1:53).
struct Rig : PipelineRig {
  QuicSessionSpec spec;
  QuicPacketKeys gw_keys;     // what dpgw seals with (from spec.tx_secret)
  QuicPacketKeys agent_keys;  // what the agent seals with (spec.rx_secret)
  // Generation g's keys (RFC 9001 6), derived here: the secrets' chain by "quic ku", key and IV from each, the
  // header-protection key generation 0's throughout.
  std::vector<QuicPacketKeys> gw_gens, agent_gens;
  std::vector<std::vector<uint8_t>> gw_secrets, agent_secrets;
  OpensslAead eng;
  uint64_t agent_pn = 0;      // the agent's next packet number

  // `agent_limits`: the agent's max_udp_payload_size and max_datagram_frame_size (0: the defaults). `configured`:
  // the QUIC session also has a configured endpoint (live before its agent is heard from); without, its endpoint
  // is the hand-over's path alone, as dpctld's sessions are.
  explicit Rig(uint16_t workers = 1, std::pair<uint64_t, uint64_t> agent_limits = {0, 0}, bool configured = true)
      : PipelineRig(workers, [](GatewayConfig& cfg) {
          TunnelConfig q;
          q.id = Uuid::random_v4();
          q.name = "q";
          cfg.tunnels.push_back(q);
          auto entry = [&](uint16_t port, uint16_t tunnel, Endpoint target) {
            EntryPointConfig e;
            e.proto = kIpProtoUdp;
            e.port = port;
            e.tunnel = tunnel;
            e.target = target;
            e.keepalive = true;
            e.udp_ttl_ns = 5'000'000'000ull;
            cfg.entry_points.push_back(e);
          };
          entry(kEntryB, 1, Endpoint{Ipv4{kAgentB}, kEntryB});
          entry(kEntryQ, 2, Endpoint{Ipv4{kTargetQ}, 53});
        }) {
    spec.cipher = QuicCipher::Aes128Gcm;
    spec.rx_secret.assign(32, 0x41);
    spec.tx_secret.assign(32, 0x52);
    spec.cid_tails = {kOurTail};
    spec.peer_cid = kPeerCid;
    spec.first_tx_pn = kFirstPn;
    spec.path = Endpoint{Ipv4{kAgentQ}, kAgentQPort};  // the address dpctld's handshake validated
    if (agent_limits.first) spec.max_udp_payload_size = agent_limits.first;
    if (agent_limits.second) spec.max_datagram_frame_size = agent_limits.second;
    SessionSpec s;
    s.index = kQuicSession;
    s.tunnel = tunnel("q").id;
    s.base_secret = key_of(5);
    if (configured) s.endpoint = Endpoint{Ipv4{kAgentQ}, kAgentQPort};  // live before the agent is heard from
    s.quic = spec;
    std::string error;
    if (!gw->state().add_session(s, error)) fail_msg("add_session: %s", error.c_str());
    dp().neighbors.update(1, kAgentQ, mac_of(kAgentQ));
    QuicKdf kdf;
    assert_true(kdf.packet_keys(spec.cipher, spec.tx_secret, gw_keys));
    assert_true(kdf.packet_keys(spec.cipher, spec.rx_secret, agent_keys));
    gw_gens.push_back(gw_keys);
    agent_gens.push_back(agent_keys);
    gw_secrets.push_back(spec.tx_secret);
    agent_secrets.push_back(spec.rx_secret);
  }
  const QuicPacketKeys& gen_keys(std::vector<QuicPacketKeys>& gens, std::vector<std::vector<uint8_t>>& secrets,
                                 uint64_t g) {
    QuicKdf kdf;
    while (gens.size() <= g) {
      std::vector<uint8_t> next(secrets.back().size());
      assert_true(kdf.next_secret(spec.cipher, secrets.back(), next));
      QuicPacketKeys k;
      assert_true(kdf.packet_keys(spec.cipher, next, k));
      k.hp = gens[0].hp;  // (RFC 9001 6.3: "quic hp" is not updated)
      assert_memory_not_equal(k.key.data(), gens.back().key.data(), 16);
      secrets.push_back(std::move(next));
      gens.push_back(k);
    }
    return gens[g];
  }
  const QuicPacketKeys& gw_gen(uint64_t g) { return gen_keys(gw_gens, gw_secrets, g); }
  const QuicPacketKeys& agent_gen(uint64_t g) { return gen_keys(agent_gens, agent_secrets, g); }
  // The control lcore's tick, `ahead_ns` later than the gateway's clock says.
  void maintain(uint64_t ahead_ns = 0) { gw->state().maintain(dp().clock.now_ns() + ahead_ns, realtime_ns()); }

  // A packet of the agent's to dpgw's connection ID (index | tail) holding `frames`, sealed as its QUIC stack would
  // (padded to the sample), packet number agent_pn++, with key generation `gen`'s key and key phase.
  // `first_byte_bits`: ORed into the first byte before protection (the reserved bits, to test their check).
  std::vector<uint8_t> agent_packet(std::vector<uint8_t> frames, uint64_t gen = 0, uint8_t first_byte_bits = 0) {
    return quic_seal(std::move(frames), agent_gen(gen), kQuicSession, kOurTail, agent_pn++, gen & 1, eng,
                     first_byte_bits);
  }
  void from_agent_q(const std::vector<uint8_t>& packet, uint16_t port = kAgentQPort) {
    inject_from_agent(packet, kAgentQ, 0, kQuicPort, port);
  }
  // The control lcore's tick, `ahead_ns` later than the gateway's clock says, then the workers' poll.
  void control_tick(uint64_t ahead_ns = 0) {
    gw->control().tick(dp().clock.now_ns() + ahead_ns);
    poll();
  }
  // What dpgw sent the QUIC agent, opened with key generation `gen`'s keys (every frame to it must open, in that
  // generation's key phase), and what it sent anyone else. Every packet must go to `port` (0: any of the agent's).
  std::vector<QuicPacket> to_agent_q(const std::vector<std::vector<uint8_t>>& frames,
                                     std::vector<std::vector<uint8_t>>* others = nullptr, uint64_t gen = 0,
                                     uint16_t port = kAgentQPort) {
    const QuicPacketKeys keys = gw_gen(gen);
    std::vector<QuicPacket> out;
    for (const auto& f : frames) {
      PacketInfo pi;
      assert_int_equal(parse_ethernet(f, pi), ParseStatus::Ok);
      if (pi.dst_ip != kAgentQ) {
        assert_non_null(others);
        others->push_back(f);
        continue;
      }
      assert_memory_equal(f.data(), mac_of(kAgentQ).data(), 6);
      assert_int_equal(pi.src_ip, kGwUnderlay);
      assert_int_equal(pi.ip_total_len, f.size() - 14);
      assert_int_equal(pi.l4_len, pi.ip_total_len - 20);
      assert_true(ipv4_checksums_ok(f.data() + 14));
      QuicPacket p;
      assert_true(quic_open(f, keys, p));
      assert_int_equal(p.src_port, kQuicPort);
      if (port) assert_int_equal(p.dst_port, port);
      // short header, fixed bit, spin 0, reserved 0, the generation's key phase
      assert_int_equal(p.first & 0xfc, 0x40 | (gen & 1 ? 0x04 : 0));
      assert_int_equal(p.pn_len, 4);
      assert_memory_equal(p.dcid.data(), kPeerCid.data(), 8);  // the agent's connection ID, whole
      assert_true(p.pn >= kFirstPn && p.pn < (uint64_t(1) << 32));
      out.push_back(std::move(p));
    }
    return out;
  }
  uint64_t acks_tx() { return total(&WorkerStats::quic_acks_tx); }
};

std::vector<uint8_t> ping() { return {0x01}; }
// An ACK frame (RFC 9000 19.3) of `count` numbers up to `largest`, as 8-byte varints (dpgw's numbers need them).
std::vector<uint8_t> ack_frame(uint64_t largest, uint64_t count = 1) {
  std::vector<uint8_t> f(1 + 8 + 1 + 1 + 8);
  f[0] = 0x02;
  store_be64(f.data() + 1, largest | (uint64_t(3) << 62));
  store_be64(f.data() + 11, (count - 1) | (uint64_t(3) << 62));  // (delay 0, no further ranges)
  return f;
}

}  // namespace

static void client_packets_leave_as_quic_packets(void**) {
  Rig r;
  // One burst: three packets to tunnel q (QUIC), two to tunnel b (relay frames), interleaved.
  r.pub.inject(r.dp().pool, client_udp(41000, kEntryQ, 40));
  r.pub.inject(r.dp().pool, client_udp(41001, kEntryB, 41));
  r.pub.inject(r.dp().pool, client_udp(41000, kEntryQ, 42));
  r.pub.inject(r.dp().pool, client_udp(41001, kEntryB, 43));
  r.pub.inject(r.dp().pool, client_udp(41002, kEntryQ, 44));
  r.poll();
  std::vector<std::vector<uint8_t>> relay;
  const auto quic = r.to_agent_q(r.und.drain(), &relay);
  assert_int_equal(quic.size(), 3);
  // Packet numbers: consecutive from first_tx_pn, in the order the packets came.
  for (size_t k = 0; k < quic.size(); ++k) assert_int_equal(quic[k].pn, kFirstPn + k);
  std::set<uint64_t> flows;
  for (size_t k = 0; k < quic.size(); ++k) {
    const Datagram d = datagram_of(quic[k]);
    assert_int_equal(d.ih.proto, kIpProtoUdp);
    assert_int_equal(d.ih.flags & kInnerFlowNew, k == 1 ? 0 : kInnerFlowNew);  // the second is flow 41000's again
    flows.insert(d.ih.flow_id);
    PacketInfo pi;
    assert_int_equal(parse_ip(d.packet, pi), ParseStatus::Ok);
    assert_int_equal(pi.ip_total_len, d.packet.size());  // the DATAGRAM frame is the inner packet, nothing more
    assert_int_equal(pi.src_ip, kClient);
    assert_int_equal(pi.dst_ip, kTargetQ);  // NAT-ed to the entry point's target
    assert_int_equal(pi.dst_port, 53);
    assert_int_equal(pi.l4_len, 8 + 40 + 2 * k);
    assert_true(ipv4_checksums_ok(d.packet.data()));
  }
  assert_int_equal(flows.size(), 2);
  // The relay tunnel's packets of the same burst: relay frames, as dpagent opens them.
  assert_int_equal(relay.size(), 2);
  for (size_t k = 0; k < relay.size(); ++k) {
    const Opened o = agent_open(r.agent(2), relay[k], kAgentBMac, kAgentB);
    assert_int_equal(o.meta.receiver_index, 2);
    PacketInfo pi;
    assert_int_equal(parse_ip(o.packet, pi), ParseStatus::Ok);
    assert_int_equal(pi.l4_len, 8 + 41 + 2 * k);
  }
  assert_int_equal(r.tunnel_stats("q").to_agent_packets.get(), 3);
  assert_int_equal(r.tunnel_stats("q").to_agent_bytes.get(), 3 * 28 + 40 + 42 + 44);
  assert_int_equal(r.tunnel_stats("b").to_agent_packets.get(), 2);
  assert_int_equal(r.all_drops(), 0);

  // The agent's reply, a DATAGRAM to the flow: reaches the client from the entry point. (It asks for an ACK.)
  const Datagram first = datagram_of(quic[0]);
  PacketInfo req;
  assert_int_equal(parse_ip(first.packet, req), ParseStatus::Ok);
  const std::vector<uint8_t> answer = reply_to(first.packet, 30);
  std::vector<uint8_t> frames(1 + 12 + answer.size());
  frames[0] = 0x30;  // DATAGRAM to the packet's end
  encode_inner_header(frames.data() + 1, InnerHeader{first.ih.flow_id, kIpProtoUdp, 0});
  std::memcpy(frames.data() + 13, answer.data(), answer.size());
  r.from_agent_q(r.agent_packet(frames));
  r.poll();
  const auto to_client = r.pub.drain();
  assert_int_equal(to_client.size(), 1);
  PacketInfo pi;
  assert_int_equal(parse_ethernet(to_client[0], pi), ParseStatus::Ok);
  assert_int_equal(pi.src_ip, kGwPublic);
  assert_int_equal(pi.src_port, kEntryQ);
  assert_int_equal(pi.dst_port, 41000);
  const auto ack = r.to_agent_q(r.und.drain());
  assert_int_equal(ack.size(), 1);
  assert_int_equal(ack[0].pn, kFirstPn + 3);  // the same counter as the data packets
  assert_true(acked_by(ack[0]) == std::set<uint64_t>{0});
  // More data after it: the next number, never one the ACK had.
  r.pub.inject(r.dp().pool, client_udp(41000, kEntryQ, 40));
  r.poll();
  const auto more = r.to_agent_q(r.und.drain());
  assert_int_equal(more.size(), 1);
  assert_int_equal(more[0].pn, kFirstPn + 4);
  assert_int_equal(r.all_drops(), 0);
}

// Two workers send to the one QUIC session at once: each with its own ipsec-mb manager over the session's shared
// header-protection key, packet numbers from the one counter, none twice.
static void two_workers_one_session(void**) {
  Rig r(2);
  for (uint16_t k = 0; k < 8; ++k) {
    std::vector<uint8_t> f = client_udp(uint16_t(44000 + k), kEntryQ, 50 + k);
    r.pub.inject(r.dp().pool, f, k % 2);  // queue k % 2: worker k % 2
  }
  r.poll();
  const auto out = r.to_agent_q(r.und.drain());
  assert_int_equal(out.size(), 8);
  std::set<uint64_t> pns;
  for (const QuicPacket& p : out) {
    pns.insert(p.pn);
    const Datagram d = datagram_of(p);
    PacketInfo pi;
    assert_int_equal(parse_ip(d.packet, pi), ParseStatus::Ok);
    assert_int_equal(pi.l4_len, 8 + 50 + (pi.src_port - 44000));
  }
  assert_int_equal(pns.size(), 8);
  assert_int_equal(*pns.begin(), kFirstPn);
  assert_int_equal(*pns.rbegin(), kFirstPn + 7);
  assert_int_equal(r.worker(0).stats.encap_packets.get(), 4);
  assert_int_equal(r.worker(1).stats.encap_packets.get(), 4);
}

// The QUIC framing adds 42 bytes to an inner packet (70 with IPv4 and UDP), a relay frame 44 (72): on a 1500-byte
// underlay an inner packet of 1430 bytes goes whole in a QUIC packet; with DF, 1431 bytes gets frag-needed saying
// 1430; without DF a bigger one travels as inner fragments cut for that budget, each packet within the MTU.
static void quic_budget(void**) {
  Rig r;
  r.pub.inject(r.dp().pool, client_udp(42000, kEntryQ, 1430 - 28, kIpv4FlagDf));
  r.poll();
  auto out = r.und.drain();
  assert_int_equal(out.size(), 1);
  assert_int_equal(out[0].size(), 14 + 1500);
  auto q = r.to_agent_q(out);
  assert_int_equal(datagram_of(q[0]).packet.size(), 1430);
  r.pub.inject(r.dp().pool, client_udp(42000, kEntryQ, 1431 - 28, kIpv4FlagDf));
  r.poll();
  assert_int_equal(r.und.drain().size(), 0);
  const auto icmp = r.pub.drain();
  assert_int_equal(icmp.size(), 1);
  PacketInfo pi;
  assert_int_equal(parse_ethernet(icmp[0], pi), ParseStatus::Ok);
  assert_int_equal(pi.icmp_type, kIcmpDestUnreachable);
  assert_int_equal(pi.icmp_code, kIcmpFragNeeded);
  assert_int_equal(load_be16(icmp[0].data() + pi.l4_offset + 6), 1500 - 70);
  assert_int_equal(r.drops(Drop::TooBig), 1);
  // The relay tunnel keeps its own budget: 1429 bytes with DF is too big for a relay frame.
  r.pub.inject(r.dp().pool, client_udp(42001, kEntryB, 1429 - 28, kIpv4FlagDf));
  r.poll();
  assert_int_equal(r.und.drain().size(), 0);
  assert_int_equal(r.pub.drain().size(), 1);
  assert_int_equal(r.drops(Drop::TooBig), 2);
  // Without DF: inner fragments, each a QUIC packet within the MTU, numbered on.
  r.pub.inject(r.dp().pool, client_udp(42002, kEntryQ, 1472));  // (a 1500-byte client packet)
  r.poll();
  out = r.und.drain();
  assert_int_equal(out.size(), 2);
  q = r.to_agent_q(out);
  size_t bytes = 0;
  for (size_t k = 0; k < q.size(); ++k) {
    assert_true(out[k].size() <= 14 + 1500);
    assert_int_equal(q[k].pn, q[0].pn + k);
    const Datagram d = datagram_of(q[k]);
    assert_true(ipv4_is_fragment(d.packet.data()));
    bytes += d.packet.size() - 20;
  }
  assert_int_equal(datagram_of(q[0]).packet.size(), 20 + 1408);  // the QUIC budget's 1430, in 8-byte units
  assert_int_equal(bytes, 8 + 1472);
  assert_int_equal(r.total(&WorkerStats::fragments_tx), 2);
}

// The agent's transport parameters bound what dpgw sends it (RFC 9000 18.2, RFC 9221 3): with a
// max_datagram_frame_size of 1000 an inner packet may be 1000 - 1 (type) - 12 (inner header) = 987 bytes, below the
// MTU's 1430; with DF a bigger one gets frag-needed saying 987, without it inner fragments within the limit. A
// max_udp_payload_size of 1200 leaves 1200 - 42 = 1158. Limits too small for a tunnel refuse the session.
static void agent_limits_bound_the_budget(void**) {
  {
    Rig r(1, {0, 1000});
    r.pub.inject(r.dp().pool, client_udp(42000, kEntryQ, 987 - 28, kIpv4FlagDf));
    r.poll();
    auto q = r.to_agent_q(r.und.drain());
    assert_int_equal(q.size(), 1);
    assert_int_equal(datagram_of(q[0]).packet.size(), 987);
    r.pub.inject(r.dp().pool, client_udp(42000, kEntryQ, 988 - 28, kIpv4FlagDf));
    r.poll();
    assert_int_equal(r.und.drain().size(), 0);
    const auto icmp = r.pub.drain();
    assert_int_equal(icmp.size(), 1);
    PacketInfo pi;
    assert_int_equal(parse_ethernet(icmp[0], pi), ParseStatus::Ok);
    assert_int_equal(pi.icmp_code, kIcmpFragNeeded);
    assert_int_equal(load_be16(icmp[0].data() + pi.l4_offset + 6), 987);
    r.pub.inject(r.dp().pool, client_udp(42002, kEntryQ, 1472));
    r.poll();
    q = r.to_agent_q(r.und.drain());
    assert_int_equal(q.size(), 2);
    size_t bytes = 0;
    for (const auto& p : q) {
      const Datagram d = datagram_of(p);
      assert_true(1 + 12 + d.packet.size() <= 1000);
      assert_true(ipv4_is_fragment(d.packet.data()));
      bytes += d.packet.size() - 20;
    }
    assert_int_equal(bytes, 8 + 1472);
  }
  {
    Rig r(1, {1200, 0});
    r.pub.inject(r.dp().pool, client_udp(42000, kEntryQ, 1158 - 28, kIpv4FlagDf));
    r.pub.inject(r.dp().pool, client_udp(42001, kEntryQ, 1159 - 28, kIpv4FlagDf));
    r.poll();
    auto out = r.und.drain();
    assert_int_equal(out.size(), 1);
    assert_int_equal(out[0].size(), 14 + 20 + 8 + 1200);
    assert_int_equal(r.drops(Drop::TooBig), 1);
    // DATAGRAM frames too small for a tunnel: the session is refused, saying why.
    SessionSpec s;
    s.index = kQuicSession + 1;
    s.tunnel = r.tunnel("q").id;
    s.base_secret = key_of(6);
    s.quic = r.spec;
    s.quic->max_datagram_frame_size = 500;
    std::string error;
    assert_false(r.gw->state().add_session(s, error));
    assert_non_null(strstr(error.c_str(), "max_datagram_frame_size 500"));
    assert_null(r.dp().sessions.find(kQuicSession + 1));
  }
}

static void acks_for_ack_eliciting_packets(void**) {
  Rig r;
  // Packets 0, 1, 2 and 4 in one burst (3 is lost on the way): one ACK packet, for exactly those.
  std::vector<uint8_t> p[5];
  for (int k = 0; k < 5; ++k) p[k] = r.agent_packet(ping());
  for (int k : {0, 1, 2, 4}) r.from_agent_q(p[k]);
  r.poll();
  auto out = r.to_agent_q(r.und.drain());
  assert_int_equal(out.size(), 1);
  assert_int_equal(out[0].pn, kFirstPn);
  uint64_t delay = ~0ull;
  assert_true(acked_by(out[0], &delay) == (std::set<uint64_t>{0, 1, 2, 4}));
  assert_true(delay < (uint64_t(1) << 62));
  assert_true(out[0].payload.size() + 13 + 16 >= kQuicMinPacket);  // (long enough for the sample)
  assert_int_equal(r.acks_tx(), 1);
  assert_int_equal(r.total(&WorkerStats::encap_packets), 0);  // an ACK is not data
  // Packet 3 arrives late, then 5: acknowledged within the cadence, now or by the housekeeping once the interval
  // since the last ACK has passed -- one ACK either way, with every number seen.
  r.from_agent_q(p[3]);
  r.poll();
  r.from_agent_q(r.agent_packet(ping()));
  r.poll();
  std::this_thread::sleep_for(std::chrono::milliseconds(3));
  r.poll();
  out = r.to_agent_q(r.und.drain());
  assert_true(!out.empty() && out.size() <= 2);
  assert_true(acked_by(out.back()) == (std::set<uint64_t>{0, 1, 2, 3, 4, 5}));
  for (size_t k = 0; k < out.size(); ++k) assert_int_equal(out[k].pn, kFirstPn + 1 + k);
  const uint64_t acks = r.acks_tx();
  assert_int_equal(acks, 1 + out.size());

  // ACK-only packets from the agent (it acknowledges dpgw's numbers): nothing comes back, however long one waits.
  const uint64_t largest = kFirstPn + acks - 1;
  std::vector<uint8_t> ack = {0x02, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00, uint8_t(acks - 1)};  // delay 0, 1 range
  store_be64(ack.data() + 1, largest | (uint64_t(3) << 62));  // an 8-byte varint (2^30 does not fit 4 bytes)
  r.from_agent_q(r.agent_packet(ack));
  r.from_agent_q(r.agent_packet(ack));
  r.poll();
  std::this_thread::sleep_for(std::chrono::milliseconds(3));
  r.poll();
  assert_int_equal(r.und.drain().size(), 0);
  assert_int_equal(r.acks_tx(), acks);
  assert_int_equal(r.session(kQuicSession).quic->largest_acked_by_peer, largest);
  // A packet the fast path leaves to the slow path (MAX_DATA): its frames go to the control lcore, and it is
  // acknowledged, with the ACK-only packets' numbers too.
  std::this_thread::sleep_for(std::chrono::milliseconds(2));  // (the interval since the last ACK: it goes at once)
  r.from_agent_q(r.agent_packet({0x10, 0x44, 0x00}));
  r.poll();
  out = r.to_agent_q(r.und.drain());
  assert_int_equal(out.size(), 1);
  assert_true(acked_by(out[0]) == (std::set<uint64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8}));
  assert_int_equal(r.all_drops(), 0);
  r.gw->control().tick(r.dp().clock.now_ns());
  assert_int_equal(r.dp().quic_control.slow_path_rx.get(), 1);
  assert_int_equal(r.dp().quic_control.frames_rx[kQuicFrameMaxData].get(), 1);
  assert_int_equal(r.dp().quic_control.frames_malformed.get(), 0);

  // The cadence: a PING per burst, 20 bursts in a row, get at most one ACK per millisecond that passed (bounded by
  // the gateway's own clock, read around them, not by an assumed speed), and one more afterwards acknowledges all.
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const uint64_t before = r.acks_tx();
  const uint64_t t0 = r.dp().clock.now_ns();
  for (int k = 0; k < 20; ++k) {
    r.from_agent_q(r.agent_packet(ping()));
    r.poll();
  }
  const uint64_t t1 = r.dp().clock.now_ns();
  const uint64_t in_loop = r.acks_tx() - before;
  assert_true(in_loop >= 1 && in_loop <= 1 + (t1 - t0) / QuicInput::kAckIntervalNs + 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(3));
  r.poll();
  out = r.to_agent_q(r.und.drain());
  assert_true(out.size() >= in_loop && out.size() <= in_loop + 1);
  std::set<uint64_t> all;
  for (uint64_t n = 0; n <= 8 + 20; ++n) all.insert(n);
  assert_true(acked_by(out.back()) == all);
}

// The decoder above is a real check: a packet opened with another key, or with a byte of its ciphertext or DCID
// flipped, does not open.
static void decoder_refuses_broken_packets(void**) {
  Rig r;
  r.pub.inject(r.dp().pool, client_udp(43000, kEntryQ, 100));
  r.poll();
  auto out = r.und.drain();
  assert_int_equal(out.size(), 1);
  QuicPacket p;
  assert_true(quic_open(out[0], r.gw_keys, p));
  assert_false(quic_open(out[0], r.agent_keys, p));
  auto flipped = out[0];
  flipped[flipped.size() - 30] ^= 0x10;
  assert_false(quic_open(flipped, r.gw_keys, p));
  auto dcid = out[0];
  dcid[14 + 20 + 8 + 3] ^= 1;  // the DCID is authenticated (AAD)
  assert_false(quic_open(dcid, r.gw_keys, p));
}


// The agent updates its keys (RFC 9001 6), as ngtcp2 does near AES-GCM's confidentiality limit: dpgw opens its
// packets of generation 1, then 2, each time with keys the control lcore made ahead; its own packets (the ACKs, the
// data) follow into the new generation at once (6.2), which the decoder here opens only with that generation's keys
// it derived itself. A reordered packet of the old generation opens while its keys are kept (6.5), not after the
// control lcore retired them; a packet in the other key phase that the next key does not open moves nothing, and a
// packet sealed with a stale key in the current phase is not opened either.
static void agent_key_updates_followed(void**) {
  Rig r;
  QuicSessionState& q = *r.session(kQuicSession).quic;
  auto settle = [&] {  // the ACK cadence: a millisecond since the last ACK, then the owed one goes
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    r.poll();
  };
  const auto p0 = r.agent_packet(ping(), 0);     // 0
  const auto late1 = r.agent_packet(ping(), 0);  // 1: arrives after the window
  const auto late2 = r.agent_packet(ping(), 0);  // 2: arrives within it
  r.from_agent_q(p0);
  r.poll();
  auto out = r.to_agent_q(r.und.drain(), nullptr, 0);
  assert_int_equal(out.size(), 1);
  assert_true(acked_by(out[0]) == std::set<uint64_t>{0});
  assert_non_null(q.generation(1));  // made with the session: an update can come with the first packets

  // Generation 1 from packet 3: opened, and dpgw's ACK goes in generation 1 (key phase 1), its keys only.
  settle();
  r.from_agent_q(r.agent_packet(ping(), 1));  // 3
  r.from_agent_q(r.agent_packet(ping(), 1));  // 4
  r.poll();
  settle();
  auto raw = r.und.drain();
  out = r.to_agent_q(raw, nullptr, 1);
  assert_int_equal(out.size(), 1);
  assert_true(acked_by(out[0]) == (std::set<uint64_t>{0, 3, 4}));
  QuicPacket no;
  assert_false(quic_open(raw[0], r.gw_gen(0), no));
  assert_int_equal(q.rx_generation.load(), 1);
  assert_int_equal(q.tx_generation, 1);
  assert_int_equal(r.total(&WorkerStats::quic_key_updates_rx), 1);
  assert_int_equal(r.total(&WorkerStats::quic_key_updates_tx), 0);
  // Data to the agent: generation 1 too, the next packet number.
  r.pub.inject(r.dp().pool, client_udp(41000, kEntryQ, 40));
  r.poll();
  auto data = r.to_agent_q(r.und.drain(), nullptr, 1);
  assert_int_equal(data.size(), 1);
  assert_int_equal(data[0].pn, out[0].pn + 1);
  assert_int_equal(datagram_of(data[0]).ih.proto, kIpProtoUdp);

  // The control lcore sees generation 1: makes 2, keeps 0 for reordered packets.
  r.maintain();
  assert_non_null(q.generation(0));
  assert_non_null(q.generation(2));
  settle();
  r.from_agent_q(late2);  // below generation 1's first number, in the old phase: generation 0's keys
  r.poll();
  settle();
  out = r.to_agent_q(r.und.drain(), nullptr, 1);
  assert_int_equal(out.size(), 1);
  assert_true(acked_by(out[0]) == (std::set<uint64_t>{0, 2, 3, 4}));
  assert_int_equal(r.all_drops(), 0);
  // Its time is up: generation 0's keys are retired, packet 1 finds none.
  r.maintain(2 * kQuicOldKeysKeepNs);
  assert_null(q.generation(0));
  r.from_agent_q(late1);
  r.poll();
  settle();
  assert_int_equal(r.und.drain().size(), 0);
  assert_int_equal(r.drops(Drop::KeyUnavailable), 1);
  assert_int_equal(r.tunnel_stats("q").key_unavailable.get(), 1);

  // Generation 2 (key phase 0 again) from packet 5.
  r.from_agent_q(r.agent_packet(ping(), 2));  // 5
  r.poll();
  settle();
  raw = r.und.drain();
  out = r.to_agent_q(raw, nullptr, 2);
  assert_int_equal(out.size(), 1);
  assert_true(acked_by(out[0]) == (std::set<uint64_t>{0, 2, 3, 4, 5}));
  assert_false(quic_open(raw[0], r.gw_gen(0), no));
  assert_false(quic_open(raw[0], r.gw_gen(1), no));
  assert_int_equal(q.rx_generation.load(), 2);
  assert_int_equal(r.total(&WorkerStats::quic_key_updates_rx), 2);
  r.maintain();  // generation 3 made: what follows is tried with it
  assert_non_null(q.generation(3));

  // Forged: the other key phase on a packet generation 3's key does not open -- no update, the generation stays.
  auto forged = r.agent_packet(ping(), 2);  // 6
  forged[0] ^= kQuicKeyPhaseBit;  // (header protection is an XOR: the gateway reads key phase 1)
  r.from_agent_q(forged);
  std::vector<uint8_t> garbage = r.agent_packet(ping(), 3);  // 7: generation 3's phase, its payload broken
  garbage[garbage.size() - 5] ^= 0x40;
  r.from_agent_q(garbage);
  // Stale: generation 0's key in generation 2's key phase, a number above generation 2's first: not opened.
  r.from_agent_q(r.agent_packet(ping(), 0));  // 8
  r.poll();
  settle();
  assert_int_equal(r.und.drain().size(), 0);
  assert_int_equal(r.drops(Drop::AuthFail), 3);
  assert_int_equal(q.rx_generation.load(), 2);
  assert_int_equal(q.tx_generation, 2);
  assert_int_equal(r.total(&WorkerStats::quic_key_updates_rx), 2);
  // The agent goes on in generation 2.
  r.from_agent_q(r.agent_packet(ping(), 2));  // 9
  r.poll();
  settle();
  out = r.to_agent_q(r.und.drain(), nullptr, 2);
  assert_int_equal(out.size(), 1);
  assert_true(acked_by(out[0]) == (std::set<uint64_t>{0, 2, 3, 4, 5, 9}));
  assert_int_equal(r.all_drops(), 4);
}

// dpgw's own key update (RFC 9001 6.1, 6.6): after update_after_packets packets in a generation (lowered here from
// 2^22), and only once the agent has acknowledged a packet of that generation and has answered the previous update;
// packet numbers go on from the one counter, consecutive across generations.
static void gateway_starts_key_update(void**) {
  Rig r;
  QuicSessionState& q = *r.session(kQuicSession).quic;
  q.update_after_packets = 4;
  std::vector<uint64_t> pns;
  auto send_data = [&](int n, uint64_t gen) {
    for (int k = 0; k < n; ++k) r.pub.inject(r.dp().pool, client_udp(uint16_t(41000 + k), kEntryQ, 40));
    r.poll();
    const auto out = r.to_agent_q(r.und.drain(), nullptr, gen);
    assert_int_equal(out.size(), size_t(n));
    for (const QuicPacket& p : out) pns.push_back(p.pn);
    return pns.back();
  };
  uint64_t last = send_data(5, 0);
  // The agent acknowledges its handshake's packets only (below 2^30): none of generation 0, no update.
  r.from_agent_q(r.agent_packet(ack_frame(5), 0));
  r.poll();
  send_data(1, 0);
  assert_int_equal(r.total(&WorkerStats::quic_key_updates_tx), 0);
  // It acknowledges generation 0's packets: dpgw updates, its next packets are generation 1's.
  r.from_agent_q(r.agent_packet(ack_frame(last, 5), 0));
  r.poll();
  assert_int_equal(r.total(&WorkerStats::quic_key_updates_tx), 1);
  assert_int_equal(q.tx_generation, 1);
  assert_int_equal(q.rx_generation.load(), 0);
  last = send_data(5, 1);
  // The agent acknowledges them but still sends in generation 0 (it has not answered): no second update.
  r.from_agent_q(r.agent_packet(ack_frame(last, 5), 0));
  r.poll();
  send_data(1, 1);
  assert_int_equal(r.total(&WorkerStats::quic_key_updates_tx), 1);
  // It answers in generation 1: followed on receive, the transmit side is there already (an answer, not an update
  // of the agent's: not counted as one).
  r.from_agent_q(r.agent_packet(ack_frame(last, 5), 1));
  r.poll();
  assert_int_equal(q.rx_generation.load(), 1);
  assert_int_equal(q.tx_generation, 1);
  assert_int_equal(r.total(&WorkerStats::quic_key_updates_rx), 0);
  last = send_data(1, 1);  // (generation 2's keys are not made yet: no update before the control lcore's tick)
  assert_int_equal(r.total(&WorkerStats::quic_key_updates_tx), 1);
  r.maintain();
  assert_non_null(q.generation(2));
  r.from_agent_q(r.agent_packet(ack_frame(last, 2), 1));
  r.poll();
  assert_int_equal(r.total(&WorkerStats::quic_key_updates_tx), 2);
  send_data(2, 2);
  // One counter: every number once, consecutive from 2^30 (ACK packets too: the agent's packets asked for none).
  for (size_t k = 0; k < pns.size(); ++k) assert_int_equal(pns[k], kFirstPn + k);
  assert_int_equal(r.all_drops(), 0);
}

// The slow path (dataplane/main_lcore/quic_slow_path.hpp), through the real control loop and worker: a new address
// is validated before the endpoint moves (PATH_CHALLENGE within 3x what it sent, then padded to 1200 bytes; only
// the right PATH_RESPONSE moves it), a candidate that never answers is given up, the agent's PATH_CHALLENGE is
// answered where it came from, and CONNECTION_CLOSE ends the session.
void slow_path_validation_and_close(void**) {
  Rig r(1, {0, 0}, false);
  QuicControlStats& st = r.dp().quic_control;
  TunnelSession& s = r.session(kQuicSession);
  const Endpoint home{Ipv4{kAgentQ}, kAgentQPort};
  constexpr uint16_t kMoved = 40000, kLost = 40001;
  auto udp_payload = [](const QuicPacket& p) { return p.payload.size() + 1 + 8 + 4 + 16; };
  // The frame a packet from dpgw starts with, and its PATH data (the rest must be PADDING).
  auto path_frame = [](const QuicPacket& p, uint8_t type) {
    QuicFrameReader rd(p.payload);
    QuicFrame f;
    assert_true(rd.next(f));
    assert_int_equal(f.type, type);
    const auto data = f.path;
    while (rd.next(f)) assert_int_equal(f.type, kQuicFramePadding);
    assert_false(rd.malformed());
    return data;
  };
  // What dpgw sent to the agent's port `port`, but ACK-only packets (an ACK the cadence held back may leave with any
  // later poll, to the endpoint).
  auto probes_to = [&](uint16_t port) {
    std::vector<std::vector<uint8_t>> to_port;
    for (auto& f : r.und.drain()) {
      PacketInfo pi;
      assert_int_equal(parse_ethernet(f, pi), ParseStatus::Ok);
      if (pi.dst_port == port) to_port.push_back(std::move(f));
    }
    std::vector<QuicPacket> out;
    for (auto& p : r.to_agent_q(to_port, nullptr, 0, port))
      if (p.payload.empty() || p.payload[0] != kQuicFrameAck) out.push_back(std::move(p));
    return out;
  };
  auto frames_of = [](uint8_t type, const std::array<uint8_t, 8>& d) {
    std::vector<uint8_t> v(9);
    quic_write_path_frame(type, d, v);
    return v;
  };

  // The session starts at the address the hand-over names (the handshake validated it): a packet from elsewhere,
  // even the first, is a new path (a replay of what dpctld received cannot pull the tunnel away).
  assert_true(s.peer() == home);
  r.from_agent_q(r.agent_packet(ping()));
  r.poll();
  r.und.drain();
  assert_true(s.peer() == home);
  const uint64_t changes = s.endpoint_changes.load();

  // A PING from another port: acknowledged (to the endpoint), proposed to the control lcore, not followed.
  std::this_thread::sleep_for(std::chrono::milliseconds(2));  // (the ACK interval)
  r.from_agent_q(r.agent_packet(ping()), kMoved);
  r.poll();
  assert_int_equal(r.to_agent_q(r.und.drain()).size(), 1);  // the ACK, to the old port
  assert_true(s.peer() == home);
  r.control_tick();
  auto out = probes_to(kMoved);
  assert_int_equal(out.size(), 1);
  const auto c1 = path_frame(out[0], kQuicFramePathChallenge);
  assert_true(udp_payload(out[0]) <= 3 * 29);  // the 3x limit: the PING's packet was 29 bytes
  assert_int_equal(st.path_challenges_tx.get(), 1);
  assert_int_equal(st.path_probes_limited.get(), 1);
  assert_int_equal(r.total(&WorkerStats::quic_control_tx), 1);

  // More from there (1200 bytes): the next challenge, after the retry interval, is padded to 1200 bytes.
  std::vector<uint8_t> big = ping();
  big.resize(1200 - 1 - 8 - 2 - 16, 0);
  r.from_agent_q(r.agent_packet(big), kMoved);
  r.poll();
  r.und.drain();
  r.control_tick(QuicSlowPath::kRetryNs + 1'000'000);
  out = probes_to(kMoved);
  assert_int_equal(out.size(), 1);
  const auto c2 = path_frame(out[0], kQuicFramePathChallenge);
  assert_int_equal(udp_payload(out[0]), 1200);
  assert_true(c1 != c2);
  assert_true(s.peer() == home);

  // A PATH_RESPONSE with other data moves nothing; with the first challenge's, the endpoint moves.
  auto wrong = c1;
  wrong[0] ^= 1;
  r.from_agent_q(r.agent_packet(frames_of(kQuicFramePathResponse, wrong)), kMoved);
  r.poll();
  r.control_tick();
  assert_true(s.peer() == home);
  assert_int_equal(st.paths_validated.get(), 0);
  r.from_agent_q(r.agent_packet(frames_of(kQuicFramePathResponse, c1)), kMoved);
  r.poll();
  r.und.drain();
  r.control_tick();
  assert_true(s.peer() == (Endpoint{Ipv4{kAgentQ}, kMoved}));
  assert_int_equal(s.endpoint_changes.load(), changes + 1);
  assert_int_equal(st.paths_validated.get(), 1);
  assert_int_equal(st.frames_rx[kQuicFramePathResponse].get(), 2);
  r.und.drain();

  // The agent's PATH_CHALLENGE: PATH_RESPONSE with its data, where it came from, 1200 bytes (a validated path).
  const std::array<uint8_t, 8> theirs = {1, 3, 5, 7, 9, 11, 13, 15};
  r.from_agent_q(r.agent_packet(frames_of(kQuicFramePathChallenge, theirs)), kMoved);
  r.poll();
  r.und.drain();  // (its ACK)
  r.control_tick();
  out = probes_to(kMoved);
  assert_int_equal(out.size(), 1);
  assert_true(path_frame(out[0], kQuicFramePathResponse) == theirs);
  assert_int_equal(udp_payload(out[0]), 1200);
  assert_int_equal(st.path_responses_tx.get(), 1);

  // A candidate that never answers: challenged at most kMaxChallenges times, given up after kValidationNs.
  r.from_agent_q(r.agent_packet(big), kLost);
  r.poll();
  r.und.drain();
  const uint64_t t0 = r.dp().clock.now_ns();
  uint64_t sent = 0;
  for (uint64_t ahead = 0; ahead <= QuicSlowPath::kValidationNs + QuicSlowPath::kRetryNs; ahead += QuicSlowPath::kRetryNs / 2) {
    r.gw->control().tick(t0 + ahead);
    r.poll();
    sent += probes_to(kLost).size();
  }
  assert_true(sent >= 2 && sent <= QuicSlowPath::kMaxChallenges);
  assert_int_equal(st.path_validation_failed.get(), 1);
  assert_true(s.peer() == (Endpoint{Ipv4{kAgentQ}, kMoved}));
  // Its packets still get ACKs (to the endpoint); the same address is not proposed again at once.
  const uint64_t to_control = r.total(&WorkerStats::to_control);
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  r.from_agent_q(r.agent_packet(ping()), kLost);
  r.poll();
  assert_int_equal(r.to_agent_q(r.und.drain(), nullptr, 0, kMoved).size(), 1);
  assert_int_equal(r.total(&WorkerStats::to_control), to_control);

  // Malformed frames reach nothing: a NEW_CONNECTION_ID without a connection ID is refused by the fast path already.
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  r.from_agent_q(r.agent_packet({0x18, 1, 0, 0, 0, 0}), kMoved);
  r.poll();
  assert_int_equal(r.drops(Drop::FrameMalformed), 1);

  // NEW_CONNECTION_ID retiring sequence 0 (the ID dpgw sends with): noted once.
  std::vector<uint8_t> ncid = {0x18, 1, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8};
  ncid.resize(ncid.size() + 16, 0xab);
  r.from_agent_q(r.agent_packet(ncid), kMoved);
  r.from_agent_q(r.agent_packet(ncid), kMoved);
  r.poll();
  r.control_tick();
  assert_int_equal(st.frames_rx[kQuicFrameNewConnectionId].get(), 2);
  assert_int_equal(st.peer_cid_retired.get(), 1);
  // Frame types are counted once per packet: 50 PADDING bytes are one.
  std::vector<uint8_t> padded(50, 0);
  padded.push_back(kQuicFrameMaxData);
  padded.push_back(9);
  const uint64_t padding = st.frames_rx[kQuicFramePadding].get();
  r.from_agent_q(r.agent_packet(padded), kMoved);
  r.poll();
  r.control_tick();
  assert_int_equal(st.frames_rx[kQuicFramePadding].get(), padding + 1);
  assert_int_equal(st.frames_rx[kQuicFrameMaxData].get(), 1);

  // CONNECTION_CLOSE (application, reason with a control character): the session ends, dpctld is told once.
  assert_int_equal(r.all_drops(), 1);
  r.from_agent_q(r.agent_packet({0x1d, 0x05, 4, 'b', 'y', '\n', 'e'}), kMoved);
  r.poll();
  r.control_tick();
  assert_null(r.dp().sessions.find(kQuicSession));
  assert_int_equal(st.connection_closes_rx.get(), 1);
  auto closed = r.gw->control().quic_slow_path().closed_for_status();
  assert_int_equal(closed.size(), 1);
  assert_int_equal(closed[0].index, kQuicSession);
  assert_int_equal(closed[0].error_code, 5);
  assert_true(closed[0].application);
  assert_string_equal(closed[0].reason.c_str(), "by?e");
  assert_int_equal(r.gw->control().quic_slow_path().closed_for_status().size(), 0);
}

// The endpoint follows the highest-numbered non-probing packet (RFC 9000 9.1, 9.3): a packet of probing frames
// only from a new address is answered but proposes nothing; a candidate whose validation a newer packet from the
// endpoint overtakes is dropped, and its late PATH_RESPONSE moves nothing; reserved bits set (17.3.1) drop the
// packet before anything of it is taken.
void path_follows_highest_non_probing(void**) {
  Rig r(1, {0, 0}, false);
  QuicControlStats& st = r.dp().quic_control;
  TunnelSession& s = r.session(kQuicSession);
  const Endpoint home{Ipv4{kAgentQ}, kAgentQPort};
  constexpr uint16_t kProbe = 41000, kRacer = 41001;
  auto path_frame = [](uint8_t type, const std::array<uint8_t, 8>& d) {
    std::vector<uint8_t> v(9);
    quic_write_path_frame(type, d, v);
    return v;
  };
  r.from_agent_q(r.agent_packet(ping()));
  r.poll();
  r.und.drain();

  // Probing frames only, from elsewhere: the challenge is answered there, nothing is proposed.
  r.from_agent_q(r.agent_packet(path_frame(kQuicFramePathChallenge, {1, 2, 3, 4, 5, 6, 7, 8})), kProbe);
  r.poll();
  r.control_tick();
  r.und.drain();
  assert_int_equal(st.path_responses_tx.get(), 1);
  assert_int_equal(st.path_challenges_tx.get(), 0);
  assert_true(s.peer() == home);

  // A PING from elsewhere: a candidate, challenged.
  r.from_agent_q(r.agent_packet(ping()), kRacer);
  r.poll();
  r.control_tick();
  assert_int_equal(st.path_challenges_tx.get(), 1);
  std::array<uint8_t, 8> data{};
  bool found = false;
  // (The ACK of that PING, held up to QuicInput::kAckIntervalNs, goes to the endpoint: on a slow machine it leaves
  // in this control tick's poll, so this drain may hold it too.)
  for (const auto& q : r.to_agent_q(r.und.drain(), nullptr, 0, 0)) {
    QuicFrameReader rd(q.payload);
    QuicFrame f;
    if (!rd.next(f) || f.type != kQuicFramePathChallenge) {
      assert_int_equal(q.dst_port, kAgentQPort);
      continue;
    }
    assert_int_equal(q.dst_port, kRacer);
    data = f.path;
    found = true;
  }
  assert_true(found);
  // A newer PING from the endpoint: the candidate is dropped; its late answer moves nothing.
  r.from_agent_q(r.agent_packet(ping()));
  r.poll();
  r.control_tick();
  assert_int_equal(st.paths_abandoned.get(), 1);
  r.from_agent_q(r.agent_packet(path_frame(kQuicFramePathResponse, data)), kRacer);
  r.poll();
  r.control_tick();
  assert_true(s.peer() == home);
  assert_int_equal(st.paths_validated.get(), 0);

  // Reserved bits set: dropped as frame_malformed, its address not proposed, its number not taken.
  const uint64_t malformed = r.drops(Drop::FrameMalformed), challenges = st.path_challenges_tx.get();
  const uint64_t top = s.replay.top();
  r.from_agent_q(r.agent_packet(ping(), 0, kQuicShortReserved), kProbe);
  r.poll();
  r.control_tick();
  assert_int_equal(r.drops(Drop::FrameMalformed), malformed + 1);
  assert_int_equal(st.path_challenges_tx.get(), challenges);
  assert_int_equal(s.replay.top(), top);
}

// A flood of rare frames from one session reaches the control lcore only up to the session's share per window, on
// the slow path's own ring: the rest is dropped as quic_slow_path_limit (each packet still acknowledged and taken),
// and ARP's ring never fills because of it.
void slow_path_flood_bounded(void**) {
  Rig r;
  QuicControlStats& st = r.dp().quic_control;
  const std::vector<uint8_t> max_data{0x10, 0x44, 0x00};  // MAX_DATA 1024 (RFC 9000 19.9)
  constexpr int kFlood = 400;
  for (int i = 0; i < kFlood; ++i) {
    r.from_agent_q(r.agent_packet(max_data));
    if (i % 16 == 15) r.poll();
  }
  r.poll();
  for (int t = 0; t < 20; ++t) r.control_tick();  // (32 slow-path packets per tick)
  const uint64_t limited = r.drops(Drop::QuicSlowPathLimit);
  assert_true(limited > 0);
  assert_int_equal(st.slow_path_rx.get() + limited, kFlood);
  assert_int_equal(r.drops(Drop::QuicSlowPathFull), 0);
  assert_int_equal(r.drops(Drop::ControlFull), 0);
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(client_packets_leave_as_quic_packets),
      cmocka_unit_test(two_workers_one_session),
      cmocka_unit_test(quic_budget),
      cmocka_unit_test(agent_limits_bound_the_budget),
      cmocka_unit_test(acks_for_ack_eliciting_packets),
      cmocka_unit_test(decoder_refuses_broken_packets),
      cmocka_unit_test(agent_key_updates_followed),
      cmocka_unit_test(gateway_starts_key_update),
      cmocka_unit_test(slow_path_validation_and_close),
      cmocka_unit_test(slow_path_flood_bounded),
      cmocka_unit_test(path_follows_highest_non_probing),
  };
  return run_pipeline_tests("test_quic_tx", tests, sizeof tests / sizeof tests[0]);
}
