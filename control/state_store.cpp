#include "control/state_store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "common/json_fields.hpp"
#include "common/unix_socket.hpp"
#include "proto/gateway_messages.hpp"

namespace dptun {

using nlohmann::json;

json encode_state(const PersistedState& s) {
  json tunnels = json::array(), entries = json::array(), ingress = json::array(), routes = json::array();
  for (const auto& t : s.tunnels) {
    json j{{"id", t.id.str()}, {"name", t.name}, {"allow", t.allow}};
    if (t.weights.fixed) j["weight"] = t.weights.weight;
    else if (t.weights.max_weight != 255) j["max_weight"] = t.weights.max_weight;
    tunnels.push_back(j);
  }
  // Entry points and hostname rules as dpgw is told them (proto/gateway_messages.hpp).
  for (const auto& e : s.entry_points) entries.push_back(encode_entry(e));
  for (const auto& r : s.ingress) ingress.push_back(encode_ingress_rule(r));
  for (const auto& r : s.routes) routes.push_back(encode_masque_route(r));
  return json{{"version", 1}, {"tunnels", tunnels}, {"entry_points", entries}, {"ingress", ingress}, {"routes", routes}};
}

namespace {

// Each entry is read by `read`; what is wrong with it is reported as "<list>[<i>]: <what>".
template <typename T, typename Read>
void read_list(const json& doc, const char* list, std::vector<T>& out, Read read) {
  const json& items = array_field(doc, list);
  for (size_t i = 0; i < items.size(); ++i) {
    try {
      if (!items[i].is_object()) throw FieldError("expected an object");
      out.push_back(read(items[i]));
    } catch (const std::exception& e) {
      throw std::runtime_error(std::string(list) + "[" + std::to_string(i) + "]: " + e.what());
    }
  }
}

}  // namespace

PersistedState decode_state(const json& j) {
  if (!j.is_object() || !field(j, "version") || json_int_in(j["version"], 1, 1) != 1)
    throw std::runtime_error("not a version 1 dpctld state document");
  PersistedState s;
  read_list(j, "tunnels", s.tunnels, [](const json& t) {
    TunnelDef d;
    d.id = uuid_field(t, "id");
    d.name = string_field(t, "name");
    if (std::string problem = tunnel_name_problem(d.name); !problem.empty()) throw FieldError("'name': " + problem);
    for (const auto& a : array_field(t, "allow")) {
      if (!a.is_string()) throw FieldError("'allow' must list strings");
      if (std::string problem = allow_problem(a.get<std::string>()); !problem.empty())
        throw FieldError("'allow': " + problem);
      d.allow.push_back(a.get<std::string>());
    }
    if (d.allow.empty()) throw FieldError("'allow' is empty");
    if (field(t, "weight") && field(t, "max_weight")) throw FieldError("'weight' and 'max_weight' exclude each other");
    if (field(t, "weight")) {
      d.weights.fixed = true;
      d.weights.weight = uint8_t(int_field(t, "weight", 1, 255));
    }
    d.weights.max_weight = uint8_t(int_field(t, "max_weight", 1, 255, 255));
    return d;
  });
  read_list(j, "entry_points", s.entry_points, decode_entry);
  read_list(j, "ingress", s.ingress, [](const json& r) {
    IngressRuleSpec rule = decode_ingress_rule(r);
    std::string why;
    auto host = normalize_hostname_rule(rule.hostname, &why);
    if (!host) throw FieldError("'hostname' is not a hostname rule" + (why.empty() ? "" : ": " + why));
    rule.hostname = *host;
    return rule;
  });
  read_list(j, "routes", s.routes, decode_masque_route);
  // Each tunnel id and name (names without regard to case), entry point and hostname once.
  std::set<std::string> seen;
  auto once = [&](const std::string& key, const std::string& what) {
    if (!seen.insert(key).second) throw std::runtime_error(what + " appears twice");
  };
  for (size_t i = 0; i < s.tunnels.size(); ++i) {
    const std::string where = "tunnels[" + std::to_string(i) + "]: ";
    once("id:" + s.tunnels[i].id.str(), where + "tunnel " + s.tunnels[i].id.str());
    once("name:" + tunnel_name_key(s.tunnels[i].name), where + "tunnel name '" + s.tunnels[i].name + "'");
  }
  for (size_t i = 0; i < s.entry_points.size(); ++i) {
    const EntrySpec& e = s.entry_points[i];
    const std::string name = std::string(e.proto == 6 ? "tcp/" : "udp/") + std::to_string(e.port);
    once(name, "entry_points[" + std::to_string(i) + "]: entry point " + name);
  }
  for (size_t i = 0; i < s.ingress.size(); ++i)
    once("host:" + s.ingress[i].hostname, "ingress[" + std::to_string(i) + "]: hostname rule " + s.ingress[i].hostname);
  for (size_t i = 0; i < s.routes.size(); ++i)
    once("route:" + s.routes[i].from_url(), "routes[" + std::to_string(i) + "]: route " + s.routes[i].from_url());
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
  make_parent_dirs(path, 0750);
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
