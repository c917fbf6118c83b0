#include "dataplane/control_commands.hpp"

#include <nlohmann/json.hpp>

#include "common/hex.hpp"
#include "dataplane/gateway_state.hpp"
#include "dataplane/stats_report.hpp"
#include "dataplane/worker.hpp"

namespace dptun {

using nlohmann::json;

namespace {

// Parsing helpers: each throws std::runtime_error naming the field.
Uuid uuid_of(const json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_string()) throw std::runtime_error(std::string("'") + key + "' (a UUID) is required");
  auto u = Uuid::parse(j[key].get<std::string>());
  if (!u) throw std::runtime_error(std::string("'") + key + "' is not a UUID");
  return *u;
}

TunnelSpec tunnel_of(const json& j) {
  TunnelSpec t;
  t.id = uuid_of(j, "id");
  t.name = j.value("name", t.id.str());
  return t;
}

SessionSpec session_of(const json& j) {
  SessionSpec s;
  s.index = j.value("index", 0u);
  if (s.index < 32768 || s.index > 65535) throw std::runtime_error("'index' must be 32768..65535 (dpctld's range)");
  s.tunnel = uuid_of(j, "tunnel");
  int w = j.value("weight", 1);
  if (w < 1 || w > 255) throw std::runtime_error("'weight' must be 1..255");
  s.weight = uint8_t(w);
  auto secret = hex_decode(j.value("secret", std::string()));
  if (!secret || secret->size() != 32) throw std::runtime_error("'secret' must be 64 hex digits");
  s.base_secret = std::move(*secret);
  return s;
}

EntrySpec entry_of(const json& j) {
  EntrySpec e;
  std::string proto = j.value("proto", std::string());
  if (proto != "tcp" && proto != "udp") throw std::runtime_error("'proto' must be \"tcp\" or \"udp\"");
  e.proto = proto == "tcp" ? 6 : 17;
  int port = j.value("port", 0);
  if (port < 1 || port > 65535) throw std::runtime_error("'port' must be 1..65535");
  e.port = uint16_t(port);
  if (j.contains("listen") && !j["listen"].is_null()) {
    auto ip = Ipv4::parse(j["listen"].get<std::string>());
    if (!ip) throw std::runtime_error("'listen' is not an IPv4 address");
    e.listen = *ip;
  }
  e.tunnel = uuid_of(j, "tunnel");
  auto target = Endpoint::parse(j.value("target", std::string()));
  if (!target) throw std::runtime_error("'target' must be ipv4:port");
  e.target = *target;
  e.keepalive = j.value("keepalive", false);
  double ttl = j.value("ttl", 5.0);
  if (!(ttl >= 0.1 && ttl <= 86400)) throw std::runtime_error("'ttl' must be 0.1..86400 seconds");
  e.udp_ttl_ns = uint64_t(ttl * 1e9);
  return e;
}

json status_of(Dataplane& dp, GatewayState& state) {
  const uint64_t now = dp.clock.now_ns();
  json sessions = json::array();
  for (const auto& [index, s] : state.sessions()) {
    const uint64_t last = s->last_rx_ns.load(std::memory_order_relaxed);
    const TunnelPool* pool = dp.tunnels.get(s->tunnel);
    sessions.push_back({{"index", index},
                        {"tunnel", pool ? pool->id.str() : std::string()},
                        {"weight", s->weight},
                        {"live", GatewayState::session_live(*s, now, dp.cfg->session_timeout_ns)},
                        {"orphaned", state.orphaned(index)},
                        {"static", s->from_config},
                        {"endpoint", s->has_peer() ? s->peer().str() : std::string()},
                        {"last_rx_age_s", last ? json(double(now - last) / 1e9) : json(nullptr)},
                        {"flows_pinned", s->flows_pinned.load(std::memory_order_relaxed)}});
  }
  return {{"type", "status"}, {"sessions", sessions}, {"stats", json::parse(stats_json(dp))}};
}

}  // namespace

std::string handle_control_line(const std::string& line, bool& close, Dataplane& dp, GatewayState& state) {
  if (line == "json" || line == "stats") {
    close = true;
    return stats_json(dp);
  }
  if (line == "text") {
    close = true;
    return stats_text(dp);
  }
  json req = json::parse(line, nullptr, false);
  json reply;
  if (req.is_discarded() || !req.is_object() || !req.contains("type") || !req["type"].is_string()) {
    close = true;
    return "{\"type\":\"error\",\"reason\":\"send 'json', 'text', or one JSON object per line\"}\n";
  }
  const std::string type = req["type"];
  try {
    std::string error;
    bool ok = true;
    if (type == "hello") {
      if (req.value("version", 0) != kGatewayProtocolVersion)
        throw std::runtime_error("unsupported version (dpgw speaks " + std::to_string(kGatewayProtocolVersion) + ")");
      reply = {{"type", "hello"},
               {"version", kGatewayProtocolVersion},
               {"server", "dpgw"},
               {"workers", dp.workers.size()},
               {"tunnel_port", dp.cfg->tunnel_port}};
    } else if (type == "status") {
      reply = status_of(dp, state);
    } else if (type == "sync") {
      std::vector<TunnelSpec> tunnels;
      std::vector<SessionSpec> sessions;
      std::vector<EntrySpec> entries;
      for (const auto& t : req.value("tunnels", json::array())) tunnels.push_back(tunnel_of(t));
      for (const auto& s : req.value("sessions", json::array())) sessions.push_back(session_of(s));
      for (const auto& e : req.value("entry_points", json::array())) entries.push_back(entry_of(e));
      ok = state.sync(tunnels, sessions, entries, error);
    } else if (type == "tunnel_set") {
      ok = state.set_tunnel(tunnel_of(req), error);
    } else if (type == "tunnel_del") {
      ok = state.remove_tunnel(uuid_of(req, "id"), error);
    } else if (type == "session_add") {
      ok = state.add_session(session_of(req), error);
    } else if (type == "session_del") {
      ok = state.remove_session(req.value("index", 0u), error);
    } else if (type == "entry_set") {
      ok = state.set_entry(entry_of(req), error);
    } else if (type == "entry_del") {
      std::string proto = req.value("proto", std::string());
      ok = state.remove_entry(proto == "tcp" ? 6 : proto == "udp" ? 17 : 0, uint16_t(req.value("port", 0)), error);
    } else {
      throw std::runtime_error("unknown message type '" + type + "'");
    }
    if (reply.is_null()) reply = ok ? json{{"type", "ok"}} : json{{"type", "error"}, {"reason", error}};
  } catch (const std::exception& e) {
    reply = {{"type", "error"}, {"reason", type + ": " + e.what()}};
  }
  if (req.contains("seq")) reply["seq"] = req["seq"];
  return reply.dump() + "\n";
}

}  // namespace dptun
