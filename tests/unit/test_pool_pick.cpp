// Pool selection: shares by weight, weight 255 preferred while any is live, dead sessions skipped, unusable
// picks retried up to 3 times, nothing when nothing can be used.
#include <map>
#include <vector>

#include "tests/unit/cmocka.hpp"

#include "dataplane/entry/pool_pick.hpp"

using namespace dptun;

namespace {
struct S {
  uint8_t weight;
  bool live = true;
  bool usable = true;
  int picks = 0;
};

S* pick(std::vector<S*>& pool, uint32_t h) {
  return pick_from_pool<S>(std::span<S* const>(pool), h, [](const S& s) { return s.live; },
                           [](const S& s) { return s.usable; });
}

uint32_t mix(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352d;
  x ^= x >> 15;
  return x;
}
}  // namespace

static void shares_by_weight(void**) {
  S a{1}, b{3}, c{6};
  std::vector<S*> pool{&a, &b, &c};
  for (uint32_t i = 0; i < 100000; ++i) pick(pool, mix(i))->picks++;
  // 10 % / 30 % / 60 %, within a percent.
  assert_true(a.picks > 9000 && a.picks < 11000);
  assert_true(b.picks > 29000 && b.picks < 31000);
  assert_true(c.picks > 59000 && c.picks < 61000);
  // The same hash picks the same session (flows stick).
  assert_ptr_equal(pick(pool, 12345), pick(pool, 12345));
}

static void preferred_255(void**) {
  S a{1}, b{255}, c{255}, d{100};
  std::vector<S*> pool{&a, &b, &c, &d};
  for (uint32_t i = 0; i < 10000; ++i) pick(pool, mix(i))->picks++;
  assert_int_equal(a.picks + d.picks, 0);  // only preferred sessions while any is live
  assert_true(b.picks > 4500 && c.picks > 4500);
  b.live = c.live = false;  // no preferred session left: the others share by weight
  a.picks = d.picks = 0;
  for (uint32_t i = 0; i < 10100; ++i) pick(pool, mix(i))->picks++;
  assert_true(a.picks > 0 && d.picks > 50 * a.picks / 2);
}

static void dead_sessions_skipped(void**) {
  S a{5}, b{5};
  std::vector<S*> pool{&a, &b};
  a.live = false;
  for (uint32_t i = 0; i < 1000; ++i) assert_ptr_equal(pick(pool, mix(i)), &b);
  b.live = false;
  assert_null(pick(pool, 7));
  std::vector<S*> empty;
  assert_null(pick(empty, 7));
}

static void unusable_picks_are_retried(void**) {
  S s[6] = {{1}, {1}, {1}, {1}, {1}, {1}};
  std::vector<S*> pool;
  for (auto& x : s) pool.push_back(&x);
  for (int i = 0; i < 5; ++i) s[i].usable = false;  // live, but e.g. no route to the agent
  int found = 0;
  for (uint32_t i = 0; i < 6000; ++i) {
    S* got = pick(pool, mix(i));
    if (got) {
      assert_ptr_equal(got, &s[5]);
      ++found;
    }
  }
  // The pick and 3 retries visit 4 distinct sessions of 6: s[5] is among them for 4 of the 6 starting points.
  assert_true(found > 3600 && found < 4400);
  // With 4 or fewer sessions every one is tried.
  std::vector<S*> small{&s[0], &s[1], &s[2], &s[5]};
  for (uint32_t i = 0; i < 100; ++i) assert_ptr_equal(pick(small, mix(i)), &s[5]);
  s[5].usable = false;
  for (uint32_t i = 0; i < 100; ++i) assert_null(pick(pool, mix(i)));
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(shares_by_weight),
      cmocka_unit_test(preferred_255),
      cmocka_unit_test(dead_sessions_skipped),
      cmocka_unit_test(unusable_picks_are_retried),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
