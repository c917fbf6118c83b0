// A statistics counter with one writer thread and any number of reader threads (dpgw's workers have the same in
// dataplane/tables/counters.hpp; this one reads and counts like a number): the writer adds with a relaxed load and
// store (no locked instruction: a plain increment on x86), readers see a value at most a few increments old and never
// a torn one. For counters a data-path thread owns and another thread reports (dpagent's threads). Two writers on
// one counter would lose increments: each thread counts in counters of its own.
#pragma once
#include <atomic>
#include <cstdint>

namespace dptun {

class StatCounter {
 public:
  StatCounter() = default;
  StatCounter(uint64_t v) : v_(v) {}  // NOLINT: counters start from plain numbers
  StatCounter(const StatCounter& o) : v_(o.get()) {}
  StatCounter& operator=(const StatCounter& o) {
    set(o.get());
    return *this;
  }
  StatCounter& operator=(uint64_t v) {
    set(v);
    return *this;
  }
  uint64_t get() const { return v_.load(std::memory_order_relaxed); }
  operator uint64_t() const { return get(); }  // NOLINT: reads like the number it counts
  void set(uint64_t v) { v_.store(v, std::memory_order_relaxed); }
  StatCounter& operator+=(uint64_t n) {
    set(get() + n);
    return *this;
  }
  StatCounter& operator++() { return *this += 1; }
  uint64_t operator++(int) {
    const uint64_t old = get();
    set(old + 1);
    return old;
  }

 private:
  std::atomic<uint64_t> v_{0};
};

}  // namespace dptun
