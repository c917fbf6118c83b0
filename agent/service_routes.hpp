// Agent-side routing: for flows the gateway leaves to the agent (hostname rules without a target), the hostname
// the client asked for picks a local target: an exact name, else the longest wildcard ("*.example.com": the
// domain and its subdomains), else the fallback. Only a flow's first packets carry the name (a trailer on the
// relay frame), so the choice is remembered per flow tag (RoutedFlows, bounded, oldest forgotten first).
#pragma once
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/inet.hpp"

namespace dptun {

class ServiceRoutes {
 public:
  // "NAME=IP[:PORT]" with NAME exact or "*.domain" ("IP" alone keeps the port the client used). False with `error`.
  bool add(std::string_view spec, std::string& error);
  void set_fallback(Endpoint target) { fallback_ = target; }
  std::optional<Endpoint> lookup(std::string_view name) const;
  bool empty() const { return exact_.empty() && wildcards_.empty() && !fallback_; }
  size_t size() const { return exact_.size() + wildcards_.size(); }

 private:
  std::unordered_map<std::string, Endpoint> exact_;
  std::vector<std::pair<std::string, Endpoint>> wildcards_;  // domain without "*.", longest first
  std::optional<Endpoint> fallback_;
};

class RoutedFlows {
 public:
  explicit RoutedFlows(size_t capacity = 65536) : capacity_(capacity) {}
  void remember(uint32_t tag, Endpoint target);
  std::optional<Endpoint> find(uint32_t tag) const;
  size_t size() const { return map_.size(); }

 private:
  size_t capacity_;
  std::unordered_map<uint32_t, Endpoint> map_;
  std::deque<uint32_t> order_;
};

// "IP:PORT" or "IP" (port 0: the port the client used).
std::optional<Endpoint> parse_local_target(std::string_view text);

}  // namespace dptun
