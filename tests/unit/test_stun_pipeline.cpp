// dpgw's STUN server in the real pipeline (dataplane/nat/stun_input.hpp): Binding requests to the STUN port, the
// tunnel port and the QUIC port are answered by the worker from the address and port they came to, out of the port
// they came in on, with the client's address in XOR-MAPPED-ADDRESS (decoded here by hand, RFC 8489 14.2); RFC 3489
// clients on the STUN port get MAPPED-ADDRESS. RFC 7983 demultiplexing: a relay frame whose receiver index is the
// magic cookie still goes to tunnel input, a QUIC packet with the cookie at 4..7 to QUIC input, a cookie-less
// "classic" request on the tunnel port is no STUN. What is not a Binding request is counted (stun_malformed,
// stun_not_request), as are wrong UDP checksums and sources that cannot be a host; stun_port = 0 leaves the port
// to the closed-port answer. Counters read as `dpgw stats --json` shows them.
#include <zlib.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "dataplane/main_lcore/stats_report.hpp"
#include "dataplane/nat/stun_input.hpp"
#include "packet/checksum.hpp"
#include "proto/stun.hpp"
#include "tests/support/pipeline_rig.hpp"

using namespace dptun;
using namespace dptun::test;

namespace {

constexpr uint16_t kStunPort = 3478;  // the default dpgw.stun_port
constexpr uint16_t kQuicPort = 443;   // the default dpgw.quic_port

// A Binding request (or another `type`) with transaction ID `id_seed`.., a SOFTWARE attribute and a FINGERPRINT
// (computed here with zlib, apart from proto/stun.cpp).
std::vector<uint8_t> stun_message(uint8_t id_seed, uint16_t type = 0x0001, bool fingerprint = true) {
  std::vector<uint8_t> m(20);
  store_be16(m.data(), type);
  store_be32(m.data() + 4, 0x2112A442);
  for (int i = 0; i < 12; ++i) m[8 + i] = uint8_t(id_seed + i);
  const std::vector<uint8_t> software = {0x80, 0x22, 0x00, 0x05, 't', 'e', 's', 't', 's', 0, 0, 0};
  m.insert(m.end(), software.begin(), software.end());
  if (fingerprint) {
    store_be16(m.data() + 2, uint16_t(m.size() - 20 + 8));
    const uint32_t crc = uint32_t(crc32(0, m.data(), uInt(m.size()))) ^ 0x5354554E;
    m.insert(m.end(), {0x80, 0x28, 0x00, 0x04, uint8_t(crc >> 24), uint8_t(crc >> 16), uint8_t(crc >> 8), uint8_t(crc)});
  }
  store_be16(m.data() + 2, uint16_t(m.size() - 20));
  return m;
}

// An Ethernet frame carrying `payload` in UDP from `src`:`sport` (MAC mac_of(src)) to `dst`:`dport`, with a correct
// UDP checksum (or 0 / a wrong one).
enum class Sum { Right, None, Wrong };
std::vector<uint8_t> udp_frame(uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport,
                               const std::vector<uint8_t>& payload, Sum sum = Sum::Right) {
  std::vector<uint8_t> f(14 + 20 + 8 + payload.size());
  std::memcpy(f.data(), mac_of(dst).data(), 6);
  std::memcpy(f.data() + 6, mac_of(src).data(), 6);
  store_be16(f.data() + 12, kEtherTypeIpv4);
  write_ipv4_header(f.data() + 14, uint16_t(20 + 8 + payload.size()), 7, kIpProtoUdp, src, dst);
  uint8_t* u = f.data() + 34;
  store_be16(u, sport);
  store_be16(u + 2, dport);
  store_be16(u + 4, uint16_t(8 + payload.size()));
  std::memcpy(u + 8, payload.data(), payload.size());
  if (sum != Sum::None) {
    uint16_t c = ipv4_l4_checksum(src, dst, kIpProtoUdp, {u, 8 + payload.size()});
    if (!c) c = 0xffff;
    store_be16(u + 6, sum == Sum::Wrong ? uint16_t(c ^ 0x0100) : c);
  }
  return f;
}

// One answer: checks its Ethernet, IPv4 and UDP headers (to `client`:`cport` at its MAC, from `gw`:`gw_port` at
// the rig port's MAC, both checksums) and returns the STUN message it carries.
std::vector<uint8_t> check_answer(const std::vector<uint8_t>& frame, uint32_t client, uint16_t cport, uint32_t gw,
                                  uint16_t gw_port) {
  PacketInfo pi;
  assert_int_equal(parse_ethernet(frame, pi), ParseStatus::Ok);
  assert_memory_equal(frame.data(), mac_of(client).data(), 6);
  assert_int_equal(pi.l4_proto, kIpProtoUdp);
  assert_int_equal(pi.src_ip, gw);
  assert_int_equal(pi.dst_ip, client);
  assert_int_equal(pi.src_port, gw_port);
  assert_int_equal(pi.dst_port, cport);
  assert_int_equal(ipv4_header_checksum({frame.data() + 14, pi.ip_header_len}), 0);
  const uint8_t* u = frame.data() + pi.l4_offset;
  assert_true(load_be16(u + 6) != 0);
  assert_int_equal(csum_fold(csum_add({u, pi.l4_len}, ipv4_pseudo_sum(gw, client, kIpProtoUdp, pi.l4_len))), 0xffff);
  return std::vector<uint8_t>(u + 8, u + pi.l4_len);
}

// The address a Binding success response carries, read by hand: XOR-MAPPED-ADDRESS (or MAPPED-ADDRESS for a
// classic answer) as its first attribute.
std::pair<uint32_t, uint16_t> mapped_address(const std::vector<uint8_t>& s, bool classic = false) {
  assert_true(s.size() >= 32);
  assert_int_equal(load_be16(s.data()), 0x0101);
  assert_int_equal(load_be16(s.data() + 2), s.size() - 20);
  assert_int_equal(load_be16(s.data() + 20), classic ? 0x0001 : 0x0020);
  assert_int_equal(load_be16(s.data() + 22), 8);
  assert_int_equal(s[25], 0x01);  // IPv4
  const uint16_t port = load_be16(s.data() + 26);
  const uint32_t ip = load_be32(s.data() + 28);
  if (classic) return {ip, port};
  return {ip ^ 0x2112A442u, uint16_t(port ^ 0x2112)};
}

uint64_t json_counter(PipelineRig& r, const char* name) {
  const nlohmann::json stats = nlohmann::json::parse(stats_json(r.dp()));
  return stats["workers"][0][name].get<uint64_t>();
}
uint64_t json_drop(PipelineRig& r, const char* reason) {
  const nlohmann::json stats = nlohmann::json::parse(stats_json(r.dp()));
  return stats["workers"][0]["drops"][reason].get<uint64_t>();
}

void answered_on_each_port(void**) {
  PipelineRig r;
  const uint16_t tunnel_port = r.dp().cfg->tunnel_port;
  assert_int_equal(r.dp().cfg->stun_port, kStunPort);
  struct Case {
    uint16_t to, from;
  } cases[] = {{kStunPort, 40000}, {tunnel_port, 40001}, {kQuicPort, 40002}};
  uint8_t seed = 1;
  for (const Case& c : cases) {
    const std::vector<uint8_t> req = stun_message(seed);
    r.pub.inject(r.dp().pool, udp_frame(kClient, c.from, kGwPublic, c.to, req));
    r.poll();
    const auto out = r.pub.drain();
    assert_int_equal(out.size(), 1);
    assert_true(r.und.drain().empty());
    const std::vector<uint8_t> s = check_answer(out[0], kClient, c.from, kGwPublic, c.to);
    assert_memory_equal(s.data() + 4, req.data() + 4, 16);  // cookie and transaction ID
    const auto [ip, port] = mapped_address(s);
    assert_int_equal(ip, kClient);
    assert_int_equal(port, c.from);
    assert_true(parse_stun(s, false).has_value());  // its FINGERPRINT verifies
    seed = uint8_t(seed + 16);
  }
  // An agent on the underlay side, without a UDP checksum: answered out of the underlay port, from its address.
  r.und.inject(r.dp().pool, udp_frame(kAgentA, 50000, kGwUnderlay, kStunPort, stun_message(99), Sum::None));
  r.poll();
  const auto out = r.und.drain();
  assert_int_equal(out.size(), 1);
  assert_true(r.pub.drain().empty());
  const auto [ip, port] = mapped_address(check_answer(out[0], kAgentA, 50000, kGwUnderlay, kStunPort));
  assert_int_equal(ip, kAgentA);
  assert_int_equal(port, 50000);
  assert_int_equal(r.total(&WorkerStats::stun_requests), 4);
  assert_int_equal(r.total(&WorkerStats::stun_responses), 4);
  assert_int_equal(r.all_drops(), 0);
  assert_int_equal(json_counter(r, "stun_requests"), 4);
  assert_int_equal(json_counter(r, "stun_responses"), 4);
  // A burst of 32 from 32 client ports on one poll: 32 answers, each to its own port.
  for (uint16_t i = 0; i < 32; ++i)
    r.pub.inject(r.dp().pool, udp_frame(kClient, uint16_t(41000 + i), kGwPublic, kStunPort, stun_message(uint8_t(i))));
  r.poll();
  const auto burst = r.pub.drain();
  assert_int_equal(burst.size(), 32);
  for (uint16_t i = 0; i < 32; ++i)
    assert_int_equal(mapped_address(check_answer(burst[i], kClient, uint16_t(41000 + i), kGwPublic, kStunPort)).second,
                     41000 + i);
  assert_int_equal(r.total(&WorkerStats::stun_responses), 36);
}

// RFC 3489 clients (no magic cookie) on the STUN port: MAPPED-ADDRESS, the 16 ID bytes back. A CHANGE-REQUEST
// asking for another port gets a 420. On the tunnel port such a request is no STUN.
void classic_clients_on_the_stun_port(void**) {
  PipelineRig r;
  const std::vector<uint8_t> req = from_hex("00010008" "0169d331f507b509b6868c3acebfd46e" "00030004" "00000000");
  r.pub.inject(r.dp().pool, udp_frame(kClient, 25060, kGwPublic, kStunPort, req));
  r.poll();
  auto out = r.pub.drain();
  assert_int_equal(out.size(), 1);
  const std::vector<uint8_t> s = check_answer(out[0], kClient, 25060, kGwPublic, kStunPort);
  assert_int_equal(s.size(), 32);
  assert_memory_equal(s.data() + 4, req.data() + 4, 16);
  const auto [ip, port] = mapped_address(s, true);
  assert_int_equal(ip, kClient);
  assert_int_equal(port, 25060);
  const std::vector<uint8_t> change = from_hex("00010008" "022e19294e2cb11ca5d46958aac9aa19" "00030004" "00000004");
  r.pub.inject(r.dp().pool, udp_frame(kClient, 25061, kGwPublic, kStunPort, change));
  r.poll();
  out = r.pub.drain();
  assert_int_equal(out.size(), 1);
  const std::vector<uint8_t> e = check_answer(out[0], kClient, 25061, kGwPublic, kStunPort);
  assert_int_equal(load_be16(e.data()), 0x0111);
  assert_int_equal(r.total(&WorkerStats::stun_responses), 2);
  // The same classic request to the tunnel port goes to tunnel input (too short for a relay frame there).
  const uint64_t drops = r.all_drops();
  r.pub.inject(r.dp().pool, udp_frame(kClient, 25062, kGwPublic, r.dp().cfg->tunnel_port, req));
  r.poll();
  assert_true(r.pub.drain().empty());
  assert_int_equal(r.all_drops(), drops + 1);
  assert_int_equal(r.drops(Drop::StunMalformed), 0);
  assert_int_equal(r.total(&WorkerStats::stun_requests), 2);
}

// RFC 7983 on the shared ports: a relay frame (version 0x01 first) whose receiver index is the cookie, and a QUIC
// packet (fixed bit set) with the cookie at 4..7, are no STUN.
void shared_ports_demultiplex(void**) {
  PipelineRig r;
  std::vector<uint8_t> frame(64, 0xab);
  frame[0] = kRelayVersion;
  frame[1] = uint8_t(FrameType::Data);
  frame[2] = 0;
  frame[3] = 0;
  store_be32(frame.data() + 4, 0x2112A442);  // the receiver index is the magic cookie
  r.pub.inject(r.dp().pool, udp_frame(kClient, 51900, kGwPublic, r.dp().cfg->tunnel_port, frame));
  r.poll();
  assert_true(r.pub.drain().empty());
  assert_int_equal(r.drops(Drop::UnknownSession), 1);  // tunnel input looked the index up
  std::vector<uint8_t> quic(64, 0x5a);
  quic[0] = 0x41;  // a short header (fixed bit)
  store_be32(quic.data() + 4, 0x2112A442);
  r.pub.inject(r.dp().pool, udp_frame(kClient, 40000, kGwPublic, kQuicPort, quic));
  r.poll();
  // QUIC input: a packet of no QUIC session, and no kernel path for dpctld: a closed port (ICMP port unreachable).
  const auto out = r.pub.drain();
  assert_int_equal(out.size(), 1);
  PacketInfo pi;
  assert_int_equal(parse_ethernet(out[0], pi), ParseStatus::Ok);
  assert_int_equal(pi.l4_proto, kIpProtoIcmp);
  assert_int_equal(r.drops(Drop::NoEntryPoint), 1);
  assert_int_equal(r.all_drops(), 2);
  assert_int_equal(r.total(&WorkerStats::stun_requests), 0);
  assert_int_equal(r.drops(Drop::StunMalformed) + r.drops(Drop::StunNotRequest), 0);
  // A Binding success response (0x0101) to the tunnel port: first byte 0x01, a relay frame's version: tunnel input.
  r.pub.inject(r.dp().pool, udp_frame(kClient, 40001, kGwPublic, r.dp().cfg->tunnel_port, stun_message(5, 0x0101)));
  r.poll();
  assert_true(r.pub.drain().empty());
  assert_int_equal(r.drops(Drop::StunMalformed) + r.drops(Drop::StunNotRequest), 0);
  assert_int_equal(r.all_drops(), 3);
}

void malformed_and_not_requests_are_counted(void**) {
  PipelineRig r;
  const uint16_t tunnel_port = r.dp().cfg->tunnel_port;
  auto send = [&](const std::vector<uint8_t>& f) {
    r.pub.inject(r.dp().pool, f);
    r.poll();
    assert_true(r.pub.drain().empty());  // never answered
  };
  std::vector<uint8_t> junk = {'h', 'e', 'l', 'l', 'o', ' ', 's', 't', 'u', 'n', ' ', 's', 'e', 'r', 'v', 'e',
                               'r', ',', ' ', 'a', 'r', 'e', ' ', 'y', 'o', 'u', ' ', 't', 'h', 'e', 'r', 'e'};
  send(udp_frame(kClient, 40000, kGwPublic, kStunPort, junk));  // not STUN's top bits
  send(udp_frame(kClient, 40000, kGwPublic, kStunPort, {0, 1, 0, 0}));  // too short
  std::vector<uint8_t> bad_fp = stun_message(1);
  bad_fp.back() ^= 1;
  send(udp_frame(kClient, 40000, kGwPublic, kStunPort, bad_fp));
  std::vector<uint8_t> bad_len = stun_message(2);
  bad_len[3] = uint8_t(bad_len[3] + 4);
  send(udp_frame(kClient, 40000, kGwPublic, tunnel_port, bad_len));  // STUN by its first bytes, then malformed
  std::vector<uint8_t> overrun = stun_message(3, 0x0001, false);
  overrun[22] = 0x00;
  overrun[23] = 0x09;  // SOFTWARE's length past the end
  send(udp_frame(kClient, 40000, kGwPublic, kQuicPort, overrun));
  send(udp_frame(kClient, 40000, kGwPublic, kStunPort, stun_message(4), Sum::Wrong));  // a wrong UDP checksum
  send(udp_frame(kClient, 0, kGwPublic, kStunPort, stun_message(5)));  // from port 0: nowhere to answer
  send(udp_frame(0xe0000001, 40000, kGwPublic, kStunPort, stun_message(6)));  // from a multicast address
  assert_int_equal(r.drops(Drop::StunMalformed), 8);
  assert_int_equal(json_drop(r, "stun_malformed"), 8);
  send(udp_frame(kClient, 40000, kGwPublic, kStunPort, stun_message(7, 0x0011)));  // Binding indication
  send(udp_frame(kClient, 40000, kGwPublic, kStunPort, stun_message(8, 0x0101)));  // a success response
  send(udp_frame(kClient, 40000, kGwPublic, kStunPort, stun_message(9, 0x0003)));  // TURN Allocate request
  send(udp_frame(kClient, 40000, kGwPublic, tunnel_port, stun_message(10, 0x0011)));  // first byte 0x00: STUN
  assert_int_equal(r.drops(Drop::StunNotRequest), 4);
  assert_int_equal(json_drop(r, "stun_not_request"), 4);
  assert_int_equal(r.all_drops(), 12);
  assert_int_equal(r.total(&WorkerStats::stun_requests), 0);
  assert_int_equal(r.total(&WorkerStats::stun_responses), 0);
  // An unknown comprehension-required attribute: a 420, counted as request and response.
  std::vector<uint8_t> unknown = stun_message(11, 0x0001, false);
  unknown.insert(unknown.end(), {0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4});  // PRIORITY
  store_be16(unknown.data() + 2, uint16_t(unknown.size() - 20));
  r.pub.inject(r.dp().pool, udp_frame(kClient, 40000, kGwPublic, kStunPort, unknown));
  r.poll();
  const auto out = r.pub.drain();
  assert_int_equal(out.size(), 1);
  const std::vector<uint8_t> e = check_answer(out[0], kClient, 40000, kGwPublic, kStunPort);
  assert_int_equal(load_be16(e.data()), 0x0111);
  assert_int_equal(load_be16(e.data() + 20), 0x0009);     // ERROR-CODE
  assert_int_equal(e[26] * 100 + e[27], 420);
  assert_int_equal(load_be16(e.data() + 48), 0x000a);     // UNKNOWN-ATTRIBUTES
  assert_int_equal(load_be16(e.data() + 52), 0x0024);
  assert_int_equal(r.total(&WorkerStats::stun_requests), 1);
  assert_int_equal(r.total(&WorkerStats::stun_responses), 1);
}

// A Binding request in two IPv4 fragments to the STUN port: put together, then dropped as `fragment` (never answered
// from a datagram dpgw had to reassemble).
void fragmented_requests_dropped(void**) {
  PipelineRig r;
  const std::vector<uint8_t> whole = udp_frame(kClient, 40000, kGwPublic, kStunPort, stun_message(1));
  const size_t first = 24;  // UDP header and 16 bytes of STUN: a multiple of 8
  const size_t l4 = whole.size() - 34;
  auto fragment = [&](size_t off, size_t len, bool more) {
    std::vector<uint8_t> f(whole.begin(), whole.begin() + 34);
    f.insert(f.end(), whole.begin() + long(34 + off), whole.begin() + long(34 + off + len));
    uint8_t* ip = f.data() + 14;
    store_be16(ip + 2, uint16_t(20 + len));
    store_be16(ip + 6, uint16_t((more ? 0x2000 : 0) | off / 8));
    store_be16(ip + 10, 0);
    store_be16(ip + 10, ipv4_header_checksum({ip, 20}));
    return f;
  };
  r.pub.inject(r.dp().pool, fragment(0, first, true));
  r.pub.inject(r.dp().pool, fragment(first, l4 - first, false));
  r.poll();
  assert_true(r.pub.drain().empty());
  assert_int_equal(r.total(&WorkerStats::frag_reassembled), 1);
  assert_int_equal(r.drops(Drop::Fragment), 1);
  assert_int_equal(r.total(&WorkerStats::stun_requests), 0);
}

// A flood: each worker answers at most StunInput::kAnswerBurst at once and kAnswersPerSecond after that; the rest is
// counted (requests, stun_limited), not answered. 8 bursts of 64 sent faster than the bucket refills (it adds 10
// per millisecond; the 512 requests take a few).
void answers_rate_limited(void**) {
  PipelineRig r;
  constexpr int kSent = 512;
  size_t answered = 0;
  for (int b = 0; b < kSent / 64; ++b) {
    for (int i = 0; i < 64; ++i)
      r.pub.inject(r.dp().pool, udp_frame(kClient, uint16_t(30000 + b * 64 + i), kGwPublic, kStunPort,
                                          stun_message(uint8_t(i))));
    r.poll();
    r.poll();
    answered += r.pub.drain().size();
  }
  const uint64_t limited = r.drops(Drop::StunLimited);
  assert_true(answered >= StunInput::kAnswerBurst);
  assert_true(limited > 0);
  assert_int_equal(answered + limited, kSent);
  assert_int_equal(r.total(&WorkerStats::stun_requests), kSent);
  assert_int_equal(r.total(&WorkerStats::stun_responses), answered);
  assert_int_equal(json_drop(r, "stun_limited"), limited);
}

// stun_port = 0: the port is an ordinary closed one (ICMP port unreachable, no_entry_point); STUN on the tunnel port
// is still answered.
void stun_port_off(void**) {
  PipelineRig r(1, [](GatewayConfig& cfg) { cfg.stun_port = 0; });
  r.pub.inject(r.dp().pool, udp_frame(kClient, 40000, kGwPublic, kStunPort, stun_message(1)));
  r.poll();
  auto out = r.pub.drain();
  assert_int_equal(out.size(), 1);
  PacketInfo pi;
  assert_int_equal(parse_ethernet(out[0], pi), ParseStatus::Ok);
  assert_int_equal(pi.l4_proto, kIpProtoIcmp);
  assert_int_equal(r.drops(Drop::NoEntryPoint), 1);
  assert_int_equal(r.total(&WorkerStats::stun_requests), 0);
  r.pub.inject(r.dp().pool, udp_frame(kClient, 40001, kGwPublic, r.dp().cfg->tunnel_port, stun_message(2)));
  r.poll();
  out = r.pub.drain();
  assert_int_equal(out.size(), 1);
  assert_int_equal(mapped_address(check_answer(out[0], kClient, 40001, kGwPublic, r.dp().cfg->tunnel_port)).second,
                   40001);
}

// dpctld's entry points and a reload's may not take the STUN port (dpgw's own config is refused when loaded:
// test_gateway_config); TCP on that number may, and so may UDP once stun_port is 0.
void entry_points_on_the_stun_port_refused(void**) {
  EntrySpec e;
  std::string error;
  {
    PipelineRig r;  // (one rig at a time: a rig deletes the gateway the last one left)
    e.proto = kIpProtoUdp;
    e.port = kStunPort;
    e.tunnel = r.tunnel("a").id;
    e.target = Endpoint{Ipv4{kAgentA}, 3478};
    assert_false(r.gw->state().set_entry(e, error));
    assert_string_equal(error.c_str(), "UDP port 3478 is the STUN port (dpgw.stun_port)");
    e.proto = kIpProtoTcp;
    assert_true(r.gw->state().set_entry(e, error));
    GatewayConfig reload = *r.dp().cfg;
    EntryPointConfig ec;
    ec.proto = kIpProtoUdp;
    ec.port = kStunPort;
    ec.tunnel = 0;
    ec.target = Endpoint{Ipv4{kAgentA}, 3478};
    reload.entry_points.push_back(ec);
    assert_false(r.gw->state().apply_config(reload, error));
    assert_string_equal(error.c_str(), "entry point udp/3478 is the STUN port (dpgw.stun_port)");
    // dpctld's whole set (a sync, after either end restarted): the one on the STUN port is left out, the rest kept.
    EntrySpec other = e;
    other.port = 5300;
    e.proto = kIpProtoUdp;
    assert_true(r.gw->state().sync({}, {}, {e, other}, error));
    const auto& now = r.gw->state().entries();
    assert_true(std::none_of(now.begin(), now.end(),
                             [](const EntrySpec& x) { return x.proto == kIpProtoUdp && x.port == kStunPort; }));
    assert_true(std::any_of(now.begin(), now.end(), [](const EntrySpec& x) { return x.port == 5300; }));
  }
  PipelineRig off(1, [](GatewayConfig& cfg) { cfg.stun_port = 0; });
  e.proto = kIpProtoUdp;
  e.tunnel = off.tunnel("a").id;
  assert_true(off.gw->state().set_entry(e, error));
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(answered_on_each_port),
      cmocka_unit_test(classic_clients_on_the_stun_port),
      cmocka_unit_test(shared_ports_demultiplex),
      cmocka_unit_test(malformed_and_not_requests_are_counted),
      cmocka_unit_test(fragmented_requests_dropped),
      cmocka_unit_test(answers_rate_limited),
      cmocka_unit_test(stun_port_off),
      cmocka_unit_test(entry_points_on_the_stun_port_refused),
  };
  return run_pipeline_tests("test_stun_pipeline", tests, sizeof tests / sizeof tests[0]);
}
