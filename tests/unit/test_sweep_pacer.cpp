// Housekeeping paced by time (dataplane/loop/sweep_pacer.hpp): the pacer's arithmetic (slots owed for the time
// elapsed, the fraction carried, the cap after a stall, a clock that goes back), and the flow table's expiry driven
// by it with explicit clock values, as the worker drives it after every poll: a flow past its deadline goes within
// one period, a call looks at as many slots as the time since the last one asks for (not 1024 per empty poll), the
// sweep wraps around the table, and a worker that stalled for 10 s sweeps the table once, not ten times. Also the
// flow table's period as the worker picks it from the configuration (FlowSetup::expiry_period_ns).
#include <algorithm>
#include <vector>

#include "dataplane/entry/flow_setup.hpp"
#include "dataplane/loop/sweep_pacer.hpp"
#include "dataplane/tables/flow_table.hpp"

#include "tests/unit/cmocka.hpp"  // after the DPDK headers (cmocka's macros)

using namespace dptun;

namespace {

constexpr uint64_t kUs = 1'000, kMs = 1'000'000, kSec = 1'000'000'000;
constexpr uint64_t kSlotMask = (uint64_t(1) << FlowTable::kSlotBits) - 1;

FlowKey key_of(uint32_t n) {
  return FlowKey::v4(0x0a000000u | n, 0xc0a80001u, uint16_t(1024 + (n & 0x7fff)), 443, 6, 0);
}

Flow* add(FlowTable& t, uint32_t n, uint64_t deadline) {
  bool evicted;
  const FlowKey k = key_of(n);
  Flow* f = t.insert(k, FlowTable::hash(k), 0, evicted);
  assert_non_null(f);
  f->deadline_ns = deadline;
  return f;
}

uint32_t slot_of(const FlowTable& t, const Flow& f) { return uint32_t(t.id_of(f) & kSlotMask); }

}  // namespace

// A table of 65536 slots swept once a second: 1 us between calls owes 0.065 slots; the fractions add up, so a
// second of calls 1 us apart looks at the table once (65536 slots, the rate rounded up: at most one more).
static void slots_follow_elapsed_time(void**) {
  SweepPacer p(65536, kSec);
  uint64_t now = 5 * kSec;
  assert_int_equal(p.due(now), 0);  // the first call starts the clock
  uint64_t total = 0;
  uint32_t most = 0;
  for (int i = 0; i < 1'000'000; ++i) {
    now += kUs;
    const uint32_t n = p.due(now);
    most = std::max(most, n);
    total += n;
  }
  assert_true(most <= 1);
  assert_true(total >= 65536 && total <= 65537);
  // Half a period in one call: half the table.
  const uint32_t half = p.due(now + kSec / 2);
  assert_true(half >= 32768 && half <= 32769);
}

// Calls at uneven intervals (what a poll loop gives) add up to the same as calls at even ones.
static void uneven_calls_add_up(void**) {
  SweepPacer p(1000, 10 * kMs);
  uint64_t now = 123;
  p.due(now);
  uint32_t seed = 1;
  uint64_t total = 0;
  const uint64_t end = now + 3 * 10 * kMs;  // three periods
  while (now < end) {
    seed = seed * 1103515245u + 12345u;
    const uint64_t step = 1 + (seed >> 8) % 50'000;  // 1 ns .. 50 us
    now = std::min(end, now + step);
    const uint32_t n = p.due(now);
    // Never more than the time since the last call asks for (rounded up), plus the carried fraction's one slot.
    assert_true(n <= step * 1000 / (10 * kMs) + 2);
    total += n;
  }
  assert_true(total >= 3000 && total <= 3001);
}

// A stalled worker (10 s without a poll) gets one whole sweep, not one per period missed; what follows starts afresh.
static void a_long_gap_is_capped(void**) {
  SweepPacer p(4096, kSec);
  p.due(kSec);
  assert_int_equal(p.due(kSec + 10 * kSec), 4096);
  assert_int_equal(p.due(kSec + 10 * kSec + kUs), 0);  // 4096 slots a second: one every 244 us
  assert_int_equal(p.due(kSec + 10 * kSec + 245 * kUs), 1);
  assert_int_equal(p.due(kSec + 10 * kSec + 245 * kUs + kSec), 4096);  // exactly one period: the whole table
}

