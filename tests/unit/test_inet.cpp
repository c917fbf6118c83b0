// IpAddr and Endpoint (common/inet.hpp): IPv4 held IPv4-mapped, IPv6 text both ways (RFC 5952), what each family
// compares equal to, and what an endpoint's text looks like.
#include <string>

#include "common/inet.hpp"

#include "tests/unit/cmocka.hpp"

using namespace dptun;

static void ipv4_is_mapped(void**) {
  const IpAddr a(Ipv4{0x0a000102});  // 10.0.1.2
  assert_true(a.is_v4());
  assert_int_equal(a.v4(), 0x0a000102);
  const uint8_t want[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 1, 2};
  assert_memory_equal(a.bytes.data(), want, 16);
  assert_string_equal(a.str().c_str(), "10.0.1.2");
  // The default is 0.0.0.0, an IPv4 address, unspecified (what "no target" has always been).
  const IpAddr zero;
  assert_true(zero.is_v4());
  assert_int_equal(zero.v4(), 0);
  assert_true(zero.unspecified());
  assert_true(zero == IpAddr(Ipv4{0}));
  assert_false(a.unspecified());
}

static void parse_both_families(void**) {
  auto v4 = IpAddr::parse("192.0.2.7");
  assert_true(v4 && v4->is_v4() && v4->v4() == 0xc0000207);
  auto v6 = IpAddr::parse("2001:db8::1");
  assert_true(v6.has_value());
  assert_false(v6->is_v4());
  assert_int_equal(v6->bytes[0], 0x20);
  assert_int_equal(v6->bytes[1], 0x01);
  assert_int_equal(v6->bytes[15], 1);
  assert_string_equal(v6->str().c_str(), "2001:db8::1");
  // RFC 5952 text out whatever the text in.
  assert_string_equal(IpAddr::parse("2001:0DB8:0000:0000:0000:0000:0000:0001")->str().c_str(), "2001:db8::1");
  // IPv4-mapped IPv6 text is the IPv4 address.
  auto mapped = IpAddr::parse("::ffff:192.0.2.7");
  assert_true(mapped && mapped->is_v4() && *mapped == *v4);
  // :: is IPv6 and unspecified, but not 0.0.0.0.
  auto any6 = IpAddr::parse("::");
  assert_true(any6 && !any6->is_v4() && any6->unspecified() && !(*any6 == IpAddr()));
  for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "2001:db8::1::2", "fe80::1%eth0", "[::1]", "::g",
                          "2001:db8:0:0:0:0:0:0:1", " 10.0.0.1"})
    assert_false(IpAddr::parse(bad).has_value());
}

static void endpoint_text(void**) {
  const Endpoint v4{Ipv4{0x0a000001}, 51900};
  assert_string_equal(v4.str().c_str(), "10.0.0.1:51900");
  const Endpoint v6{*IpAddr::parse("2001:db8::2"), 443};
  assert_string_equal(v6.str().c_str(), "[2001:db8::2]:443");
  // Endpoints in config files are IPv4 today (what the data path forwards).
  auto e = Endpoint::parse("10.0.0.1:51900");
  assert_true(e && e->ip.is_v4() && e->ip.v4() == 0x0a000001 && e->port == 51900);
  assert_false(Endpoint::parse("[2001:db8::2]:443").has_value());
  assert_false(Endpoint::parse("10.0.0.1:0").has_value());
  // Same address, other family spelling: equal; other port: not.
  assert_true((Endpoint{Ipv4{7}, 1} == Endpoint{*IpAddr::parse("::ffff:0.0.0.7"), 1}));
  assert_false((Endpoint{Ipv4{7}, 1} == Endpoint{Ipv4{7}, 2}));
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(ipv4_is_mapped),
      cmocka_unit_test(parse_both_families),
      cmocka_unit_test(endpoint_text),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
