// Packet parser: valid frames of every kind, every truncation, bad lengths and checksums, IP options,
// VLAN stacks, IPv6 extension chains and fragments. The parser must never read past the span.
#include "tests/unit/cmocka.hpp"
#include "tests/unit/packet_builder.hpp"

#include "packet/parser.hpp"

using namespace dptun;
using namespace dptun::test;

static void valid_tcp(void**) {
  FrameSpec s;
  s.tcp_flags = kTcpSyn;
  s.tcp_options = {2, 4, 0x05, 0xb4};
  auto f = build_ipv4_frame(s);
  PacketInfo pi;
  assert_int_equal(parse_ethernet(f, pi), ParseStatus::Ok);
  assert_int_equal(pi.l3, L3Kind::Ipv4);
  assert_int_equal(pi.l3_offset, 14);
  assert_int_equal(pi.ip_header_len, 20);
  assert_int_equal(pi.l4_proto, kIpProtoTcp);
  assert_int_equal(pi.l4_offset, 34);
  assert_int_equal(pi.tcp_header_len, 24);
  assert_int_equal(pi.l4_len, 24 + 16);
  assert_int_equal(pi.src_ip, s.src_ip);
  assert_int_equal(pi.dst_ip, s.dst_ip);
  assert_int_equal(pi.src_port, 40000);
  assert_int_equal(pi.dst_port, 80);
  assert_int_equal(pi.tcp_flags, kTcpSyn);
  assert_true(pi.has_l4);
  assert_false(pi.is_fragment);
  assert_int_equal(pi.l4_payload_offset(), 34 + 24);
}

static void valid_udp_and_icmp(void**) {
  FrameSpec s;
  s.proto = kIpProtoUdp;
  s.payload = 100;
  auto f = build_ipv4_frame(s);
  PacketInfo pi;
  assert_int_equal(parse_ethernet(f, pi), ParseStatus::Ok);
  assert_int_equal(pi.l4_proto, kIpProtoUdp);
  assert_int_equal(pi.l4_len, 108);
  assert_int_equal(pi.l4_payload_offset(), 34 + 8);

  s.proto = kIpProtoIcmp;
  f = build_ipv4_frame(s);
  assert_int_equal(parse_ethernet(f, pi), ParseStatus::Ok);
  assert_int_equal(pi.icmp_type, kIcmpEchoRequest);
}

static void ethernet_padding_is_ignored(void**) {
  FrameSpec s;
  s.proto = kIpProtoUdp;
  s.payload = 2;  // 14 + 20 + 8 + 2 = 44 bytes: padded to the 60-byte minimum on the wire
  auto f = build_ipv4_frame(s);
  f.resize(60, 0xee);
  PacketInfo pi;
  assert_int_equal(parse_ethernet(f, pi), ParseStatus::Ok);
  assert_int_equal(pi.ip_total_len, 30);
  assert_int_equal(pi.l4_len, 10);
}

static void every_truncation_is_rejected(void**) {
  for (uint8_t proto : {kIpProtoTcp, kIpProtoUdp}) {
    FrameSpec s;
    s.proto = proto;
    s.vlans = {100};
    s.ip_options = {1, 1, 1, 0};
    s.tcp_options = {1, 1, 1, 0};
    auto f = build_ipv4_frame(s);
    PacketInfo pi;
    assert_int_equal(parse_ethernet(f, pi), ParseStatus::Ok);
    for (size_t len = 0; len < f.size(); ++len) {
      // Copy so that AddressSanitizer catches any read past the shortened frame.
      std::vector<uint8_t> cut(f.begin(), f.begin() + long(len));
      ParseStatus st = parse_ethernet(cut, pi);
      assert_int_not_equal(st, ParseStatus::Ok);
    }
  }
}

static void bad_lengths(void**) {
  FrameSpec s;
  auto good = build_ipv4_frame(s);
  PacketInfo pi;
  auto f = good;
  f[14] = 0x44;  // IHL 4 < 5
  assert_int_equal(parse_ethernet(f, pi), ParseStatus::BadIpHeaderLength);
  f = good;
  f[14] = 0x4f;  // IHL 15 = 60 bytes: more than the packet's headers allow
  store_be16(f.data() + 14 + 10, 0);
  assert_int_equal(parse_ethernet(std::span<const uint8_t>(f.data(), 14 + 40), pi), ParseStatus::BadIpHeaderLength);
  f = good;
  store_be16(f.data() + 16, 10);  // total length < header length
  store_be16(f.data() + 24, 0);
  store_be16(f.data() + 24, ipv4_header_checksum({f.data() + 14, 20}));
  assert_int_equal(parse_ethernet(f, pi), ParseStatus::BadIpTotalLength);
  f = good;
  store_be16(f.data() + 16, uint16_t(f.size()));  // total length past the frame
  store_be16(f.data() + 24, 0);
  store_be16(f.data() + 24, ipv4_header_checksum({f.data() + 14, 20}));
  assert_int_equal(parse_ethernet(f, pi), ParseStatus::Truncated);
  f = good;
  f[14 + 20 + 12] = 0x40;  // TCP data offset 4 words < 5
  assert_int_equal(parse_ethernet(f, pi), ParseStatus::BadL4Header);
  f = good;
  f[14 + 20 + 12] = 0xf0;  // TCP data offset 60 bytes > segment
  assert_int_equal(parse_ethernet(f, pi), ParseStatus::BadL4Header);

  FrameSpec u;
  u.proto = kIpProtoUdp;
  auto uf = build_ipv4_frame(u);
  store_be16(uf.data() + 14 + 20 + 4, 7);  // UDP length < 8
  assert_int_equal(parse_ethernet(uf, pi), ParseStatus::BadL4Header);
  store_be16(uf.data() + 14 + 20 + 4, 200);  // UDP length > IP payload
  assert_int_equal(parse_ethernet(uf, pi), ParseStatus::BadL4Header);
}

