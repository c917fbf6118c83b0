#include "control/tls_server.hpp"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "control/quic_handshake.hpp"

namespace dptun {

namespace {

int g_evidence_index = -1;

std::string name_text(X509_NAME* name) {
  if (!name) return {};
  BIO* bio = BIO_new(BIO_s_mem());
  X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string s(data, size_t(len));
  BIO_free(bio);
  return s;
}

int verify_callback(int preverify_ok, X509_STORE_CTX* store) {
  SSL* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  HandshakeEvidence* ev = ssl ? TlsServer::evidence(ssl) : nullptr;
  if (ev) {
    if (!ev->certificate) {
      if (X509* leaf = X509_STORE_CTX_get0_cert(store)) ev->certificate = describe_certificate(leaf);
    }
    if (!preverify_ok && !ev->verify_error) {
      ev->verify_error = X509_STORE_CTX_get_error(store);
      // Whose CRL was missing or stale: the issuer of the certificate being checked.
      if (X509* cur = X509_STORE_CTX_get_current_cert(store)) ev->failed_cert_issuer = name_text(X509_get_issuer_name(cur));
    }
  }
  return preverify_ok;
}

// Records SNI and offered versions from the ClientHello; never rejects anything itself.
int client_hello_callback(SSL* ssl, int* /*alert*/, void* /*arg*/) {
  HandshakeEvidence* ev = TlsServer::evidence(ssl);
  if (!ev) return SSL_CLIENT_HELLO_SUCCESS;
  const unsigned char* p;
  size_t len;
  if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_supported_versions, &p, &len))
    ev->offered_versions = parse_supported_versions({p, len});
  if (ev->offered_versions.empty()) ev->offered_versions.push_back(uint16_t(SSL_client_hello_get0_legacy_version(ssl)));
  if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len)) ev->sni = parse_server_name({p, len});
  return SSL_CLIENT_HELLO_SUCCESS;
}

// The first of our protocols (in our order) the client offers; none of them: no ALPN (the front end's default).
int alpn_select_callback(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                         unsigned int inlen, void* arg) {
  const auto* ours = static_cast<const std::vector<std::string>*>(arg);
  for (const std::string& want : *ours)
    for (unsigned i = 0; i < inlen;) {
      const unsigned len = in[i];
      if (i + 1 + len > inlen) return SSL_TLSEXT_ERR_NOACK;
      if (len == want.size() && memcmp(in + i + 1, want.data(), len) == 0) {
        *out = in + i + 1;
        *outlen = static_cast<unsigned char>(len);
        return SSL_TLSEXT_ERR_OK;
      }
      i += 1 + len;
    }
  return SSL_TLSEXT_ERR_NOACK;
}

}  // namespace

PeerCertificate describe_certificate(X509* cert) {
  PeerCertificate c;
  c.subject = name_text(X509_get_subject_name(cert));
  c.issuer = name_text(X509_get_issuer_name(cert));
  if (BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr)) {
    if (char* hex = BN_bn2hex(bn)) {
      c.serial = hex;
      OPENSSL_free(hex);
    }
    BN_free(bn);
  }
  tm t{};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &t) == 1) {
    char buf[96];
    snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02dZ", t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour,
             t.tm_min, t.tm_sec);
    c.not_after = buf;
  }
  return c;
}

std::vector<std::string> certificate_identities(X509* cert) {
  std::vector<std::string> ids;
  X509_NAME* subject = X509_get_subject_name(cert);
  int idx = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (idx >= 0) {
    ASN1_STRING* s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx));
    unsigned char* utf8 = nullptr;
    int n = ASN1_STRING_to_UTF8(&utf8, s);
    if (n >= 0) {
      ids.push_back("CN=" + std::string(reinterpret_cast<char*>(utf8), size_t(n)));
      OPENSSL_free(utf8);
    }
  }
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); ++i) {
    GENERAL_NAME* g = sk_GENERAL_NAME_value(sans, i);
    if (g->type == GEN_DNS || g->type == GEN_URI) {
      ASN1_IA5STRING* s = g->type == GEN_DNS ? g->d.dNSName : g->d.uniformResourceIdentifier;
      ids.push_back(std::string(g->type == GEN_DNS ? "DNS:" : "URI:") +
                    std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), size_t(ASN1_STRING_length(s))));
    }
  }
  GENERAL_NAMES_free(sans);
  return ids;
}

