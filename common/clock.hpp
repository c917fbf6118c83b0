// Monotonic and wall-clock nanoseconds for slow-path code (the dataplane uses TSC-derived time).
#pragma once
#include <cstdint>
#include <ctime>

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

constexpr uint64_t kNsPerSec = 1000000000ull;
constexpr uint64_t kNsPerMs = 1000000ull;

}  // namespace dptun
