// The client side of TLS 1.3 over QUIC (RFC 9001) that dpagent's QUIC connections share: the control connection to
// dpctld (--transport quic, quic_control.hpp) and `dpagent udp`'s HTTP/3 connections (masque_client.hpp). A GnuTLS
// session wired to ngtcp2's GnuTLS glue, TLS 1.3 with AES-GCM only, the client certificate, the SNI and one ALPN;
// the server's certificate is verified by OpenSSL against the --ca store with the name or IPv4 address it must
// carry (purpose sslserver), exactly as the TCP control connection does, so that a failure gets the same
// classification and advice (tls_failure.hpp).
#pragma once
#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <openssl/types.h>

#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>

#include "agent/tls_failure.hpp"

namespace dptun {

struct GnutlsClientCredentialsFree {
  void operator()(gnutls_certificate_credentials_st* c) const { gnutls_certificate_free_credentials(c); }
};
using GnutlsClientCredentials = std::unique_ptr<gnutls_certificate_credentials_st, GnutlsClientCredentialsFree>;
// The client's certificate chain and key for GnuTLS; nullptr with `error` naming the files.
GnutlsClientCredentials load_quic_credentials(const std::string& cert, const std::string& key, std::string& error);

struct X509StoreFree {
  void operator()(X509_STORE* s) const;
};
using X509StorePtr = std::unique_ptr<X509_STORE, X509StoreFree>;
// The CAs of a PEM file as an OpenSSL store; nullptr with `error` naming the file.
X509StorePtr load_ca_store(const std::string& ca_file, std::string& error);

// One connection's TLS session. Neither copied nor moved: GnuTLS and ngtcp2 keep its address. Destroy the ngtcp2
// connection before it.
class QuicClientTls {
 public:
  QuicClientTls() = default;
  ~QuicClientTls();
  QuicClientTls(const QuicClientTls&) = delete;
  QuicClientTls& operator=(const QuicClientTls&) = delete;

  // `conn`: where the owner keeps its ngtcp2 connection (ngtcp2's glue asks for it during the handshake).
  // `server_name`: the name or IPv4 address the server's certificate must carry; `sni`: sent unless empty.
  bool init(ngtcp2_conn* const* conn, gnutls_certificate_credentials_t credentials, X509_STORE* store,
            std::string server_name, std::string_view sni, std::string_view alpn, std::string& error);
  gnutls_session_t session() const { return tls_; }
  // X509_V_OK until the verify callback rejected the server's certificate (then its X509_V_ERR_*).
  long verify_result() const { return verify_result_; }
  const ServerCertSeen& seen() const { return seen_; }
  const std::string& server_name() const { return server_name_; }

 private:
  static int verify(gnutls_session_t s);
  static ngtcp2_conn* get_conn(ngtcp2_crypto_conn_ref* ref);

  ngtcp2_crypto_conn_ref ref_{};
  ngtcp2_conn* const* conn_ = nullptr;
  gnutls_session_t tls_ = nullptr;
  X509_STORE* store_ = nullptr;
  std::string server_name_;
  long verify_result_ = 0;  // X509_V_OK
  ServerCertSeen seen_;
};

// The OpenSSL error code of the TLS alert the peer's CONNECTION_CLOSE carries (a transport error 0x100 + alert, RFC
// 9001 4.8), as OpenSSL reports a received alert (what classify_agent_tls reads); 0 when it carries none.
unsigned long quic_close_alert_error(const ngtcp2_connection_close_error& e);
// "error 0x..: reason" of a CONNECTION_CLOSE, for logs.
std::string quic_close_text(const ngtcp2_connection_close_error& e);

// A client's first connection IDs: a random 18-byte Destination Connection ID (RFC 9000 7.2: 8 at least) and an
// 8-byte Source Connection ID (dptun's connection IDs are 8 bytes, docs/protocol.md "QUIC framing").
void quic_client_cids(ngtcp2_cid& dcid, ngtcp2_cid& scid);
// ngtcp2's defaults with packets up to `max_udp_payload` from the start: no shaping to 1200 bytes and no path MTU
// discovery, so that what the caller sized for that payload (--mtu) goes out at once.
ngtcp2_settings quic_client_settings(uint64_t now_ns, size_t max_udp_payload);
// Arms `timer` (a CLOCK_MONOTONIC timerfd) for absolute time `at_ns` (0 or UINT64_MAX: disarmed; a time already past
// fires at once), unless *armed_ns says it already is.
void arm_quic_timer(int timer, uint64_t at_ns, uint64_t* armed_ns);
// Each of the files can be opened for reading; false with `error` naming the first that cannot.
bool files_readable(std::initializer_list<const std::string*> files, std::string& error);

}  // namespace dptun
