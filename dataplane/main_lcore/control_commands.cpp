#include "dataplane/main_lcore/control_commands.hpp"

#include "dataplane/main_lcore/quic_slow_path.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>

#include "common/clock.hpp"
#include "common/json_fields.hpp"
#include "common/json_writer.hpp"
#include "common/line_server.hpp"
#include "common/log.hpp"
#include "dataplane/main_lcore/gateway_state.hpp"
#include "dataplane/main_lcore/masque_capsules.hpp"
#include "dataplane/main_lcore/stats_report.hpp"
#include "dataplane/main_lcore/trace_command.hpp"
#include "dataplane/loop/worker.hpp"
#include "proto/gateway_messages.hpp"

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
                        {"live", session_live(*s, now, dp.cfg->session_timeout_ns)},
                        {"orphaned", state.orphaned(index)},
                        {"static", s->from_config},
                        {"role", role_name(s->visitor)},
                        {"endpoint", s->has_peer() ? s->peer().str() : std::string()},
                        {"last_rx_age_s", last ? json(seconds_since(now, last)) : json(nullptr)},
                        {"flows_pinned", std::max<int64_t>(0, s->flows_pinned.load(std::memory_order_relaxed))},
                        {"flows_total", s->flows_total.load(std::memory_order_relaxed)}});
  }
  return gateway_message(GatewayMessageType::Status, {{"sessions", sessions}, {"stats", json::parse(stats_json(dp))}});
}

json hello_reply(Dataplane& dp, const Controller& c) {
  json addresses = json::array();
  for (const PortInfo& p : dp.ports) addresses.push_back(Ipv4{p.address}.str());
  return gateway_message(GatewayMessageType::Hello,
                         {{"version", kGatewayProtocolVersion}, {"server", "dpgw"}, {"workers", dp.workers.size()},
                          {"tunnel_port", dp.cfg->tunnel_port}, {"stun_port", dp.cfg->stun_port}, {"addresses", addresses},
                          {"epoch", c.epoch}});
}

// A dpctld says hello: it becomes the controller unless another one holds the gateway.
json controller_hello(const json& req, uint64_t conn, ControlContext& ctx) {
  Controller& c = ctx.controller;
  const std::string instance = string_field(req, "instance", std::string());
  const std::string who = "dpctld pid " + std::to_string(int_field(req, "pid", 0, 1ll << 32, 0)) + " on " +
                          string_field(req, "host", std::string("?")) +
                          (instance.empty() ? "" : " (instance " + instance + ")");
  if (c.conn == conn) return hello_reply(ctx.dp, c);
  const bool owner_alive = c.conn && ctx.server.is_open(c.conn) && ctx.now_ns - c.last_heard_ns < kControllerLeaseNs;
  if (owner_alive) {
    LOG_WARN("control socket: refused %s: the gateway is controlled by %s (epoch %llu)", who.c_str(), c.who.c_str(),
             (unsigned long long)c.epoch);
    json refusal = gateway_error("dpgw is controlled by " + c.who + " (epoch " + std::to_string(c.epoch) +
                                     "); one controller per gateway: stop the other dpctld, or give this one "
                                     "another gateway_socket",
                                 GatewayErrorCode::ControllerBusy);
    refusal["controller"] = c.who;
    refusal["epoch"] = c.epoch;
    return refusal;
  }
  if (c.conn && ctx.server.is_open(c.conn)) ctx.fence_conn = c.conn;  // silent past its lease: fenced off
  const std::string before = c.who;
  c.conn = conn;
  c.epoch++;
  c.who = who;
  c.instance = instance;
  c.since_ns = c.last_heard_ns = ctx.now_ns;
  LOG_INFO("control socket: %s controls the gateway (epoch %llu%s%s)", who.c_str(), (unsigned long long)c.epoch,
           before.empty() ? "" : ", after ", before.c_str());
  return hello_reply(ctx.dp, c);
}

}  // namespace

