// HandoffRing (agent/handoff_ring.hpp), the rings dpagent's data-path threads hand the main loop the pairs' packets
// through: records come out whole and in order across the wrap, a full ring refuses (and loses nothing already in
// it), records of 0 bytes or over half the ring are refused, the eventfd wakes the consumer, a drain stops at its
// budget and wakes its loop again for the rest, and two real threads pass a million records of varying sizes with
// every byte checked.
#include <poll.h>

#include <thread>
#include <vector>

#include "agent/handoff_ring.hpp"
#include "tests/unit/cmocka.hpp"

using namespace dptun;

namespace {
constexpr size_t kCap = size_t(64) << 10;

// A record of `len` bytes whose contents follow from `seq` (checked by the consumer).
void fill(uint8_t* p, size_t len, uint32_t seq) {
  for (size_t i = 0; i < len; ++i) p[i] = uint8_t(seq * 31 + i * 7);
}
bool intact(std::span<const uint8_t> r, size_t len, uint32_t seq) {
  if (r.size() != len) return false;
  for (size_t i = 0; i < len; ++i)
    if (r[i] != uint8_t(seq * 31 + i * 7)) return false;
  return true;
}
size_t length_of(uint32_t seq) { return 1 + (seq * 2654435761u) % 9000; }  // 1..9000 bytes, in no order
}  // namespace

static void records_come_out_whole_and_in_order_across_the_wrap(void**) {
  HandoffRing ring(kCap);
  uint32_t produced = 0, consumed = 0;
  // Many times round the ring, never more than a few records in it: every position of the wrap is met.
  for (int round = 0; round < 2000; ++round) {
    for (int k = 0; k < 3; ++k) {
      const size_t len = length_of(produced);
      uint8_t* p = ring.reserve(len);
      assert_non_null(p);
      fill(p, len, produced++);
      ring.commit();
    }
    for (int k = 0; k < 3; ++k) {
      std::span<uint8_t> r = ring.front();
      assert_true(intact(r, length_of(consumed), consumed));
      ++consumed;
      ring.pop();
    }
    assert_true(ring.front().empty());
  }
}

static void a_full_ring_refuses_and_keeps_what_it_holds(void**) {
  HandoffRing ring(kCap);
  uint32_t n = 0;
  while (uint8_t* p = ring.reserve(1000)) {
    fill(p, 1000, n++);
    ring.commit();
  }
  // 1008 bytes a record (header and padding): 65 fit in 64 KiB.
  assert_int_equal(n, kCap / 1008);
  assert_null(ring.reserve(9));  // (16 bytes are left at the end, and the start is taken)
  std::span<uint8_t> r = ring.front();
  assert_true(intact(r, 1000, 0));
  ring.pop();
  // One record's room again: another of the same size fits, nothing bigger than what was freed.
  assert_non_null(ring.reserve(1000));
  ring.commit();
  for (uint32_t i = 1; i < n; ++i) {
    assert_true(intact(ring.front(), 1000, i));
    ring.pop();
  }
  assert_int_equal(ring.front().size(), 1000);
}

static void empty_and_oversized_records_are_refused(void**) {
  HandoffRing ring(kCap);
  assert_null(ring.reserve(0));
  assert_null(ring.reserve(kCap / 2));  // (with its header, over half the ring)
  assert_non_null(ring.reserve(kCap / 2 - 8));
  ring.commit();
  assert_int_equal(ring.front().size(), kCap / 2 - 8);
}

static void the_eventfd_wakes_the_consumer_once_per_batch(void**) {
  HandoffRing ring(kCap);
  assert_true(ring.open());
  pollfd pfd{ring.wake_fd(), POLLIN, 0};
  assert_int_equal(poll(&pfd, 1, 0), 0);
  ring.wake();  // nothing committed: no wakeup
  assert_int_equal(poll(&pfd, 1, 0), 0);
  for (uint32_t i = 0; i < 3; ++i) {
    fill(ring.reserve(10), 10, i);
    ring.commit();
  }
  ring.wake();
  assert_int_equal(poll(&pfd, 1, 0), 1);
  ring.clear_wake();
  assert_int_equal(poll(&pfd, 1, 0), 0);
  ring.wake_self();  // the consumer leaves records for its next turn
  assert_int_equal(poll(&pfd, 1, 0), 1);
}

static void a_drain_stops_at_its_budget_and_wakes_itself_again(void**) {
  HandoffRing ring(kCap);
  assert_true(ring.open());
  for (uint32_t i = 0; i < 5; ++i) {
    fill(ring.reserve(100), 100, i);
    ring.commit();
  }
  ring.wake();
  pollfd pfd{ring.wake_fd(), POLLIN, 0};
  uint32_t next = 0;
  auto check = [&](std::span<uint8_t> r) { assert_true(intact(r, 100, next++)); };
  assert_int_equal(ring.drain(3, check), 3);
  assert_int_equal(poll(&pfd, 1, 0), 1);  // two left: the loop comes back for them
  assert_int_equal(ring.drain(3, check), 2);
  assert_int_equal(poll(&pfd, 1, 0), 0);  // all done: no wakeup left behind
  assert_int_equal(next, 5);
}

static void two_threads_pass_a_million_records(void**) {
  HandoffRing ring(kCap);
  constexpr uint32_t kRecords = 1'000'000;
  std::thread producer([&] {
    for (uint32_t seq = 0; seq < kRecords;) {
      const size_t len = 1 + seq % 700;
      uint8_t* p = ring.reserve(len);
      if (!p) {
        std::this_thread::yield();
        continue;
      }
      fill(p, len, seq++);
      ring.commit();
    }
  });
  uint32_t bad = 0;
  for (uint32_t seq = 0; seq < kRecords;) {
    std::span<uint8_t> r = ring.front();
    if (r.empty()) {
      std::this_thread::yield();
      continue;
    }
    bad += !intact(r, 1 + seq % 700, seq);
    ++seq;
    ring.pop();
  }
  producer.join();
  assert_int_equal(bad, 0);
  assert_true(ring.front().empty());
}

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(records_come_out_whole_and_in_order_across_the_wrap),
      cmocka_unit_test(a_full_ring_refuses_and_keeps_what_it_holds),
      cmocka_unit_test(empty_and_oversized_records_are_refused),
      cmocka_unit_test(the_eventfd_wakes_the_consumer_once_per_batch),
      cmocka_unit_test(a_drain_stops_at_its_budget_and_wakes_itself_again),
      cmocka_unit_test(two_threads_pass_a_million_records),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
