// Anti-replay window: first counter, duplicates, long in-order runs, out-of-order arrivals, the exact kTracked
// boundary, big jumps, and a long randomized walk (skips, replays, jumps past the bitmap) compared with a
// reference model. check() must agree with accept() and never change the window.
#include <algorithm>
#include <random>
#include <set>

#include "tests/unit/cmocka.hpp"

#include "crypto/replay_window.hpp"

using namespace dptun;

static_assert(ReplayWindow::kTracked >= 2048, "the window must absorb at least 2048 reordered frames");
static_assert(ReplayWindow::kTracked < ReplayWindow::kBits);

static constexpr uint64_t T = ReplayWindow::kTracked;
static constexpr uint64_t kMax = ~uint64_t(0);

// check() then accept(): both must give `want`, and check() must be stable.
static void expect(ReplayWindow& w, uint64_t c, bool want) {
  bool c1 = w.check(c), c2 = w.check(c);
  if (c1 != c2) fail_msg("check(%llu) not stable", (unsigned long long)c);
  if (c1 != want) fail_msg("check(%llu) = %d, want %d (top %llu)", (unsigned long long)c, c1, want,
                           (unsigned long long)w.top());
  bool a = w.accept(c);
  if (a != want) fail_msg("accept(%llu) = %d, want %d (top %llu)", (unsigned long long)c, a, want,
                          (unsigned long long)w.top());
}

static void first_counter_accepted(void**) {
  for (uint64_t first : {uint64_t(0), uint64_t(1), uint64_t(4095), uint64_t(1) << 32, uint64_t(1) << 63, kMax - 1,
                         kMax}) {
    ReplayWindow w;
    assert_true(w.empty());
    assert_true(w.check(first));
    assert_true(w.empty());  // check() did not record anything
    expect(w, first, true);
    assert_false(w.empty());
    assert_int_equal(w.top(), first);
    expect(w, first, false);  // duplicate
    if (first >= T) {
      expect(w, first - (T - 1), true);  // oldest still tracked
      expect(w, first - T, false);       // just too old
    }
    if (first < kMax) expect(w, first + 1, true);
  }
}

static void duplicates_rejected(void**) {
  ReplayWindow w;
  for (uint64_t c : {10, 5, 7, 100, 11, 6}) expect(w, c, true);
  for (uint64_t c : {10, 5, 7, 100, 11, 6}) expect(w, c, false);
  assert_int_equal(w.top(), 100);
}

static void in_order_run(void**) {
  ReplayWindow w;
  const uint64_t base = 1000;
  for (uint64_t c = base; c < base + 100000; ++c) expect(w, c, true);
  const uint64_t top = base + 100000 - 1;
  assert_int_equal(w.top(), top);
  for (uint64_t c = top; c > top - T; --c) expect(w, c, false);  // all seen
  for (uint64_t c = top - T; c >= base; --c) assert_false(w.check(c));  // all too old
  assert_false(w.accept(base));
  assert_false(w.accept(0));
}

static void out_of_order_within_window(void**) {
  ReplayWindow w;
  const uint64_t top = 1000000;
  expect(w, top, true);
  // Descending, every other one, then the rest: each accepted exactly once.
  for (uint64_t c = top - 1; c > top - T; c -= 2) expect(w, c, true);
  for (uint64_t c = top - 2; c > top - T; c -= 2) expect(w, c, true);
  for (uint64_t c = top - 1; c > top - T; --c) expect(w, c, false);
  // Shuffled arrivals around a moving top.
  ReplayWindow v;
  std::mt19937_64 rng(9);
  std::vector<uint64_t> order;
  for (uint64_t c = 0; c < 3000; ++c) order.push_back(c);
  std::shuffle(order.begin(), order.end(), rng);
  for (uint64_t c : order) expect(v, c, true);
  for (uint64_t c : order) expect(v, c, false);
}

static void tracked_boundary(void**) {
  for (uint64_t top : {T, T + 1, uint64_t(10000), uint64_t(1) << 40, (uint64_t(1) << 40) + 63, kMax}) {
    ReplayWindow w;
    expect(w, top, true);
    expect(w, top - (T - 1), true);   // top - counter == kTracked - 1: accepted if unseen
    expect(w, top - (T - 1), false);  // ...once
    expect(w, top - T, false);        // top - counter == kTracked: refused
    if (top > T) expect(w, top - T - 1, false);
    expect(w, top - (T - 2), true);
    // Moving the top by one pushes the oldest tracked counter out.
    if (top < kMax) {
      expect(w, top + 1, true);
      expect(w, top + 1 - (T - 1), false);  // == top - (T - 2): seen
      expect(w, top - (T - 1), false);      // now kTracked behind
    }
  }
  // Window starting at 0: counter 0 stays acceptable until the top reaches kTracked.
  ReplayWindow w;
  expect(w, T - 1, true);
  expect(w, 0, true);
  ReplayWindow v;
  expect(v, T, true);
  expect(v, 0, false);
}

