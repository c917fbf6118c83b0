#include "proto/gateway_specs.hpp"

namespace dptun {

std::optional<Endpoint> parse_rule_target(std::string_view text) {
  if (auto ep = Endpoint::parse(text)) return ep;
  if (auto ip = Ipv4::parse(text)) return Endpoint{*ip, 0};
  return std::nullopt;
}

std::string rule_target_str(const Endpoint& e) { return e.port ? e.str() : e.ip.str(); }

}  // namespace dptun