// A clock that goes back (or stands still) owes nothing and does not move the pacer back.
static void time_going_back_owes_nothing(void**) {
  SweepPacer p(1000, kMs);  // one slot per microsecond
  p.due(100 * kUs);
  assert_int_equal(p.due(100 * kUs), 0);
  assert_int_equal(p.due(50 * kUs), 0);
  assert_int_equal(p.due(110 * kUs), 10);  // from 100 us, not from 50 us
}

// An empty table owes nothing; a tiny one owes its slots once per period; a big one (2^24 flows) 16-17 per us.
static void sizes(void**) {
  SweepPacer none(0, kSec);
  none.due(0);
  assert_int_equal(none.due(kSec / 2), 0);
  assert_int_equal(none.due(20 * kSec), 0);

  SweepPacer tiny(3, kMs);
  tiny.due(0);
  uint32_t total = 0;
  for (uint64_t t = kUs; t <= kMs; t += kUs) total += tiny.due(t);
  assert_int_equal(total, 3);

  SweepPacer big(1u << 24, kSec);
  big.due(0);
  for (uint64_t t = kUs; t <= 100 * kUs; t += kUs) {
    const uint32_t n = big.due(t);
    assert_true(n >= 16 && n <= 17);
  }
}

// The flow table's expiry paced with explicit clock values, as the worker does after each poll: every flow past
// its deadline goes after it and within one period (plus the poll's step) of it, wherever it sits in the table
// (the cursor wraps around), and no flow goes early.
static void flows_expire_within_one_period(void**) {
  constexpr uint32_t kCap = 1000;
  constexpr uint64_t kPeriod = 10 * kMs;
  constexpr uint64_t kStep = 7 * kUs;  // a poll every 7 us
  FlowTable t(kCap, 0);
  SweepPacer p(t.capacity(), kPeriod);
  std::vector<uint64_t> deadline(kCap);
  uint32_t seed = 7;
  for (uint32_t n = 0; n < kCap; ++n) {
    seed = seed * 1664525u + 1013904223u;
    Flow* f = add(t, n, kMs + (seed >> 8) % (4 * kPeriod));  // due over four periods
    deadline[slot_of(t, *f)] = f->deadline_ns;
  }
  uint64_t now = 0;
  p.due(now);
  uint32_t gone = 0;
  uint64_t worst = 0;
  while (t.size() && now < 10 * kPeriod) {
    now += kStep;
    t.expire(now, p.due(now), [&](const Flow& f) {
      const uint64_t d = deadline[slot_of(t, f)];
      assert_true(d <= now);
      worst = std::max(worst, now - d);
      ++gone;
    });
  }
  assert_int_equal(gone, kCap);
  assert_int_equal(t.size(), 0);
  assert_true(worst <= kPeriod + kStep);
  assert_true(worst > kPeriod / 2);  // (the bound is not loose: some flow waited most of a period)
}

// A flow whose slot the sweep has just passed becomes due: it goes on the next round, after the cursor wraps.
static void the_sweep_wraps_around(void**) {
  constexpr uint32_t kCap = 64;
  constexpr uint64_t kPeriod = 64 * kUs;  // one slot per microsecond
  FlowTable t(kCap, 0);
  std::vector<Flow*> flows;
  for (uint32_t n = 0; n < kCap; ++n) flows.push_back(add(t, n, UINT64_MAX));
  SweepPacer p(kCap, kPeriod);
  uint64_t now = 0;
  p.due(now);
  // Three quarters of a round: the cursor is at slot 48.
  now = 48 * kUs;
  assert_int_equal(t.expire(now, p.due(now)), 0);
  Flow* passed = nullptr;  // the flow in slot 10, passed already
  Flow* ahead = nullptr;   // the flow in slot 60, not yet
  for (Flow* f : flows) {
    if (slot_of(t, *f) == 10) passed = f;
    if (slot_of(t, *f) == 60) ahead = f;
  }
  assert_non_null(passed);
  assert_non_null(ahead);
  passed->deadline_ns = now;
  ahead->deadline_ns = now;
  const FlowKey passed_key = passed->key, ahead_key = ahead->key;
  // 13 us later the cursor has passed slot 60 (not yet the table's end): that one has gone, the other has not.
  now += 13 * kUs;
  assert_int_equal(t.expire(now, p.due(now)), 1);
  assert_null(t.find(ahead_key, FlowTable::hash(ahead_key)));
  assert_non_null(t.find(passed_key, FlowTable::hash(passed_key)));
  // Past the end and round to slot 10: gone too, within one period of its deadline.
  uint32_t removed = 0;
  while (now < 48 * kUs + kPeriod && !removed) {
    now += kUs;
    removed = t.expire(now, p.due(now));
  }
  assert_int_equal(removed, 1);
  assert_null(t.find(passed_key, FlowTable::hash(passed_key)));
  assert_true(now <= 48 * kUs + kPeriod);
  assert_int_equal(t.size(), kCap - 2);
}

