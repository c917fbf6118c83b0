// The agent <-> dpctld protocol on the TLS connection (docs/control-protocol.md): newline-delimited JSON.
#pragma once
#include <cstdint>
#include <openssl/ssl.h>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dptun {

inline constexpr int kControlProtocolVersion = 1;
inline constexpr char kExporterLabel[] = "EXPORTER-dptun-relay-v1";

// An agent's message to dpctld, read (control/control_protocol.cpp): a ping, or a registration with its fields
// checked, or what is wrong with it (a refusal reason and the text the agent gets).
struct AgentMessage {
  enum class Kind : uint8_t { Ping, Register, Invalid } kind = Kind::Invalid;
  std::string tunnel;  // id or name
  int weight = 1;      // 1..255
  std::string name;    // at most 64 bytes
  bool visitor = false;
  bool bad_version = false;  // Invalid because of the protocol version (not the request's shape)
  std::string error;         // Invalid: why
};
AgentMessage parse_agent_message(std::string_view line);

// Both ends derive a session's 32-byte base secret from the TLS 1.3 exporter, bound to the session index.
// Returns an empty vector when OpenSSL fails.
std::vector<uint8_t> export_session_secret(SSL* ssl, uint32_t session_index);

}  // namespace dptun
