// ICMP errors about flows: what a kernel sends (destination unreachable, time exceeded, quoting the refused
// datagram) is read with its reason and the quoted addresses and ports; everything else is refused without reading
// past the buffer; and the rewrite for the client's side of the NAT gives a message whose checksums all verify and
// whose quote reads exactly like the client's own datagram (the quoted UDP checksum equals the client's).
#include <random>

#include "tests/unit/cmocka.hpp"
#include "tests/unit/packet_builder.hpp"

#include "packet/icmp_error.hpp"
#include "packet/ipv4_rewrite.hpp"

using namespace dptun;
using namespace dptun::test;

namespace {

constexpr uint32_t kClient = 0x0a630102;     // 10.99.1.2
constexpr uint32_t kEntry = 0x0a630101;      // 10.99.1.1 (the entry point)
constexpr uint32_t kTranslated = 0x64400002; // 100.64.0.2 (the agent's source for the flow)
constexpr uint32_t kTarget = 0x0a63044d;     // 10.99.4.77
constexpr uint32_t kRouter = 0x0a630401;     // 10.99.4.1

// The datagram as it left the agent (translated source, the target as destination), IP packet only.
std::vector<uint8_t> datagram(uint8_t proto, size_t payload = 32) {
  FrameSpec s;
  s.src_ip = kTranslated;
  s.dst_ip = kTarget;
  s.src_port = 32768 + 5;
  s.dst_port = 80;
  s.proto = proto;
  s.tcp_flags = kTcpSyn;
  s.payload = payload;
  auto f = build_ipv4_frame(s);
  return {f.begin() + 14, f.end()};
}

// An ICMP error from `from` to the datagram's source, quoting `quote` bytes of it (Linux quotes up to 576 bytes).
std::vector<uint8_t> icmp_error(uint8_t type, uint8_t code, const std::vector<uint8_t>& dgram, size_t quote,
                                uint16_t mtu = 0, uint32_t from = kRouter) {
  quote = std::min(quote, dgram.size());
  std::vector<uint8_t> p(20 + 8 + quote);
  write_ipv4_header(p.data(), uint16_t(p.size()), 7, kIpProtoIcmp, from, load_be32(dgram.data() + 12));
  uint8_t* icmp = p.data() + 20;
  icmp[0] = type;
  icmp[1] = code;
  store_be16(icmp + 6, mtu);
  std::memcpy(icmp + 8, dgram.data(), quote);
  store_be16(icmp + 2, csum_finish(csum_add({icmp, p.size() - 20})));
  return p;
}

bool icmp_checksum_ok(const std::vector<uint8_t>& p) {
  return csum_fold(csum_add({p.data() + 20, load_be16(p.data() + 2) - 20u})) == 0xffff;
}

bool parse_exact(const std::vector<uint8_t>& p, IcmpError& e) {
  std::vector<uint8_t> copy(p);  // an exact-size heap buffer: a read past it is an ASan report
  return parse_icmp_error(copy, e);
}

}  // namespace

static void reads_a_host_unreachable_about_udp(void**) {
  auto d = datagram(kIpProtoUdp);
  IcmpError e;
  assert_true(parse_exact(icmp_error(3, 1, d, d.size()), e));
  assert_int_equal(e.type, 3);
  assert_int_equal(e.code, 1);
  assert_int_equal(e.from, kRouter);
  assert_int_equal(e.to, kTranslated);
  assert_int_equal(e.proto, kIpProtoUdp);
  assert_int_equal(e.src_ip, kTranslated);
  assert_int_equal(e.dst_ip, kTarget);
  assert_int_equal(e.src_port, 32773);
  assert_int_equal(e.dst_port, 80);
  assert_int_equal(e.quote_offset, 28);
  assert_int_equal(e.quote_header_len, 20);
  assert_int_equal(e.mtu, 0);
  assert_int_equal(e.reason(), IcmpErrorReason::HostUnreachable);
  // The minimum quote RFC 792 asks for: the IP header and 8 bytes.
  assert_true(parse_exact(icmp_error(3, 3, d, 28), e));
  assert_int_equal(e.reason(), IcmpErrorReason::PortUnreachable);
  // Fragmentation needed carries the next hop's MTU (RFC 1191).
  assert_true(parse_exact(icmp_error(3, 4, d, 28, 1400), e));
  assert_int_equal(e.mtu, 1400);
  assert_int_equal(e.reason(), IcmpErrorReason::FragNeeded);
  // Time exceeded (a loop) about TCP.
  auto t = datagram(kIpProtoTcp, 0);
  assert_true(parse_exact(icmp_error(11, 0, t, t.size()), e));
  assert_int_equal(e.proto, kIpProtoTcp);
  assert_int_equal(e.reason(), IcmpErrorReason::TimeExceeded);
}