static void far_jump(void**) {
  ReplayWindow w;
  for (uint64_t c = 100; c <= 5000; ++c) expect(w, c, true);
  const uint64_t top = 5000 + 1000000;
  expect(w, top, true);
  for (uint64_t c : {100, 4999, 5000, 5001}) expect(w, c, false);
  expect(w, top - T, false);
  // Everything in the new window is unseen, including counters whose bitmap bits alias old ones.
  for (uint64_t c = top - 1; c > top - T; --c) expect(w, c, true);

  // Jumps by multiples of the bitmap size: the stale bits of the old window must be gone.
  for (uint64_t jump : {ReplayWindow::kBits, ReplayWindow::kBits - 64, ReplayWindow::kBits + 64,
                        2 * ReplayWindow::kBits, T, T + 1, uint64_t(64), uint64_t(65), uint64_t(1) << 33}) {
    ReplayWindow v;
    const uint64_t start = 1 << 20;
    for (uint64_t c = start - T + 1; c <= start; ++c) expect(v, c, true);  // fill the whole window
    expect(v, start + jump, true);
    for (uint64_t c = start + jump - 1; c > start + jump - T; --c) expect(v, c, c > start);
  }
}

static void randomized_against_model(void**) {
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    std::mt19937_64 rng(seed);
    ReplayWindow w;
    std::set<uint64_t> seen;
    uint64_t top = 0;
    bool any = false;
    auto model = [&](uint64_t c) { return !any || c > top || (top - c < T && !seen.count(c)); };
    uint64_t next = seed == 1 ? 0 : seed == 2 ? (kMax - 200 * ReplayWindow::kBits) : rng() >> 8;
    const uint64_t end = next + 100 * ReplayWindow::kBits;
    uint64_t steps = 0, accepted = 0, refused = 0;
    while (next < end) {
      ++steps;
      uint64_t c;
      const unsigned r = unsigned(rng() % 100);
      if (r < 55) {
        c = next;  // the next counter, then a skip: mostly small, sometimes past a word or the whole bitmap
        uint64_t s = rng() % 1000;
        next += 1 + (s < 800 ? 0 : s < 950 ? rng() % 8 : s < 995 ? rng() % 200 : rng() % (2 * ReplayWindow::kBits));
      } else if (r < 85 && any) {
        c = top - std::min<uint64_t>(top, rng() % (T + 200));  // replays and late arrivals around the edge
      } else if (r < 95 && any) {
        c = top - std::min<uint64_t>(top, T - 1 - rng() % 3);  // right at the boundary
      } else {
        c = next + rng() % 100;  // early arrivals
      }
      const bool want = model(c);
      bool c1 = w.check(c);
      if (c1 != w.check(c)) fail_msg("seed %llu: check(%llu) not stable", (unsigned long long)seed,
                                     (unsigned long long)c);
      if (c1 != want)
        fail_msg("seed %llu step %llu: check(%llu) = %d, model %d (top %llu)", (unsigned long long)seed,
                 (unsigned long long)steps, (unsigned long long)c, c1, want, (unsigned long long)top);
      bool a = w.accept(c);
      if (a != want)
        fail_msg("seed %llu step %llu: accept(%llu) = %d, model %d (top %llu)", (unsigned long long)seed,
                 (unsigned long long)steps, (unsigned long long)c, a, want, (unsigned long long)top);
      if (want) {
        seen.insert(c);
        if (!any || c > top) top = c;
        any = true;
        ++accepted;
      } else {
        ++refused;
      }
      assert_int_equal(w.top(), top);
      // Keep the model small: counters far behind the top can never be accepted again.
      while (!seen.empty() && top - *seen.begin() > 2 * ReplayWindow::kBits) seen.erase(seen.begin());
    }
    assert_true(steps > 3 * ReplayWindow::kBits);
    assert_true(accepted > 1000 && refused > 1000);  // both outcomes were exercised
  }
}

