#include "control/quic_handshake.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>

namespace dptun {

std::array<uint8_t, kQuicCidLen> quic_cid(uint32_t index, std::span<const uint8_t, 4> tail) {
  return {uint8_t(index >> 24), uint8_t(index >> 16), uint8_t(index >> 8), uint8_t(index),
          tail[0],              tail[1],              tail[2],             tail[3]};
}

std::optional<uint32_t> quic_cid_index(std::span<const uint8_t> cid) {
  if (cid.size() != kQuicCidLen) return std::nullopt;
  return uint32_t(cid[0]) << 24 | uint32_t(cid[1]) << 16 | uint32_t(cid[2]) << 8 | cid[3];
}

std::optional<std::vector<std::string>> parse_alpn_list(std::span<const uint8_t> body) {
  if (body.size() < 2) return std::nullopt;
  const size_t list_len = size_t(body[0]) << 8 | body[1];
  if (list_len != body.size() - 2 || list_len == 0) return std::nullopt;
  std::vector<std::string> names;
  for (size_t i = 2; i < body.size();) {
    const size_t n = body[i];
    if (n == 0 || i + 1 + n > body.size()) return std::nullopt;  // RFC 7301: names are never empty
    names.emplace_back(reinterpret_cast<const char*>(body.data() + i + 1), n);
    i += 1 + n;
  }
  return names;
}

std::vector<uint16_t> parse_supported_versions(std::span<const uint8_t> body) {
  std::vector<uint16_t> out;
  if (body.empty()) return out;
  const size_t n = std::min<size_t>(body[0], body.size() - 1);
  for (size_t i = 1; i + 1 <= n; i += 2) {
    const uint16_t v = uint16_t(body[i] << 8 | body[i + 1]);
    if ((v & 0x0f0f) != 0x0a0a) out.push_back(v);  // RFC 8701 GREASE values say nothing
  }
  return out;
}

std::string parse_server_name(std::span<const uint8_t> body) {
  // server_name_list length (2), then entries: name_type (1), length (2), name.
  if (body.size() <= 5 || body[2] != 0) return {};
  const size_t name_len = size_t(body[3]) << 8 | body[4];
  if (5 + name_len > body.size()) return {};
  return std::string(reinterpret_cast<const char*>(body.data() + 5), name_len);
}

std::optional<bool> tls13_certificate_is_empty(std::span<const uint8_t> body) {
  if (body.empty()) return std::nullopt;
  const size_t ctx = body[0];
  if (body.size() < 1 + ctx + 3) return std::nullopt;
  const size_t list = size_t(body[1 + ctx]) << 16 | size_t(body[2 + ctx]) << 8 | body[3 + ctx];
  if (list != body.size() - 4 - ctx) return std::nullopt;
  return list == 0;
}

namespace {
constexpr uint8_t kAlertHandshakeFailure = 40;
constexpr uint8_t kAlertProtocolVersion = 70;
constexpr uint8_t kAlertNoApplicationProtocol = 120;
constexpr uint8_t kAlertCertificateRequired = 116;

const char* alert_name(uint8_t a) {
  switch (a) {
    case 10: return "unexpected message";
    case 20: return "bad record mac";
    case 40: return "handshake failure";
    case 42: return "bad certificate";
    case 43: return "unsupported certificate";
    case 44: return "certificate revoked";
    case 45: return "certificate expired";
    case 46: return "certificate unknown";
    case 47: return "illegal parameter";
    case 48: return "unknown CA";
    case 50: return "decode error";
    case 51: return "decrypt error";
    case 70: return "protocol version";
    case 80: return "internal error";
    case 109: return "missing extension";
    case 110: return "unsupported extension";
    case 112: return "unrecognized name";
    case 116: return "certificate required";
    case 120: return "no application protocol";
    default: return nullptr;
  }
}
}  // namespace

unsigned long openssl_error_for_alert(uint8_t alert, bool received) {
  if (received) return ERR_PACK(ERR_LIB_SSL, 0, SSL_AD_REASON_OFFSET + alert);
  switch (alert) {
    case kAlertCertificateRequired: return ERR_PACK(ERR_LIB_SSL, 0, SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE);
    case kAlertProtocolVersion: return ERR_PACK(ERR_LIB_SSL, 0, SSL_R_UNSUPPORTED_PROTOCOL);
    case kAlertHandshakeFailure: return ERR_PACK(ERR_LIB_SSL, 0, SSL_R_NO_SHARED_CIPHER);
    case kAlertNoApplicationProtocol: return ERR_PACK(ERR_LIB_SSL, 0, SSL_R_NO_APPLICATION_PROTOCOL);
    default: return 0;
  }
}

std::string alert_reason_text(uint8_t alert, bool received) {
  const char* name = alert_name(alert);
  return std::string(received ? "alert received: " : "alert sent: ") +
         (name ? name : "number " + std::to_string(unsigned(alert)));
}

}  // namespace dptun
