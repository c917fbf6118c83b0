// dpagent's TLS 1.3 client over TCP with OpenSSL, shared by the control connection to dpctld (control_client.hpp)
// and `dpagent udp`'s HTTP/2 connections (h2_masque_client.hpp): one SSL_CTX with the client certificate, TLS 1.3
// only, the server verified against --ca; per connection the name or IPv4 address its certificate must carry and
// what the certificate showed (ServerCertSeen), so that a failure is classified as tls_failure.hpp does.
#pragma once
#include <openssl/types.h>

#include <memory>
#include <string>

#include "agent/tls_failure.hpp"

namespace dptun {

struct SslCtxFree {
  void operator()(SSL_CTX* c) const;
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;

// TLS 1.3 only, `cert` (a chain) and `key`, the server verified against the CAs of `ca` (SSL_VERIFY_PEER), the
// server's leaf certificate recorded (agent_ssl_prepare). nullptr with `error` naming the file that failed.
SslCtxPtr make_agent_ssl_ctx(const std::string& cert, const std::string& key, const std::string& ca,
                             std::string& error);

// Before the handshake of `ssl` (of a make_agent_ssl_ctx context): the certificate must carry `verify_name` (an IPv4
// address is checked as one, anything else as a DNS name); `sni` goes in the ClientHello unless empty; `*seen`
// (outliving the handshake) receives what the server's certificate showed, for advice when it fails.
void agent_ssl_prepare(SSL* ssl, const std::string& verify_name, const std::string& sni, ServerCertSeen* seen);

}  // namespace dptun
