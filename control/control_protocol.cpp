#include "control/control_protocol.hpp"

#include <algorithm>
#include <cstring>

#include <nlohmann/json.hpp>

#include "common/json_fields.hpp"
#include "proto/control_names.hpp"

namespace dptun {

const char* nat_mapping_name(NatMapping m) {
  switch (m) {
    case NatMapping::Unknown: return "unknown";
    case NatMapping::None: return "none";
    case NatMapping::EndpointIndependent: return "endpoint-independent";
    case NatMapping::EndpointDependent: return "endpoint-dependent";
    case NatMapping::Count: break;
  }
  return "unknown";
}

const char* candidate_type_name(CandidateType t) {
  switch (t) {
    case CandidateType::Host: return "host";
    case CandidateType::ServerReflexive: return "srflx";
    case CandidateType::Count: break;
  }
  return "host";
}

bool candidate_address_ok(const Endpoint& e) {
  if (!e.ip.is_v4() || e.port == 0) return false;
  const uint32_t a = e.ip.v4();
  const uint32_t top = a >> 24;
  return top != 0 && top != 127 && top < 224;
}

std::string candidates_message(const CandidateReport& r) {
  using nlohmann::json;
  json list = json::array();
  for (const Candidate& c : r.candidates)
    list.push_back({{"type", candidate_type_name(c.type)}, {"address", c.address.str()}});
  return json{{"type", name_of(AgentMessageType::Candidates)}, {"nat", nat_mapping_name(r.nat)}, {"candidates", list}}
      .dump();
}

namespace {

template <typename E>
std::optional<E> enum_named(const nlohmann::json& v, const char* (*name)(E)) {
  if (!v.is_string()) return std::nullopt;
  for (size_t i = 0; i < size_t(E::Count); ++i)
    if (v.get_ref<const std::string&>() == name(E(i))) return E(i);
  return std::nullopt;
}

// Reads a candidates report into `out`; returns what is wrong with it, or "" when nothing is.
std::string parse_candidates(const nlohmann::json& msg, CandidateReport& out) {
  const nlohmann::json* nat = field(msg, "nat");
  const std::optional<NatMapping> mapping = nat ? enum_named(*nat, nat_mapping_name) : std::nullopt;
  if (!mapping) return "candidates: 'nat' must be unknown, none, endpoint-independent or endpoint-dependent";
  out.nat = *mapping;
  const nlohmann::json* list = field(msg, "candidates");
  if (!list || !list->is_array()) return "candidates: 'candidates' must be an array";
  if (list->size() > kMaxCandidates) return "candidates: more than " + std::to_string(kMaxCandidates);
  for (const nlohmann::json& c : *list) {
    if (!c.is_object()) return "candidates: each candidate is an object";
    const nlohmann::json* type = field(c, "type");
    const std::optional<CandidateType> t = type ? enum_named(*type, candidate_type_name) : std::nullopt;
    if (!t) return "candidates: a candidate's 'type' must be host or srflx";
    const nlohmann::json* addr = field(c, "address");
    const std::optional<Endpoint> e =
        addr && addr->is_string() ? Endpoint::parse(addr->get_ref<const std::string&>()) : std::nullopt;
    if (!e || !candidate_address_ok(*e))
      return "candidates: a candidate's 'address' must be a unicast IPv4 address and port (not loopback)";
    const Candidate cand{*t, *e};
    if (std::find(out.candidates.begin(), out.candidates.end(), cand) == out.candidates.end())
      out.candidates.push_back(cand);
  }
  return {};
}

}  // namespace

AgentMessage parse_agent_message(std::string_view line) {
  using nlohmann::json;
  AgentMessage m;
  const json msg = json::parse(line, nullptr, false);
  if (msg.is_discarded() || !msg.is_object() || !field(msg, "type") || !msg["type"].is_string()) {
    m.error = "malformed message (expected one JSON object per line)";
    return m;
  }
  const std::string type = msg["type"];
  // An agent sends register and ping; anything else, dpctld's own messages included, is unknown from one.
  std::optional<AgentMessageType> known = parse_name<AgentMessageType>(type);
  if (known) {
    switch (*known) {
      case AgentMessageType::Ping:
        m.kind = AgentMessage::Kind::Ping;
        return m;
      case AgentMessageType::Register: break;
      case AgentMessageType::Candidates:
        m.kind = AgentMessage::Kind::Candidates;
        m.error = parse_candidates(msg, m.candidates);
        return m;
      case AgentMessageType::Registered:
      case AgentMessageType::Refused:
      case AgentMessageType::Pong: known.reset(); break;
    }
  }
  if (!known) {
    m.error = "unknown message type '" + type + "'";
    return m;
  }
  if (!field(msg, "version") || json_int_in(msg["version"], 0, 1 << 30) != kControlProtocolVersion) {
    m.bad_version = true;
    m.error = "unsupported protocol version (this dpctld speaks " + std::to_string(kControlProtocolVersion) + ")";
    return m;
  }
  if (!field(msg, "tunnel") || !msg["tunnel"].is_string()) {
    m.error = "register: 'tunnel' (id or name) is required";
    return m;
  }
  if (field(msg, "weight")) {
    auto w = json_int_in(msg["weight"], 1, 255);
    if (!w) {
      m.error = "weight must be 1..255";
      return m;
    }
    m.weight = int(*w);
  }
  if (field(msg, "name")) {
    if (!msg["name"].is_string()) {
      m.error = "register: 'name' must be a string";
      return m;
    }
    m.name = msg["name"].get<std::string>().substr(0, 64);
  }
  if (const json* r = field(msg, "role")) {
    auto role = r->is_string() ? parse_name<SessionRole>(r->get<std::string>()) : std::nullopt;
    if (!role) {
      m.error = "register: 'role' must be \"agent\" or \"visitor\"";
      return m;
    }
    m.visitor = *role == SessionRole::Visitor;
  }
  m.tunnel = msg["tunnel"].get<std::string>();
  m.kind = AgentMessage::Kind::Register;
  return m;
}


std::vector<uint8_t> export_session_secret(SSL* ssl, uint32_t session_index) {
  std::vector<uint8_t> secret(32);
  const uint8_t context[4] = {uint8_t(session_index >> 24), uint8_t(session_index >> 16), uint8_t(session_index >> 8),
                              uint8_t(session_index)};
  if (SSL_export_keying_material(ssl, secret.data(), secret.size(), kExporterLabel, std::strlen(kExporterLabel),
                                 context, sizeof context, 1) != 1)
    return {};
  return secret;
}

}  // namespace dptun
