// dpgw's routes (dataplane/tables/route_table.hpp): the longest connected prefix of the ports, else the first port
// with a gateway; next hops as IpAddr. IPv6 destinations have no route until ports have IPv6 addresses.
#include "dataplane/tables/route_table.hpp"

#include "tests/unit/cmocka.hpp"

using namespace dptun;

static RouteTable two_ports() {
  return RouteTable({RouteTable::Interface{*Ipv4Prefix::parse("10.0.0.1/8"), 0},
                     RouteTable::Interface{*Ipv4Prefix::parse("10.1.0.1/16"), 0x0a010001 + 253}});
}

static void longest_connected_prefix(void**) {
  const RouteTable t = two_ports();
  Route r = t.lookup(Ipv4{0x0a010203});  // 10.1.2.3: in both, /16 wins
  assert_true(r.valid);
  assert_int_equal(r.port, 1);
  assert_true(r.next_hop == IpAddr(Ipv4{0x0a010203}));  // directly connected: the destination itself
  r = t.lookup(Ipv4{0x0a020304});  // 10.2.3.4: only the /8
  assert_true(r.valid);
  assert_int_equal(r.port, 0);
}

static void default_gateway(void**) {
  const RouteTable t = two_ports();
  const Route r = t.lookup(Ipv4{0xc0000201});  // 192.0.2.1: off-link, through port 1's gateway
  assert_true(r.valid);
  assert_int_equal(r.port, 1);
  assert_int_equal(r.next_hop.v4(), 0x0a010001 + 253);
  const RouteTable none({RouteTable::Interface{*Ipv4Prefix::parse("10.0.0.1/8"), 0}});
  assert_false(none.lookup(Ipv4{0xc0000201}).valid);
}

static void ipv6_has_no_route_yet(void**) {
  const RouteTable t = two_ports();
  assert_false(t.lookup(*IpAddr::parse("2001:db8::1")).valid);
  // Not even one whose last 32 bits are a connected IPv4 address.
  assert_false(t.lookup(*IpAddr::parse("2001:db8::a01:203")).valid);
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(longest_connected_prefix),
      cmocka_unit_test(default_gateway),
      cmocka_unit_test(ipv6_has_no_route_yet),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
