// The far end's stateless NAT (dpagent, an edge dpgw): every 30-bit flow tag maps to a distinct source address:port
// inside the subnet (dpagent's TUN subnet), away from the TUN's own address, network and broadcast, and maps back;
// anything else does not decode.
#include <cstring>
#include <set>

#include "tests/unit/cmocka.hpp"

#include "proto/snat_codec.hpp"

using namespace dptun;

static Ipv4Prefix net(const char* s) { return *Ipv4Prefix::parse(s); }

static void round_trip_and_ranges(void**) {
  SnatCodec c(net("100.64.0.1/16"));
  uint32_t seed = 1;
  std::set<uint64_t> seen;
  for (int i = 0; i < 200000; ++i) {
    uint32_t tag = (seed = seed * 1664525u + 1013904223u) & SnatCodec::kTagMask;
    if (i < 4) tag = i == 0 ? 0 : i == 1 ? SnatCodec::kTagMask : i == 2 ? 0x7fff : 0x8000;
    Endpoint e = c.encode(tag);
    assert_true(e.ip.v4() >= 0x64400002 && e.ip.v4() < 0x64400002 + (1u << 15));  // 100.64.0.2 .. 100.64.128.1
    assert_int_not_equal(e.ip.v4(), 0x64400001);                                    // never the TUN itself
    assert_true(e.port >= 32768);
    auto back = c.decode(e);
    assert_true(back.has_value());
    assert_int_equal(*back, tag);
    seen.insert(uint64_t(e.ip.v4()) << 16 | e.port);
  }
  // Distinct tags give distinct endpoints (200k random tags, a few collide as tags: compare the sets).
  std::set<uint32_t> tags;
  seed = 1;
  for (int i = 0; i < 200000; ++i) tags.insert((seed = seed * 1664525u + 1013904223u) & SnatCodec::kTagMask);
  assert_true(seen.size() >= tags.size() - 4);
  // High tag bits beyond 30 are ignored, as the gateway's flow id carries more above them.
  assert_true(c.encode(0x12345678u | 0xc0000000u) == c.encode(0x12345678u & SnatCodec::kTagMask));
}

static void foreign_addresses_do_not_decode(void**) {
  SnatCodec c(net("100.64.0.1/16"));
  assert_false(c.decode(Endpoint{Ipv4{0x64400001}, 40000}).has_value());  // the TUN address
  assert_false(c.decode(Endpoint{Ipv4{0x64400000}, 40000}).has_value());  // network
  assert_false(c.decode(Endpoint{Ipv4{0x64400002}, 1000}).has_value());   // low port
  assert_false(c.decode(Endpoint{Ipv4{0x64400002 + (1u << 15)}, 40000}).has_value());  // past the range
  assert_false(c.decode(Endpoint{Ipv4{0x0a000001}, 40000}).has_value());  // somewhere else entirely
  // An IPv6 address whose last 32 bits are a mapped one is not in the (IPv4) subnet.
  std::array<uint8_t, 16> v6{0x20, 0x01, 0x0d, 0xb8};
  v6[12] = 0x64, v6[13] = 0x40, v6[14] = 0x00, v6[15] = 0x02;
  assert_true(c.decode(Endpoint{Ipv4{0x64400002}, 40000}).has_value());
  assert_false(c.decode(Endpoint{IpAddr::v6(v6), 40000}).has_value());
}

static void subnet_rules(void**) {
  std::string why;
  assert_true(SnatCodec::valid_subnet(net("100.64.0.1/16"), why));
  assert_true(SnatCodec::valid_subnet(net("100.64.0.1/10"), why));
  assert_true(SnatCodec::valid_subnet(net("10.9.255.254/16"), why));  // the TUN may sit above the range
  assert_false(SnatCodec::valid_subnet(net("100.64.0.1/17"), why));
  assert_non_null(strstr(why.c_str(), "/16"));
  assert_false(SnatCodec::valid_subnet(net("100.64.0.5/16"), why));
  assert_non_null(strstr(why.c_str(), "100.64.0.1"));
  // A wider subnet: the range starts at its network address.
  SnatCodec wide(net("100.64.0.1/10"));
  assert_int_equal(wide.encode(0).ip.v4(), 0x64400002);
}

// Pair flows (a visitor's, in pair frames): tags above dpgw's, one address per visitor block, decoded only by
// decode_pair and never by decode; dpgw's range never decodes as a pair's.
static void pair_range(void**) {
  SnatCodec c(net("100.64.0.1/16"));
  std::set<uint64_t> seen;
  for (uint32_t block : {0u, 1u, 17u, SnatCodec::kPairBlocks - 1}) {
    for (uint32_t index : {0u, 1u, 0x7fffu, 12345u}) {
      const uint32_t tag = SnatCodec::pair_tag(block, index);
      assert_true(SnatCodec::is_pair_tag(tag));
      assert_int_equal(SnatCodec::pair_block(tag), block);
      assert_int_equal(SnatCodec::pair_index(tag), index);
      const Endpoint e = c.encode_pair(tag);
      assert_int_equal(e.ip.v4(), 0x64400002 + (1u << 15) + block);  // 100.64.128.2 + block: the visitor's address
      assert_true(e.port >= 32768);
      assert_true(e.ip.v4() < 0x6440ffff);  // inside the /16, below its broadcast address
      assert_true(c.decode_pair(e) == std::optional<uint32_t>(tag));
      assert_true(c.is_pair_address(e.ip.v4()));  // (how dpagent's upstream picks the pair path's packets)
      assert_false(c.decode(e).has_value());
      seen.insert(uint64_t(e.ip.v4()) << 16 | e.port);
    }
  }
  assert_int_equal(seen.size(), 16);
  assert_false(SnatCodec::is_pair_tag(SnatCodec::kTagMask));
  // dpgw's flows and what lies past the last block are no pair's.
  assert_false(c.decode_pair(c.encode(0)).has_value());
  assert_false(c.decode_pair(c.encode(SnatCodec::kTagMask)).has_value());
  assert_false(c.decode_pair(Endpoint{Ipv4{0x64400002 + (1u << 15) + SnatCodec::kPairBlocks}, 40000}).has_value());
  assert_false(c.decode_pair(Endpoint{Ipv4{0x64400002 + (1u << 15)}, 1000}).has_value());
  for (uint32_t tag : {0u, 12345u, SnatCodec::kTagMask}) assert_false(c.is_pair_address(c.encode(tag).ip.v4()));
  assert_false(c.is_pair_address(0x64400002 + (1u << 15) - 1));
  assert_false(c.is_pair_address(0x64400002 + (1u << 15) + SnatCodec::kPairBlocks));
  assert_false(c.is_pair_address(0x0a000001));  // 10.0.0.1: outside the subnet (below it: no wrap-around)
  // The TUN's own address must lie outside both ranges.
  std::string why;
  assert_false(SnatCodec::valid_subnet(net("100.64.130.1/16"), why));
  assert_true(SnatCodec::valid_subnet(net("100.64.200.1/16"), why));
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(pair_range),
      cmocka_unit_test(round_trip_and_ranges),
      cmocka_unit_test(foreign_addresses_do_not_decode),
      cmocka_unit_test(subnet_rules),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
