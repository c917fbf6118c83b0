// Idle policy for poll loops: after `pause_polls` empty polls spent in rte_pause(), sleep 1 us, doubling up to
// max_sleep_us, until traffic returns (nanosleep: Linux adds the thread's timer slack, 50 us by default, so the
// shortest sleep is ~50 us). Disabled = busy-poll (the production default).
#pragma once
#include <rte_pause.h>
#include <time.h>

#include <cstdint>

#include "dataplane/main_lcore/gateway_config.hpp"

namespace dptun {

class IdleBackoff {
 public:
  explicit IdleBackoff(const IdleConfig& cfg) : cfg_(cfg) {}

  // Call once per poll with the number of packets handled. Returns true when it slept.
  bool after_poll(unsigned work) {
    if (work || !cfg_.backoff) {
      empty_ = 0;
      sleep_us_ = 1;
      return false;
    }
    if (++empty_ <= cfg_.pause_polls) {
      rte_pause();
      return false;
    }
    timespec ts{0, long(sleep_us_) * 1000};
    nanosleep(&ts, nullptr);
    if (sleep_us_ < cfg_.max_sleep_us) sleep_us_ = sleep_us_ * 2 > cfg_.max_sleep_us ? cfg_.max_sleep_us : sleep_us_ * 2;
    return true;
  }

 private:
  IdleConfig cfg_;
  uint32_t empty_ = 0;
  uint32_t sleep_us_ = 1;
};

}  // namespace dptun
