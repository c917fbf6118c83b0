#include "agent/quic_client_tls.hpp"

#include <arpa/inet.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <gnutls/crypto.h>
#include <sys/timerfd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "common/clock.hpp"

#include "common/openssl_errors.hpp"

namespace dptun {

namespace {
constexpr const char* kPriority = "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:"
                                  "%DISABLE_TLS13_COMPAT_MODE";

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
}  // namespace

GnutlsClientCredentials load_quic_credentials(const std::string& cert, const std::string& key, std::string& error) {
  gnutls_certificate_credentials_t raw = nullptr;
  if (gnutls_certificate_allocate_credentials(&raw) != 0) {
    error = "cannot allocate GnuTLS credentials";
    return nullptr;
  }
  GnutlsClientCredentials creds(raw);
  if (int rv = gnutls_certificate_set_x509_key_file(raw, cert.c_str(), key.c_str(), GNUTLS_X509_FMT_PEM); rv < 0) {
    error = cert + " / " + key + ": GnuTLS cannot load the certificate and key for QUIC: " + gnutls_strerror(rv);
    return nullptr;
  }
  return creds;
}

void X509StoreFree::operator()(X509_STORE* s) const { X509_STORE_free(s); }

X509StorePtr load_ca_store(const std::string& ca_file, std::string& error) {
  X509StorePtr store(X509_STORE_new());
  if (!store || X509_STORE_load_file(store.get(), ca_file.c_str()) != 1) {
    error = ca_file + ": cannot load the CA bundle: " + openssl_errors();
    return nullptr;
  }
  return store;
}

QuicClientTls::~QuicClientTls() {
  if (tls_) gnutls_deinit(tls_);
}

ngtcp2_conn* QuicClientTls::get_conn(ngtcp2_crypto_conn_ref* ref) {
  return *static_cast<QuicClientTls*>(ref->user_data)->conn_;
}

bool QuicClientTls::init(ngtcp2_conn* const* conn, gnutls_certificate_credentials_t credentials, X509_STORE* store,
                         std::string server_name, std::string_view sni, std::string_view alpn, std::string& error) {
  conn_ = conn;
  store_ = store;
  server_name_ = std::move(server_name);
  if (gnutls_init(&tls_, GNUTLS_CLIENT | GNUTLS_NO_END_OF_EARLY_DATA) != 0) {
    tls_ = nullptr;
    error = "gnutls_init failed";
    return false;
  }
  ref_.get_conn = get_conn;
  ref_.user_data = this;
  gnutls_session_set_ptr(tls_, &ref_);
  int rv;
  if ((rv = ngtcp2_crypto_gnutls_configure_client_session(tls_)) != 0 ||
      (rv = gnutls_priority_set_direct(tls_, kPriority, nullptr)) != 0 ||
      (rv = gnutls_credentials_set(tls_, GNUTLS_CRD_CERTIFICATE, credentials)) != 0) {
    error = std::string("cannot set up the TLS session: ") + gnutls_strerror(rv);
    return false;
  }
  if (!sni.empty()) gnutls_server_name_set(tls_, GNUTLS_NAME_DNS, sni.data(), sni.size());
  gnutls_session_set_verify_function(tls_, verify);
  gnutls_datum_t proto{reinterpret_cast<unsigned char*>(const_cast<char*>(alpn.data())), unsigned(alpn.size())};
  gnutls_alpn_set_protocols(tls_, &proto, 1, 0);
  return true;
}

// The server's certificate, checked as the TCP connection checks dpctld's: the --ca store, the name or address,
// purpose sslserver. What it shows is kept for the advice.
int QuicClientTls::verify(gnutls_session_t s) {
  auto* c = static_cast<QuicClientTls*>(static_cast<ngtcp2_crypto_conn_ref*>(gnutls_session_get_ptr(s))->user_data);
  unsigned n = 0;
  const gnutls_datum_t* certs = gnutls_certificate_get_peers(s, &n);
  if (!certs || n == 0) {
    c->verify_result_ = X509_V_ERR_UNSPECIFIED;
    return -1;
  }
  std::vector<std::unique_ptr<X509, X509Free>> parsed;
  for (unsigned i = 0; i < n; ++i) {
    const unsigned char* p = certs[i].data;
    X509* x = d2i_X509(nullptr, &p, long(certs[i].size));
    if (!x) {
      ERR_clear_error();
      c->verify_result_ = X509_V_ERR_UNSPECIFIED;
      return -1;
    }
    parsed.emplace_back(x);
  }
  c->seen_ = describe_server_cert(parsed[0].get());
  STACK_OF(X509)* chain = sk_X509_new_null();
  for (size_t i = 1; i < parsed.size(); ++i) sk_X509_push(chain, parsed[i].get());
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  bool ok = false;
  if (ctx && X509_STORE_CTX_init(ctx, c->store_, parsed[0].get(), chain) == 1) {
    X509_STORE_CTX_set_default(ctx, "ssl_server");
    X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx);
    in_addr tmp;
    if (inet_pton(AF_INET, c->server_name_.c_str(), &tmp) == 1)
      X509_VERIFY_PARAM_set1_ip_asc(param, c->server_name_.c_str());
    else
      X509_VERIFY_PARAM_set1_host(param, c->server_name_.c_str(), 0);
    ok = X509_verify_cert(ctx) == 1;
    c->verify_result_ = ok ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
  } else {
    c->verify_result_ = X509_V_ERR_UNSPECIFIED;
  }
  X509_STORE_CTX_free(ctx);
  sk_X509_free(chain);  // the certificates belong to `parsed`
  ERR_clear_error();
  return ok ? 0 : -1;
}

