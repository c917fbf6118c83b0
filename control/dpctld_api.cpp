// dpctld's API for dpctl (docs/control-plane.md, "dpctl API"): one JSON request per connection on the unix
// socket, one JSON reply ({"ok": true, ...} or {"ok": false, "error": "..."}). Changes are persisted before the
// reply and pushed to dpgw.
#include <algorithm>
#include <memory>
#include <tuple>

#include "common/clock.hpp"
#include "common/json_fields.hpp"
#include "ingress/ingress_matcher.hpp"
#include "common/log.hpp"
#include "control/dpctld.hpp"
#include "proto/gateway_messages.hpp"

namespace dptun {

using nlohmann::json;

namespace {

using ApiError = FieldError;

std::string str_of(const json& req, const char* key, bool required = true) {
  return required ? string_field(req, key) : string_field(req, key, std::string());
}

std::string addresses_text(const std::vector<Ipv4>& a) {
  std::string out;
  for (const Ipv4& ip : a) out += (out.empty() ? "" : ", ") + ip.str();
  return out;
}

std::string entry_name(const EntrySpec& e) { return std::string(l4_proto_name(e.proto)) + "/" + std::to_string(e.port); }

DpctlCommand command_of(const json& req) {
  const std::string cmd = str_of(req, "cmd");
  auto c = parse_name<DpctlCommand>(cmd);
  if (!c) throw ApiError("unknown command '" + cmd + "'");
  return *c;
}

json ok(json body = json::object()) {
  body["ok"] = true;
  return body;
}

}  // namespace

std::optional<std::string> Dpctld::handle_api(const std::string& line, uint64_t conn) {
  json reply;
  try {
    json req = json::parse(line, nullptr, false);
    if (req.is_discarded() || !req.is_object()) throw ApiError("send one JSON object per request");
    const DpctlCommand cmd = command_of(req);
    if (changes_dpctld_state(cmd)) {
      // Changes wait their turn: each is checked against the state the ones before it left.
      changes_.push_back(PendingChange{conn, std::move(req)});
      start_next_change();
      return std::nullopt;
    }
    switch (cmd) {
      case DpctlCommand::TunnelList: reply = api_tunnel_list(false, req); break;
      case DpctlCommand::TunnelShow: reply = api_tunnel_list(true, req); break;
      case DpctlCommand::EntryList: reply = api_entry_list(); break;
      case DpctlCommand::IngressList: reply = api_ingress_list(); break;
      case DpctlCommand::RouteList: reply = api_route_list(); break;
      case DpctlCommand::SessionList: reply = api_session_list(); break;
      case DpctlCommand::Stats: reply = api_stats(); break;
      case DpctlCommand::TunnelAdd:  // changes: queued above
      case DpctlCommand::TunnelDel:
      case DpctlCommand::EntryAdd:
      case DpctlCommand::EntryDel:
      case DpctlCommand::IngressAdd:
      case DpctlCommand::IngressDel:
      case DpctlCommand::RouteAdd:
      case DpctlCommand::RouteDel: break;
    }
  } catch (const std::exception& e) {
    reply = json{{"ok", false}, {"error", e.what()}};
  }
  return api_reply_text(reply);
}

std::string Dpctld::api_dry_run(const std::string& line) {
  json reply;
  try {
    json req = json::parse(line, nullptr, false);
    if (req.is_discarded() || !req.is_object()) throw ApiError("send one JSON object per request");
    if (changes_dpctld_state(command_of(req))) {
      Change c = prepare_change(req);  // checks and builds the next state; its commit never runs
      reply = json{{"ok", true}, {"tunnels", c.next.tunnels.size()}, {"entry_points", c.next.entry_points.size()},
                   {"ingress", c.next.ingress.size()}, {"routes", c.next.routes.size()},
                   {"patterns", c.patterns.size()}};
    } else if (auto r = handle_api(line, 0)) {
      return *r;
    }
  } catch (const std::exception& e) {
    reply = json{{"ok", false}, {"error", e.what()}};
  }
  return api_reply_text(reply);
}

// Names come from operators: invalid UTF-8 is replaced, never an exception out of the event loop.
std::string Dpctld::api_reply_text(const json& reply) {
  return reply.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

Dpctld::Change Dpctld::prepare_change(const json& req) {
  const DpctlCommand cmd = command_of(req);
  switch (cmd) {
    case DpctlCommand::TunnelAdd: return api_tunnel_add(req);
    case DpctlCommand::TunnelDel: return api_tunnel_del(req);
    case DpctlCommand::EntryAdd: return api_entry_add(req);
    case DpctlCommand::EntryDel: return api_entry_del(req);
    case DpctlCommand::IngressAdd: return api_ingress_add(req);
    case DpctlCommand::IngressDel: return api_ingress_del(req);
    case DpctlCommand::RouteAdd: return api_route_add(req);
    case DpctlCommand::RouteDel: return api_route_del(req);
    case DpctlCommand::RouteList:
    case DpctlCommand::TunnelList:
    case DpctlCommand::TunnelShow:
    case DpctlCommand::EntryList:
    case DpctlCommand::IngressList:
    case DpctlCommand::SessionList:
    case DpctlCommand::Stats: break;
  }
  throw ApiError(std::string(name_of(cmd)) + " changes nothing");
}

// One change at a time: prepared against the committed state, its patterns compiled and the state file written
// on the background thread, then committed (pushed to dpgw, logged) and answered on the loop.
void Dpctld::start_next_change() {
  while (!change_running_ && !changes_.empty()) {
    PendingChange pending = std::move(changes_.front());
    changes_.pop_front();
    auto job = std::make_shared<ChangeJob>();
    job->conn = pending.conn;
    try {
      job->change = prepare_change(pending.request);
    } catch (const std::exception& e) {
      api_.reply(pending.conn, api_reply_text(json{{"ok", false}, {"error", e.what()}}), true);
      continue;
    }
    change_running_ = true;
    background_.submit(
        [job, path = cfg_.state_file] {
          for (const std::string& p : job->change.patterns) {
            std::string error;
            const std::vector<IngressMatcher::Rule> one{{p, 0}};
            if (!IngressMatcher::build(one, 1, error)) {
              job->error = "pattern '" + p + "': " + error;
              return;
            }
          }
          std::string error;
          if (!save_state(path, job->change.next, error)) job->error = error;
        },
        [this, job] {
          change_running_ = false;
          json reply;
          if (job->error.empty()) {
            state_ = std::move(job->change.next);
            reply = job->change.commit();
            reply["ok"] = true;
          } else {
            reply = json{{"ok", false}, {"error", job->error}};
          }
          api_.reply(job->conn, api_reply_text(reply), true);
          serve_api();
          start_next_change();
        });
  }
}

// The command that registers an agent for `t`, as it runs on the agent host once AGENT.pem/AGENT.key name that
// agent's certificate and key: --server as agents reach dpctld, --ca the CA that verifies dpctld's certificate,
// and --server-name when that certificate does not carry the --server host.
std::string Dpctld::agent_command(const TunnelDef& t, bool quic) const {
  std::string server = cfg_.agent_address;
  if (quic) {  // the same host as agents reach agent_listen by, agent_quic_listen's port
    auto hp = parse_host_port(cfg_.agent_address);
    server = (hp ? hp->first : cfg_.agent_quic_listen->ip.str()) + ":" + std::to_string(cfg_.agent_quic_listen->port);
  }
  std::string cmd = "dpagent" + std::string(quic ? " --transport quic" : "") + " --server " + server + " --ca " +
                    agent_ca_ + " --cert AGENT.pem --key AGENT.key --tunnel " + t.id.str();
  if (!agent_server_name_.empty()) cmd += " --server-name " + agent_server_name_;
  return cmd;
}

// agent_command, and agent_quic_command when dpctld has agent_quic_listen.
void Dpctld::add_agent_commands(json& j, const TunnelDef& t) const {
  j["agent_command"] = agent_command(t, false);
  if (cfg_.agent_quic_listen) j["agent_quic_command"] = agent_command(t, true);
}

json Dpctld::tunnel_json(const TunnelDef& t, bool detailed) const {
  size_t sessions = 0, live = 0;
  for (const auto& [i, s] : sessions_.all())
    if (s.tunnel == t.id) {
      ++sessions;
      live += s.live;
    }
  size_t entries = 0;
  for (const EntrySpec& e : all_entries()) entries += e.tunnel == t.id;
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
                    {"role", role_name(s.visitor)}, {"live", s.live}});
    for (const EntrySpec& e : all_entries())
      if (e.tunnel == t.id) es.push_back(entry_json(e));
    for (const IngressRuleSpec* r : all_ingress())
      if (r->tunnel == t.id) rs.push_back({{"hostname", r->hostname}, {"private", r->private_rule}});
    j["session_list"] = ss;
    j["entry_point_list"] = es;
    j["ingress"] = rs;
    json routes = json::array();
    for (const MasqueRoute* r : all_routes())
      if (r->tunnel == t.id) routes.push_back({{"from", r->from_url()}, {"to", r->to_url()}, {"private", r->private_route}});
    j["routes"] = routes;
    add_agent_commands(j, t);
  }
  return j;
}

