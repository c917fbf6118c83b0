// The names the control plane's messages and commands carry, each spelled once (docs/control-plane.md):
// dpctld <-> dpgw message types and what they refuse with, the trace request's ops, the control socket's
// one-line stats requests, dpctl's commands (the "cmd" of dpctld's API) and the agent <-> dpctld message types.
// dpgw, dpctld, dpctl and dpagent write and read these names only through the tables here and dispatch with a
// switch over the enum (no default): a name one end learns and another does not handle fails to build
// (-Wswitch under werror). No JSON here: the data path may include it.
//
// Every enum runs 0..N-1 without gaps; name_of() is its wire spelling (lower-case ASCII, '_' and '.', never
// empty) and parse_name<E>() the value of a spelling, or nullopt for a name not in the table.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace dptun {

// "type" of a message on dpgw's control socket (docs/control-plane.md, "dpctld <-> dpgw").
enum class GatewayMessageType : uint8_t {
  Hello,       // dpctld -> dpgw and the reply: version, who controls the gateway
  Sync,        // the whole managed state
  TunnelSet,
  TunnelDel,
  SessionAdd,
  SessionDel,
  EntrySet,
  EntryDel,
  IngressSet,  // the whole list of hostname rules
  PairSet,     // the whole list of direct-path pairs whose pair frames dpgw relays (PairSpec)
  Status,      // sessions and counters (request and reply)
  Trace,       // `dpgw trace`: see TraceOp
  Ok,          // reply: the change is applied
  Error,       // reply: refused, with "reason" and perhaps a GatewayErrorCode
  // Both ways, no reply: UDP payloads of a MASQUE client whose capsules dpctld carries (MasqueSpec::request_id;
  // proto/gateway_messages.hpp). dpctld -> dpgw only from the controller, under its epoch.
  MasqueDatagrams,
};

constexpr std::string_view name_of(GatewayMessageType t) {
  switch (t) {
    case GatewayMessageType::Hello: return "hello";
    case GatewayMessageType::Sync: return "sync";
    case GatewayMessageType::TunnelSet: return "tunnel_set";
    case GatewayMessageType::TunnelDel: return "tunnel_del";
    case GatewayMessageType::SessionAdd: return "session_add";
    case GatewayMessageType::SessionDel: return "session_del";
    case GatewayMessageType::EntrySet: return "entry_set";
    case GatewayMessageType::EntryDel: return "entry_del";
    case GatewayMessageType::IngressSet: return "ingress_set";
    case GatewayMessageType::PairSet: return "pair_set";
    case GatewayMessageType::Status: return "status";
    case GatewayMessageType::Trace: return "trace";
    case GatewayMessageType::Ok: return "ok";
    case GatewayMessageType::Error: return "error";
    case GatewayMessageType::MasqueDatagrams: return "masque_datagrams";
  }
  return {};
}

// The messages that change dpgw's managed state: only the controller sends them, under its epoch.
constexpr bool changes_gateway_state(GatewayMessageType t) {
  switch (t) {
    case GatewayMessageType::Sync:
    case GatewayMessageType::TunnelSet:
    case GatewayMessageType::TunnelDel:
    case GatewayMessageType::SessionAdd:
    case GatewayMessageType::SessionDel:
    case GatewayMessageType::EntrySet:
    case GatewayMessageType::EntryDel:
    case GatewayMessageType::IngressSet:
    case GatewayMessageType::PairSet: return true;
    case GatewayMessageType::Hello:
    case GatewayMessageType::Status:
    case GatewayMessageType::Trace:
    case GatewayMessageType::Ok:
    case GatewayMessageType::Error:
    case GatewayMessageType::MasqueDatagrams: return false;
  }
  return false;
}

// "code" of an error reply from dpgw, for the refusals dpctld acts on.
enum class GatewayErrorCode : uint8_t {
  ControllerBusy,  // hello refused: another dpctld controls the gateway
  NotController,   // a change from a connection that is not the controller's
  Fenced,          // a change under an old epoch, or the old controller's connection after a takeover
  IndexInUse,      // session_add: dpgw still holds that index
};

constexpr std::string_view name_of(GatewayErrorCode c) {
  switch (c) {
    case GatewayErrorCode::ControllerBusy: return "controller_busy";
    case GatewayErrorCode::NotController: return "not_controller";
    case GatewayErrorCode::Fenced: return "fenced";
    case GatewayErrorCode::IndexInUse: return "index_in_use";
  }
  return {};
}

// "op" of a trace request ({"type":"trace","op":...}; docs/operations.md, "Packet trace").
enum class TraceOp : uint8_t { Start, Poll, Stop };

constexpr std::string_view name_of(TraceOp op) {
  switch (op) {
    case TraceOp::Start: return "start";
    case TraceOp::Poll: return "poll";
    case TraceOp::Stop: return "stop";
  }
  return {};
}

// A bare line (not JSON) on dpgw's control socket asking for the counters once (`dpgw stats`); the socket
// answers and closes.
enum class StatsRequest : uint8_t {
  Json,   // the counters as one JSON document
  Text,   // the same for people
  Stats,  // the older spelling of json, still answered
};

constexpr std::string_view name_of(StatsRequest r) {
  switch (r) {
    case StatsRequest::Json: return "json";
    case StatsRequest::Text: return "text";
    case StatsRequest::Stats: return "stats";
  }
  return {};
}

