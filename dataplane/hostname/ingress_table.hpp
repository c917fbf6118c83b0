// Hostname rules as the workers see them: an IngressMatcher and, for each rule, where it leads (tunnel slot,
// target, private or not). Immutable once published. IngressTableBuilder, on the control lcore, rebuilds the
// table on a thread of its own whenever the rules or the tunnels change (compiling 100k rules takes seconds;
// the control lcore keeps ticking) and publishes the result under RCU.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/inet.hpp"
#include "ingress/ingress_matcher.hpp"
#include "proto/gateway_specs.hpp"

namespace dptun {

struct Dataplane;
class Reclaimer;

struct IngressRoute {
  uint16_t tunnel = 0;              // TunnelTable slot
  uint32_t tunnel_generation = 0;   // 0: the rule's tunnel does not exist (flows are refused)
  std::optional<Endpoint> target;
  bool private_rule = false;
  bool proxy_protocol = false;
};

struct IngressTable {
  std::unique_ptr<IngressMatcher> matcher;
  std::vector<IngressRoute> routes;  // by rule index
  std::vector<std::string> hostnames;
  const IngressRoute* lookup(std::string_view host, unsigned worker, uint32_t* rule = nullptr) const {
    if (!matcher) return nullptr;
    auto m = matcher->lookup(host, worker);
    if (!m) return nullptr;
    if (rule) *rule = m->rule;
    return &routes[m->payload];
  }
};

class IngressTableBuilder {
 public:
  // Resolves a tunnel id to (slot, generation), or nullopt.
  using TunnelResolver = std::function<std::optional<std::pair<uint16_t, uint32_t>>(const Uuid&)>;

  IngressTableBuilder(Dataplane& dp, Reclaimer& reclaimer, TunnelResolver resolve)
      : dp_(dp), reclaimer_(reclaimer), resolve_(std::move(resolve)) {}
  ~IngressTableBuilder();

  // New rules (the whole list); the table follows within a tick of the build finishing.
  void set_rules(std::vector<IngressRuleSpec> rules);
  // The tunnels changed: rule targets are resolved again.
  void tunnels_changed() { dirty_ = true; }
  // Control tick: publishes a finished build, starts the next one when something changed.
  void tick();
  const std::vector<IngressRuleSpec>& rules() const { return rules_; }
  const std::string& last_error() const { return last_error_; }
  uint64_t builds() const { return builds_; }

 private:
  Dataplane& dp_;
  Reclaimer& reclaimer_;
  TunnelResolver resolve_;
  std::vector<IngressRuleSpec> rules_;
  bool dirty_ = false;
  std::thread worker_;
  std::atomic<bool> done_{false};
  std::unique_ptr<IngressTable> result_;
  std::string build_error_, last_error_;
  uint64_t builds_ = 0;
};

}  // namespace dptun