std::string handle_control_line(const std::string& line, bool& close, uint64_t conn, ControlContext& ctx) {
  Dataplane& dp = ctx.dp;
  GatewayState& state = ctx.state;
  // A bare line asks for the counters once.
  if (auto stats = parse_name<StatsRequest>(line)) {
    close = true;
    switch (*stats) {
      case StatsRequest::Json:
      case StatsRequest::Stats: return stats_json(dp);
      case StatsRequest::Text: return stats_text(dp);
    }
  }
  json req = json::parse(line, nullptr, false);
  json reply;
  if (req.is_discarded() || !req.is_object() || !req.contains("type") || !req["type"].is_string()) {
    close = true;
    JsonWriter j;  // written as it always was, "type" first
    j.begin_object().field("type", name_of(GatewayMessageType::Error));
    j.field("reason", "send 'json', 'text', or one JSON object per line").end_object();
    return j.str() + "\n";
  }
  const std::string type = req["type"];
  const std::optional<GatewayMessageType> known = parse_name<GatewayMessageType>(type);
  try {
    std::string error;
    bool ok = true;
    if (conn == ctx.controller.conn) ctx.controller.last_heard_ns = ctx.now_ns;
    if (known && (changes_gateway_state(*known) || *known == GatewayMessageType::MasqueDatagrams)) {
      // Only the controller changes the gateway, and only under its current epoch.
      const json* epoch = field(req, "epoch");
      if (conn != ctx.controller.conn || (epoch && json_int_in(*epoch, 0, INT64_MAX) != int64_t(ctx.controller.epoch))) {
        close = true;
        json refusal = gateway_error(ctx.controller.conn ? "the gateway is controlled by " + ctx.controller.who +
                                                               " (epoch " + std::to_string(ctx.controller.epoch) + ")"
                                                         : "say hello first: no controller holds the gateway",
                                     conn == ctx.controller.conn || ctx.controller.conn == 0
                                         ? GatewayErrorCode::NotController
                                         : GatewayErrorCode::Fenced);
        refusal["request"] = type;
        return refusal.dump() + "\n";
      }
    }
    if (!known) throw std::runtime_error("unknown message type '" + type + "'");
    switch (*known) {
      case GatewayMessageType::Hello:
        if (int_field(req, "version", 0, 1 << 30, 0) != kGatewayProtocolVersion)
          throw std::runtime_error("unsupported version (dpgw speaks " + std::to_string(kGatewayProtocolVersion) + ")");
        reply = controller_hello(req, conn, ctx);
        if (gateway_message_type(reply) == GatewayMessageType::Error) close = true;
        break;
      case GatewayMessageType::MasqueDatagrams: {  // dpctld's HTTP/2 and HTTP/1.1 clients' payloads: never answered
        if (!ctx.masque) throw std::runtime_error("this dpgw does not carry MASQUE capsule sessions");
        std::optional<MasqueDatagrams> d;
        try {
          d = decode_masque_datagrams(req);
        } catch (const std::exception& e) {
          dp.masque_control.malformed.add();
          LOG_DEBUG("control socket: masque_datagrams: %s", e.what());
          return std::string();
        }
        ctx.masque->inject(*d);
        return std::string();
      }
      case GatewayMessageType::Trace:  // dpgw trace: start, poll, stop (trace_command.cpp)
        close = true;
        reply = trace_request(dp, req, ctx.now_ns);
        break;
      case GatewayMessageType::Status:
        reply = status_of(dp, state);
        reply["epoch"] = ctx.controller.epoch;
        // Sessions whose agent closed its QUIC connection since the last status: told to the controller once, so
        // that it drops them at once (dpctld's on_gateway_status) rather than after its grace for missing ones.
        if (ctx.quic && conn == ctx.controller.conn && conn != 0) {
          json closed = json::array();
          for (const QuicSlowPath::Closed& c : ctx.quic->closed_for_status())
            closed.push_back({{"index", c.index},
                              {"error_code", c.error_code},
                              {"application", c.application},
                              {"reason", c.reason}});
          reply["quic_closed"] = closed;
        }
        break;
      case GatewayMessageType::Sync: {
        std::vector<TunnelSpec> tunnels;
        std::vector<SessionSpec> sessions;
        std::vector<EntrySpec> entries;
        for (const auto& t : array_field(req, "tunnels")) tunnels.push_back(decode_tunnel(t));
        for (const auto& s : array_field(req, "sessions")) sessions.push_back(decode_session(s));
        for (const auto& e : array_field(req, "entry_points")) entries.push_back(decode_entry(e));
        std::vector<IngressRuleSpec> rules;
        for (const auto& r : array_field(req, "ingress")) rules.push_back(decode_ingress_rule(r));
        // The direct-path pairs, when the sync carries them; else they stay as the last pair_set left them.
        std::optional<std::vector<PairSpec>> pairs;
        if (const json* p = field(req, "pairs")) pairs = decode_pairs(*p);
        ok = state.sync(tunnels, sessions, entries, error);
        if (ok) state.set_ingress(std::move(rules));
        if (ok && pairs) state.set_pairs(std::move(*pairs));
        break;
      }
      case GatewayMessageType::IngressSet: {  // the whole list of hostname rules
        std::vector<IngressRuleSpec> rules;
        for (const auto& r : array_field(req, "rules")) rules.push_back(decode_ingress_rule(r));
        state.set_ingress(std::move(rules));
        break;
      }
      case GatewayMessageType::PairSet:  // the whole list of direct-path pairs (pair frames relayed)
        state.set_pairs(decode_pair_set(req));
        break;
      case GatewayMessageType::TunnelSet: ok = state.set_tunnel(decode_tunnel(req), error); break;
      case GatewayMessageType::TunnelDel: ok = state.remove_tunnel(decode_tunnel(req).id, error); break;
      case GatewayMessageType::SessionAdd: {
        SessionSpec spec = decode_session(req);
        ok = state.add_session(spec, error);
        if (!ok && state.sessions().count(spec.index)) reply = gateway_error(error, GatewayErrorCode::IndexInUse);
        break;
      }
      case GatewayMessageType::SessionDel:
        ok = state.remove_session(uint32_t(int_field(req, "index", 1, 65535)), error);
        break;
      case GatewayMessageType::EntrySet: ok = state.set_entry(decode_entry(req), error); break;
      case GatewayMessageType::EntryDel:
        ok = state.remove_entry(parse_l4_proto(req, "proto"), uint16_t(int_field(req, "port", 1, 65535)), error);
        break;
      case GatewayMessageType::Ok:
      case GatewayMessageType::Error:  // replies, never requests
        throw std::runtime_error("unknown message type '" + type + "'");
    }
    if (reply.is_null()) reply = ok ? gateway_message(GatewayMessageType::Ok) : gateway_error(error);
  } catch (const std::exception& e) {
    reply = gateway_error(type + ": " + e.what());
  }
  if (gateway_message_type(reply) == GatewayMessageType::Error && !reply.contains("request")) {  // which change failed
    reply["request"] = type;
    if (req.contains("index")) reply["index"] = req["index"];
  }
  if (req.contains("seq")) reply["seq"] = req["seq"];
  return reply.dump() + "\n";
}

}  // namespace dptun
