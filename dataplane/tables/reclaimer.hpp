// Deferred deletion for objects workers may still be reading: the control lcore retires an object after
// unpublishing it, and frees it once every worker has reported a quiescent state since (rte_rcu_qsbr).
#pragma once
#include <rte_rcu_qsbr.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

namespace dptun {

class Reclaimer {
 public:
  explicit Reclaimer(rte_rcu_qsbr* rcu) : rcu_(rcu) {}
  ~Reclaimer() {
    for (auto& r : retired_) r.free();
  }
  Reclaimer(const Reclaimer&) = delete;
  Reclaimer& operator=(const Reclaimer&) = delete;

  template <typename T>
  void retire(T* object) {
    if (!object) return;
    if (!rcu_) {
      delete object;
      return;
    }
    retired_.push_back({rte_rcu_qsbr_start(rcu_), [object] { delete object; }});
  }
  // Frees what every worker is done with.
  void reclaim() {
    auto done = std::partition(retired_.begin(), retired_.end(),
                               [&](const Retired& r) { return rte_rcu_qsbr_check(rcu_, r.token, false) != 1; });
    for (auto it = done; it != retired_.end(); ++it) it->free();
    retired_.erase(done, retired_.end());
  }
  size_t pending() const { return retired_.size(); }

 private:
  struct Retired {
    uint64_t token;
    std::function<void()> free;
  };
  rte_rcu_qsbr* rcu_;
  std::vector<Retired> retired_;
};

}  // namespace dptun