static void reasons_follow_the_rfcs(void**) {
  const IcmpErrorReason want[16] = {
      IcmpErrorReason::NetUnreachable,  IcmpErrorReason::HostUnreachable, IcmpErrorReason::ProtoUnreachable,
      IcmpErrorReason::PortUnreachable, IcmpErrorReason::FragNeeded,      IcmpErrorReason::Other,
      IcmpErrorReason::NetUnreachable,  IcmpErrorReason::HostUnreachable, IcmpErrorReason::HostUnreachable,
      IcmpErrorReason::AdminProhibited, IcmpErrorReason::AdminProhibited, IcmpErrorReason::NetUnreachable,
      IcmpErrorReason::HostUnreachable, IcmpErrorReason::AdminProhibited, IcmpErrorReason::AdminProhibited,
      IcmpErrorReason::AdminProhibited};
  for (uint8_t code = 0; code < 16; ++code) assert_int_equal(icmp_error_reason(3, code), want[code]);
  assert_int_equal(icmp_error_reason(3, 16), IcmpErrorReason::Other);
  assert_int_equal(icmp_error_reason(11, 1), IcmpErrorReason::TimeExceeded);
  assert_string_equal(icmp_error_reason_name(IcmpErrorReason::AdminProhibited), "admin_prohibited");
  assert_string_equal(icmp_error_reason_name(IcmpErrorReason::HostUnreachable), "host_unreachable");
  for (size_t r = 0; r < size_t(IcmpErrorReason::Count); ++r)
    assert_true(std::string(icmp_error_reason_name(IcmpErrorReason(r))).size() > 0);
}

static void refuses_what_is_not_an_error_about_a_flow(void**) {
  auto d = datagram(kIpProtoUdp);
  IcmpError e;
  auto ok = icmp_error(3, 1, d, d.size());
  assert_true(parse_exact(ok, e));
  // Echo reply, redirect: not errors about a flow.
  assert_false(parse_exact(icmp_error(0, 0, d, d.size()), e));
  assert_false(parse_exact(icmp_error(5, 1, d, d.size()), e));
  // A checksum that does not verify.
  auto bad = ok;
  bad[40] ^= 1;
  assert_false(parse_exact(bad, e));
  // A quote shorter than the IP header and 8 bytes.
  assert_false(parse_exact(icmp_error(3, 1, d, 27), e));
  // The quote says IHL 6 but holds 20 + 8 bytes.
  auto ihl = icmp_error(3, 1, d, 28);
  ihl[28] = 0x46;
  store_be16(ihl.data() + 22, 0);
  store_be16(ihl.data() + 22, csum_finish(csum_add({ihl.data() + 20, ihl.size() - 20})));
  assert_false(parse_exact(ihl, e));
  // A quoted ICMP datagram (an error about an error is never sent; nothing to find a flow by).
  FrameSpec s;
  s.src_ip = kTranslated;
  s.dst_ip = kTarget;
  s.proto = kIpProtoIcmp;
  auto f = build_ipv4_frame(s);
  assert_false(parse_exact(icmp_error(3, 1, std::vector<uint8_t>(f.begin() + 14, f.end()), 28), e));
  // A quoted fragment other than the first (no ports in it).
  auto frag = d;
  store_be16(frag.data() + 6, 10);
  assert_false(parse_exact(icmp_error(3, 1, frag, 28), e));
  // The error itself in fragments, with IP options, or longer than its buffer.
  auto mf = ok;
  store_be16(mf.data() + 6, kIpv4FlagMf);
  assert_false(parse_exact(mf, e));
  auto opts = ok;
  opts[0] = 0x46;
  assert_false(parse_exact(opts, e));
  auto cut = ok;
  cut.resize(cut.size() - 1);
  assert_false(parse_exact(cut, e));
  // Every shorter buffer is refused without a read past it.
  for (size_t n = 0; n < ok.size(); ++n) {
    std::vector<uint8_t> part(ok.begin(), ok.begin() + long(n));
    assert_false(parse_icmp_error(part, e));
  }
}

