#include "dataplane/control_commands.hpp"

#include <nlohmann/json.hpp>

#include "dataplane/gateway_state.hpp"
#include "dataplane/stats_report.hpp"
#include "dataplane/worker.hpp"

namespace dptun {

using nlohmann::json;

namespace {

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
                        {"role", s->visitor ? "visitor" : "agent"},
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
      for (const auto& t : req.value("tunnels", json::array())) tunnels.push_back(decode_tunnel(t));
      for (const auto& s : req.value("sessions", json::array())) sessions.push_back(decode_session(s));
      for (const auto& e : req.value("entry_points", json::array())) entries.push_back(decode_entry(e));
      std::vector<IngressRuleSpec> rules;
      for (const auto& r : req.value("ingress", json::array())) rules.push_back(decode_ingress_rule(r));
      ok = state.sync(tunnels, sessions, entries, error);
      if (ok) state.set_ingress(std::move(rules));
    } else if (type == "ingress_set") {  // the whole list of hostname rules
      std::vector<IngressRuleSpec> rules;
      for (const auto& r : req.value("rules", json::array())) rules.push_back(decode_ingress_rule(r));
      state.set_ingress(std::move(rules));
    } else if (type == "tunnel_set") {
      ok = state.set_tunnel(decode_tunnel(req), error);
    } else if (type == "tunnel_del") {
      ok = state.remove_tunnel(decode_tunnel(req).id, error);
    } else if (type == "session_add") {
      SessionSpec spec = decode_session(req);
      ok = state.add_session(spec, error);
      if (!ok && state.sessions().count(spec.index)) reply = {{"type", "error"}, {"reason", error}, {"code", "index_in_use"}};
    } else if (type == "session_del") {
      ok = state.remove_session(req.value("index", 0u), error);
    } else if (type == "entry_set") {
      ok = state.set_entry(decode_entry(req), error);
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
  if (reply.value("type", std::string()) == "error") {  // which change failed, so dpctld can act on it
    reply["request"] = type;
    if (req.contains("index")) reply["index"] = req["index"];
  }
  if (req.contains("seq")) reply["seq"] = req["seq"];
  return reply.dump() + "\n";
}

}  // namespace dptun
