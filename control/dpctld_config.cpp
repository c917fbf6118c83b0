#include "control/dpctld_config.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <set>
#include <tuple>

#include "common/config_file.hpp"
#include "ingress/ingress_matcher.hpp"

namespace dptun {

using libconfig::Setting;

namespace {

Endpoint endpoint_at(const Setting& group, const char* key, std::optional<Endpoint> fallback) {
  if (!group.exists(key)) {
    if (fallback) return *fallback;
    config_fail_missing(group, key);
  }
  auto ep = Endpoint::parse(config_string(group, key));
  if (!ep) config_fail(group[key], "expected ipv4:port like 0.0.0.0:7443");
  return *ep;
}

// What dpctld.conf adds to a tunnel's id and name (config_tunnel_list): who may serve it, and its weights.
TunnelDef load_tunnel(const Setting& s, TunnelIdentity who) {
  TunnelDef t;
  t.id = who.id;
  t.name = std::move(who.name);
  const Setting* allow = config_child(s, "allow");
  if (!allow || (!allow->isArray() && !allow->isList()) || allow->getLength() == 0)
    config_fail(allow ? *allow : s, "a tunnel needs allow = [ \"CN=agent-name\", ... ] (or [ \"*\" ])");
  for (int i = 0; i < allow->getLength(); ++i) {
    const Setting& a = (*allow)[i];
    if (a.getType() != Setting::TypeString) config_fail(a, "expected a string");
    std::string v = static_cast<const char*>(a);
    if (std::string problem = allow_problem(v); !problem.empty()) config_fail(a, problem);
    t.allow.push_back(v);
  }
  if (s.exists("weight") && s.exists("max_weight"))
    config_fail(s["max_weight"], "give either weight (every session gets it) or max_weight (caps what agents ask for)");
  if (s.exists("weight")) {
    t.weights.fixed = true;
    t.weights.weight = uint8_t(config_int(s, "weight", 1, 255));
  }
  t.weights.max_weight = uint8_t(config_int(s, "max_weight", 1, 255, 255));
  return t;
}

const TunnelDef* tunnel_named(const DpctldConfig& cfg, const std::string& ref) {
  for (const TunnelDef& d : cfg.tunnels)
    if (tunnel_is(d.id, d.name, ref)) return &d;
  return nullptr;
}

IngressRuleSpec load_ingress(const Setting& s, const DpctldConfig& cfg) {
  config_allow_keys(s, {"hostname", "tunnel", "private", "target", "proxy_protocol"});
  IngressRuleSpec r;
  std::string why;
  auto host = normalize_hostname_rule(config_string(s, "hostname"), &why);
  if (!host)
    config_fail(s["hostname"], why.empty() ? "expected a hostname (app.example.org), a wildcard (.example.com, "
                                             "*.example.com) or a pattern (~regex)"
                                           : "bad pattern: " + why);
  r.hostname = *host;
  std::string ref = config_string(s, "tunnel");
  if (!ref.empty() && ref[0] == '$') {  // "$<uuid>": private
    r.private_rule = true;
    ref = ref.substr(1);
  }
  const TunnelDef* t = tunnel_named(cfg, ref);
  if (!t) config_fail(s["tunnel"], "no tunnel with id or name '" + ref + "'");
  r.tunnel = t->id;
  r.private_rule = config_bool(s, "private", r.private_rule);
  if (s.exists("target")) {
    auto target = parse_rule_target(config_string(s, "target"));
    if (!target)
      config_fail(s["target"], "expected ipv4:port as the agent reaches it, like 10.0.2.2:8080, or ipv4 alone (the "
                               "port the client used)");
    r.target = *target;
  }
  r.proxy_protocol = config_bool(s, "proxy_protocol", false);
  return r;
}

// allow = [ "CN=...", ... ] of a tunnel or a route: at least one identity, each as allow_problem() wants it.
std::vector<std::string> load_allow(const Setting& s, const char* what) {
  const Setting* allow = config_child(s, "allow");
  if (!allow || (!allow->isArray() && !allow->isList()) || allow->getLength() == 0)
    config_fail(allow ? *allow : s, std::string(what) + " needs allow = [ \"CN=name\", ... ] (or [ \"*\" ])");
  std::vector<std::string> out;
  for (int i = 0; i < allow->getLength(); ++i) {
    const Setting& a = (*allow)[i];
    if (a.getType() != Setting::TypeString) config_fail(a, "expected a string");
    std::string v = static_cast<const char*>(a);
    if (std::string problem = allow_problem(v); !problem.empty()) config_fail(a, problem);
    out.push_back(v);
  }
  return out;
}

MasqueRoute load_route(const Setting& s, const DpctldConfig& cfg) {
  config_allow_keys(s, {"from", "to", "tunnel", "private", "allow"});
  MasqueRoute r;
  std::string why;
  auto from = parse_route_url(config_string(s, "from"), "udp+https", why);
  if (!from) config_fail(s["from"], why);
  auto to = parse_route_url(config_string(s, "to"), "udp", why);
  if (!to) config_fail(s["to"], why);
  std::tie(r.host, r.port) = *from;
  std::tie(r.to_host, r.to_port) = *to;
  std::string ref = config_string(s, "tunnel");
  if (!ref.empty() && ref[0] == '$') {  // "$<uuid>": private, as for ingress rules
    r.private_route = true;
    ref = ref.substr(1);
  }
  const TunnelDef* t = tunnel_named(cfg, ref);
  if (!t) config_fail(s["tunnel"], "no tunnel with id or name '" + ref + "'");
  r.tunnel = t->id;
  r.private_route = config_bool(s, "private", r.private_route);
  r.allow = load_allow(s, "a route");
  return r;
}

EntrySpec load_entry(const Setting& s, const DpctldConfig& cfg) {
  config_allow_keys(s, {"proto", "port", "listen", "tunnel", "target", "keepalive", "ttl", "route"});
  EntrySpec e;
  std::string proto = config_string(s, "proto");
  if (proto != "tcp" && proto != "udp") config_fail(s["proto"], "expected \"tcp\" or \"udp\"");
  e.proto = proto == "tcp" ? 6 : 17;
  e.port = uint16_t(config_int(s, "port", 1, 65535));
  if (s.exists("listen")) {
    auto ip = Ipv4::parse(config_string(s, "listen"));
    if (!ip) config_fail(s["listen"], "expected an IPv4 address");
    e.listen = *ip;
  }
  if (s.exists("route")) {
    const std::string problem = entry_route_problem(config_string(s, "route"), e.proto, e.route);
    if (!problem.empty()) config_fail(s["route"], problem);
    if (s.exists("tunnel") || s.exists("target"))
      config_fail(s.exists("tunnel") ? s["tunnel"] : s["target"],
                  "an entry point routed by hostname takes its tunnel and target from the ingress rules");
    e.keepalive = config_bool(s, "keepalive", false);
    e.udp_ttl_ns = config_duration_ns(s, "ttl", 0.1, 86400, 5);
    return e;
  }
  std::string tunnel = config_string(s, "tunnel");
  const TunnelDef* t = tunnel_named(cfg, tunnel);
  if (!t) config_fail(s["tunnel"], "no tunnel with id or name '" + tunnel + "'");
  e.tunnel = t->id;
  auto target = Endpoint::parse(config_string(s, "target"));
  if (!target) config_fail(s["target"], "expected ipv4:port as the agent reaches it, like 10.0.2.2:8080");
  e.target = *target;
  e.keepalive = config_bool(s, "keepalive", false);
  e.udp_ttl_ns = config_duration_ns(s, "ttl", 0.1, 86400, 5);
  if (e.proto == 6 && (s.exists("keepalive") || s.exists("ttl")))
    config_fail(s.exists("ttl") ? s["ttl"] : s["keepalive"], "'keepalive' and 'ttl' apply to UDP entry points only");
  return e;
}

}  // namespace

std::optional<std::string> normalize_hostname_rule(const std::string& text, std::string* why, bool compile) {
  if (!text.empty() && text[0] == '~') {  // a pattern: whatever Hyperscan compiles
    std::string error;
    if (text.size() < 2) error = "an empty pattern";
    else if (text.size() - 1 > kMaxHostnamePattern)
      error = "a pattern is at most " + std::to_string(kMaxHostnamePattern) + " bytes (this one has " +
              std::to_string(text.size() - 1) + ")";
    else if (compile) IngressMatcher::build(std::vector<IngressMatcher::Rule>{{text, 0}}, 1, error);
    if (!error.empty()) {
      if (why) *why = error;
      return std::nullopt;
    }
    return text;
  }
  std::string h;
  for (char c : text) h += char(std::tolower(static_cast<unsigned char>(c)));
  std::string name = h;
  bool wildcard = false;
  if (name.rfind("*.", 0) == 0) {
    name = name.substr(2);
    wildcard = true;
  } else if (name.rfind('.', 0) == 0) {
    name = name.substr(1);
    wildcard = true;
  }
  if (name.empty() || name.size() > 253) return std::nullopt;
  size_t start = 0;
  while (start <= name.size()) {
    size_t dot = name.find('.', start);
    std::string label = name.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return std::nullopt;
    for (char c : label)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return std::nullopt;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return wildcard ? "*." + name : name;  // one spelling per rule: ".example.com" is stored as "*.example.com"
}

std::string WeightPolicy::str() const {
  if (fixed) return "fixed " + std::to_string(weight);
  return max_weight == 255 ? "agent" : "agent, at most " + std::to_string(max_weight);
}

std::string entry_point_problem(const EntrySpec& e, const DpctldConfig& cfg) {
  const std::string port = std::to_string(e.port);
  if (e.proto == 17 && e.port == cfg.gateway_endpoint.port && (!e.listen || *e.listen == cfg.gateway_endpoint.ip))
    return "udp/" + port + " is the gateway's tunnel port (relay frames from agents, gateway_endpoint in " +
           cfg.path + ")";
  if (e.proto == 6 && e.port == cfg.agent_listen.port &&
      (!e.listen || !cfg.agent_listen.ip.v4() || *e.listen == cfg.agent_listen.ip))
    return "tcp/" + port + " is dpctld's agent port (agent_listen in " + cfg.path +
           "): an entry point there would cut agents off from dpctld";
  if (e.proto == 17 && cfg.agent_quic_listen && e.port == cfg.agent_quic_listen->port &&
      (!e.listen || !cfg.agent_quic_listen->ip.v4() || *e.listen == cfg.agent_quic_listen->ip))
    return "udp/" + port + " is dpctld's QUIC port for agents (agent_quic_listen in " + cfg.path +
           "): an entry point there would cut agents off from dpctld";
  if (e.proto == 6 && cfg.masque_tcp_listen && e.port == cfg.masque_tcp_listen->port &&
      (!e.listen || !cfg.masque_tcp_listen->ip.v4() || *e.listen == cfg.masque_tcp_listen->ip))
    return "tcp/" + port + " is dpctld's CONNECT-UDP port for clients (masque_tcp_listen in " + cfg.path + ")";
  return "";
}

std::string allow_problem(const std::string& v) {
  if (v == "*") return "";
  for (const char* prefix : {"CN=", "DNS:", "URI:"})
    if (v.rfind(prefix, 0) == 0) return v.size() > strlen(prefix) ? "" : "expected a name after " + std::string(prefix);
  return "expected \"CN=...\", \"DNS:...\", \"URI:...\" or \"*\", not '" + v + "'";
}

bool identity_allowed(const std::vector<std::string>& allow, const std::vector<std::string>& identities) {
  auto dns_equal = [](const std::string& a, const std::string& b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
             return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
  };
  for (const auto& a : allow) {
    if (a == "*") return true;
    const bool dns = a.rfind("DNS:", 0) == 0;
    for (const auto& id : identities)
      if (dns ? id.rfind("DNS:", 0) == 0 && dns_equal(a, id) : a == id) return true;
  }
  return false;
}

static DpctldConfig load(const std::string& path) {
  ConfigFile file(path);
  const Setting& root = file.root();
  config_allow_keys(root, {"dpctld", "tunnels", "entry_points", "ingress", "routes"});
  DpctldConfig cfg;
  cfg.path = path;
  if (!root.exists("dpctld")) config_fail_missing(root, "dpctld");
  const Setting& d = root["dpctld"];
  config_allow_keys(d, {"agent_listen", "agent_quic_listen", "masque_tcp_listen", "tls", "failure_log", "metrics_listen", "api_socket", "gateway_socket",
                        "state_file", "gateway_endpoint", "cipher", "rekey_interval", "keepalive", "session_expiry",
                        "agent_address", "agent_ca", "failure_log_rate", "openssl_conf"});
  cfg.agent_listen = endpoint_at(d, "agent_listen", Endpoint{Ipv4{0}, 7443});
  if (d.exists("agent_quic_listen")) {
    cfg.agent_quic_listen = Endpoint::parse(config_string(d, "agent_quic_listen"));
    if (!cfg.agent_quic_listen)
      config_fail(d["agent_quic_listen"], "expected ipv4:port like 0.0.0.0:443 (UDP: the QUIC port for agents)");
  }
  if (d.exists("masque_tcp_listen")) {
    cfg.masque_tcp_listen = Endpoint::parse(config_string(d, "masque_tcp_listen"));
    if (!cfg.masque_tcp_listen)
      config_fail(d["masque_tcp_listen"],
                  "expected ipv4:port like 0.0.0.0:443 (TCP: CONNECT-UDP over HTTP/2 and HTTP/1.1 for clients)");
    if (cfg.masque_tcp_listen->port == cfg.agent_listen.port &&
        (!cfg.masque_tcp_listen->ip.v4() || !cfg.agent_listen.ip.v4() || cfg.masque_tcp_listen->ip == cfg.agent_listen.ip))
      config_fail(d["masque_tcp_listen"], "tcp/" + std::to_string(cfg.agent_listen.port) +
                                              " is agent_listen's port: give the CONNECT-UDP port its own");
  }
  if (!d.exists("tls")) config_fail_missing(d, "tls");
  const Setting& tls = d["tls"];
  config_allow_keys(tls, {"ca", "cert", "key", "crl", "crl_check", "handshake_timeout", "max_pending",
                          "max_pending_per_source"});
  cfg.tls.ca = config_string(tls, "ca");
  cfg.tls.cert = config_string(tls, "cert");
  cfg.tls.key = config_string(tls, "key");
  cfg.tls.crl = config_string(tls, "crl", "");
  const std::string crl_check = config_string(tls, "crl_check", "leaf");
  if (crl_check != "leaf" && crl_check != "chain")
    config_fail(tls["crl_check"], "expected \"leaf\" (the agent's certificate) or \"chain\" (its CAs too)");
  if (tls.exists("crl_check") && cfg.tls.crl.empty()) config_fail(tls["crl_check"], "crl_check needs a crl file");
  cfg.tls.crl_chain = crl_check == "chain";
  cfg.handshake_timeout_ns = config_duration_ns(tls, "handshake_timeout", 0.1, 300, 10);
  cfg.max_pending_handshakes = uint32_t(config_int(tls, "max_pending", 1, 100000, 256));
  cfg.max_pending_per_source = uint32_t(config_int(tls, "max_pending_per_source", 1, 100000, 16));
  cfg.failure_log = config_string(d, "failure_log", "-");
  cfg.failure_log_rate = uint32_t(config_int(d, "failure_log_rate", 1, 1000000, 20));
  cfg.metrics_listen = config_metrics_listen(d, cfg.metrics_listen);
  cfg.api_socket = config_string(d, "api_socket", cfg.api_socket);
  cfg.gateway_socket = config_string(d, "gateway_socket", cfg.gateway_socket);
  cfg.state_file = config_string(d, "state_file", cfg.state_file);
  cfg.gateway_endpoint = endpoint_at(d, "gateway_endpoint", std::nullopt);
  cfg.agent_address = config_string(d, "agent_address",
                                     cfg.agent_listen.ip.v4() ? cfg.agent_listen.str()
                                                               : cfg.gateway_endpoint.ip.str() + ":" +
                                                                     std::to_string(cfg.agent_listen.port));
  if (d.exists("agent_address") && !parse_host_port(cfg.agent_address))
    config_fail(d["agent_address"], "expected HOST:PORT (a DNS name or an IPv4 address) as agents reach agent_listen");
  cfg.agent_ca = config_string(d, "agent_ca", "");
  cfg.openssl_conf = config_string(d, "openssl_conf", "");
  if (d.exists("openssl_conf")) {
    if (cfg.openssl_conf.empty()) config_fail(d["openssl_conf"], "expected the path of an OpenSSL configuration file");
    cfg.openssl_conf_where = config_where(d["openssl_conf"]);
  }
  cfg.key_len = config_cipher_key_len(d, "cipher");
  cfg.rekey_interval_ns = config_duration_ns(d, "rekey_interval", 10, 86400, 120);
  cfg.keepalive_ns = config_duration_ns(d, "keepalive", 0.1, 60, 2);
  cfg.session_expiry_ns = config_duration_ns(d, "session_expiry", 1, 86400, 30);

  config_tunnel_list(root, {"id", "name", "allow", "weight", "max_weight"},
                     [&](const Setting& s, TunnelIdentity who) { cfg.tunnels.push_back(load_tunnel(s, std::move(who))); });
  if (const Setting* entries = config_child(root, "entry_points")) {
    if (!entries->isList()) config_fail(*entries, "expected a list ( { ... }, ... )");
    std::set<std::pair<uint8_t, uint16_t>> used;
    for (int i = 0; i < entries->getLength(); ++i) {
      cfg.entry_points.push_back(load_entry((*entries)[i], cfg));
      const EntrySpec& e = cfg.entry_points.back();
      if (std::string problem = entry_point_problem(e, cfg); !problem.empty()) config_fail((*entries)[i]["port"], problem);
      if (!used.insert({e.proto, e.port}).second) config_fail((*entries)[i]["port"], "entry point defined twice");
    }
  }
  if (const Setting* rules = config_child(root, "ingress")) {
    if (!rules->isList()) config_fail(*rules, "expected a list ( { hostname = ...; tunnel = ...; }, ... )");
    std::set<std::string> seen;
    for (int i = 0; i < rules->getLength(); ++i) {
      cfg.ingress.push_back(load_ingress((*rules)[i], cfg));
      if (!seen.insert(cfg.ingress.back().hostname).second)
        config_fail((*rules)[i]["hostname"], "a rule for '" + cfg.ingress.back().hostname + "' is defined twice");
    }
  }
  if (const Setting* routes = config_child(root, "routes")) {
    if (!routes->isList()) config_fail(*routes, "expected a list ( { from = ...; tunnel = ...; to = ...; allow = ...; }, ... )");
    std::set<std::string> seen;
    for (int i = 0; i < routes->getLength(); ++i) {
      cfg.routes.push_back(load_route((*routes)[i], cfg));
      if (!seen.insert(cfg.routes.back().from_url()).second)
        config_fail((*routes)[i]["from"], "a route for " + cfg.routes.back().from_url() + " is defined twice");
    }
  }
  return cfg;
}

DpctldConfig load_dpctld_config(const std::string& path) {
  try {
    return load(path);
  } catch (const libconfig::SettingException& e) {
    throw ConfigError(path + ": key '" + e.getPath() + "': " + e.what());
  }
}

}  // namespace dptun
