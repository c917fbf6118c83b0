// dpagent's control connection over QUIC (--transport quic; issue 11): one ngtcp2 client connection (QUIC v1,
// RFC 9000/9001) on a connected UDP socket, TLS 1.3 by GnuTLS with the agent's certificate, ALPN "dptun", the tunnel
// in the SNI, and one bidirectional stream carrying the same newline-delimited JSON as the TLS connection. dpctld's
// certificate is verified by OpenSSL with the TCP connection's store and name check (from GnuTLS's verify
// function), so a failure gets the same classification and advice (tls_failure.hpp). Non-blocking: the owner
// calls on_readable() when the socket is readable and on_timer() from its tick, then flush().
#pragma once
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <openssl/types.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "agent/tls_failure.hpp"
#include "common/line_buffer.hpp"

namespace dptun {

struct GnutlsClientCredentialsFree {
  void operator()(gnutls_certificate_credentials_st* c) const { gnutls_certificate_free_credentials(c); }
};
using GnutlsClientCredentials = std::unique_ptr<gnutls_certificate_credentials_st, GnutlsClientCredentialsFree>;
// The agent's certificate chain and key for GnuTLS; nullptr with `error` naming the files.
GnutlsClientCredentials load_quic_credentials(const std::string& cert, const std::string& key, std::string& error);

class QuicControlConnection {
 public:
  struct Setup {
    gnutls_certificate_credentials_t credentials = nullptr;
    X509_STORE* store = nullptr;  // --ca, as the TCP connection loaded it
    std::string server_name;      // the name or IPv4 address dpctld's certificate must carry
    std::string sni;              // the tunnel (dpctld names it even when the handshake fails)
    size_t max_line = 1 << 20;
  };
  QuicControlConnection() = default;
  ~QuicControlConnection();
  QuicControlConnection(const QuicControlConnection&) = delete;
  QuicControlConnection& operator=(const QuicControlConnection&) = delete;

  // Starts the handshake on `fd` (a UDP socket connected to dpctld): false with `error` when it cannot start.
  bool open(int fd, const Setup& setup, uint64_t now_ns, std::string& error);
  // Reads what the socket holds; false once the connection is over (failed(), or closed by dpctld).
  bool on_readable(uint64_t now_ns);
  // Retransmissions and the idle timeout; false once the connection is over.
  bool on_timer(uint64_t now_ns);
  // Writes what ngtcp2 has to send (the queued lines once the handshake is done); false on a fatal error.
  bool flush(uint64_t now_ns);
  void send_line(const std::string& line);  // '\n' appended; sent once the handshake is done
  bool handshake_done() const { return handshake_done_; }
  // Complete lines from dpctld, in order (at most Setup::max_line bytes each; line_too_long() after a longer one).
  std::vector<std::string> take_lines();
  bool line_too_long() const { return in_.too_long(); }
  // The session's base secret: the TLS exporter with kExporterLabel and the index (control/control_protocol.hpp).
  std::vector<uint8_t> export_secret(uint32_t session_index) const;
  // Sends CONNECTION_CLOSE (NO_ERROR) if the connection is still open.
  void close(uint64_t now_ns);

  // Why it failed, as the TCP connection would say it: the X509_V_ERR_* of dpctld's certificate (X509_V_OK when it
  // verified), the OpenSSL error code of an alert dpctld sent (SSL_AD_REASON_OFFSET + alert, 0 when none), text.
  long verify_result() const { return verify_result_; }
  unsigned long ssl_error() const { return ssl_error_; }
  const std::string& detail() const { return detail_; }
  const ServerCertSeen& seen() const { return seen_; }

 private:
  // Writes a CONNECTION_CLOSE with `ccerr` and sends it, once.
  void send_close(const ngtcp2_connection_close_error& ccerr, uint64_t now_ns);
  static int verify(gnutls_session_t s);
  static int on_handshake_completed(ngtcp2_conn*, void* user);
  static int on_recv_stream(ngtcp2_conn*, uint32_t, int64_t id, uint64_t, const uint8_t* data, size_t len, void* user,
                            void*);
  static int on_acked(ngtcp2_conn*, int64_t id, uint64_t offset, uint64_t len, void* user, void*);
  static ngtcp2_conn* get_conn(ngtcp2_crypto_conn_ref* ref);
  bool ended(int rv, uint64_t now_ns);  // records why ngtcp2 ended the connection; always false

  struct TxChunk {
    std::string data;
    uint64_t offset = 0;
  };
  int fd_ = -1;
  Setup setup_;
  sockaddr_in local_{}, remote_{};
  ngtcp2_crypto_conn_ref ref_{};
  gnutls_session_t tls_ = nullptr;
  ngtcp2_conn* conn_ = nullptr;
  bool handshake_done_ = false;
  bool closed_ = false;
  int64_t stream_ = -1;
  std::deque<TxChunk> tx_;  // kept until acknowledged: ngtcp2 refers to the bytes
  uint64_t tx_end_ = 0, tx_sent_ = 0;
  LineBuffer in_{1 << 20};
  long verify_result_ = 0;
  unsigned long ssl_error_ = 0;
  std::string detail_;
  ServerCertSeen seen_;
};

}  // namespace dptun
