// dpgw's routes (dataplane/tables/route_table.hpp): the longest connected prefix of the ports, else the first port
// with a gateway; restricted to one port (the edge role); next hops as IpAddr. IPv6 destinations have no route until ports have IPv6 addresses.
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

// The edge role's lookups keep to one port: its subnet, else its gateway, else nothing (never another port).
static void routes_on_one_port(void**) {
  const RouteTable t = two_ports();
  Route r = t.lookup_on(0, Ipv4{0x0a010203});  // 10.1.2.3: port 1's /16 is longer, but port 0's /8 holds it too
  assert_true(r.valid);
  assert_int_equal(r.port, 0);
  assert_true(r.next_hop == IpAddr(Ipv4{0x0a010203}));
  r = t.lookup_on(1, Ipv4{0x0a020304});  // 10.2.3.4: off port 1's link, through its gateway
  assert_true(r.valid);
  assert_int_equal(r.port, 1);
  assert_int_equal(r.next_hop.v4(), 0x0a010001 + 253);
  assert_false(t.lookup_on(0, Ipv4{0xc0000201}).valid);  // port 0 has no gateway: no way, though port 1 has one
  assert_false(t.lookup_on(2, Ipv4{0x0a000001}).valid);  // no such port
  assert_false(t.lookup_on(0, *IpAddr::parse("2001:db8::1")).valid);
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
      cmocka_unit_test(routes_on_one_port),
      cmocka_unit_test(ipv6_has_no_route_yet),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