static void rewrite_reads_like_the_clients_datagram(void**) {
  for (uint8_t proto : {kIpProtoUdp, kIpProtoTcp}) {
    // The client's datagram to the entry point, and the same datagram as the agent sent it (both rewrites of dpgw
    // and dpagent applied).
    FrameSpec s;
    s.src_ip = kClient;
    s.dst_ip = kEntry;
    s.src_port = 40000;
    s.dst_port = 8080;
    s.proto = proto;
    s.tcp_flags = kTcpSyn;
    s.payload = 100;
    auto cf = build_ipv4_frame(s);
    std::vector<uint8_t> client(cf.begin() + 14, cf.end());
    auto sent = client;
    ipv4_rewrite_dst(sent.data(), sent.data() + 20, proto, kTarget, 80);
    ipv4_rewrite_src(sent.data(), sent.data() + 20, proto, kTranslated, 32773);
    auto p = icmp_error(3, 13, sent, 576 - 28);
    IcmpError e;
    assert_true(parse_exact(p, e));
    const size_t n = icmp_error_rewrite(p, e, kEntry, kClient, kClient, 40000, kEntry, 8080);
    assert_int_equal(n, 20 + 8 + 20 + 8);
    p.resize(n);
    // The message: from the entry point to the client, TTL 64, checksums good, still admin-prohibited.
    IcmpError back;
    assert_true(parse_exact(p, back));
    assert_int_equal(back.from, kEntry);
    assert_int_equal(back.to, kClient);
    assert_int_equal(back.type, 3);
    assert_int_equal(back.code, 13);
    assert_int_equal(p[8], 64);
    assert_int_equal(csum_fold(csum_add({p.data(), 20})), 0xffff);
    assert_true(icmp_checksum_ok(p));
    // The quote is the client's own datagram, byte for byte, as far as it goes (IP header and 8 bytes: ports, and
    // the UDP length and checksum, or the TCP sequence number the client checks).
    assert_memory_equal(p.data() + 28, client.data(), 28);
    assert_int_equal(back.src_ip, kClient);
    assert_int_equal(back.dst_port, 8080);
  }
}

static void rewrite_keeps_a_udp_checksum_of_zero(void**) {
  auto d = datagram(kIpProtoUdp);
  store_be16(d.data() + 26, 0);  // no UDP checksum (allowed over IPv4)
  auto p = icmp_error(3, 3, d, 28);
  IcmpError e;
  assert_true(parse_exact(p, e));
  icmp_error_rewrite(p, e, kEntry, kClient, kClient, 40000, kEntry, 53);
  assert_int_equal(load_be16(p.data() + 28 + 20 + 6), 0);
  assert_true(icmp_checksum_ok(p));
}

static void random_bytes_never_read_past_the_buffer(void**) {
  std::mt19937 rng(7);
  auto d = datagram(kIpProtoUdp);
  auto base = icmp_error(3, 1, d, d.size());
  size_t accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    auto p = base;
    p.resize(rng() % (base.size() + 1));
    for (int k = int(rng() % 4); k > 0 && !p.empty(); --k) p[rng() % p.size()] = uint8_t(rng());
    IcmpError e;
    if (!parse_icmp_error(p, e)) continue;
    ++accepted;
    assert_true(size_t(e.quote_offset) + e.quote_header_len + 8 <= p.size());
    icmp_error_rewrite(p, e, kEntry, kClient, kClient, 1, kEntry, 2);
  }
  assert_true(accepted > 0);
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(reads_a_host_unreachable_about_udp),
      cmocka_unit_test(reasons_follow_the_rfcs),
      cmocka_unit_test(refuses_what_is_not_an_error_about_a_flow),
      cmocka_unit_test(rewrite_reads_like_the_clients_datagram),
      cmocka_unit_test(rewrite_keeps_a_udp_checksum_of_zero),
      cmocka_unit_test(random_bytes_never_read_past_the_buffer),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
