// The agent-facing TLS 1.3 server context (mutual TLS) and RAII for OpenSSL handles. Callbacks record what a
// handshake showed (SNI, offered versions, the client certificate, the verification error) into the
// connection's HandshakeEvidence, so failures can be classified and logged.
#pragma once
#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <vector>

#include "common/openssl_errors.hpp"  // openssl_errors()
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
struct X509Free {
  void operator()(X509* c) const { X509_free(c); }
};
struct X509StackFree {
  void operator()(STACK_OF(X509)* s) const { sk_X509_pop_free(s, X509_free); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using X509StackPtr = std::unique_ptr<STACK_OF(X509), X509StackFree>;

struct TlsFiles {
  std::string ca;    // CA bundle that signs agent certificates
  std::string cert;  // our certificate chain
  std::string key;   // our private key
  std::string crl;   // optional CRL file (PEM, one or more CRLs)
  bool crl_chain = false;  // check every certificate of an agent's chain (its CAs too), not only the agent's own
};

// One CRL of the CRL file: whose it is and until when it may be used (RFC 5280 section 5.1.2.5).
struct CrlInfo {
  std::string issuer;
  int64_t next_update = 0;  // unix seconds; 0 when the CRL has none
  bool expired = false;     // nextUpdate has passed: OpenSSL refuses every certificate it covers
};

class TlsServer {
 public:
  // Loads files and sets TLS 1.3 only, client certificates required. Errors name the file and OpenSSL's reason.
  // Loading again (a reload) replaces the context only when everything loaded: on error the old one stays, and
  // handshakes under way finish with the context they began with.
  bool load(const TlsFiles& files, std::string& error);
  // ALPN protocols this server selects (RFC 7301), in order of preference; set before load(). A client offering none
  // of them gets no ALPN and the handshake goes on. Empty (the agent port): no ALPN.
  void set_alpn(std::vector<std::string> protocols) { alpn_ = std::move(protocols); }
  // A new server-side SSL for an accepted socket; `evidence` receives what the callbacks see.
  SslPtr make_ssl(int fd, HandshakeEvidence* evidence) const;
  static HandshakeEvidence* evidence(SSL* ssl);
  // The CRLs loaded, and the CAs in the CA bundle that have none in the CRL file (agents with certificates they
  // issued are refused: "unable to get certificate CRL").
  const std::vector<CrlInfo>& crls() const { return crls_; }
  const std::vector<std::string>& cas_without_crl() const { return cas_without_crl_; }
  // dpctld's own certificate (leaf) as loaded; nullptr before load().
  X509* own_certificate() const;
  // Verifies an agent certificate (and the chain it sent) as a handshake now would: CA, CRLs, validity. Used to
  // re-check registered agents after a reload (a CRL that now revokes one cuts it off).
  bool verify_client(X509* leaf, STACK_OF(X509)* chain, std::string& why) const;
  // Verifies a client's certificate chain as the TCP handshake does (same store: CA, CRLs, flags, purpose
  // sslclient), recording into `evidence` what the OpenSSL verify callback records there: the certificate, the
  // first X509_V_ERR_* and the issuer of the certificate it failed on. dpctld's QUIC handshake (GnuTLS) calls it.
  bool verify_peer(X509* leaf, STACK_OF(X509)* chain, HandshakeEvidence& evidence) const;
  // Whether the CA file `ca` verifies dpctld's own certificate chain (what an agent given --ca ca would do).
  bool own_certificate_verifies_with(const std::string& ca, std::string& why) const;

 private:
  SslCtxPtr ctx_;
  std::vector<std::string> alpn_;
  std::vector<CrlInfo> crls_;
  std::vector<std::string> cas_without_crl_;
};

// Certificate details for logs and authorization.
PeerCertificate describe_certificate(X509* cert);
// Names a certificate may be authorized by: "CN=<common name>" and "DNS:<name>" / "URI:<uri>" per SAN.
std::vector<std::string> certificate_identities(X509* cert);
// Whether the certificate carries `host` (a DNS name, or an IPv4 address in an IP SAN).
bool certificate_has_name(X509* cert, const std::string& host);
// Its DNS and IP subjectAltNames ("dpctld.example.net", "10.99.2.1").
std::vector<std::string> certificate_names(X509* cert);

}  // namespace dptun
