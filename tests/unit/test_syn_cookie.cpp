// SipHash-2-4 against the reference vectors; SYN cookies: every option combination survives the round trip,
// cookies expire after two 64-second slots, and any change to the 4-tuple, the client's ISN or a bit of the
// cookie is refused.
#include <random>
#include <vector>

#include "tests/unit/cmocka.hpp"

#include "ingress/syn_cookie.hpp"

using namespace dptun;

namespace {

std::array<uint8_t, 16> key_0_15() {
  std::array<uint8_t, 16> k;
  for (int i = 0; i < 16; ++i) k[size_t(i)] = uint8_t(i);
  return k;
}

void siphash_vectors(void**) {
  // The reference implementation's vectors: key 00..0f, messages 00, 00 01, ... (here: empty, 8 and 15 bytes).
  std::vector<uint8_t> msg;
  assert_true(siphash24(key_0_15(), msg) == 0x726fdb47dd0e0e31ull);
  for (int i = 0; i < 8; ++i) msg.push_back(uint8_t(i));
  assert_true(siphash24(key_0_15(), msg) == 0x93f5f5799a932462ull);
  for (int i = 8; i < 15; ++i) msg.push_back(uint8_t(i));
  assert_true(siphash24(key_0_15(), msg) == 0xa129ca6149be45e5ull);
}

const TcpFourTuple kTuple{Ipv4{0x0a630102}, Ipv4{0x0a630101}, 40000, 443};

void round_trip(void**) {
  SynCookies c(key_0_15());
  for (uint16_t mss : {536, 1000, 1200, 1300, 1360, 1400, 1460, 9000})
    for (uint8_t ws : {uint8_t(0), uint8_t(7), uint8_t(14), uint8_t(0xff)})
      for (int flags = 0; flags < 4; ++flags) {
        SynOptions o{mss, ws, bool(flags & 1), bool(flags & 2)};
        const uint32_t cookie = c.make(kTuple, 0xfffffff0u, o, 1000);
        auto back = c.check(kTuple, 0xfffffff0u, cookie, 1000);
        assert_true(back.has_value());
        assert_int_equal(back->wscale, ws);
        assert_int_equal(back->sack, o.sack);
        assert_int_equal(back->timestamps, o.timestamps);
        // The MSS comes back as the largest table value not above the client's.
        uint16_t want = 536;
        for (uint16_t m : kCookieMss)
          if (m <= mss) want = m;
        assert_int_equal(back->mss, want);
      }
}

void freshness(void**) {
  SynCookies c(key_0_15());
  const SynOptions o{1460, 7, true, true};
  const uint32_t cookie = c.make(kTuple, 1, o, 6400);  // made at the start of a slot
  assert_true(c.check(kTuple, 1, cookie, 6400 + 63).has_value());
  assert_true(c.check(kTuple, 1, cookie, 6400 + 127).has_value());  // the next slot still accepts it
  assert_false(c.check(kTuple, 1, cookie, 6400 + 128).has_value());
  assert_false(c.check(kTuple, 1, cookie, 6400 + 64 * 4).has_value());  // same 2-bit slot, 4 slots later
  assert_false(c.check(kTuple, 1, cookie, 6400 - 64).has_value());      // from the future
}

void forgeries(void**) {
  SynCookies c(key_0_15());
  const SynOptions o{1360, 7, true, false};
  const uint32_t cookie = c.make(kTuple, 77, o, 5000);
  TcpFourTuple other = kTuple;
  other.client_port++;
  assert_false(c.check(other, 77, cookie, 5000).has_value());
  other = kTuple;
  other.client = Ipv4{other.client.v4() ^ 1};
  assert_false(c.check(other, 77, cookie, 5000).has_value());
  // An IPv6 client whose last 32 bits are the IPv4 client's is another client.
  std::array<uint8_t, 16> v6{0x20, 0x01, 0x0d, 0xb8};
  v6[12] = 0x0a, v6[13] = 0x63, v6[14] = 0x01, v6[15] = 0x02;
  other = kTuple;
  other.client = IpAddr::v6(v6);
  assert_false(c.check(other, 77, cookie, 5000).has_value());
  const uint32_t cookie6 = c.make(other, 77, o, 5000);
  assert_true(c.check(other, 77, cookie6, 5000).has_value());
  assert_false(c.check(kTuple, 78, cookie, 5000).has_value());
  for (int bit = 0; bit < 32; ++bit) assert_false(c.check(kTuple, 77, cookie ^ (1u << bit), 5000).has_value());
  std::array<uint8_t, 16> k2 = key_0_15();
  k2[0] ^= 1;
  assert_false(SynCookies(k2).check(kTuple, 77, cookie, 5000).has_value());
  // Random guesses: with a 22-bit MAC about 1 in 4 million passes; 200k guesses should all fail.
  std::mt19937 rng(3);
  int passed = 0;
  for (int i = 0; i < 200000; ++i) passed += c.check(kTuple, 77, uint32_t(rng()), 5000).has_value();
  assert_true(passed <= 1);
}

}  // namespace

void timestamp_bits(void**) {
  // 8 more MAC bits for timestamp clients: the same inputs give the same bits; any change moves them (most of
  // the time: 8 bits collide 1 in 256, so count).
  SynCookies c(key_0_15());
  const uint32_t cookie = c.make(kTuple, 5, SynOptions{1460, 7, true, true}, 100);
  const uint8_t bits = c.timestamp_bits(kTuple, 5, cookie);
  assert_int_equal(bits, c.timestamp_bits(kTuple, 5, cookie));
  int same = 0;
  for (uint32_t i = 1; i <= 1000; ++i) same += c.timestamp_bits(kTuple, 5 + i, cookie) == bits;
  assert_true(same < 20);
  same = 0;
  for (uint32_t i = 1; i <= 1000; ++i) same += c.timestamp_bits(kTuple, 5, cookie ^ i) == bits;
  assert_true(same < 20);
}

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(siphash_vectors),
      cmocka_unit_test(round_trip),
      cmocka_unit_test(freshness),
      cmocka_unit_test(forgeries),
      cmocka_unit_test(timestamp_bits),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
