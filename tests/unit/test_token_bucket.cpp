// The token bucket behind dpgw's kernel_rate and ICMP limits: what was not spent carries over up to the burst
// size, so bursts far below the rate all pass (the kernel path lost 326 of 8 x 64 frames sent one burst per
// second against a 20000/s limit when tokens were reset every millisecond); a flood gets rate x time + burst.
#include "tests/unit/cmocka.hpp"

#include "common/token_bucket.hpp"

using namespace dptun;

static constexpr uint64_t kSec = 1'000'000'000ull;

static void bursts_below_the_rate_all_pass(void**) {
  TokenBucket b(20000, 2000);
  uint64_t now = 5 * kSec, passed = 0;
  for (int burst = 0; burst < 8; ++burst, now += kSec)
    for (int i = 0; i < 64; ++i) passed += b.take(now);  // 64 frames in the same instant
  assert_int_equal(passed, 512);
}

static void a_flood_gets_rate_times_time_plus_burst(void**) {
  TokenBucket b(1000, 64);
  uint64_t passed = 0;
  const uint64_t start = 10 * kSec;
  for (uint64_t t = 0; t < 2 * kSec; t += 10'000) passed += b.take(start + t);  // 100k packets/s for 2 s
  assert_true(passed >= 2000 + 64 - 2 && passed <= 2000 + 64 + 1);
  // Idle for a long time: never more than the burst at once, and no overflow.
  uint64_t later = start + 1000000 * kSec, burst = 0;
  while (b.take(later)) ++burst;
  assert_int_equal(burst, 64);
}

static void carries_fractions_of_a_token(void**) {
  TokenBucket b(3, 1);  // a token every 333 ms
  uint64_t now = kSec;
  assert_true(b.take(now));
  assert_false(b.take(now));
  now += 200'000'000;
  assert_false(b.take(now));
  now += 200'000'000;  // 400 ms: one token has built up from two partial refills
  assert_true(b.take(now));
}

static void clock_going_backwards_does_not_mint_tokens(void**) {
  TokenBucket b(10, 2);
  assert_true(b.take(100 * kSec));
  assert_true(b.take(100 * kSec));
  assert_false(b.take(50 * kSec));
  assert_false(b.take(100 * kSec));
}

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(bursts_below_the_rate_all_pass),
      cmocka_unit_test(a_flood_gets_rate_times_time_plus_burst),
      cmocka_unit_test(carries_fractions_of_a_token),
      cmocka_unit_test(clock_going_backwards_does_not_mint_tokens),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