static void bad_version_and_checksum(void**) {
  FrameSpec s;
  auto f = build_ipv4_frame(s);
  PacketInfo pi;
  auto g = f;
  g[14] = 0x65;
  assert_int_equal(parse_ethernet(g, pi), ParseStatus::BadIpVersion);
  g = f;
  g[14 + 8] ^= 1;  // TTL changed without fixing the checksum
  assert_int_equal(parse_ethernet(g, pi), ParseStatus::BadIpChecksum);
  g = f;
  g[14 + 10] ^= 0x80;
  assert_int_equal(parse_ethernet(g, pi), ParseStatus::BadIpChecksum);
}

static void ip_options(void**) {
  FrameSpec s;
  s.ip_options = {0x07, 0x07, 0x04, 0, 0, 0, 0, 0x01};  // record route + padding
  auto f = build_ipv4_frame(s);
  PacketInfo pi;
  assert_int_equal(parse_ethernet(f, pi), ParseStatus::Ok);
  assert_int_equal(pi.ip_header_len, 28);
  assert_int_equal(pi.l4_offset, 14 + 28);
  assert_int_equal(pi.dst_port, 80);
}

static void vlan_tags(void**) {
  FrameSpec s;
  s.vlans = {0x2064};
  auto f = build_ipv4_frame(s);
  PacketInfo pi;
  assert_int_equal(parse_ethernet(f, pi), ParseStatus::Ok);
  assert_int_equal(pi.vlan_count, 1);
  assert_int_equal(pi.vlan_tci, 0x2064);
  assert_int_equal(pi.l3_offset, 18);
  assert_int_equal(pi.dst_port, 80);

  s.vlans = {10, 20};
  f = build_ipv4_frame(s);
  f[12] = 0x88, f[13] = 0xa8;  // 802.1ad outer tag
  assert_int_equal(parse_ethernet(f, pi), ParseStatus::Ok);
  assert_int_equal(pi.vlan_count, 2);
  assert_int_equal(pi.vlan_tci, 10);
  assert_int_equal(pi.l3_offset, 22);

  s.vlans = {1, 2, 3};
  f = build_ipv4_frame(s);
  assert_int_equal(parse_ethernet(f, pi), ParseStatus::TooManyHeaders);
}

static void fragments(void**) {
  FrameSpec s;
  s.proto = kIpProtoUdp;
  s.frag = kIpv4FlagMf;  // first fragment
  auto f = build_ipv4_frame(s);
  PacketInfo pi;
  assert_int_equal(parse_ethernet(f, pi), ParseStatus::Ok);
  assert_true(pi.is_fragment);
  assert_true(pi.is_first_fragment);
  assert_false(pi.has_l4);
  s.frag = 100;  // a later fragment: no L4 header to read
  f = build_ipv4_frame(s);
  assert_int_equal(parse_ethernet(f, pi), ParseStatus::Ok);
  assert_true(pi.is_fragment);
  assert_false(pi.is_first_fragment);
  assert_false(pi.has_l4);
  s.frag = kIpv4FlagDf;
  f = build_ipv4_frame(s);
  assert_int_equal(parse_ethernet(f, pi), ParseStatus::Ok);
  assert_false(pi.is_fragment);
  assert_true(pi.dont_fragment);
}

static std::vector<uint8_t> ipv6_frame(std::vector<uint8_t> ext, uint8_t first_next, uint8_t l4_proto) {
  std::vector<uint8_t> f(12, 0);
  f.push_back(0x86), f.push_back(0xdd);
  std::vector<uint8_t> l4(8, 0);
  if (l4_proto == kIpProtoUdp) store_be16(l4.data() + 4, 8);
  if (l4_proto == kIpProtoTcp) {
    l4.resize(20, 0);
    l4[12] = 0x50;
  }
  size_t payload = ext.size() + l4.size();
  std::vector<uint8_t> ip(40, 0);
  ip[0] = 0x60;
  store_be16(ip.data() + 4, uint16_t(payload));
  ip[6] = first_next;
  ip[7] = 64;
  f.insert(f.end(), ip.begin(), ip.end());
  f.insert(f.end(), ext.begin(), ext.end());
  f.insert(f.end(), l4.begin(), l4.end());
  return f;
}

