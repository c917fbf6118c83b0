#include "control/state_store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

namespace dptun {

using nlohmann::json;

json encode_state(const PersistedState& s) {
  json tunnels = json::array(), entries = json::array(), ingress = json::array();
  for (const auto& t : s.tunnels) {
    json j{{"id", t.id.str()}, {"name", t.name}, {"allow", t.allow}};
    if (t.weights.fixed) j["weight"] = t.weights.weight;
    if (t.weights.max_weight != 255) j["max_weight"] = t.weights.max_weight;
    tunnels.push_back(j);
  }
  for (const auto& e : s.entry_points) {
    json j{{"proto", e.proto == 6 ? "tcp" : "udp"}, {"port", e.port}, {"keepalive", e.keepalive}, {"ttl", e.ttl_s}};
    if (e.route == EntryRoute::Fixed) {
      j["tunnel"] = e.tunnel.str();
      j["target"] = e.target.str();
    } else {
      j["route"] = entry_route_name(e.route);
    }
    if (e.listen) j["listen"] = e.listen->str();
    entries.push_back(j);
  }
  for (const auto& r : s.ingress) {
    json j{{"hostname", r.hostname}, {"tunnel", r.tunnel.str()}, {"private", r.private_rule}};
    if (r.target) j["target"] = rule_target_str(*r.target);
    if (r.proxy_protocol) j["proxy_protocol"] = true;
    ingress.push_back(j);
  }
  return json{{"version", 1}, {"tunnels", tunnels}, {"entry_points", entries}, {"ingress", ingress}};
}

static Uuid uuid_at(const json& j, const char* key, const std::string& where) {
  auto u = j.contains(key) && j[key].is_string() ? Uuid::parse(j[key].get<std::string>()) : std::nullopt;
  if (!u) throw std::runtime_error(where + ": '" + key + "' is not a UUID");
  return *u;
}

PersistedState decode_state(const json& j) {
  if (!j.is_object() || j.value("version", 0) != 1) throw std::runtime_error("not a version 1 dpctld state document");
  PersistedState s;
  std::set<std::string> seen;  // ids, names, entry points and hostnames: each once
  auto once = [&](const std::string& key, const std::string& where, const std::string& what) {
    if (!seen.insert(key).second) throw std::runtime_error(where + ": " + what + " appears twice");
  };
  size_t i = 0;
  for (const auto& t : j.value("tunnels", json::array())) {
    std::string where = "tunnels[" + std::to_string(i++) + "]";
    TunnelDef d;
    d.id = uuid_at(t, "id", where);
    d.name = t.value("name", d.id.str());
    if (t.contains("name"))
      if (std::string problem = tunnel_name_problem(d.name); !problem.empty()) throw std::runtime_error(where + ": " + problem);
    once("id:" + d.id.str(), where, "tunnel " + d.id.str());
    once("name:" + d.name, where, "tunnel name '" + d.name + "'");
    for (const auto& a : t.value("allow", json::array())) {
      if (!a.is_string()) throw std::runtime_error(where + ": 'allow' must list strings");
      d.allow.push_back(a.get<std::string>());
    }
    if (d.allow.empty()) throw std::runtime_error(where + ": 'allow' is empty");
    auto weight_at = [&](const char* key) {
      const int w = t.value(key, 0);
      if (w < 1 || w > 255) throw std::runtime_error(where + ": '" + key + "' must be 1..255");
      return uint8_t(w);
    };
    if (t.contains("weight")) {
      d.weights.fixed = true;
      d.weights.weight = weight_at("weight");
    }
    if (t.contains("max_weight")) d.weights.max_weight = weight_at("max_weight");
    if (t.contains("weight") && t.contains("max_weight"))
      throw std::runtime_error(where + ": 'weight' and 'max_weight' exclude each other");
    s.tunnels.push_back(std::move(d));
  }
  i = 0;
  for (const auto& e : j.value("entry_points", json::array())) {
    std::string where = "entry_points[" + std::to_string(i++) + "]";
    EntryDef d;
    std::string proto = e.value("proto", std::string());
    if (proto != "tcp" && proto != "udp") throw std::runtime_error(where + ": 'proto' must be tcp or udp");
    d.proto = proto == "tcp" ? 6 : 17;
    int port = e.value("port", 0);
    if (port < 1 || port > 65535) throw std::runtime_error(where + ": 'port' must be 1..65535");
    d.port = uint16_t(port);
    if (e.contains("route")) {
      auto route = parse_entry_route(e.value("route", std::string()));
      if (!route || *route == EntryRoute::Fixed || (*route == EntryRoute::QuicSni) != (d.proto == 17))
        throw std::runtime_error(where + ": 'route' must be sni or http (tcp), quic (udp)");
      d.route = *route;
    } else {
      d.tunnel = uuid_at(e, "tunnel", where);
      auto target = Endpoint::parse(e.value("target", std::string()));
      if (!target) throw std::runtime_error(where + ": 'target' must be ipv4:port");
      d.target = *target;
    }
    d.keepalive = e.value("keepalive", false);
    d.ttl_s = e.value("ttl", 5.0);
    if (!(d.ttl_s >= 0.1 && d.ttl_s <= 86400)) throw std::runtime_error(where + ": 'ttl' must be 0.1..86400 seconds");
    once(proto + "/" + std::to_string(port), where, "entry point " + proto + "/" + std::to_string(port));
    if (e.contains("listen")) {
      auto ip = Ipv4::parse(e.value("listen", std::string()));
      if (!ip) throw std::runtime_error(where + ": 'listen' is not an IPv4 address");
      d.listen = *ip;
    }
    s.entry_points.push_back(d);
  }
  i = 0;
  for (const auto& r : j.value("ingress", json::array())) {
    std::string where = "ingress[" + std::to_string(i++) + "]";
    auto host = normalize_hostname_rule(r.value("hostname", std::string()));
    if (!host) throw std::runtime_error(where + ": 'hostname' is not a hostname rule");
    once("host:" + *host, where, "hostname rule " + *host);
    IngressRule rule{*host, uuid_at(r, "tunnel", where), r.value("private", false), std::nullopt,
                     r.value("proxy_protocol", false)};
    if (r.contains("target")) {
      auto t = parse_rule_target(r.value("target", std::string()));
      if (!t) throw std::runtime_error(where + ": 'target' must be ipv4:port or ipv4");
      rule.target = *t;
    }
    s.ingress.push_back(rule);
  }
  return s;
}

std::optional<PersistedState> load_state(const std::string& path, std::string& error) {
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return PersistedState{};
    error = path + ": cannot read the state file: " + strerror(errno);
    return std::nullopt;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  json j = json::parse(ss.str(), nullptr, false);
  if (j.is_discarded()) {
    error = path + ": not valid JSON (restore it from a backup, or remove it to start empty)";
    return std::nullopt;
  }
  try {
    return decode_state(j);
  } catch (const std::exception& e) {
    error = path + ": " + e.what();
    return std::nullopt;
  }
}

bool save_state(const std::string& path, const PersistedState& s, std::string& error) {
  const std::string text = encode_state(s).dump(2) + "\n";
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  for (size_t i = 1; i <= dir.size(); ++i)
    if (i == dir.size() || dir[i] == '/') mkdir(dir.substr(0, i).c_str(), 0750);
  const std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) {
    error = tmp + ": " + strerror(errno);
    return false;
  }
  bool ok = write(fd, text.data(), text.size()) == ssize_t(text.size()) && fsync(fd) == 0;
  ok = close(fd) == 0 && ok;
  if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
    error = "cannot write " + path + ": " + strerror(errno);
    unlink(tmp.c_str());
    return false;
  }
  int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);  // make the rename itself durable
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return true;
}


}  // namespace dptun
