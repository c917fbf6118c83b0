#include "proto/entry_route.hpp"

namespace dptun {

static_assert([] {
  for (size_t i = 0; i < kEntryRouteKinds.size(); ++i)
    if (size_t(kEntryRouteKinds[i].route) != i) return false;
  return true;
}(), "kEntryRouteKinds is indexed by EntryRoute");

std::optional<EntryRoute> parse_entry_route(std::string_view name) {
  for (const EntryRouteKind& k : kEntryRouteKinds)
    if (name == k.name) return k.route;
  return std::nullopt;
}

namespace {

// "sni or http (tcp), or quic (udp)": the routes by hostname, by protocol, from the table.
std::string routes_by_protocol() {
  std::string text;
  for (uint8_t proto : {uint8_t(6), uint8_t(17)}) {
    std::string names;
    for (const EntryRouteKind& k : kEntryRouteKinds) {
      if (k.source == NameSource::None || k.proto != proto) continue;
      names += names.empty() ? "" : " or ";
      names += k.name;
    }
    if (names.empty()) continue;
    text += text.empty() ? "" : ", or ";
    text += names + (proto == 6 ? " (tcp)" : " (udp)");
  }
  return text;
}

}  // namespace

std::string entry_route_problem(std::string_view name, uint8_t proto, EntryRoute& out) {
  const std::optional<EntryRoute> r = parse_entry_route(name);
  if (!r || entry_route_kind(*r).source == NameSource::None)
    return "route must be " + routes_by_protocol() + ", not '" + std::string(name) + "'";
  const EntryRouteKind& k = entry_route_kind(*r);
  if (k.proto && k.proto != proto)
    return "route " + std::string(k.name) + " is for " + (k.proto == 6 ? "tcp" : "udp") + " entry points (routes: " +
           routes_by_protocol() + ")";
  out = *r;
  return "";
}

}  // namespace dptun
