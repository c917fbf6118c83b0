#include "control/control_protocol.hpp"

#include <cstring>

#include <nlohmann/json.hpp>

#include "common/json_fields.hpp"
#include "proto/control_names.hpp"

namespace dptun {

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
