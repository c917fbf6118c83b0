// The agent-facing TLS 1.3 server context (mutual TLS) and RAII for OpenSSL handles. Callbacks record what a
// handshake showed (SNI, offered versions, the client certificate, the verification error) into the
// connection's HandshakeEvidence, so failures can be classified and logged.
#pragma once
#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "control/handshake_failure.hpp"

namespace dptun {

struct SslCtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;
using SslPtr = std::unique_ptr<SSL, SslFree>;

struct TlsFiles {
  std::string ca;    // CA bundle that signs agent certificates
  std::string cert;  // our certificate chain
  std::string key;   // our private key
  std::string crl;   // optional CRL file (PEM, one or more CRLs)
};

class TlsServer {
 public:
  // Loads files and sets TLS 1.3 only, client certificates required. Errors name the file and OpenSSL's reason.
  bool load(const TlsFiles& files, std::string& error);
  // A new server-side SSL for an accepted socket; `evidence` receives what the callbacks see.
  SslPtr make_ssl(int fd, HandshakeEvidence* evidence) const;
  static HandshakeEvidence* evidence(SSL* ssl);
  // dpctld's own certificate (leaf) as loaded; nullptr before load().
  X509* own_certificate() const;
  // Whether the CA file `ca` verifies dpctld's own certificate chain (what an agent given --ca ca would do).
  bool own_certificate_verifies_with(const std::string& ca, std::string& why) const;

 private:
  SslCtxPtr ctx_;
};

// Certificate details for logs and authorization.
PeerCertificate describe_certificate(X509* cert);
// Names a certificate may be authorized by: "CN=<common name>" and "DNS:<name>" / "URI:<uri>" per SAN.
std::vector<std::string> certificate_identities(X509* cert);
// Whether the certificate carries `host` (a DNS name, or an IPv4 address in an IP SAN).
bool certificate_has_name(X509* cert, const std::string& host);
// Its DNS and IP subjectAltNames ("dpctld.example.net", "10.99.2.1").
std::vector<std::string> certificate_names(X509* cert);
// The OpenSSL error queue as one string (and cleared).
std::string openssl_errors();

}  // namespace dptun