static void check_never_mutates(void**) {
  ReplayWindow w;
  expect(w, 500, true);
  // check() on new, old, duplicate and far-ahead counters, then the window behaves as if they never happened.
  for (uint64_t c : {uint64_t(501), uint64_t(400), uint64_t(500), uint64_t(1) << 40, uint64_t(0)}) {
    (void)w.check(c);
    (void)w.check(c);
  }
  assert_int_equal(w.top(), 500);
  expect(w, 400, true);                 // check(400) did not mark it
  expect(w, 501, true);
  expect(w, 499, true);
  expect(w, uint64_t(1) << 40, true);   // check(2^40) did not move the top
  expect(w, 500, false);
}

static void reset_forgets(void**) {
  ReplayWindow w;
  for (uint64_t c = 1; c < 100; ++c) expect(w, c, true);
  w.reset();
  assert_true(w.empty());
  expect(w, 50, true);  // seen before the reset, accepted again
  expect(w, 3, true);
  expect(w, 50, false);
  w.reset();
  expect(w, 0, true);   // a lower first counter after a reset
  assert_int_equal(w.top(), 0);
}

// Epoch windows: a rekey jumps the counter to the next epoch (counter >> 32); frames sealed just before the
// jump must still be accepted once, older epochs never.
static void epoch_rekey_jump_keeps_late_frames(void**) {
  EpochReplayWindow w;
  const uint64_t e600 = uint64_t(600) << 32, e601 = uint64_t(601) << 32;
  assert_true(w.accept(e600 + 1000));
  assert_true(w.accept(e601));            // the jump
  assert_true(w.check(e600 + 1001));      // late frame from the previous epoch
  assert_true(w.accept(e600 + 1001));
  assert_false(w.accept(e600 + 1001));    // but only once
  assert_false(w.accept(e600 + 1000));    // seen before the jump
  assert_false(w.check(e601));
  assert_true(w.accept(e601 + 5));
  // Two epochs later, epoch 600 is gone entirely.
  assert_true(w.accept((uint64_t(602) << 32) + 7));
  assert_false(w.check(e600 + 2000));
  assert_false(w.accept(e600 + 2000));
  assert_true(w.accept(e601 + 6));        // 601 is now the previous epoch
}

static void epoch_far_jump_keeps_previous(void**) {
  EpochReplayWindow w;
  assert_true(w.accept((uint64_t(10) << 32) + 1));
  // A jump of many epochs (a static peer re-anchoring its counter to the wall clock): the epoch it left is
  // still the previous one, epochs in between never existed.
  assert_true(w.accept((uint64_t(500) << 32) + 1));
  assert_true(w.accept((uint64_t(10) << 32) + 2));
  assert_false(w.accept((uint64_t(10) << 32) + 2));
  assert_false(w.accept((uint64_t(10) << 32) + 1));
  assert_false(w.check((uint64_t(499) << 32) + 2));
  assert_false(w.accept((uint64_t(499) << 32) + 2));
  assert_true(w.accept((uint64_t(500) << 32) + 2));
  assert_false(w.accept((uint64_t(500) << 32) + 2));
  assert_true(w.accept((uint64_t(900) << 32)));
  assert_false(w.accept((uint64_t(10) << 32) + 3));  // two moves ago: gone
  assert_true(w.accept((uint64_t(500) << 32) + 3));
}

static void epoch_window_keeps_per_epoch_depth(void**) {
  EpochReplayWindow w;
  const uint64_t e = uint64_t(3) << 32;
  assert_true(w.accept(e + 10000));
  assert_true(w.accept(e + 10000 - ReplayWindow::kTracked + 1));
  assert_false(w.accept(e + 10000 - ReplayWindow::kTracked));  // too old inside one epoch
  assert_true(w.accept((uint64_t(4) << 32)));
  assert_true(w.accept(e + 9999));                             // previous epoch keeps its own window
  assert_false(w.accept(e + 10000 - ReplayWindow::kTracked));
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(first_counter_accepted),
      cmocka_unit_test(duplicates_rejected),
      cmocka_unit_test(in_order_run),
      cmocka_unit_test(out_of_order_within_window),
      cmocka_unit_test(tracked_boundary),
      cmocka_unit_test(far_jump),
      cmocka_unit_test(randomized_against_model),
      cmocka_unit_test(check_never_mutates),
      cmocka_unit_test(reset_forgets),
      cmocka_unit_test(epoch_rekey_jump_keeps_late_frames),
      cmocka_unit_test(epoch_far_jump_keeps_previous),
      cmocka_unit_test(epoch_window_keeps_per_epoch_depth),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
