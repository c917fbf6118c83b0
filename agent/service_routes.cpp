#include "agent/service_routes.hpp"

#include <algorithm>

namespace dptun {

namespace {
std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = char(c >= 'A' && c <= 'Z' ? c | 0x20 : c);
  return out;
}
}  // namespace

std::optional<Endpoint> parse_local_target(std::string_view text) {
  if (auto ep = Endpoint::parse(text)) return ep;
  if (auto ip = Ipv4::parse(text)) return Endpoint{*ip, 0};
  return std::nullopt;
}

bool ServiceRoutes::add(std::string_view spec, std::string& error) {
  const size_t eq = spec.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    error = "'" + std::string(spec) + "': expected NAME=IP[:PORT]";
    return false;
  }
  std::string name = lower(spec.substr(0, eq));
  auto target = parse_local_target(spec.substr(eq + 1));
  if (!target) {
    error = "'" + std::string(spec) + "': the target must be IP[:PORT]";
    return false;
  }
  if (name.rfind("*.", 0) == 0 || name.rfind('.', 0) == 0) {
    name = name.substr(name[0] == '*' ? 2 : 1);
    if (name.empty()) {
      error = "'" + std::string(spec) + "': an empty wildcard";
      return false;
    }
    wildcards_.emplace_back(name, *target);
    std::stable_sort(wildcards_.begin(), wildcards_.end(),
                     [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  } else {
    exact_[name] = *target;
  }
  return true;
}

std::optional<Endpoint> ServiceRoutes::lookup(std::string_view raw) const {
  const std::string name = lower(raw);
  if (auto it = exact_.find(name); it != exact_.end()) return it->second;
  for (const auto& [domain, target] : wildcards_) {
    if (name == domain) return target;
    if (name.size() > domain.size() && name.compare(name.size() - domain.size(), domain.size(), domain) == 0 &&
        name[name.size() - domain.size() - 1] == '.')
      return target;
  }
  return fallback_;
}

void RoutedFlows::remember(uint32_t tag, Endpoint target) {
  if (map_.emplace(tag, target).second) {
    order_.push_back(tag);
    if (order_.size() > capacity_) {
      map_.erase(order_.front());
      order_.pop_front();
    }
  } else {
    map_[tag] = target;
  }
}

std::optional<Endpoint> RoutedFlows::find(uint32_t tag) const {
  auto it = map_.find(tag);
  if (it == map_.end()) return std::nullopt;
  return it->second;
}

}  // namespace dptun
