#include "agent/tls_failure.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

namespace dptun {

const char* agent_tls_failure_name(AgentTlsFailure f) {
  switch (f) {
    case AgentTlsFailure::UntrustedServer: return "untrusted_server_cert";
    case AgentTlsFailure::NameMismatch: return "name_mismatch";
    case AgentTlsFailure::ServerCertExpired: return "server_cert_expired";
    case AgentTlsFailure::ClientCertRejected: return "client_cert_rejected";
    case AgentTlsFailure::ProtocolVersion: return "protocol_version";
    case AgentTlsFailure::Transient: return "transient";
  }
  return "transient";
}

static std::string reason_text(unsigned long e) {
  const char* r = ERR_reason_error_string(e);
  return r ? r : "alert " + std::to_string(ERR_GET_REASON(e));
}

static std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out.empty() ? "none" : out;
}

AgentTlsVerdict classify_agent_tls(long verify_result, unsigned long ssl_error, const std::string& server_name,
                                   const std::string& ca_file, const ServerCertSeen& cert) {
  AgentTlsVerdict v;
  auto set = [&](AgentTlsFailure kind, bool permanent, std::string advice) {
    v.kind = kind;
    v.permanent = permanent;
    v.reason = agent_tls_failure_name(kind);
    v.advice = std::move(advice);
    return v;
  };
  switch (verify_result) {
    case X509_V_OK: break;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      return set(AgentTlsFailure::NameMismatch, true,
                 "dpctld's certificate (" + cert.subject + ") does not carry '" + server_name + "'; it names " +
                     join(cert.names) + ": connect with --server-name NAME set to one of those, or reissue "
                     "dpctld's certificate with '" + server_name + "' in its subjectAltName");
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return set(AgentTlsFailure::ServerCertExpired, true,
                 "dpctld's certificate (" + cert.subject + ", valid until " + cert.not_after + ") is " +
                     (verify_result == X509_V_ERR_CERT_HAS_EXPIRED ? "expired" : "not valid yet") +
                     ": renew it on the gateway host (or check this host's clock)");
    default:
      return set(AgentTlsFailure::UntrustedServer, true,
                 std::string("--ca ") + ca_file + " does not verify dpctld's certificate (" + cert.subject +
                     ", issued by " + cert.issuer + "): " + X509_verify_cert_error_string(verify_result) +
                     "; give --ca the CA that signed dpctld's certificate");
  }
  if (ERR_GET_LIB(ssl_error) == ERR_LIB_SSL) {
    switch (ERR_GET_REASON(ssl_error)) {
      case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
      case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
      case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
      case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
      case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
      case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
      case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
      case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
        return set(AgentTlsFailure::ClientCertRejected, true,
                   std::string("dpctld refused this agent's certificate (") + reason_text(ssl_error) +
                       "): its failure log names the reason (unknown_ca, expired, revoked, chain); give --cert a "
                       "certificate the CA dpctld trusts signed, valid and not revoked");
      case SSL_R_UNSUPPORTED_PROTOCOL:
      case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
      case SSL_R_WRONG_VERSION_NUMBER:
      case SSL_R_NO_PROTOCOLS_AVAILABLE:
        return set(AgentTlsFailure::ProtocolVersion, true,
                   "no common TLS version with the server (dpctld speaks TLS 1.3 only): is --server really "
                   "dpctld's agent port?");
      default: break;
    }
  }
  return set(AgentTlsFailure::Transient, false, "");
}

}  // namespace dptun