unsigned long quic_close_alert_error(const ngtcp2_connection_close_error& e) {
  if (e.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_TRANSPORT && e.error_code >= 0x100 && e.error_code <= 0x1ff)
    return ERR_PACK(ERR_LIB_SSL, 0, SSL_AD_REASON_OFFSET + int(e.error_code & 0xff));
  return 0;
}

std::string quic_close_text(const ngtcp2_connection_close_error& e) {
  char b[24];
  snprintf(b, sizeof b, "%llx", static_cast<unsigned long long>(e.error_code));
  // The reason phrase is the peer's (not yet authenticated during the handshake): at most 100 bytes, anything outside
  // printable ASCII as \xHH, so that it cannot forge log lines.
  std::string reason;
  for (size_t i = 0; i < e.reasonlen && i < 100; ++i) {
    const unsigned char c = e.reason[i];
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      reason += char(c);
    } else {
      char x[5];
      snprintf(x, sizeof x, "\\x%02x", c);
      reason += x;
    }
  }
  return std::string("error 0x") + b + (reason.empty() ? "" : ": " + reason);
}

void quic_client_cids(ngtcp2_cid& dcid, ngtcp2_cid& scid) {
  dcid.datalen = 18;
  gnutls_rnd(GNUTLS_RND_RANDOM, dcid.data, dcid.datalen);
  scid.datalen = 8;
  gnutls_rnd(GNUTLS_RND_RANDOM, scid.data, scid.datalen);
}

ngtcp2_settings quic_client_settings(uint64_t now_ns, size_t max_udp_payload) {
  ngtcp2_settings settings;
  ngtcp2_settings_default(&settings);
  settings.initial_ts = now_ns;
  settings.max_tx_udp_payload_size = max_udp_payload;
  settings.no_tx_udp_payload_size_shaping = 1;
  settings.no_pmtud = 1;
  // BBRv2: dpgw's workers acknowledge per burst, about every millisecond, so ACKs come in aggregates. CUBIC's
  // window, grown per ACK, stayed near 40 KB and held a TCP flow from the agent to about 300 Mbit/s on the veths of
  // test_quic_framing.sh; BBR, 640 Mbit/s; BBRv2 (which models ACK aggregation) about 2 Gbit/s, as fast as the other
  // direction. dpagent udp's connections are served by dpgw the same way after the hand-over.
  settings.cc_algo = NGTCP2_CC_ALGO_BBR2;
  return settings;
}

void arm_quic_timer(int timer, uint64_t at_ns, uint64_t* armed_ns) {
  if (at_ns == UINT64_MAX) at_ns = 0;
  if (at_ns == *armed_ns) return;
  *armed_ns = at_ns;
  itimerspec its{};
  // A zero it_value would disarm the timer: an expiry already past is 1 ns (fires at once).
  const uint64_t when = at_ns ? std::max<uint64_t>(at_ns, 1) : 0;
  its.it_value.tv_sec = time_t(when / kNsPerSec);
  its.it_value.tv_nsec = long(when % kNsPerSec);
  timerfd_settime(timer, TFD_TIMER_ABSTIME, &its, nullptr);
}

bool files_readable(std::initializer_list<const std::string*> files, std::string& error) {
  for (const std::string* f : files) {
    FILE* probe = fopen(f->c_str(), "r");
    if (!probe) {
      error = "cannot read " + *f + ": " + strerror(errno);
      return false;
    }
    fclose(probe);
  }
  return true;
}

}  // namespace dptun
