// Why dpagent's TLS connection to dpctld failed, seen from the agent, and what the operator should change.
// Permanent failures (a configuration mistake on either side) make a first registration give up: dpagent exits
// non-zero with the advice, as it does when dpctld refuses the registration. Transient ones are retried.
// Classified from OpenSSL's verification result (X509_V_ERR_*) and first error (an alert dpctld sent, in
// TLS 1.3 only seen on the first read after the handshake).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dptun {

enum class AgentTlsFailure : uint8_t {
  UntrustedServer,     // --ca does not verify dpctld's certificate
  NameMismatch,        // dpctld's certificate does not carry the name or address dpagent connects to
  ServerCertExpired,   // ... or is not valid yet
  ClientCertRejected,  // dpctld refused this agent's certificate (its failure log says why)
  ProtocolVersion,     // no common TLS version (dpctld speaks TLS 1.3 only)
  Transient,           // anything else: the connection broke, timed out, was refused
};

// What the verify callback saw of dpctld's certificate (for the advice).
struct ServerCertSeen {
  std::string subject, issuer;
  std::vector<std::string> names;  // "DNS:x", "IP:y"
  std::string not_after;
};

// Subject, issuer, names and notAfter of dpctld's certificate (X509*; OpenSSL's types stay out of this header).
ServerCertSeen describe_server_cert(struct x509_st* cert);

struct AgentTlsVerdict {
  AgentTlsFailure kind = AgentTlsFailure::Transient;
  bool permanent = false;
  std::string reason;  // short: "untrusted_server", "name_mismatch", ...
  std::string advice;  // one sentence: what to change, naming files and names
};

// verify_result: SSL_get_verify_result (X509_V_OK when verification passed); ssl_error: the first OpenSSL error
// (0 when none); server_name: what the certificate was checked against; ca_file: --ca.
AgentTlsVerdict classify_agent_tls(long verify_result, unsigned long ssl_error, const std::string& server_name,
                                   const std::string& ca_file, const ServerCertSeen& cert);

const char* agent_tls_failure_name(AgentTlsFailure f);

}  // namespace dptun
