// Monotonic and wall-clock nanoseconds for slow-path code (the dataplane uses TSC-derived time).
#pragma once
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <string>

namespace dptun {

inline uint64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

inline uint64_t realtime_ns() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

// A duration for people: "5", "0.1", "86400" (seconds as %g, not to_string's "5.000000").
inline std::string seconds_text(double s) {
  char buf[32];
  snprintf(buf, sizeof buf, "%g", s);
  return buf;
}

// Seconds from `then` to `now` (ns of one clock), 0 when `then` is later: a time another thread stamped may be
// newer than this thread's reading of the clock.
inline double seconds_since(uint64_t now_ns, uint64_t then_ns) {
  return now_ns > then_ns ? double(now_ns - then_ns) / 1e9 : 0.0;
}

constexpr uint64_t kNsPerSec = 1000000000ull;
constexpr uint64_t kNsPerMs = 1000000ull;

}  // namespace dptun
