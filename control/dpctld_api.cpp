// dpctld's API for dpctl (docs/control-plane.md, "dpctl API"): one JSON request per connection on the unix
// socket, one JSON reply ({"ok": true, ...} or {"ok": false, "error": "..."}). Changes are persisted before the
// reply and pushed to dpgw.
#include <algorithm>

#include "common/clock.hpp"
#include "common/log.hpp"
#include "control/dpctld.hpp"
#include "proto/gateway_messages.hpp"

namespace dptun {

using nlohmann::json;

namespace {

struct ApiError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string str_of(const json& req, const char* key, bool required = true) {
  if (!req.contains(key) || req[key].is_null()) {
    if (required) throw ApiError(std::string("'") + key + "' is required");
    return {};
  }
  if (!req[key].is_string()) throw ApiError(std::string("'") + key + "' must be a string");
  return req[key].get<std::string>();
}

json ok(json body = json::object()) {
  body["ok"] = true;
  return body;
}

}  // namespace

std::string Dpctld::handle_api(const std::string& line) {
  json reply;
  try {
    json req = json::parse(line, nullptr, false);
    if (req.is_discarded() || !req.is_object()) throw ApiError("send one JSON object per request");
    const std::string cmd = str_of(req, "cmd");
    if (cmd == "tunnel.add") reply = api_tunnel_add(req);
    else if (cmd == "tunnel.del") reply = api_tunnel_del(req);
    else if (cmd == "tunnel.list") reply = api_tunnel_list(false, req);
    else if (cmd == "tunnel.show") reply = api_tunnel_list(true, req);
    else if (cmd == "entry.add") reply = api_entry_add(req);
    else if (cmd == "entry.del") reply = api_entry_del(req);
    else if (cmd == "entry.list") reply = api_entry_list();
    else if (cmd == "ingress.add") reply = api_ingress_add(req);
    else if (cmd == "ingress.del") reply = api_ingress_del(req);
    else if (cmd == "ingress.list") reply = api_ingress_list();
    else if (cmd == "session.list") reply = api_session_list();
    else if (cmd == "stats") reply = api_stats();
    else throw ApiError("unknown command '" + cmd + "'");
  } catch (const std::exception& e) {
    reply = json{{"ok", false}, {"error", e.what()}};
  }
  // Names come from operators: invalid UTF-8 is replaced, never an exception out of the event loop.
  return reply.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string Dpctld::agent_command(const TunnelDef& t) const {
  return "dpagent --server " + cfg_.agent_address + " --ca " + cfg_.tls.ca +
         " --cert AGENT.pem --key AGENT.key --tunnel " + t.id.str();
}

json Dpctld::tunnel_json(const TunnelDef& t, bool detailed) const {
  size_t sessions = 0, live = 0;
  for (const auto& [i, s] : sessions_.all())
    if (s.tunnel == t.id) {
      ++sessions;
      live += s.live;
    }
  size_t entries = 0;
  for (const EntryDef& e : all_entries()) entries += e.tunnel == t.id;
  json j{{"id", t.id.str()},
         {"name", t.name},
         {"source", tunnel_from_config(t.id) ? "config" : "dpctl"},
         {"allow", t.allow},
         {"weights", t.weights.str()},
         {"sessions", sessions},
         {"sessions_live", live},
         {"entry_points", entries}};
  if (gateway_stats_.is_object())
    for (const auto& gt : gateway_stats_.value("tunnels", json::array()))
      if (gt.value("id", std::string()) == t.id.str())
        for (const char* f : {"to_agent_bytes", "from_agent_bytes", "flows_created", "auth_fail"})
          j[f] = gt.contains(f) && gt[f].is_number_unsigned() ? gt[f].get<uint64_t>() : uint64_t(0);
  if (detailed) {
    json ss = json::array(), es = json::array(), rs = json::array();
    for (const auto& [i, s] : sessions_.all())
      if (s.tunnel == t.id)
        ss.push_back({{"index", s.index}, {"agent", s.agent_name}, {"certificate", s.certificate_subject},
                      {"weight", s.weight},
                    {"role", s.visitor ? "visitor" : "agent"}, {"live", s.live}});
    for (const EntryDef& e : all_entries())
      if (e.tunnel == t.id) es.push_back(entry_json(e));
    for (const IngressRule* r : all_ingress())
      if (r->tunnel == t.id) rs.push_back({{"hostname", r->hostname}, {"private", r->private_rule}});
    j["session_list"] = ss;
    j["entry_point_list"] = es;
    j["ingress"] = rs;
    j["agent_command"] = agent_command(t);
  }
  return j;
}

json Dpctld::api_tunnel_add(const json& req) {
  TunnelDef t;
  t.name = str_of(req, "name");
  if (std::string problem = tunnel_name_problem(t.name); !problem.empty()) throw ApiError(problem);
  std::string id = str_of(req, "id", false);
  if (id.empty()) {
    t.id = Uuid::random_v4();
  } else {
    auto u = Uuid::parse(id);
    if (!u) throw ApiError("'" + id + "' is not a UUID");
    t.id = *u;
  }
  for (const TunnelDef* o : all_tunnels()) {
    if (o->id == t.id) throw ApiError("tunnel " + t.id.str() + " exists already");
    if (o->name == t.name) throw ApiError("a tunnel is already named '" + t.name + "'");
  }
  // dpgw's own static tunnels (from its config) cannot be shadowed either.
  if (gateway_stats_.is_object())
    for (const auto& gt : gateway_stats_.value("tunnels", json::array()))
      if (gt.value("static", false) && (gt.value("id", std::string()) == t.id.str() || gt.value("name", std::string()) == t.name))
        throw ApiError("dpgw has a static tunnel " + gt.value("name", std::string()) + " (" + gt.value("id", std::string()) +
                       ") in its own config");
  if (!req.contains("allow") || !req["allow"].is_array() || req["allow"].empty())
    throw ApiError("give the certificate identities that may serve it: --allow CN=agent-name (or --allow '*')");
  if (req.contains("weight") && req.contains("max_weight"))
    throw ApiError("give either --weight (every session gets it) or --max-weight (caps what agents ask for)");
  auto weight_of = [&](const char* key) {
    if (!req[key].is_number_integer() || req[key] < 1 || req[key] > 255) throw ApiError(std::string(key) + " must be 1..255");
    return uint8_t(req[key].get<int>());
  };
  if (req.contains("weight")) {
    t.weights.fixed = true;
    t.weights.weight = weight_of("weight");
  }
  if (req.contains("max_weight")) t.weights.max_weight = weight_of("max_weight");
  for (const auto& a : req["allow"]) {
    if (!a.is_string()) throw ApiError("'allow' must list strings");
    std::string v = a.get<std::string>();
    if (v != "*" && v.rfind("CN=", 0) != 0 && v.rfind("DNS:", 0) != 0 && v.rfind("URI:", 0) != 0)
      throw ApiError("allow '" + v + "': expected CN=..., DNS:..., URI:... or *");
    t.allow.push_back(v);
  }
  state_.tunnels.push_back(t);
  std::string error;
  if (!persist(error)) {
    state_.tunnels.pop_back();
    throw ApiError(error);
  }
  json m = encode_tunnel(TunnelSpec{t.id, t.name, false});
  m["type"] = "tunnel_set";
  gateway_->send(m);
  LOG_INFO("dpctl: tunnel %s (%s) added", t.name.c_str(), t.id.str().c_str());
  return ok({{"tunnel", tunnel_json(t, false)}, {"agent_command", agent_command(t)}});
}

void Dpctld::drop_tunnel_sessions(const Uuid& id) {
  std::vector<uint32_t> gone;
  for (const auto& [index, s] : sessions_.all())
    if (s.tunnel == id) gone.push_back(index);
  for (uint32_t index : gone) {
    SessionRecord* s = sessions_.find(index);
    if (s->channel) {
      auto it = channels_.find(s->channel);
      if (it != channels_.end()) it->second->close(true);
    }
    sessions_.remove(index);
  }
}

json Dpctld::api_tunnel_del(const json& req) {
  const std::string ref = str_of(req, "tunnel");
  const TunnelDef* t = find_tunnel(ref);
  if (!t) throw ApiError("no tunnel '" + ref + "'");
  if (tunnel_from_config(t->id))
    throw ApiError("tunnel " + t->name + " comes from " + cfg_.path + "; remove it there and restart dpctld");
  const Uuid id = t->id;
  const std::string name = t->name;
  PersistedState before = state_;
  state_.tunnels.erase(std::remove_if(state_.tunnels.begin(), state_.tunnels.end(),
                                      [&](const TunnelDef& x) { return x.id == id; }),
                       state_.tunnels.end());
  state_.entry_points.erase(std::remove_if(state_.entry_points.begin(), state_.entry_points.end(),
                                           [&](const EntryDef& e) { return e.tunnel == id; }),
                            state_.entry_points.end());
  state_.ingress.erase(std::remove_if(state_.ingress.begin(), state_.ingress.end(),
                                      [&](const IngressRule& r) { return r.tunnel == id; }),
                       state_.ingress.end());
  std::string error;
  if (!persist(error)) {
    state_ = before;
    throw ApiError(error);
  }
  drop_tunnel_sessions(id);
  gateway_->send(json{{"type", "tunnel_del"}, {"id", id.str()}});  // with its sessions and entry points
  push_ingress();
  LOG_INFO("dpctl: tunnel %s (%s) removed", name.c_str(), id.str().c_str());
  return ok({{"removed", id.str()}});
}

json Dpctld::api_tunnel_list(bool detailed, const json& req) {
  if (detailed) {
    const std::string ref = str_of(req, "tunnel");
    const TunnelDef* t = find_tunnel(ref);
    if (!t) throw ApiError("no tunnel '" + ref + "'");
    return ok({{"tunnel", tunnel_json(*t, true)}});
  }
  json list = json::array();
  for (const TunnelDef* t : all_tunnels()) list.push_back(tunnel_json(*t, false));
  return ok({{"tunnels", list}});
}

json Dpctld::entry_json(const EntryDef& e) const {
  const TunnelDef* t = find_tunnel(e.tunnel.str());
  bool from_config = std::any_of(cfg_.entry_points.begin(), cfg_.entry_points.end(),
                                 [&](const EntryDef& c) { return c.proto == e.proto && c.port == e.port; });
  json j{{"proto", e.proto == 6 ? "tcp" : "udp"},
         {"port", e.port},
         {"route", entry_route_name(e.route)},
         {"source", from_config ? "config" : "dpctl"}};
  if (e.route == EntryRoute::Fixed) {
    j["tunnel"] = e.tunnel.str();
    j["tunnel_name"] = t ? t->name : std::string();
    j["target"] = e.target.str();
  } else {
    j["tunnel"] = nullptr;
    j["target"] = nullptr;
  }
  if (e.proto == 17) {
    j["keepalive"] = e.keepalive;
    j["ttl"] = e.ttl_s;
  }
  j["listen"] = e.listen ? json(e.listen->str()) : json(nullptr);
  return j;
}

json Dpctld::api_entry_add(const json& req) {
  EntryDef e;
  const std::string proto = str_of(req, "proto");
  if (proto != "tcp" && proto != "udp") throw ApiError("proto must be tcp or udp");
  e.proto = proto == "tcp" ? 6 : 17;
  if (!req.contains("port") || !req["port"].is_number_integer() || req["port"] < 1 || req["port"] > 65535)
    throw ApiError("port must be 1..65535");
  e.port = uint16_t(req["port"].get<int>());
  const std::string route = str_of(req, "route", false);
  if (!route.empty()) {
    auto r = parse_entry_route(route);
    if (!r || *r == EntryRoute::Fixed) throw ApiError("route must be sni or http (tcp), or quic (udp)");
    if ((*r == EntryRoute::QuicSni) != (e.proto == 17))
      throw ApiError("route quic is for udp entry points; sni and http for tcp ones");
    if (req.contains("tunnel") || req.contains("target"))
      throw ApiError("an entry point routed by hostname takes tunnel and target from the ingress rules");
    e.route = *r;
  } else {
    const std::string ref = str_of(req, "tunnel");
    const TunnelDef* t = find_tunnel(ref);
    if (!t) throw ApiError("no tunnel '" + ref + "'");
    e.tunnel = t->id;
    auto target = Endpoint::parse(str_of(req, "target"));
    if (!target) throw ApiError("target must be ipv4:port as the agent reaches it, like 10.0.0.10:8080");
    e.target = *target;
  }
  const std::string listen = str_of(req, "listen", false);
  if (!listen.empty()) {
    auto ip = Ipv4::parse(listen);
    if (!ip) throw ApiError("listen must be an IPv4 address");
    e.listen = *ip;
  }
  if (e.proto == 6 && (req.contains("keepalive") || req.contains("ttl")))
    throw ApiError("--keepalive and --ttl apply to UDP entry points only");
  e.keepalive = req.value("keepalive", false);
  e.ttl_s = req.value("ttl", 5.0);
  if (!(e.ttl_s >= 0.1 && e.ttl_s <= 86400)) throw ApiError("ttl must be 0.1..86400 seconds");
  for (const EntryDef& o : all_entries())
    if (o.proto == e.proto && o.port == e.port)
      throw ApiError("entry point " + proto + "/" + std::to_string(e.port) + " exists already");
  // Ports the gateway itself needs: the relay frames' port, and dpctld's own agent port when dpctld is reached
  // through dpgw's kernel path (an entry point there would cut agents off from dpctld).
  if (e.proto == 17 && e.port == cfg_.gateway_endpoint.port && (!e.listen || *e.listen == cfg_.gateway_endpoint.ip))
    throw ApiError("udp/" + std::to_string(e.port) + " is the gateway's tunnel port (relay frames from agents)");
  if (e.proto == 6 && e.port == cfg_.agent_listen.port &&
      (!e.listen || !cfg_.agent_listen.ip.value || *e.listen == cfg_.agent_listen.ip))
    throw ApiError("tcp/" + std::to_string(e.port) + " is dpctld's agent port (agent_listen in " + cfg_.path + ")");
  state_.entry_points.push_back(e);
  std::string error;
  if (!persist(error)) {
    state_.entry_points.pop_back();
    throw ApiError(error);
  }
  json m = encode_entry(entry_spec(e));
  m["type"] = "entry_set";
  gateway_->send(m);
  return ok({{"entry_point", entry_json(e)}});
}

json Dpctld::api_entry_del(const json& req) {
  const std::string proto = str_of(req, "proto");
  int port = req.value("port", 0);
  auto it = std::find_if(state_.entry_points.begin(), state_.entry_points.end(), [&](const EntryDef& e) {
    return (e.proto == 6 ? "tcp" : "udp") == proto && e.port == port;
  });
  if (it == state_.entry_points.end()) {
    for (const EntryDef& c : cfg_.entry_points)
      if ((c.proto == 6 ? "tcp" : "udp") == proto && c.port == port)
        throw ApiError("entry point " + proto + "/" + std::to_string(port) + " comes from " + cfg_.path +
                       "; remove it there and restart dpctld");
    throw ApiError("no entry point " + proto + "/" + std::to_string(port));
  }
  EntryDef removed = *it;
  state_.entry_points.erase(it);
  std::string error;
  if (!persist(error)) {
    state_.entry_points.push_back(removed);
    throw ApiError(error);
  }
  gateway_->send(json{{"type", "entry_del"}, {"proto", proto}, {"port", port}});
  return ok({{"removed", proto + "/" + std::to_string(port)}});
}

json Dpctld::api_entry_list() {
  json list = json::array();
  for (const EntryDef& e : all_entries()) list.push_back(entry_json(e));
  return ok({{"entry_points", list}});
}

json Dpctld::api_ingress_add(const json& req) {
  std::string why;
  auto host = normalize_hostname_rule(str_of(req, "hostname"), &why);
  if (!host)
    throw ApiError(why.empty() ? "'" + str_of(req, "hostname") +
                                     "' is not a hostname (example.org), wildcard (.example.com, *.example.com) or "
                                     "pattern (~regex)"
                               : "pattern '" + str_of(req, "hostname") + "': " + why);
  std::string ref = str_of(req, "tunnel");
  bool private_rule = false;
  if (!ref.empty() && ref[0] == '$') {  // "$<uuid>": a private rule
    private_rule = true;
    ref = ref.substr(1);
  }
  const TunnelDef* t = find_tunnel(ref);
  if (!t) throw ApiError("no tunnel '" + ref + "'");
  for (const IngressRule* r : all_ingress())
    if (r->hostname == *host) throw ApiError("an ingress rule for '" + *host + "' exists already");
  IngressRule rule{*host, t->id, private_rule, std::nullopt, req.value("proxy_protocol", false)};
  const std::string target = str_of(req, "target", false);
  if (!target.empty()) {
    auto ep = parse_rule_target(target);
    if (!ep)
      throw ApiError("target must be ipv4:port as the agent reaches it, like 10.0.0.10:443, or ipv4 alone (the port "
                     "the client used)");
    rule.target = *ep;
  }
  state_.ingress.push_back(rule);
  std::string error;
  if (!persist(error)) {
    state_.ingress.pop_back();
    throw ApiError(error);
  }
  push_ingress();
  return ok({{"rule", ingress_json(state_.ingress.back())}});
}

json Dpctld::api_ingress_del(const json& req) {
  auto host = normalize_hostname_rule(str_of(req, "hostname"));
  auto it = std::find_if(state_.ingress.begin(), state_.ingress.end(),
                         [&](const IngressRule& r) { return host && r.hostname == *host; });
  if (it == state_.ingress.end()) {
    for (const IngressRule& c : cfg_.ingress)
      if (host && c.hostname == *host)
        throw ApiError("ingress rule " + c.hostname + " comes from " + cfg_.path + "; remove it there and restart dpctld");
    throw ApiError("no ingress rule for '" + str_of(req, "hostname") + "'");
  }
  IngressRule removed = *it;
  state_.ingress.erase(it);
  std::string error;
  if (!persist(error)) {
    state_.ingress.push_back(removed);
    throw ApiError(error);
  }
  push_ingress();
  return ok({{"removed", removed.hostname}});
}

json Dpctld::ingress_json(const IngressRule& r) const {
  const TunnelDef* t = find_tunnel(r.tunnel.str());
  const bool from_config = std::any_of(cfg_.ingress.begin(), cfg_.ingress.end(),
                                       [&](const IngressRule& c) { return c.hostname == r.hostname; });
  return json{{"hostname", r.hostname},
              {"tunnel", r.tunnel.str()},
              {"tunnel_name", t ? t->name : std::string()},
              {"private", r.private_rule},
              {"target", r.target ? json(rule_target_str(*r.target)) : json(nullptr)},
              {"proxy_protocol", r.proxy_protocol},
              {"source", from_config ? "config" : "dpctl"}};
}

json Dpctld::api_ingress_list() {
  json list = json::array();
  for (const IngressRule* r : all_ingress()) list.push_back(ingress_json(*r));
  return ok({{"rules", list}});
}

json Dpctld::api_session_list() {
  json list = json::array();
  const uint64_t now = realtime_ns();
  for (const auto& [index, s] : sessions_.all()) {
    const TunnelDef* t = find_tunnel(s.tunnel.str());
    list.push_back({{"index", index},
                    {"tunnel", s.tunnel.str()},
                    {"tunnel_name", t ? t->name : std::string()},
                    {"agent", s.agent_name},
                    {"certificate", s.certificate_subject},
                    {"weight", s.weight},
                    {"role", s.visitor ? "visitor" : "agent"},
                    {"control_peer", s.control_peer.str()},
                    {"control_connected", s.channel != 0},
                    {"live", s.live},
                    {"data_endpoint", s.data_endpoint},
                    {"flows", s.flows_pinned},
                    {"age_s", double(now - s.registered_unix_ns) / 1e9}});
  }
  return ok({{"sessions", list}});
}

json Dpctld::api_stats() {
  json failures = json::object();
  for (size_t c = 0; c < size_t(HandshakeFailure::Count); ++c)
    failures[handshake_failure_name(HandshakeFailure(c))] = counters_.handshake_failures[c];
  json tunnels = json::array();
  for (const TunnelDef* t : all_tunnels()) tunnels.push_back(tunnel_json(*t, false));
  size_t live = 0;
  for (const auto& [i, s] : sessions_.all()) live += s.live;
  return ok({{"gateway_connected", gateway_ && gateway_->connected()},
             {"handshakes_ok", counters_.handshakes_ok},
             {"handshake_failures", failures},
             {"registrations_ok", counters_.registrations_ok},
             {"registrations_refused", counters_.registrations_refused},
             {"sessions", sessions_.all().size()},
             {"sessions_live", live},
             {"sessions_expired", counters_.sessions_expired},
             {"gateway_refusals", counters_.gateway_refusals},
             {"last_gateway_refusal", counters_.last_gateway_refusal},
             {"tunnels", tunnels}});
}

}  // namespace dptun
