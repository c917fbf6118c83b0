#include "control/handshake_failure.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <cstdio>
#include <ctime>

#include "common/json_writer.hpp"
#include "common/log.hpp"
#include "common/uuid.hpp"

namespace dptun {

const char* handshake_failure_name(HandshakeFailure f) {
  switch (f) {
    case HandshakeFailure::Expired: return "expired";
    case HandshakeFailure::NotYetValid: return "not_yet_valid";
    case HandshakeFailure::UnknownCa: return "unknown_ca";
    case HandshakeFailure::Chain: return "chain";
    case HandshakeFailure::Revoked: return "revoked";
    case HandshakeFailure::CrlMissing: return "crl_missing";
    case HandshakeFailure::CrlExpired: return "crl_expired";
    case HandshakeFailure::NoClientCert: return "no_client_cert";
    case HandshakeFailure::ProtocolVersion: return "protocol_version";
    case HandshakeFailure::NoSharedCipher: return "no_shared_cipher";
    case HandshakeFailure::NotTls: return "not_tls";
    case HandshakeFailure::Timeout: return "timeout";
    case HandshakeFailure::PeerRejectedServerCert: return "peer_rejected_server_cert";
    case HandshakeFailure::Shed: return "shed";
    case HandshakeFailure::Other: return "other";
    case HandshakeFailure::Count: break;
  }
  return "other";
}

static HandshakeFailure from_verify_error(int v) {
  switch (v) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return HandshakeFailure::Expired;
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return HandshakeFailure::NotYetValid;
    case X509_V_ERR_CERT_REVOKED:
      return HandshakeFailure::Revoked;
    case X509_V_ERR_UNABLE_TO_GET_CRL:
      return HandshakeFailure::CrlMissing;
    case X509_V_ERR_CRL_HAS_EXPIRED:
      return HandshakeFailure::CrlExpired;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
      return HandshakeFailure::UnknownCa;
    default:
      return HandshakeFailure::Chain;  // signature, purpose, path length, CRL problems, ...
  }
}

HandshakeFailure classify_handshake(const HandshakeEvidence& e) {
  if (e.shed) return HandshakeFailure::Shed;
  if (e.timed_out) return HandshakeFailure::Timeout;
  // A TLS connection starts with a handshake record (content type 22).
  if (e.first_byte >= 0 && e.first_byte != 0x16) return HandshakeFailure::NotTls;
  if (e.verify_error) return from_verify_error(e.verify_error);
  if (ERR_GET_LIB(e.ssl_error) == ERR_LIB_SSL) {
    switch (ERR_GET_REASON(e.ssl_error)) {
      case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
        return HandshakeFailure::NoClientCert;
      case SSL_R_UNSUPPORTED_PROTOCOL:
      case SSL_R_WRONG_VERSION_NUMBER:
      case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
      case SSL_R_NO_PROTOCOLS_AVAILABLE:
        return HandshakeFailure::ProtocolVersion;
      case SSL_R_NO_SHARED_CIPHER:
        return HandshakeFailure::NoSharedCipher;
      case SSL_R_HTTP_REQUEST:
      case SSL_R_HTTPS_PROXY_REQUEST:
        return HandshakeFailure::NotTls;
      case SSL_R_CERTIFICATE_VERIFY_FAILED:
        return HandshakeFailure::Chain;
      // The agent sent an alert about our certificate: its --ca does not verify it (unknown_ca), or it lacks the
      // name the agent connected to, or has expired.
      case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
      case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
      case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
      case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
      case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
      case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
        return HandshakeFailure::PeerRejectedServerCert;
      default:
        break;
    }
  }
  return HandshakeFailure::Other;
}

std::string tls_version_name(uint16_t v) {
  switch (v) {
    case 0x0300: return "SSLv3";
    case 0x0301: return "TLSv1.0";
    case 0x0302: return "TLSv1.1";
    case 0x0303: return "TLSv1.2";
    case 0x0304: return "TLSv1.3";
    default: {
      char buf[8];
      snprintf(buf, sizeof buf, "0x%04x", v);
      return buf;
    }
  }
}

// What an unauthenticated client controls (SNI, certificate names) is logged at most this long, then "...".
static std::string capped(const std::string& s, size_t max = 256) {
  return s.size() <= max ? s : s.substr(0, max) + "...";
}

std::string handshake_failure_json(const HandshakeEvidence& e, HandshakeFailure category, uint64_t realtime_ns) {
  JsonWriter j;
  j.begin_object().field("time", iso8601_utc(realtime_ns)).field("event", "agent_tls_handshake_failed");
  j.field("transport", e.transport);
  j.field("client", e.client.str());
  j.field("reason", handshake_failure_name(category));
  if (e.sni.empty())
    j.key("sni").null();
  else
    j.field("sni", capped(e.sni));
  // Agents put their tunnel id in the SNI ("<uuid>" or "<uuid>.anything").
  std::optional<Uuid> tunnel = e.sni.size() >= 36 ? Uuid::parse(e.sni.substr(0, 36)) : std::nullopt;
  if (tunnel)
    j.field("tunnel", tunnel->str());
  else
    j.key("tunnel").null();
  j.key("offered_versions").begin_array();
  for (uint16_t v : e.offered_versions) j.value(tls_version_name(v));
  j.end_array();
  if (std::string_view(e.transport) == "quic") {
    j.key("offered_alpn").begin_array();
    for (const std::string& a : e.offered_alpn) j.value(capped(a, 64));
    j.end_array();
  }
  if (e.certificate) {
    j.key("certificate").begin_object();
    j.field("subject", capped(e.certificate->subject))
        .field("issuer", capped(e.certificate->issuer))
        .field("serial", capped(e.certificate->serial, 64))
        .field("not_after", e.certificate->not_after);
    j.end_object();
  } else {
    j.key("certificate").null();
  }
  if (e.verify_error)
    j.field("verify_error", X509_verify_cert_error_string(e.verify_error));
  else
    j.key("verify_error").null();
  if (category == HandshakeFailure::CrlMissing || category == HandshakeFailure::CrlExpired)
    j.field("crl_issuer", capped(e.failed_cert_issuer));
  j.field("openssl_reason", e.openssl_reason.empty() ? std::string(e.shed        ? "unfinished while newer connections waited"
                                                                    : e.timed_out ? "handshake timed out"
                                                                               : e.closed_early ? "connection closed during the handshake"
                                                                                                : "unknown")
                                                     : e.openssl_reason);
  j.end_object();
  return j.str();
}

}  // namespace dptun
