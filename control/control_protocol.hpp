// The agent <-> dpctld protocol on the TLS connection (docs/control-protocol.md): newline-delimited JSON.
#pragma once
#include <cstdint>
#include <openssl/ssl.h>
#include <span>
#include <string>
#include <vector>

namespace dptun {

inline constexpr int kControlProtocolVersion = 1;
inline constexpr char kExporterLabel[] = "EXPORTER-dptun-relay-v1";

// Both ends derive a session's 32-byte base secret from the TLS 1.3 exporter, bound to the session index.
// Returns an empty vector when OpenSSL fails.
std::vector<uint8_t> export_session_secret(SSL* ssl, uint32_t session_index);

}  // namespace dptun