Dpctld::Change Dpctld::api_tunnel_add(const json& req) {
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
    if (tunnel_name_key(o->name) == tunnel_name_key(t.name))
      throw ApiError("a tunnel is already named '" + o->name + "' (names are compared without regard to case)");
  }
  // dpgw's own static tunnels (from its config) cannot be shadowed either.
  if (gateway_stats_.is_object())
    for (const auto& gt : gateway_stats_.value("tunnels", json::array()))
      if (gt.value("static", false) && (gt.value("id", std::string()) == t.id.str() ||
                                        tunnel_name_key(gt.value("name", std::string())) == tunnel_name_key(t.name)))
        throw ApiError("dpgw has a static tunnel " + gt.value("name", std::string()) + " (" + gt.value("id", std::string()) +
                       ") in its own config");
  const json& allow = array_field(req, "allow");
  if (allow.empty())
    throw ApiError("give the certificate identities that may serve it: --allow CN=agent-name (or --allow '*')");
  if (field(req, "weight") && field(req, "max_weight"))
    throw ApiError("give either --weight (every session gets it) or --max-weight (caps what agents ask for)");
  if (field(req, "weight")) {
    t.weights.fixed = true;
    t.weights.weight = uint8_t(int_field(req, "weight", 1, 255));
  }
  t.weights.max_weight = uint8_t(int_field(req, "max_weight", 1, 255, 255));
  for (const auto& a : allow) {
    if (!a.is_string()) throw ApiError("'allow' must list strings");
    if (std::string problem = allow_problem(a.get<std::string>()); !problem.empty()) throw ApiError("--allow: " + problem);
    t.allow.push_back(a.get<std::string>());
  }
  Change c{state_, {}, {}};
  c.next.tunnels.push_back(t);
  c.commit = [this, t] {
    gateway_->send(gateway_message(GatewayMessageType::TunnelSet, encode_tunnel(TunnelSpec{t.id, t.name, false})));
    LOG_INFO("dpctl: tunnel %s (%s) added, allow %s", t.name.c_str(), t.id.str().c_str(),
             json(t.allow).dump(-1, ' ', false, json::error_handler_t::replace).c_str());
    json reply{{"tunnel", tunnel_json(t, false)}};
    add_agent_commands(reply, t);
    return reply;
  };
  return c;
}

