#include "proto/gateway_messages.hpp"

#include <stdexcept>

#include "common/hex.hpp"
#include "common/json_fields.hpp"

namespace dptun {

using nlohmann::json;

namespace {
Uuid uuid_of(const json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_string()) throw std::runtime_error(std::string("'") + key + "' (a UUID) is required");
  auto u = Uuid::parse(j[key].get<std::string>());
  if (!u) throw std::runtime_error(std::string("'") + key + "' is not a UUID");
  return *u;
}
}  // namespace

json encode_tunnel(const TunnelSpec& t) { return {{"id", t.id.str()}, {"name", t.name}}; }

json encode_session(const SessionSpec& s) {
  json j{{"index", s.index}, {"tunnel", s.tunnel.str()}, {"weight", s.weight}, {"secret", hex_encode(s.base_secret)}};
  if (s.visitor) j["role"] = "visitor";
  return j;
}

json encode_entry(const EntrySpec& e) {
  json j{{"proto", e.proto == 6 ? "tcp" : "udp"},
         {"port", e.port},
         {"keepalive", e.keepalive},
         {"ttl", double(e.udp_ttl_ns) / 1e9}};
  if (e.route == EntryRoute::Fixed) {
    j["tunnel"] = e.tunnel.str();
    j["target"] = e.target.str();
  } else {
    j["route"] = entry_route_name(e.route);
  }
  if (e.listen) j["listen"] = e.listen->str();
  return j;
}

std::optional<Endpoint> parse_rule_target(std::string_view text) {
  if (auto ep = Endpoint::parse(text)) return ep;
  if (auto ip = Ipv4::parse(text)) return Endpoint{*ip, 0};
  return std::nullopt;
}

std::string rule_target_str(const Endpoint& e) { return e.port ? e.str() : e.ip.str(); }

json encode_ingress_rule(const IngressRuleSpec& r) {
  json j{{"hostname", r.hostname}, {"tunnel", r.tunnel.str()}, {"private", r.private_rule}};
  if (r.target) j["target"] = rule_target_str(*r.target);
  if (r.proxy_protocol) j["proxy_protocol"] = true;
  return j;
}

IngressRuleSpec decode_ingress_rule(const json& j) {
  IngressRuleSpec r;
  if (!j.contains("hostname") || !j["hostname"].is_string() || j["hostname"].get<std::string>().empty())
    throw std::runtime_error("'hostname' is required");
  r.hostname = j["hostname"].get<std::string>();
  r.tunnel = uuid_of(j, "tunnel");
  if (j.contains("target") && !j["target"].is_null()) {
    auto t = j["target"].is_string() ? parse_rule_target(j["target"].get<std::string>()) : std::nullopt;
    if (!t) throw std::runtime_error("'target' must be ipv4:port or ipv4");
    r.target = *t;
  }
  r.private_rule = bool_field(j, "private", false);
  r.proxy_protocol = bool_field(j, "proxy_protocol", false);
  return r;
}

TunnelSpec decode_tunnel(const json& j) {
  TunnelSpec t;
  t.id = uuid_of(j, "id");
  t.name = j.contains("name") && j["name"].is_string() ? j["name"].get<std::string>() : t.id.str();
  return t;
}

SessionSpec decode_session(const json& j) {
  SessionSpec s;
  s.index = uint32_t(int_field(j, "index", kFirstControlSessionIndex, 65535));
  s.tunnel = uuid_of(j, "tunnel");
  s.weight = uint8_t(int_field(j, "weight", 1, 255, 1));
  std::optional<std::vector<uint8_t>> secret;
  if (j.contains("secret") && j["secret"].is_string()) secret = hex_decode(j["secret"].get<std::string>());
  if (!secret || secret->size() != 32) throw std::runtime_error("'secret' must be 64 hex digits");
  s.base_secret = std::move(*secret);
  if (j.contains("role")) {
    const std::string role = j["role"].is_string() ? j["role"].get<std::string>() : "";
    if (role != "agent" && role != "visitor") throw std::runtime_error("'role' must be \"agent\" or \"visitor\"");
    s.visitor = role == "visitor";
  }
  return s;
}

EntrySpec decode_entry(const json& j) {
  EntrySpec e;
  std::string proto = j.contains("proto") && j["proto"].is_string() ? j["proto"].get<std::string>() : "";
  if (proto != "tcp" && proto != "udp") throw std::runtime_error("'proto' must be \"tcp\" or \"udp\"");
  e.proto = proto == "tcp" ? 6 : 17;
  e.port = uint16_t(int_field(j, "port", 1, 65535));
  if (j.contains("listen") && !j["listen"].is_null()) {
    auto ip = j["listen"].is_string() ? Ipv4::parse(j["listen"].get<std::string>()) : std::nullopt;
    if (!ip) throw std::runtime_error("'listen' is not an IPv4 address");
    e.listen = *ip;
  }
  if (j.contains("route") && !j["route"].is_null()) {
    const std::string problem =
        entry_route_problem(j["route"].is_string() ? j["route"].get<std::string>() : "", e.proto, e.route);
    if (!problem.empty()) throw std::runtime_error("'route': " + problem);
  }
  if (e.route == EntryRoute::Fixed) {
    e.tunnel = uuid_of(j, "tunnel");
    auto target = j.contains("target") && j["target"].is_string() ? Endpoint::parse(j["target"].get<std::string>())
                                                                    : std::nullopt;
    if (!target) throw std::runtime_error("'target' must be ipv4:port");
    e.target = *target;
  } else if (j.contains("tunnel") || j.contains("target")) {
    throw std::runtime_error("an entry point routed by hostname has no 'tunnel' or 'target' of its own");
  }
  e.keepalive = bool_field(j, "keepalive", false);
  e.udp_ttl_ns = uint64_t(number_field(j, "ttl", 0.1, 86400, 5.0) * 1e9);
  return e;
}

}  // namespace dptun
