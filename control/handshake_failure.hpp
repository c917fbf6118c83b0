// Failed agent TLS handshakes: what we know about each (peer, SNI, offered versions, certificate), the
// failure category derived from OpenSSL's errors, and the one JSON line that is logged for it.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/inet.hpp"

namespace dptun {

enum class HandshakeFailure : uint8_t {
  Expired,
  NotYetValid,
  UnknownCa,
  Chain,
  Revoked,
  CrlMissing,  // no CRL from the issuer of a certificate CRLs are checked for (tls.crl must hold it)
  CrlExpired,  // that CRL's nextUpdate has passed: a fresh CRL is due
  NoClientCert,
  ProtocolVersion,
  NoSharedCipher,
  NotTls,
  Timeout,
  PeerRejectedServerCert,  // the agent refused dpctld's certificate (its --ca, or a name the certificate lacks)
  Shed,  // unfinished while too many others from its address (or in total) waited: the oldest gives way
  Other,
  Count
};

const char* handshake_failure_name(HandshakeFailure f);

struct PeerCertificate {
  std::string subject, issuer, serial, not_after;  // RFC 2253 names, hex serial, ISO 8601 time
};

// Everything collected while a handshake ran; filled by the TLS callbacks and the listener.
struct HandshakeEvidence {
  const char* transport = "tcp";  // "tcp" (the TLS port, agent_listen) or "quic" (agent_quic_listen)
  Endpoint client;
  std::string sni;
  std::vector<uint16_t> offered_versions;  // from supported_versions, or the legacy version alone
  std::vector<std::string> offered_alpn;   // QUIC: the ALPN names the client offered
  std::optional<PeerCertificate> certificate;
  int verify_error = 0;         // X509_V_ERR_* recorded by the verify callback (0: none)
  std::string failed_cert_issuer;  // the issuer of the certificate verification failed on (whose CRL it was)
  unsigned long ssl_error = 0;  // first OpenSSL error code of the failure (ERR_get_error)
  std::string openssl_reason;   // its text
  int first_byte = -1;          // the first byte the client sent, -1 if none
  bool timed_out = false;
  bool closed_early = false;    // the client closed before the handshake finished
  bool shed = false;            // closed unfinished to make room (AgentListener limits)
};

// Maps the evidence to one category. Pure: unit-tested against OpenSSL error codes.
HandshakeFailure classify_handshake(const HandshakeEvidence& e);

// "TLSv1.3" for 0x0304 and so on; "0x7f1c" for anything unknown.
std::string tls_version_name(uint16_t v);

// The JSON line (no trailing newline) for a failure, with a timestamp, every field of the evidence, the
// category, OpenSSL's reason, and the tunnel id when the SNI names one.
std::string handshake_failure_json(const HandshakeEvidence& e, HandshakeFailure category, uint64_t realtime_ns);

}  // namespace dptun
