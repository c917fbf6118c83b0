// What dpgw is told by dpctld (docs/control-plane.md, "dpctld <-> dpgw"): a tunnel, a session, an entry point
// and a hostname rule as plain values. dpctld holds its entry points and rules in these types too (its config
// and state file). No JSON here: the data path includes it; the JSON encoding is proto/gateway_messages.hpp.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/inet.hpp"
#include "common/uuid.hpp"
#include "proto/entry_route.hpp"

namespace dptun {

inline constexpr int kGatewayProtocolVersion = 1;
inline constexpr uint32_t kFirstControlSessionIndex = 32768;  // 1..32767 belong to static peers

struct TunnelSpec {
  Uuid id;
  std::string name;
  bool from_config = false;  // dpgw's own config (not part of the messages)
};

struct SessionSpec {
  uint32_t index = 0;
  Uuid tunnel;
  uint8_t weight = 1;
  std::vector<uint8_t> base_secret;  // 32 bytes
  bool visitor = false;  // a visitor of the tunnel (dpagent visit): reaches its services, never carries its flows
  bool peer_clock_counters = false;  // static peer: the agent's counters follow the wall clock (not sent)
  std::optional<Endpoint> endpoint;  // static peer's configured agent endpoint (not sent)
  bool from_config = false;
};

struct EntrySpec {
  uint8_t proto = 0;  // 6 or 17
  uint16_t port = 0;
  std::optional<Ipv4> listen;
  EntryRoute route = EntryRoute::Fixed;  // proto/entry_route.hpp
  Uuid tunnel;        // fixed entry points only
  Endpoint target;    // fixed entry points only
  bool keepalive = false;
  uint64_t udp_ttl_ns = 5'000'000'000ull;
  bool from_config = false;  // dpgw's own config (not part of the messages; dpctld keeps its config's apart)
};

// A rule's target: "a.b.c.d:port", or "a.b.c.d" alone (port 0: the port the client connected to, so one rule
// serves :80 and :443 alike).
std::optional<Endpoint> parse_rule_target(std::string_view text);
std::string rule_target_str(const Endpoint& e);

// A hostname rule (docs/control-plane.md, "Hostname rules"): a normalized hostname pattern, the tunnel it
// leads to and the target the agent reaches; private rules are never used by public entry points.
struct IngressRuleSpec {
  std::string hostname;  // "app.example.org", "*.example.com" or "~regex"
  Uuid tunnel;
  std::optional<Endpoint> target;
  bool private_rule = false;     // written "$<uuid>": only visitors holding the tunnel id may use it
  bool proxy_protocol = false;   // send a PROXY protocol v2 header to the target first (TCP)
};

}  // namespace dptun
