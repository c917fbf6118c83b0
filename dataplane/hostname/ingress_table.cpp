#include "dataplane/hostname/ingress_table.hpp"

#include "common/clock.hpp"
#include "common/log.hpp"
#include "dataplane/tables/dataplane.hpp"
#include "dataplane/tables/reclaimer.hpp"

namespace dptun {

IngressTableBuilder::~IngressTableBuilder() {
  if (worker_.joinable()) worker_.join();
}

void IngressTableBuilder::set_rules(std::vector<IngressRuleSpec> rules) {
  rules_ = std::move(rules);
  dirty_ = true;
}

void IngressTableBuilder::tick() {
  if (worker_.joinable()) {
    if (!done_.load(std::memory_order_acquire)) return;  // still compiling
    worker_.join();
    if (result_) {
      reclaimer_.retire(const_cast<IngressTable*>(dp_.ingress.exchange(result_.release(), std::memory_order_acq_rel)));
      last_error_.clear();
      ++builds_;
    } else {
      last_error_ = build_error_;
      LOG_ERROR("hostname rules not applied (the previous ones stay): %s", build_error_.c_str());
    }
  }
  if (!dirty_) return;
  dirty_ = false;
  // Snapshot on the control lcore (tunnel slots come from its state); compile on a thread of our own.
  auto table = std::make_unique<IngressTable>();
  std::vector<IngressMatcher::Rule> rules;
  for (uint32_t i = 0; i < rules_.size(); ++i) {
    const IngressRuleSpec& r = rules_[i];
    IngressRoute route;
    if (auto slot = resolve_(r.tunnel)) {
      route.tunnel = slot->first;
      route.tunnel_generation = slot->second;
    }
    route.target = r.target;
    route.private_rule = r.private_rule;
    route.proxy_protocol = r.proxy_protocol;
    table->routes.push_back(route);
    table->hostnames.push_back(r.hostname);
    rules.push_back({r.hostname, i});
  }
  const unsigned workers = unsigned(dp_.workers.size());
  done_.store(false, std::memory_order_relaxed);
  worker_ = std::thread([this, workers, rules = std::move(rules), table = std::move(table)]() mutable {
    const uint64_t t0 = monotonic_ns();
    std::string error;
    table->matcher = IngressMatcher::build(rules, workers, error);
    if (table->matcher) {
      LOG_INFO("hostname rules: %zu compiled in %.1f ms", rules.size(), double(monotonic_ns() - t0) / 1e6);
      result_ = std::move(table);
    } else {
      build_error_ = error;
    }
    done_.store(true, std::memory_order_release);
  });
}

}  // namespace dptun