bool TlsServer::load(const TlsFiles& files, std::string& error) {
  if (g_evidence_index < 0) g_evidence_index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) {
    error = "cannot create a TLS context: " + openssl_errors();
    return false;
  }
  // A missing or unreadable file says so (OpenSSL's own error queue for it is three lines of library names).
  for (const std::string* f : {&files.ca, &files.cert, &files.key, &files.crl}) {
    if (f->empty()) continue;
    FILE* probe = fopen(f->c_str(), "r");
    if (!probe) {
      error = "cannot read " + *f + ": " + strerror(errno) +
              " (dptun-pki makes a CA, dpctld's certificate and a CRL: dptun-pki --help)";
      return false;
    }
    fclose(probe);
  }
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION);
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx.get(), 0);
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), files.cert.c_str()) != 1) {
    error = files.cert + ": cannot load the certificate chain: " + openssl_errors();
    return false;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), files.key.c_str(), SSL_FILETYPE_PEM) != 1) {
    error = files.key + ": cannot load the private key: " + openssl_errors();
    return false;
  }
  if (SSL_CTX_check_private_key(ctx.get()) != 1) {
    error = files.key + ": the private key does not match " + files.cert;
    return false;
  }
  if (SSL_CTX_load_verify_locations(ctx.get(), files.ca.c_str(), nullptr) != 1) {
    error = files.ca + ": cannot load the CA bundle: " + openssl_errors();
    return false;
  }
  if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(files.ca.c_str())) SSL_CTX_set_client_CA_list(ctx.get(), names);
  std::vector<CrlInfo> crls;
  std::vector<std::string> without;
  if (!files.crl.empty()) {
    FILE* f = fopen(files.crl.c_str(), "r");
    if (!f) {
      error = files.crl + ": cannot read the CRL file";
      return false;
    }
    X509_STORE* store = SSL_CTX_get_cert_store(ctx.get());
    std::vector<X509_NAME*> issuers;
    while (X509_CRL* crl = PEM_read_X509_CRL(f, nullptr, nullptr, nullptr)) {
      CrlInfo info;
      info.issuer = name_text(X509_CRL_get_issuer(crl));
      if (const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl)) {
        tm t{};
        if (ASN1_TIME_to_tm(next, &t) == 1) info.next_update = int64_t(timegm(&t));
        info.expired = X509_cmp_current_time(next) < 0;
      }
      crls.push_back(info);
      X509_STORE_add_crl(store, crl);
      X509_CRL_free(crl);
    }
    fclose(f);
    ERR_clear_error();  // the read loop ends with a "no start line" error
    if (crls.empty()) {
      error = files.crl + ": no CRL in the file";
      return false;
    }
    // Every CA of the bundle that may sign certificates needs its CRL: OpenSSL refuses a certificate whose
    // issuer's CRL is missing.
    if (STACK_OF(X509_INFO)* infos = [&] {
          BIO* b = BIO_new_file(files.ca.c_str(), "r");
          STACK_OF(X509_INFO)* r = b ? PEM_X509_INFO_read_bio(b, nullptr, nullptr, nullptr) : nullptr;
          BIO_free(b);
          return r;
        }()) {
      for (int i = 0; i < sk_X509_INFO_num(infos); ++i) {
        X509* ca = sk_X509_INFO_value(infos, i)->x509;
        if (!ca || X509_check_ca(ca) == 0) continue;
        const std::string subject = name_text(X509_get_subject_name(ca));
        if (std::none_of(crls.begin(), crls.end(), [&](const CrlInfo& c) { return c.issuer == subject; }))
          without.push_back(subject);
      }
      sk_X509_INFO_pop_free(infos, X509_INFO_free);
    }
    ERR_clear_error();
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | (files.crl_chain ? X509_V_FLAG_CRL_CHECK_ALL : 0));
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_callback);
  SSL_CTX_set_client_hello_cb(ctx.get(), client_hello_callback, nullptr);
  if (!alpn_.empty()) SSL_CTX_set_alpn_select_cb(ctx.get(), alpn_select_callback, &alpn_);
  ctx_ = std::move(ctx);
  crls_ = std::move(crls);
  cas_without_crl_ = std::move(without);
  return true;
}

SslPtr TlsServer::make_ssl(int fd, HandshakeEvidence* evidence) const {
  SslPtr ssl(SSL_new(ctx_.get()));
  if (!ssl) return nullptr;
  SSL_set_fd(ssl.get(), fd);
  SSL_set_ex_data(ssl.get(), g_evidence_index, evidence);
  SSL_set_accept_state(ssl.get());
  return ssl;
}

