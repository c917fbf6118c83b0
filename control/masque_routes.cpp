#include "control/masque_routes.hpp"

#include <cctype>
#include <string>
#include <tuple>

#include "common/json_fields.hpp"
#include "control/dpctld_config.hpp"  // allow_problem, identity_allowed
#include "proto/masque_path.hpp"

namespace dptun {

using nlohmann::json;

std::optional<std::pair<std::string, uint16_t>> parse_route_url(std::string_view text, std::string_view scheme,
                                                                std::string& why) {
  const std::string shown(text);
  const std::string prefix = std::string(scheme) + "://";
  std::string lower;
  for (char c : text) lower += char(std::tolower(static_cast<unsigned char>(c)));
  if (lower.rfind(prefix, 0) != 0) {
    why = "'" + shown + "' is not " + prefix + "HOST:PORT";
    return std::nullopt;
  }
  std::string_view rest = text.substr(prefix.size());
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);  // "udp://host:53/" is the same URL
  if (!rest.empty() && rest.front() == '[') {
    why = "'" + shown + "': IPv6 addresses are not supported (the tunnel carries IPv4)";
    return std::nullopt;
  }
  const size_t colon = rest.rfind(':');
  if (colon == std::string_view::npos) {
    why = "'" + shown + "' has no port: write " + prefix + "HOST:PORT";
    return std::nullopt;
  }
  const std::string_view host = rest.substr(0, colon), port_text = rest.substr(colon + 1);
  unsigned long port = 0;
  if (port_text.empty() || port_text.size() > 5 || port_text.find_first_not_of("0123456789") != std::string_view::npos ||
      (port = std::stoul(std::string(port_text))) < 1 || port > 65535) {
    why = "'" + shown + "': the port '" + std::string(port_text) + "' is not 1..65535";
    return std::nullopt;
  }
  // The host as a client's CONNECT-UDP path carries it, read back by the same parser the front end uses: a route
  // host is exactly what a request can name.
  ConnectUdpPathError err{};
  auto t = parse_connect_udp_path(connect_udp_path(host, uint16_t(port)), &err);
  if (!t || t->kind == ConnectUdpHostKind::Ipv6) {
    why = "'" + shown + "': '" + std::string(host) +
          (t ? "' is an IPv6 address (the tunnel carries IPv4)" : "' is not a DNS name or an IPv4 address");
    return std::nullopt;
  }
  return std::make_pair(t->host, uint16_t(port));
}

json encode_masque_route(const MasqueRoute& r) {
  return json{{"from", r.from_url()},
              {"to", r.to_url()},
              {"tunnel", r.tunnel.str()},
              {"private", r.private_route},
              {"allow", r.allow}};
}

MasqueRoute decode_masque_route(const json& j) {
  MasqueRoute r;
  std::string why;
  auto from = parse_route_url(string_field(j, "from"), "udp+https", why);
  if (!from) throw FieldError("'from': " + why);
  auto to = parse_route_url(string_field(j, "to"), "udp", why);
  if (!to) throw FieldError("'to': " + why);
  std::tie(r.host, r.port) = *from;
  std::tie(r.to_host, r.to_port) = *to;
  r.tunnel = uuid_field(j, "tunnel");
  r.private_route = bool_field(j, "private", false);
  for (const auto& a : array_field(j, "allow")) {
    if (!a.is_string()) throw FieldError("'allow' must list strings");
    if (std::string problem = allow_problem(a.get<std::string>()); !problem.empty())
      throw FieldError("'allow': " + problem);
    r.allow.push_back(a.get<std::string>());
  }
  if (r.allow.empty()) throw FieldError("'allow' is empty");
  return r;
}

const char* masque_refusal_name(MasqueRefusal r) {
  switch (r) {
    case MasqueRefusal::BadRequest: return "bad_request";
    case MasqueRefusal::UnknownTarget: return "unknown_target";
    case MasqueRefusal::PrivateRoute: return "private_route";
    case MasqueRefusal::NotAllowed: return "not_allowed";
    case MasqueRefusal::NoAgent: return "no_agent";
    case MasqueRefusal::DnsError: return "dns_error";
    case MasqueRefusal::Count: break;
  }
  return "?";
}

int masque_refusal_http_status(MasqueRefusal r) {
  switch (r) {
    case MasqueRefusal::BadRequest: return 400;
    case MasqueRefusal::UnknownTarget:
    case MasqueRefusal::PrivateRoute: return 404;
    case MasqueRefusal::NotAllowed: return 403;
    case MasqueRefusal::NoAgent: return 503;
    case MasqueRefusal::DnsError: return 502;
    case MasqueRefusal::Count: break;
  }
  return 500;
}

const char* masque_refusal_proxy_status(MasqueRefusal r) {
  switch (r) {
    case MasqueRefusal::BadRequest: return "http_request_error";
    case MasqueRefusal::UnknownTarget:
    case MasqueRefusal::PrivateRoute: return "destination_not_found";
    case MasqueRefusal::NotAllowed: return "http_request_denied";
    case MasqueRefusal::NoAgent: return "destination_unavailable";
    case MasqueRefusal::DnsError: return "dns_error";
    case MasqueRefusal::Count: break;
  }
  return "proxy_internal_error";
}

MasqueRouteTable::MasqueRouteTable(std::vector<MasqueRoute> routes) {
  for (MasqueRoute& r : routes)
    if (by_target_.emplace(std::make_pair(r.host, r.port), routes_.size()).second) routes_.push_back(std::move(r));
}

MasqueMatch MasqueRouteTable::match(std::string_view host, uint16_t port, const std::vector<std::string>& identities,
                                    bool public_entry) const {
  std::string key;
  for (char c : host) key += char(std::tolower(static_cast<unsigned char>(c)));
  auto it = by_target_.find({key, port});
  if (it == by_target_.end()) return {nullptr, MasqueRefusal::UnknownTarget};
  const MasqueRoute& r = routes_[it->second];
  if (r.private_route && public_entry) return {nullptr, MasqueRefusal::PrivateRoute};
  if (!identity_allowed(r.allow, identities)) return {nullptr, MasqueRefusal::NotAllowed};
  return {&r, MasqueRefusal::Count};
}

MasqueMatch MasqueRouteTable::match_path(std::string_view path, const std::vector<std::string>& identities,
                                         bool public_entry) const {
  auto t = parse_connect_udp_path(path);
  if (!t) return {nullptr, MasqueRefusal::BadRequest};
  return match(t->host, t->port, identities, public_entry);
}

}  // namespace dptun
