// A token bucket: `rate` tokens per second accumulate, carried over between calls, up to `burst`; take()
// spends one when there is one. Integer arithmetic on a nanosecond clock, no allocation: usable per packet.
// Starts full.
#pragma once
#include <algorithm>
#include <cstdint>

namespace dptun {

class TokenBucket {
 public:
  TokenBucket() = default;
  TokenBucket(uint64_t rate_per_s, uint64_t burst) { configure(rate_per_s, burst); }
  void configure(uint64_t rate_per_s, uint64_t burst) {
    rate_ = rate_per_s;
    cap_ = std::max<uint64_t>(burst, 1) * kUnit;
    credit_ = cap_;
    last_ns_ = 0;
  }
  // Spends one token (true), or none when the bucket is empty (false).
  bool take(uint64_t now_ns) {
    refill(now_ns);
    if (credit_ < kUnit) return false;
    credit_ -= kUnit;
    return true;
  }
  uint64_t available(uint64_t now_ns) {
    refill(now_ns);
    return credit_ / kUnit;
  }

 private:
  static constexpr uint64_t kUnit = 1'000'000'000ull;  // one token, in token-nanoseconds
  void refill(uint64_t now_ns) {
    if (last_ns_ && now_ns > last_ns_ && rate_) {
      // Bounded so that elapsed * rate cannot overflow: a full refill never needs more than cap_/rate_ + 1 ns.
      const uint64_t elapsed = std::min(now_ns - last_ns_, cap_ / rate_ + 1);
      credit_ = std::min(cap_, credit_ + elapsed * rate_);
    }
    if (now_ns > last_ns_) last_ns_ = now_ns;
  }
  uint64_t rate_ = 0;
  uint64_t cap_ = kUnit;
  uint64_t credit_ = kUnit;
  uint64_t last_ns_ = 0;
};

}  // namespace dptun