X509* TlsServer::own_certificate() const { return ctx_ ? SSL_CTX_get0_certificate(ctx_.get()) : nullptr; }

bool TlsServer::verify_client(X509* leaf, STACK_OF(X509)* chain, std::string& why) const {
  if (!ctx_ || !leaf) return false;
  std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> vctx(X509_STORE_CTX_new(), X509_STORE_CTX_free);
  if (!vctx || X509_STORE_CTX_init(vctx.get(), SSL_CTX_get_cert_store(ctx_.get()), leaf, chain) != 1) {
    why = "cannot verify";
    return false;
  }
  X509_STORE_CTX_set_purpose(vctx.get(), X509_PURPOSE_SSL_CLIENT);
  const bool ok = X509_verify_cert(vctx.get()) == 1;
  if (!ok) why = X509_verify_cert_error_string(X509_STORE_CTX_get_error(vctx.get()));
  ERR_clear_error();
  return ok;
}

bool TlsServer::verify_peer(X509* leaf, STACK_OF(X509)* chain, HandshakeEvidence& evidence) const {
  if (!leaf) return false;
  if (!evidence.certificate) evidence.certificate = describe_certificate(leaf);
  std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> vctx(X509_STORE_CTX_new(), X509_STORE_CTX_free);
  if (!ctx_ || !vctx || X509_STORE_CTX_init(vctx.get(), SSL_CTX_get_cert_store(ctx_.get()), leaf, chain) != 1) {
    evidence.verify_error = X509_V_ERR_UNSPECIFIED;
    ERR_clear_error();
    return false;
  }
  X509_STORE_CTX_set_default(vctx.get(), "ssl_client");  // what an OpenSSL server sets for its clients' chains
  const bool ok = X509_verify_cert(vctx.get()) == 1;
  if (!ok && !evidence.verify_error) {
    evidence.verify_error = X509_STORE_CTX_get_error(vctx.get());
    if (X509* cur = X509_STORE_CTX_get_current_cert(vctx.get()))
      evidence.failed_cert_issuer = name_text(X509_get_issuer_name(cur));
  }
  ERR_clear_error();
  return ok;
}

bool TlsServer::own_certificate_verifies_with(const std::string& ca, std::string& why) const {
  X509* leaf = own_certificate();
  if (!leaf) return false;
  std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(), X509_STORE_free);
  std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> vctx(X509_STORE_CTX_new(), X509_STORE_CTX_free);
  STACK_OF(X509)* chain = nullptr;
  SSL_CTX_get0_chain_certs(ctx_.get(), &chain);
  if (!store || !vctx || X509_STORE_load_file(store.get(), ca.c_str()) != 1 ||
      X509_STORE_CTX_init(vctx.get(), store.get(), leaf, chain) != 1) {
    why = "cannot read " + ca;
    ERR_clear_error();
    return false;
  }
  const bool ok = X509_verify_cert(vctx.get()) == 1;
  if (!ok) why = X509_verify_cert_error_string(X509_STORE_CTX_get_error(vctx.get()));
  ERR_clear_error();
  return ok;
}

bool certificate_has_name(X509* cert, const std::string& host) {
  if (X509_check_ip_asc(cert, host.c_str(), 0) == 1) return true;
  return X509_check_host(cert, host.c_str(), host.size(), 0, nullptr) == 1;
}

std::vector<std::string> certificate_names(X509* cert) {
  std::vector<std::string> out;
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); ++i) {
    GENERAL_NAME* g = sk_GENERAL_NAME_value(sans, i);
    if (g->type == GEN_DNS)
      out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(g->d.dNSName)),
                       size_t(ASN1_STRING_length(g->d.dNSName)));
    else if (g->type == GEN_IPADD && ASN1_STRING_length(g->d.iPAddress) == 4) {
      const unsigned char* b = ASN1_STRING_get0_data(g->d.iPAddress);
      out.push_back(std::to_string(b[0]) + "." + std::to_string(b[1]) + "." + std::to_string(b[2]) + "." +
                    std::to_string(b[3]));
    }
  }
  GENERAL_NAMES_free(sans);
  return out;
}

HandshakeEvidence* TlsServer::evidence(SSL* ssl) {
  return g_evidence_index < 0 ? nullptr : static_cast<HandshakeEvidence*>(SSL_get_ex_data(ssl, g_evidence_index));
}

}  // namespace dptun