// What one call looks at is bounded by the time since the last: a full table of flows all past their deadline
// (so every slot looked at removes one) and the default size and period, 65536 slots a second.
static void one_call_looks_at_what_the_time_asks(void**) {
  FlowTable t(65536, 0);
  for (uint32_t n = 0; n < t.capacity(); ++n) add(t, n, 1);
  SweepPacer p(t.capacity(), kSec);
  uint64_t now = 10 * kSec;
  p.due(now);
  // 1 us after the last call: 0 or 1 slot, not 1024 (what an empty poll used to sweep).
  now += kUs;
  assert_true(t.expire(now, p.due(now)) <= 1);
  // 100 calls 1 us apart: 6 or 7 slots in all.
  uint32_t removed = 0;
  for (int i = 0; i < 100; ++i) {
    now += kUs;
    const uint32_t r = t.expire(now, p.due(now));
    assert_true(r <= 1);
    removed += r;
  }
  assert_true(removed >= 6 && removed <= 7);
  // 10 ms: 655-656.
  now += 10 * kMs;
  const uint32_t r = t.expire(now, p.due(now));
  assert_true(r >= 655 && r <= 657);
  // The worker stalls for 10 s: the next call sweeps the whole table once (all that is left), then is back to
  // what the time asks.
  const uint32_t left = t.size();
  now += 10 * kSec;
  assert_int_equal(p.due(now), t.capacity());
  assert_int_equal(t.expire(now, t.capacity()), left);
  assert_int_equal(t.size(), 0);
  assert_int_equal(p.due(now + kUs), 0);
}

// The flow table's period, from the configuration: a quarter of the shortest flow timeout, between 10 ms and 1 s.
static void flow_period_from_the_configuration(void**) {
  GatewayConfig cfg;  // defaults: UDP ttl and closed TCP 5 s, the shortest
  assert_int_equal(FlowSetup::expiry_period_ns(cfg), kSec);
  cfg.flow.tcp_closed_timeout_ns = 2 * kSec;
  assert_int_equal(FlowSetup::expiry_period_ns(cfg), 500 * kMs);
  EntryPointConfig e;
  e.udp_ttl_ns = 100 * kMs;  // the shortest the configuration takes
  cfg.entry_points.push_back(e);
  assert_int_equal(FlowSetup::expiry_period_ns(cfg), 25 * kMs);
  cfg.flow.tcp_syn_timeout_ns = 20 * kMs;  // shorter than a file may say (tests set such values directly)
  assert_int_equal(FlowSetup::expiry_period_ns(cfg), 10 * kMs);
}

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(slots_follow_elapsed_time),
      cmocka_unit_test(uneven_calls_add_up),
      cmocka_unit_test(a_long_gap_is_capped),
      cmocka_unit_test(time_going_back_owes_nothing),
      cmocka_unit_test(sizes),
      cmocka_unit_test(flows_expire_within_one_period),
      cmocka_unit_test(the_sweep_wraps_around),
      cmocka_unit_test(one_call_looks_at_what_the_time_asks),
      cmocka_unit_test(flow_period_from_the_configuration),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
