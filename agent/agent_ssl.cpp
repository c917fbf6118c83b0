#include "agent/agent_ssl.hpp"

#include <arpa/inet.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/openssl_errors.hpp"

namespace dptun {

namespace {

int g_seen_index = -1;  // SSL ex_data: the ServerCertSeen of a connection

// Records what the server's certificate shows, for advice when verification fails; never changes the verdict.
int remember_server_cert(int preverify_ok, X509_STORE_CTX* store) {
  SSL* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  auto* seen = ssl && g_seen_index >= 0 ? static_cast<ServerCertSeen*>(SSL_get_ex_data(ssl, g_seen_index)) : nullptr;
  X509* cert = X509_STORE_CTX_get0_cert(store);  // the leaf, whatever depth is being checked
  if (!seen || !cert || !seen->subject.empty()) return preverify_ok;
  *seen = describe_server_cert(cert);
  return preverify_ok;
}

}  // namespace

void SslCtxFree::operator()(SSL_CTX* c) const { SSL_CTX_free(c); }

SslCtxPtr make_agent_ssl_ctx(const std::string& cert, const std::string& key, const std::string& ca,
                             std::string& error) {
  if (g_seen_index < 0) g_seen_index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) {
    error = "cannot create a TLS context: " + openssl_errors();
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION);
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), cert.c_str()) != 1) {
    error = cert + ": cannot load the certificate: " + openssl_errors();
    return nullptr;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), key.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx.get()) != 1) {
    error = key + ": cannot load the private key (or it does not match the certificate): " + openssl_errors();
    return nullptr;
  }
  if (SSL_CTX_load_verify_locations(ctx.get(), ca.c_str(), nullptr) != 1) {
    error = ca + ": cannot load the CA bundle: " + openssl_errors();
    return nullptr;
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, remember_server_cert);
  return ctx;
}

void agent_ssl_prepare(SSL* ssl, const std::string& verify_name, const std::string& sni, ServerCertSeen* seen) {
  *seen = ServerCertSeen{};
  SSL_set_ex_data(ssl, g_seen_index, seen);
  if (!sni.empty()) SSL_set_tlsext_host_name(ssl, sni.c_str());
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  in_addr tmp;
  if (inet_pton(AF_INET, verify_name.c_str(), &tmp) == 1)
    X509_VERIFY_PARAM_set1_ip_asc(param, verify_name.c_str());
  else
    X509_VERIFY_PARAM_set1_host(param, verify_name.c_str(), 0);
}

}  // namespace dptun