static void ipv6_is_parsed(void**) {
  PacketInfo pi;
  auto f = ipv6_frame({}, kIpProtoUdp, kIpProtoUdp);
  assert_int_equal(parse_ethernet(f, pi), ParseStatus::Ok);
  assert_int_equal(pi.l3, L3Kind::Ipv6);
  assert_int_equal(pi.l4_proto, kIpProtoUdp);
  assert_int_equal(pi.l4_offset, 54);
  // hop-by-hop (8 bytes) then TCP
  f = ipv6_frame({kIpProtoTcp, 0, 1, 4, 0, 0, 0, 0}, 0, kIpProtoTcp);
  assert_int_equal(parse_ethernet(f, pi), ParseStatus::Ok);
  assert_int_equal(pi.l4_proto, kIpProtoTcp);
  assert_int_equal(pi.l4_offset, 62);
  // an extension header whose length runs past the packet
  f = ipv6_frame({kIpProtoTcp, 9, 1, 4, 0, 0, 0, 0}, 0, kIpProtoTcp);
  assert_int_equal(parse_ethernet(f, pi), ParseStatus::Truncated);
  // a chain of 10 destination-options headers
  std::vector<uint8_t> chain;
  for (int i = 0; i < 10; ++i) {
    std::vector<uint8_t> h{uint8_t(i == 9 ? kIpProtoUdp : 60), 0, 1, 4, 0, 0, 0, 0};
    chain.insert(chain.end(), h.begin(), h.end());
  }
  f = ipv6_frame(chain, 60, kIpProtoUdp);
  assert_int_equal(parse_ethernet(f, pi), ParseStatus::TooManyHeaders);
  // every truncation
  f = ipv6_frame({kIpProtoTcp, 0, 1, 4, 0, 0, 0, 0}, 0, kIpProtoTcp);
  for (size_t len = 0; len < f.size(); ++len) {
    std::vector<uint8_t> cut(f.begin(), f.begin() + long(len));
    assert_int_not_equal(parse_ethernet(cut, pi), ParseStatus::Ok);
  }
}

static void arp(void**) {
  std::vector<uint8_t> f(12, 0xff);
  f.push_back(0x08), f.push_back(0x06);
  uint8_t a[28] = {0, 1, 8, 0, 6, 4, 0, 1, 2, 2, 2, 2, 2, 2, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2};
  f.insert(f.end(), a, a + 28);
  PacketInfo pi;
  assert_int_equal(parse_ethernet(f, pi), ParseStatus::Ok);
  assert_int_equal(pi.l3, L3Kind::Arp);
  assert_int_equal(pi.src_ip, 0x0a000001);
  assert_int_equal(pi.dst_ip, 0x0a000002);
  f[14 + 4] = 8;  // hardware address length 8: not Ethernet
  assert_int_equal(parse_ethernet(f, pi), ParseStatus::BadArp);
}

static void bare_ip_packets(void**) {
  FrameSpec s;
  auto f = build_ipv4_frame(s);
  std::vector<uint8_t> ip(f.begin() + 14, f.end());
  PacketInfo pi;
  assert_int_equal(parse_ip(ip, pi), ParseStatus::Ok);
  assert_int_equal(pi.l3_offset, 0);
  assert_int_equal(pi.l4_offset, 20);
  assert_int_equal(parse_ip({}, pi), ParseStatus::Truncated);
  ip[0] = 0x55;
  assert_int_equal(parse_ip(ip, pi), ParseStatus::BadIpVersion);
}

static void random_garbage_never_crashes(void**) {
  uint32_t seed = 12345;
  PacketInfo pi;
  for (int i = 0; i < 20000; ++i) {
    size_t len = (seed = seed * 1103515245u + 12345u) % 200;
    std::vector<uint8_t> f(len);
    for (auto& b : f) b = uint8_t((seed = seed * 1103515245u + 12345u) >> 16);
    if (len > 13 && i % 2) f[12] = 0x08, f[13] = 0x00;  // make half of them look like IPv4
    if (len > 14 && i % 4 == 1) f[14] = 0x45;
    (void)parse_ethernet(f, pi);
    (void)parse_ip(f, pi);
  }
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(valid_tcp),
      cmocka_unit_test(valid_udp_and_icmp),
      cmocka_unit_test(ethernet_padding_is_ignored),
      cmocka_unit_test(every_truncation_is_rejected),
      cmocka_unit_test(bad_lengths),
      cmocka_unit_test(bad_version_and_checksum),
      cmocka_unit_test(ip_options),
      cmocka_unit_test(vlan_tags),
      cmocka_unit_test(fragments),
      cmocka_unit_test(ipv6_is_parsed),
      cmocka_unit_test(arp),
      cmocka_unit_test(bare_ip_packets),
      cmocka_unit_test(random_garbage_never_crashes),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
