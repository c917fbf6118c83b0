// Paces a worker's sweep over a table by elapsed time, not by polls: a table of `slots` is looked at once per
// `period_ns`, whatever the poll rate, so a busy worker and an idle one do the same housekeeping per second and an
// entry past its deadline is seen within one period (plus one poll) of it. Each call is told what the clock says
// and returns how many slots to look at now: slots * elapsed / period, the fraction carried to the next call (a
// call 1 us after the last on a table of 65536 slots swept once a second gets 0 and, every 15 us or so, 1). A gap
// of a period or more (a stalled worker) gives one whole sweep, never more; the first call only starts the clock.
// The caller walks its table with a cursor of its own (FlowTable::expire, release_unheld). No allocation, no
// syscall; times are the caller's nanoseconds (TscClock); a clock that goes back counts as no time.
#pragma once
#include <cstdint>

namespace dptun {

class SweepPacer {
 public:
  // slots: the table's size, below 2^31 (0: nothing to sweep); period_ns: one whole sweep takes this long, 1 ns to
  // 2^62 ns (0 counts as 1).
  SweepPacer(uint32_t slots, uint64_t period_ns)
      : slots_(slots), period_ns_(period_ns ? period_ns : 1),
        // slots per nanosecond in 32.32 fixed point, rounded up: a sweep never takes longer than the period
        rate_(((uint64_t(slots) << 32) + period_ns_ - 1) / period_ns_) {}

  // The slots to look at at `now_ns`, at most slots(). One multiplication, no division.
  uint32_t due(uint64_t now_ns) {
    if (!started_) {  // the first call starts the clock: a new table has nothing to sweep yet
      started_ = true;
      last_ns_ = now_ns;
      return 0;
    }
    if (now_ns <= last_ns_) return 0;
    const uint64_t elapsed = now_ns - last_ns_;
    last_ns_ = now_ns;
    if (elapsed >= period_ns_) {  // capped: a long gap is one sweep of the whole table, not one per period missed
      carry_ = 0;
      return slots_;
    }
    // elapsed < period: elapsed * rate_ < slots * 2^32 + period, the carry is below 2^32: it fits 64 bits.
    const uint64_t owed = elapsed * rate_ + carry_;
    carry_ = owed & 0xffffffffu;
    const uint64_t n = owed >> 32;
    return n < slots_ ? uint32_t(n) : slots_;
  }

  uint32_t slots() const { return slots_; }
  uint64_t period_ns() const { return period_ns_; }

 private:
  uint32_t slots_;
  uint64_t period_ns_;
  uint64_t rate_;       // slots per nanosecond, 32.32 fixed point
  uint64_t last_ns_ = 0;
  uint64_t carry_ = 0;  // the fraction of a slot owed, carried to the next call (32.32)
  bool started_ = false;
};

}  // namespace dptun