void Dpctld::drop_tunnel_sessions(const Uuid& id) {
  std::vector<uint32_t> gone;
  for (const auto& [index, s] : sessions_.all())
    if (s.tunnel == id) gone.push_back(index);
  for (uint32_t index : gone) {
    SessionRecord* s = sessions_.find(index);
    if (s->channel)
      if (AgentLink* link = find_link(s->channel)) link->close(true);
    sessions_.remove(index);
    forget_capsule_stream(index, true);  // an HTTP/2 or HTTP/1.1 client's stream is reset (a no-op for others)
  }
}

Dpctld::Change Dpctld::api_tunnel_del(const json& req) {
  const std::string ref = str_of(req, "tunnel");
  const TunnelDef* t = find_tunnel(ref);
  if (!t) throw ApiError("no tunnel '" + ref + "'");
  if (tunnel_from_config(t->id))
    throw ApiError("tunnel " + t->name + " comes from " + cfg_.path + "; remove it there and restart dpctld");
  const Uuid id = t->id;
  const std::string name = t->name;
  // What goes with it: said in the reply, and only with --force while anything uses the tunnel.
  json entries = json::array(), rules = json::array(), routes = json::array(), sessions = json::array();
  for (const EntrySpec& e : state_.entry_points)
    if (e.route == EntryRoute::Fixed && e.tunnel == id) entries.push_back(entry_name(e));
  for (const IngressRuleSpec& r : state_.ingress)
    if (r.tunnel == id) rules.push_back(r.hostname);
  for (const MasqueRoute& r : state_.routes)
    if (r.tunnel == id) routes.push_back(r.from_url());
  for (const auto& [index, s] : sessions_.all())
    if (s.tunnel == id) sessions.push_back({{"index", index}, {"certificate", s.certificate_subject},
                                            {"role", role_name(s.visitor)}});
  if (!bool_field(req, "force", false) && (!entries.empty() || !rules.empty() || !routes.empty() || !sessions.empty())) {
    std::string what;
    auto add = [&](size_t n, const char* one, const char* many) {
      if (!n) return;
      what += (what.empty() ? "" : ", ") + std::to_string(n) + " " + (n == 1 ? one : many);
    };
    add(entries.size(), "entry point", "entry points");
    add(rules.size(), "ingress rule", "ingress rules");
    add(routes.size(), "route", "routes");
    add(sessions.size(), "registered agent", "registered agents");
    throw ApiError("tunnel " + name + " is in use (" + what + "); 'dpctl tunnel del " + name +
                   " --force' removes it with them and disconnects its agents");
  }
  Change c{state_, {}, {}};
  std::erase_if(c.next.tunnels, [&](const TunnelDef& x) { return x.id == id; });
  std::erase_if(c.next.entry_points, [&](const EntrySpec& e) { return e.route == EntryRoute::Fixed && e.tunnel == id; });
  std::erase_if(c.next.ingress, [&](const IngressRuleSpec& r) { return r.tunnel == id; });
  std::erase_if(c.next.routes, [&](const MasqueRoute& r) { return r.tunnel == id; });
  c.commit = [this, id, name, entries, rules, routes, sessions] {
    drop_tunnel_sessions(id);
    gateway_->send(gateway_message(GatewayMessageType::TunnelDel, {{"id", id.str()}}));  // with its sessions and entry points
    push_ingress();
    LOG_INFO("dpctl: tunnel %s (%s) removed with %zu entry point(s) %s, %zu ingress rule(s) %s, %zu route(s) %s; "
             "%zu agent session(s) disconnected",
             name.c_str(), id.str().c_str(), entries.size(), entries.dump().c_str(), rules.size(),
             rules.dump(-1, ' ', false, json::error_handler_t::replace).c_str(), routes.size(),
             routes.dump(-1, ' ', false, json::error_handler_t::replace).c_str(), sessions.size());
    return json{{"removed", id.str()},
                {"name", name},
                {"entry_points", entries},
                {"ingress", rules},
                {"routes", routes},
                {"sessions", sessions}};
  };
  return c;
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

json Dpctld::entry_json(const EntrySpec& e) const {
  const TunnelDef* t = find_tunnel(e.tunnel.str());
  bool from_config = std::any_of(cfg_.entry_points.begin(), cfg_.entry_points.end(),
                                 [&](const EntrySpec& c) { return c.proto == e.proto && c.port == e.port; });
  json j{{"proto", l4_proto_name(e.proto)},
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
    j["ttl"] = double(e.udp_ttl_ns) / 1e9;
  }
  j["listen"] = e.listen ? json(e.listen->str()) : json(nullptr);
  return j;
}

Dpctld::Change Dpctld::api_entry_add(const json& req) {
  EntrySpec e;
  const std::string proto = str_of(req, "proto");
  if (proto != "tcp" && proto != "udp") throw ApiError("proto must be tcp or udp");
  e.proto = proto == "tcp" ? 6 : 17;
  e.port = uint16_t(int_field(req, "port", 1, 65535));
  const std::string route = str_of(req, "route", false);
  if (!route.empty()) {
    const std::string problem = entry_route_problem(route, e.proto, e.route);
    if (!problem.empty()) throw ApiError(problem);
    if (field(req, "tunnel") || field(req, "target"))
      throw ApiError("an entry point routed by hostname takes tunnel and target from the ingress rules");
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
  if (e.proto == 6 && (field(req, "keepalive") || field(req, "ttl")))
    throw ApiError("--keepalive and --ttl apply to UDP entry points only");
  e.keepalive = bool_field(req, "keepalive", false);
  e.udp_ttl_ns = entry_ttl_ns(req);
  for (const EntrySpec& o : all_entries())
    if (o.proto == e.proto && o.port == e.port) throw ApiError("entry point " + entry_name(e) + " exists already");
  if (std::string problem = entry_point_problem(e, cfg_); !problem.empty()) throw ApiError(problem);
  if (const uint16_t stun = gateway_ ? gateway_->gateway_stun_port() : 0; e.proto == 17 && e.port == stun)
    throw ApiError("udp/" + std::to_string(e.port) + " is the gateway's STUN port (stun_port in dpgw's config)");
  // A listen address the gateway does not own would never see a packet (dpgw refuses it too).
  std::vector<Ipv4> owned;
  for (const std::string& a : gateway_ ? gateway_->gateway_addresses() : std::vector<std::string>{})
    if (auto ip = Ipv4::parse(a)) owned.push_back(*ip);
  if (e.listen && !owned.empty() && std::find(owned.begin(), owned.end(), *e.listen) == owned.end())
    throw ApiError("--listen " + e.listen->str() + " is not an address of the gateway (its ports have " +
                   addresses_text(owned) + ")");
  Change c{state_, {}, {}};
  c.next.entry_points.push_back(e);
  c.commit = [this, e] {
    gateway_->send(gateway_message(GatewayMessageType::EntrySet, encode_entry(e)));
    json j = entry_json(e);
    LOG_INFO("dpctl: entry point %s added: %s", entry_name(e).c_str(),
             j.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
    return json{{"entry_point", j}};
  };
  return c;
}

Dpctld::Change Dpctld::api_entry_del(const json& req) {
  const std::string proto = str_of(req, "proto");
  if (proto != "tcp" && proto != "udp") throw ApiError("proto must be tcp or udp");
  const uint16_t port = uint16_t(int_field(req, "port", 1, 65535));
  auto match = [&](const EntrySpec& e) { return l4_proto_name(e.proto) == proto && e.port == port; };
  const std::string name = proto + "/" + std::to_string(port);
  if (std::none_of(state_.entry_points.begin(), state_.entry_points.end(), match)) {
    if (std::any_of(cfg_.entry_points.begin(), cfg_.entry_points.end(), match))
      throw ApiError("entry point " + name + " comes from " + cfg_.path + "; remove it there and restart dpctld");
    throw ApiError("no entry point " + name);
  }
  Change c{state_, {}, {}};
  std::erase_if(c.next.entry_points, match);
  c.commit = [this, proto, port, name] {
    gateway_->send(gateway_message(GatewayMessageType::EntryDel, {{"proto", proto}, {"port", port}}));
    LOG_INFO("dpctl: entry point %s removed", name.c_str());
    return json{{"removed", name}};
  };
  return c;
}

json Dpctld::api_entry_list() {
  json list = json::array();
  for (const EntrySpec& e : all_entries()) list.push_back(entry_json(e));
  return ok({{"entry_points", list}});
}

Dpctld::Change Dpctld::api_ingress_add(const json& req) {
  std::string why;
  // Patterns are compiled on the background thread (a large one takes seconds), not here.
  auto host = normalize_hostname_rule(str_of(req, "hostname"), &why, false);
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
  for (const IngressRuleSpec* r : all_ingress())
    if (r->hostname == *host) throw ApiError("an ingress rule for '" + *host + "' exists already");
  IngressRuleSpec rule{*host, t->id, std::nullopt, private_rule, bool_field(req, "proxy_protocol", false)};
  const std::string target = str_of(req, "target", false);
  if (!target.empty()) {
    auto ep = parse_rule_target(target);
    if (!ep)
      throw ApiError("target must be ipv4:port as the agent reaches it, like 10.0.0.10:443, or ipv4 alone (the port "
                     "the client used)");
    rule.target = *ep;
  }
  Change c{state_, {}, {}};
  c.next.ingress.push_back(rule);
  if (rule.hostname[0] == '~') c.patterns.push_back(rule.hostname);
  c.commit = [this, rule] {
    push_ingress();
    json j = ingress_json(rule);
    LOG_INFO("dpctl: ingress rule %s added: %s", rule.hostname.c_str(),
             j.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
    return json{{"rule", j}};
  };
  return c;
}

Dpctld::Change Dpctld::api_ingress_del(const json& req) {
  auto host = normalize_hostname_rule(str_of(req, "hostname"), nullptr, false);
  auto it = std::find_if(state_.ingress.begin(), state_.ingress.end(),
                         [&](const IngressRuleSpec& r) { return host && r.hostname == *host; });
  if (it == state_.ingress.end()) {
    for (const IngressRuleSpec& c : cfg_.ingress)
      if (host && c.hostname == *host)
        throw ApiError("ingress rule " + c.hostname + " comes from " + cfg_.path + "; remove it there and restart dpctld");
    throw ApiError("no ingress rule for '" + str_of(req, "hostname") + "'");
  }
  const std::string removed = it->hostname;
  Change c{state_, {}, {}};
  std::erase_if(c.next.ingress, [&](const IngressRuleSpec& r) { return r.hostname == removed; });
  c.commit = [this, removed] {
    push_ingress();
    LOG_INFO("dpctl: ingress rule %s removed", removed.c_str());
    return json{{"removed", removed}};
  };
  return c;
}

json Dpctld::ingress_json(const IngressRuleSpec& r) const {
  const TunnelDef* t = find_tunnel(r.tunnel.str());
  const bool from_config = std::any_of(cfg_.ingress.begin(), cfg_.ingress.end(),
                                       [&](const IngressRuleSpec& c) { return c.hostname == r.hostname; });
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
  for (const IngressRuleSpec* r : all_ingress()) list.push_back(ingress_json(*r));
  return ok({{"rules", list}});
}

Dpctld::Change Dpctld::api_route_add(const json& req) {
  MasqueRoute r;
  std::string why;
  auto from = parse_route_url(str_of(req, "from"), "udp+https", why);
  if (!from) throw ApiError(why);
  auto to = parse_route_url(str_of(req, "to"), "udp", why);
  if (!to) throw ApiError("--to " + why);
  std::tie(r.host, r.port) = *from;
  std::tie(r.to_host, r.to_port) = *to;
  std::string ref = str_of(req, "tunnel");
  if (!ref.empty() && ref[0] == '$') {  // "$<uuid>": a private route, as for ingress rules
    r.private_route = true;
    ref = ref.substr(1);
  }
  r.private_route = bool_field(req, "private", false) || r.private_route;
  const TunnelDef* t = find_tunnel(ref);
  if (!t) throw ApiError("no tunnel '" + ref + "'");
  r.tunnel = t->id;
  const json& allow = array_field(req, "allow");
  if (allow.empty())
    throw ApiError("give the client certificate identities the route allows: --allow CN=client-name (or --allow '*')");
  for (const auto& a : allow) {
    if (!a.is_string()) throw ApiError("'allow' must list strings");
    if (std::string problem = allow_problem(a.get<std::string>()); !problem.empty()) throw ApiError("--allow: " + problem);
    r.allow.push_back(a.get<std::string>());
  }
  for (const MasqueRoute* o : all_routes())
    if (o->host == r.host && o->port == r.port) throw ApiError("a route for " + r.from_url() + " exists already");
  Change c{state_, {}, {}};
  c.next.routes.push_back(r);
  c.commit = [this, r] {
    json j = route_json(r);
    LOG_INFO("dpctl: route %s added: %s", r.from_url().c_str(), j.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
    return json{{"route", j}};
  };
  return c;
}

Dpctld::Change Dpctld::api_route_del(const json& req) {
  const std::string text = str_of(req, "from");
  std::string why;
  auto from = parse_route_url(text, "udp+https", why);
  if (!from) throw ApiError(why);
  auto match = [&](const MasqueRoute& r) { return r.host == from->first && r.port == from->second; };
  auto it = std::find_if(state_.routes.begin(), state_.routes.end(), match);
  if (it == state_.routes.end()) {
    for (const MasqueRoute& c : cfg_.routes)
      if (match(c)) throw ApiError("route " + c.from_url() + " comes from " + cfg_.path + "; remove it there and restart dpctld");
    throw ApiError("no route for '" + text + "'");
  }
  const std::string removed = it->from_url();
  Change c{state_, {}, {}};
  std::erase_if(c.next.routes, match);
  c.commit = [this, removed] {
    LOG_INFO("dpctl: route %s removed", removed.c_str());
    recheck_sessions();  // its CONNECT-UDP clients are cut off
    return json{{"removed", removed}};
  };
  return c;
}

json Dpctld::route_json(const MasqueRoute& r) const {
  const TunnelDef* t = find_tunnel(r.tunnel.str());
  const bool from_config = std::any_of(cfg_.routes.begin(), cfg_.routes.end(), [&](const MasqueRoute& c) {
    return c.host == r.host && c.port == r.port;
  });
  return json{{"from", r.from_url()},
              {"to", r.to_url()},
              {"tunnel", r.tunnel.str()},
              {"tunnel_name", t ? t->name : std::string()},
              {"private", r.private_route},
              {"allow", r.allow},
              {"source", from_config ? "config" : "dpctl"}};
}

json Dpctld::api_route_list() {
  json list = json::array();
  for (const MasqueRoute* r : all_routes()) list.push_back(route_json(*r));
  return ok({{"routes", list}});
}

namespace {

// What a session's agent reported of its direct-path socket (docs/nat-traversal.md), or null before any report.
json candidates_json(const SessionRecord& s) {
  if (!s.candidates) return nullptr;
  return {{"mapping", nat_mapping_name(s.candidates->nat)},
          {"candidates", candidates_json(s.candidates->candidates)},
          {"reported_s", seconds_since(realtime_ns(), s.candidates_unix_ns)},
          {"rejected_reports", s.candidate_reports_rejected}};
}

json path_end_json(const std::optional<PathReport>& r) {
  if (!r) return nullptr;
  json j{{"state", path_state_name(r->state)}};
  if (r->state == PathState::Relayed) j["reason"] = path_reason_name(r->reason);
  if (r->state == PathState::Direct && r->remote) {
    j["remote"] = r->remote->str();
    j["rtt_us"] = r->rtt_us;
  }
  return j;
}

// A pair's path as both ends see it: direct when both are, relayed when either gave up, else checking.
const char* pair_path(const DirectPairs::Pair& p) {
  if (p.direct()) return "direct";
  for (const auto* end : {&p.visitor_path, &p.agent_path})
    if (*end && (*end)->state == PathState::Relayed) return "relayed";
  return "checking";
}

}  // namespace

json Dpctld::direct_json(uint32_t index, const std::vector<const DirectPairs::Pair*>* pairs) const {
  json list = json::array();
  if (!pairs) return list;
  for (const DirectPairs::Pair* p : *pairs) {
    const bool visitor = p->visitor == index;
    list.push_back({{"pair", pair_id_text(p->id)},
                    {"peer", visitor ? p->agent : p->visitor},
                    {"path", pair_path(*p)},
                    {"this_end", path_end_json(visitor ? p->visitor_path : p->agent_path)},
                    {"peer_end", path_end_json(visitor ? p->agent_path : p->visitor_path)},
                    // Whether the visitor's flows go in pair frames (nat-traversal.md "The pair's data"), and if
                    // not, why.
                    {"data", p->data.has_value()},
                    {"no_data", p->data ? nullptr : json(p->no_data)}});
    if (p->data) list.back()["block"] = p->data->block;
  }
  return list;
}

json Dpctld::direct_pairs_json() const {
  size_t direct = 0;
  for (const auto& [id, p] : pairs_.all()) direct += p.direct();
  const DirectPairs::Stats& st = pairs_.stats();
  return {{"pairs", pairs_.all().size()},
          {"direct", direct},
          {"made", st.made},
          {"ended", st.ended},
          {"became_direct", st.became_direct},
          {"fallbacks", st.fallbacks},
          {"path_reports", st.path_reports},
          {"path_reports_rejected", st.path_reports_rejected}};
}

json Dpctld::api_session_list() {
  json list = json::array();
  const std::map<uint32_t, std::vector<const DirectPairs::Pair*>> pairs = pairs_.by_session();
  const uint64_t now = realtime_ns();
  for (const auto& [index, s] : sessions_.all()) {
    const TunnelDef* t = find_tunnel(s.tunnel.str());
    json masque = nullptr;  // a CONNECT-UDP client's: the target it named, where the agent sends, its request stream
    if (s.masque)
      masque = {{"target", s.masque_host + ":" + std::to_string(s.masque_port)},
                {"to", s.masque->target.str()},
                {"stream", s.masque->stream_id},
                {"request_id", s.masque->request_id}};  // an HTTP/2 or HTTP/1.1 client's (0: HTTP/3)
    list.push_back({{"index", index},
                    {"tunnel", s.tunnel.str()},
                    {"tunnel_name", t ? t->name : std::string()},
                    {"agent", s.agent_name},
                    {"certificate", s.certificate_subject},
                    {"weight", s.weight},
                    {"role", s.masque ? "connect-udp" : role_name(s.visitor)},
                    {"masque", masque},
                    {"control_peer", s.control_peer.str()},
                    {"control_connected", s.channel != 0},
                    {"control_transport", s.control_transport},
                    {"framing", s.masque && s.masque->request_id ? "capsules"
                                : s.quic || s.handover_pending ? "quic" : "relay"},
                    {"handed_over", s.quic.has_value()},
                    {"live", s.live},
                    {"data_endpoint", s.data_endpoint},
                    {"flows", s.flows_pinned},
                    {"nat", candidates_json(s)},
                    {"direct", direct_json(index, pairs.count(index) ? &pairs.at(index) : nullptr)},
                    {"age_s", seconds_since(now, s.registered_unix_ns)}});
  }
  return ok({{"sessions", list}});
}

json Dpctld::api_stats() {
  json failures = json::object();
  for (size_t c = 0; c < size_t(HandshakeFailure::Count); ++c)
    failures[handshake_failure_name(HandshakeFailure(c))] = counters_.handshake_failures[c];
  json tunnels = json::array();
  for (const TunnelDef* t : all_tunnels()) tunnels.push_back(tunnel_json(*t, false));
  json refusals = json::object();
  for (size_t r = 0; r < size_t(Refusal::Count); ++r) refusals[refusal_name(Refusal(r))] = counters_.refusals[r];
  json masque = json::object();
  for (size_t r = 0; r < size_t(MasqueRefusal::Count); ++r)
    masque[masque_refusal_name(MasqueRefusal(r))] = counters_.masque_refusals[r];
  size_t live = 0;
  for (const auto& [i, s] : sessions_.all()) live += s.live;
  json accepted_by = json::object();
  for (size_t f = 0; f < size_t(MasqueFront::Count); ++f)
    accepted_by[masque_front_name(MasqueFront(f))] = counters_.masque_accepted_by[f];
  json masque_tcp = nullptr;  // the CONNECT-UDP TCP port, when masque_tcp_listen is set
  if (masque_tcp_) {
    const MasqueTcpServer::Stats t = masque_tcp_->stats();
    masque_tcp = {{"connections", masque_tcp_->connections()},
                  {"handshakes_in_progress", masque_tcp_->handshakes_in_progress()},
                  {"h2", t.connections_h2},
                  {"http/1.1", t.connections_h1},
                  {"idle_closed", t.idle_closed},
                  {"over_limit", t.over_limit},
                  {"datagrams_from_client", t.capsules.datagrams_in},
                  {"datagrams_to_gateway", counters_.capsule_to_gateway},
                  {"datagrams_to_client", t.capsules.datagrams_out},
                  {"capsules_skipped", t.capsules.skipped_capsules},
                  {"h2_streams_over_limit", t.capsules.over_tunnel_limit},
                  {"drops", {{"context", t.capsules.drop_context},
                             {"malformed", t.capsules.drop_malformed},
                             {"too_large", t.capsules.drop_too_large},
                             {"slow_client", t.capsules.drop_slow_client},
                             {"unknown_session", counters_.capsule_unknown_session},
                             {"client_gone", counters_.capsule_client_gone},
                             {"gateway_away", counters_.capsule_gateway_away},
                             {"unreadable", counters_.capsule_unreadable}}}};
  }
  return ok({{"gateway_connected", gateway_ && gateway_->connected()},
             {"gateway_conflict", gateway_ ? gateway_->conflict() : std::string()},
             {"agent_port", {{"listening", listener_ && listener_->listening()},
                             {"handshakes_in_progress", listener_ ? listener_->handshakes_in_progress() : 0},
                             {"out_of_descriptors", listener_ ? listener_->out_of_descriptors() : 0},
                             {"accept_pauses", listener_ ? listener_->accept_pauses() : 0}}},
             {"api_socket", {{"connections", api_.connections()},
                             {"shed", api_.stats().shed},
                             {"timed_out", api_.stats().timed_out},
                             {"too_long", api_.stats().too_long},
                             {"accept_pauses", api_.stats().accept_paused}}},
             {"failure_lines_suppressed", counters_.failure_lines_suppressed},
             {"agent_lines_too_long", counters_.agent_lines_too_long},
             {"gateway_epoch", gateway_ ? gateway_->epoch() : 0},
             {"handshakes_ok", counters_.handshakes_ok},
             {"handshake_failures", failures},
             {"registrations_ok", counters_.registrations_ok},
             {"registrations_refused", counters_.registrations_refused},
             {"registrations_refused_by_reason", refusals},
             {"routes", all_routes().size()},
             {"masque_refusals_by_reason", masque},
             {"masque_accepted", counters_.masque_accepted},
             {"masque_accepted_by_protocol", accepted_by},
             {"masque_tcp", masque_tcp},
             {"sessions", sessions_.all().size()},
             {"sessions_live", live},
             {"sessions_expired", counters_.sessions_expired},
             {"candidate_reports", counters_.candidate_reports},
             {"candidate_reports_rejected", counters_.candidate_reports_rejected},
             {"direct_pairs", direct_pairs_json()},
             {"gateway_refusals", counters_.gateway_refusals},
             {"last_gateway_refusal", counters_.last_gateway_refusal},
             {"tunnels", tunnels}});
}

}  // namespace dptun