// "cmd" of a request on dpctld's API socket: what dpctl sends for `dpctl GROUP VERB` ("tunnel.add"; "stats"
// stands alone). docs/control-plane.md, "dpctl API".
enum class DpctlCommand : uint8_t {
  TunnelAdd,
  TunnelDel,
  TunnelList,
  TunnelShow,
  EntryAdd,
  EntryDel,
  EntryList,
  IngressAdd,
  IngressDel,
  IngressList,
  RouteAdd,  // udp+https routes for CONNECT-UDP clients (docs/masque.md)
  RouteDel,
  RouteList,
  SessionList,
  Stats,
};

constexpr std::string_view name_of(DpctlCommand c) {
  switch (c) {
    case DpctlCommand::TunnelAdd: return "tunnel.add";
    case DpctlCommand::TunnelDel: return "tunnel.del";
    case DpctlCommand::TunnelList: return "tunnel.list";
    case DpctlCommand::TunnelShow: return "tunnel.show";
    case DpctlCommand::EntryAdd: return "entry.add";
    case DpctlCommand::EntryDel: return "entry.del";
    case DpctlCommand::EntryList: return "entry.list";
    case DpctlCommand::IngressAdd: return "ingress.add";
    case DpctlCommand::IngressDel: return "ingress.del";
    case DpctlCommand::IngressList: return "ingress.list";
    case DpctlCommand::RouteAdd: return "route.add";
    case DpctlCommand::RouteDel: return "route.del";
    case DpctlCommand::RouteList: return "route.list";
    case DpctlCommand::SessionList: return "session.list";
    case DpctlCommand::Stats: return "stats";
  }
  return {};
}

// The commands that change what dpctld persists (queued and saved one at a time); the others only read.
constexpr bool changes_dpctld_state(DpctlCommand c) {
  switch (c) {
    case DpctlCommand::TunnelAdd:
    case DpctlCommand::TunnelDel:
    case DpctlCommand::EntryAdd:
    case DpctlCommand::EntryDel:
    case DpctlCommand::IngressAdd:
    case DpctlCommand::IngressDel:
    case DpctlCommand::RouteAdd:
    case DpctlCommand::RouteDel: return true;
    case DpctlCommand::RouteList:
    case DpctlCommand::TunnelList:
    case DpctlCommand::TunnelShow:
    case DpctlCommand::EntryList:
    case DpctlCommand::IngressList:
    case DpctlCommand::SessionList:
    case DpctlCommand::Stats: return false;
  }
  return false;
}

// "type" of a message on an agent's TLS connection to dpctld (docs/control-plane.md, "Agent registration").
enum class AgentMessageType : uint8_t {
  Register,    // agent -> dpctld
  Registered,  // dpctld -> agent: the session
  Refused,     // dpctld -> agent: why not (then dpctld closes)
  Ping,        // agent -> dpctld, every 10 s
  Pong,        // dpctld -> agent
  Candidates,  // agent -> dpctld: its direct-path candidates and NAT mapping (control/control_protocol.hpp)
  Peer,        // dpctld -> agent: the other end of a direct-path pair
  PeerGone,    // dpctld -> agent: the pair ended
  Path,        // agent -> dpctld: what its checks found for a pair
};

constexpr std::string_view name_of(AgentMessageType t) {
  switch (t) {
    case AgentMessageType::Register: return "register";
    case AgentMessageType::Registered: return "registered";
    case AgentMessageType::Refused: return "refused";
    case AgentMessageType::Ping: return "ping";
    case AgentMessageType::Pong: return "pong";
    case AgentMessageType::Candidates: return "candidates";
    case AgentMessageType::Peer: return "peer";
    case AgentMessageType::PeerGone: return "peer_gone";
    case AgentMessageType::Path: return "path";
  }
  return {};
}

// "role" of a session (registration, dpctld -> dpgw session messages, status, dpctl): an agent serves the
// tunnel; a visitor (dpagent visit) reaches its services and never carries its flows.
enum class SessionRole : uint8_t { Agent, Visitor };

constexpr std::string_view name_of(SessionRole r) {
  switch (r) {
    case SessionRole::Agent: return "agent";
    case SessionRole::Visitor: return "visitor";
  }
  return {};
}
constexpr std::string_view role_name(bool visitor) { return name_of(visitor ? SessionRole::Visitor : SessionRole::Agent); }

// How many names E has (its values are 0..count-1).
template <typename E>
constexpr size_t name_count() {
  size_t n = 0;
  while (!name_of(E(n)).empty()) ++n;
  return n;
}

template <typename E>
constexpr std::optional<E> parse_name(std::string_view name) {
  for (size_t v = 0; v < name_count<E>(); ++v)
    if (name_of(E(v)) == name) return E(v);
  return std::nullopt;
}

// Lower-case ASCII words joined by '_' or '.', and no name twice.
template <typename E>
constexpr bool names_well_formed() {
  constexpr size_t n = name_count<E>();
  for (size_t a = 0; a < n; ++a) {
    for (char c : name_of(E(a)))
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.')) return false;
    for (size_t b = a + 1; b < n; ++b)
      if (name_of(E(a)) == name_of(E(b))) return false;
  }
  return n > 0 && n < 256;
}

static_assert(names_well_formed<GatewayMessageType>());
static_assert(names_well_formed<GatewayErrorCode>());
static_assert(names_well_formed<TraceOp>());
static_assert(names_well_formed<StatsRequest>());
static_assert(names_well_formed<DpctlCommand>());
static_assert(names_well_formed<AgentMessageType>());
static_assert(names_well_formed<SessionRole>());

}  // namespace dptun
