// A QUIC client for the e2e tests that speaks dptun's registration protocol (ALPN "dptun"): ngtcp2 + GnuTLS with a
// client certificate, one bidirectional stream, the given JSON lines sent on it, every line dpctld answers printed
// on stdout. It verifies dpctld's certificate against --ca for --verify-name (and closes with its TLS alert when that
// fails). Exits 0 once `--replies` lines came, 1 on a connection error or after --seconds.
//
// With --hold S it keeps the connection S seconds after the replies, sending ack-eliciting PING-only 1-RTT packets
// (ngtcp2's keep-alive every --ping-interval seconds, default 0.2, and its loss-recovery probes: what dpgw sees
// after dpctld handed the connection over), and says on stderr how many packets it sent after the replies
// ("packets after the replies: N"), and how many bytes of them ngtcp2 still counts in flight, not acknowledged, at the
// end, with its probe timeouts ("in flight at the end: B bytes, probe timeouts P"). A connection error during the
// hold exits 1. --no-datagrams leaves the
// max_datagram_frame_size transport parameter out (DATAGRAM frames not taken: dpctld keeps such a connection);
// --max-datagram N advertises N instead of 65535.
// --cipher offers that one TLS 1.3 AEAD only (a GnuTLS name); default: GnuTLS's order.
// --migrate S (with --hold): S seconds into the hold, the client moves to a new UDP port of its own with
// ngtcp2_conn_initiate_immediate_migration, which takes another of the connection IDs dpctld issued as its DCID
// (RFC 9000 9.5); stderr says "migrated to port P: DCID OLD -> NEW" (hex). dpgw must accept the new one, and
// moves the session's endpoint to the new port once its PATH_CHALLENGE there is answered (path validation).
// It asks for active_connection_id_limit 4: dpctld issues 4 connection IDs. A Stateless Reset that ends the
// connection is said on stderr ("stateless reset received").
// --key-update S (with --hold): S seconds into the hold, and every S seconds after, ngtcp2 starts a key update of
// its own (ngtcp2_conn_initiate_key_update, RFC 9001 6: what it does by itself after some 2^23 packets); stderr
// says how many it started and how many it refused (the previous one not confirmed yet: no packet of the peer's in
// the new keys) -- "key updates started: N, refused: M".
//
//   quic_register_client --server IP:PORT --ca CA --cert CERT --key KEY [--sni NAME] [--verify-name NAME]
//                        [--replies N] [--seconds S] [--hold S [--ping-interval S] [--key-update S] [--migrate S]]
//                        [--no-datagrams | --max-datagram N] [--cipher NAME] LINE...
#include <arpa/inet.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>
#include "common/ngtcp2_callbacks.hpp"


namespace {

uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

struct Client {
  ngtcp2_crypto_conn_ref ref{};
  ngtcp2_conn* conn = nullptr;
  gnutls_session_t tls = nullptr;
  gnutls_certificate_credentials_t cred = nullptr;
  int fd = -1;
  int fd2 = -1;  // after --migrate: the new path's socket
  sockaddr_in local{}, remote{}, local2{};
  int64_t stream = -1;
  std::string out;  // all lines to send, kept until the end (ngtcp2 refers to them until acknowledged)
  size_t sent = 0;
  std::string in;
  int replies = 0;
  bool handshake_done = false;
  uint64_t packets_sent = 0;
  ~Client() {
    if (conn) ngtcp2_conn_del(conn);
    if (tls) gnutls_deinit(tls);
    if (cred) gnutls_certificate_free_credentials(cred);
    if (fd >= 0) close(fd);
    if (fd2 >= 0) close(fd2);
  }
};

ngtcp2_conn* get_conn(ngtcp2_crypto_conn_ref* ref) { return static_cast<Client*>(ref->user_data)->conn; }

int handshake_completed(ngtcp2_conn*, void* user) {
  static_cast<Client*>(user)->handshake_done = true;
  fprintf(stderr, "quic_register_client: QUIC handshake completed\n");
  return 0;
}

int recv_stateless_reset(ngtcp2_conn*, const ngtcp2_pkt_stateless_reset*, void*) {
  fprintf(stderr, "quic_register_client: stateless reset received\n");
  return 0;
}

std::string hex(const ngtcp2_cid& cid) {
  std::string h;
  char b[3];
  for (size_t i = 0; i < cid.datalen; ++i) {
    snprintf(b, sizeof b, "%02x", cid.data[i]);
    h += b;
  }
  return h;
}

int recv_stream(ngtcp2_conn* conn, uint32_t, int64_t id, uint64_t, const uint8_t* data, size_t len, void* user, void*) {
  auto* c = static_cast<Client*>(user);
  ngtcp2_conn_extend_max_stream_offset(conn, id, len);
  ngtcp2_conn_extend_max_offset(conn, len);
  c->in.append(reinterpret_cast<const char*>(data), len);
  size_t nl;
  while ((nl = c->in.find('\n')) != std::string::npos) {
    printf("%s\n", c->in.substr(0, nl).c_str());
    fflush(stdout);
    c->in.erase(0, nl + 1);
    c->replies++;
  }
  return 0;
}

bool flush(Client& c) {
  uint8_t buf[1452];
  for (;;) {
    ngtcp2_vec vec{};
    int64_t sid = -1;
    if (c.stream >= 0 && c.sent < c.out.size()) {
      vec.base = reinterpret_cast<uint8_t*>(c.out.data()) + c.sent;
      vec.len = c.out.size() - c.sent;
      sid = c.stream;
    }
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_pkt_info pi{};
    ngtcp2_ssize taken = -1;
    ngtcp2_ssize n = ngtcp2_conn_writev_stream(c.conn, &ps.path, &pi, buf, sizeof buf, &taken,
                                               NGTCP2_WRITE_STREAM_FLAG_NONE, sid, sid >= 0 ? &vec : nullptr,
                                               sid >= 0 ? 1 : 0, now_ns());
    if (n < 0) {
      if (n == NGTCP2_ERR_STREAM_DATA_BLOCKED) return true;  // flow control: the rest goes later
      fprintf(stderr, "quic_register_client: write: %s\n", ngtcp2_strerror(int(n)));
      return false;
    }
    if (taken > 0) c.sent += size_t(taken);
    if (n == 0) return true;
    // The packet's path: the new one's socket after a migration (ngtcp2 may still write to the old path).
    const bool on_new = c.fd2 >= 0 && ps.path.local.addrlen == sizeof(sockaddr_in) &&
                        reinterpret_cast<const sockaddr_in*>(ps.path.local.addr)->sin_port == c.local2.sin_port;
    send(on_new ? c.fd2 : c.fd, buf, size_t(n), 0);
    c.packets_sent++;
  }
}

int usage() {
  fprintf(stderr, "usage: quic_register_client --server IP:PORT --ca CA --cert CERT --key KEY [--sni NAME] "
                  "[--verify-name NAME] [--replies N] [--seconds S] [--hold S [--ping-interval S] [--key-update S] [--migrate S]] [--no-datagrams] [--max-datagram N] [--cipher AES-128-GCM|AES-256-GCM] "
                  "LINE...\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string server, ca, cert, key, sni, verify_name;
  int want = 1;
  double seconds = 10, hold = 0, ping_interval = 0.2, key_update = 0, migrate = 0;
  bool datagrams = true;
  uint64_t max_datagram = 65535;
  std::string cipher;  // a GnuTLS cipher name: AES-128-GCM, AES-256-GCM, ...
  std::vector<std::string> lines;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--server") server = next();
    else if (a == "--ca") ca = next();
    else if (a == "--cert") cert = next();
    else if (a == "--key") key = next();
    else if (a == "--sni") sni = next();
    else if (a == "--verify-name") verify_name = next();
    else if (a == "--replies") want = std::stoi(next());
    else if (a == "--seconds") seconds = std::stod(next());
    else if (a == "--hold") hold = std::stod(next());
    else if (a == "--ping-interval") ping_interval = std::stod(next());
    else if (a == "--key-update") key_update = std::stod(next());
    else if (a == "--migrate") migrate = std::stod(next());
    else if (a == "--no-datagrams") datagrams = false;
    else if (a == "--max-datagram") max_datagram = std::stoull(next());
    else if (a == "--cipher") cipher = next();
    else if (a.rfind("--", 0) == 0) return usage();
    else lines.push_back(a);
  }
  const size_t colon = server.rfind(':');
  if (colon == std::string::npos || ca.empty() || cert.empty() || key.empty()) return usage();
  Client c;
  for (const auto& l : lines) c.out += l + "\n";
  c.remote.sin_family = AF_INET;
  c.remote.sin_port = htons(uint16_t(std::stoi(server.substr(colon + 1))));
  if (inet_pton(AF_INET, server.substr(0, colon).c_str(), &c.remote.sin_addr) != 1) return usage();
  c.fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (c.fd < 0 || connect(c.fd, reinterpret_cast<sockaddr*>(&c.remote), sizeof c.remote) != 0) {
    perror("quic_register_client: socket");
    return 1;
  }
  socklen_t llen = sizeof c.local;
  getsockname(c.fd, reinterpret_cast<sockaddr*>(&c.local), &llen);

  gnutls_certificate_allocate_credentials(&c.cred);
  if (gnutls_certificate_set_x509_trust_file(c.cred, ca.c_str(), GNUTLS_X509_FMT_PEM) < 0 ||
      gnutls_certificate_set_x509_key_file(c.cred, cert.c_str(), key.c_str(), GNUTLS_X509_FMT_PEM) < 0) {
    fprintf(stderr, "quic_register_client: cannot load %s, %s or %s\n", ca.c_str(), cert.c_str(), key.c_str());
    return 1;
  }
  gnutls_init(&c.tls, GNUTLS_CLIENT | GNUTLS_NO_END_OF_EARLY_DATA);
  c.ref.get_conn = get_conn;
  c.ref.user_data = &c;
  gnutls_session_set_ptr(c.tls, &c.ref);
  ngtcp2_crypto_gnutls_configure_client_session(c.tls);
  const std::string priority = "NORMAL:-VERS-ALL:+VERS-TLS1.3:%DISABLE_TLS13_COMPAT_MODE" +
                               (cipher.empty() ? std::string() : ":-CIPHER-ALL:+" + cipher);
  if (gnutls_priority_set_direct(c.tls, priority.c_str(), nullptr) != 0) return usage();
  gnutls_credentials_set(c.tls, GNUTLS_CRD_CERTIFICATE, c.cred);
  if (!sni.empty()) gnutls_server_name_set(c.tls, GNUTLS_NAME_DNS, sni.data(), sni.size());
  gnutls_session_set_verify_cert(c.tls, verify_name.empty() ? server.substr(0, colon).c_str() : verify_name.c_str(), 0);
  gnutls_datum_t alpn{reinterpret_cast<unsigned char*>(const_cast<char*>("dptun")), 5};
  gnutls_alpn_set_protocols(c.tls, &alpn, 1, 0);

  ngtcp2_callbacks cb = dptun::ngtcp2_crypto_callbacks(dptun::QuicRole::Client);
  cb.handshake_completed = handshake_completed;
  cb.recv_stream_data = recv_stream;
  cb.recv_stateless_reset = recv_stateless_reset;
  ngtcp2_cid dcid, scid;
  dcid.datalen = 18;
  gnutls_rnd(GNUTLS_RND_RANDOM, dcid.data, dcid.datalen);
  scid.datalen = 8;
  gnutls_rnd(GNUTLS_RND_RANDOM, scid.data, scid.datalen);
  ngtcp2_settings settings;
  ngtcp2_settings_default(&settings);
  settings.initial_ts = now_ns();
  ngtcp2_transport_params params;
  ngtcp2_transport_params_default(&params);
  params.initial_max_stream_data_bidi_local = 64 * 1024;
  params.initial_max_data = 256 * 1024;
  params.max_idle_timeout = 30ull * 1'000'000'000ull;
  params.max_datagram_frame_size = datagrams ? max_datagram : 0;
  params.active_connection_id_limit = 4;  // as dpagent: dpctld issues 4 connection IDs, dpgw accepts each
  ngtcp2_path path{{reinterpret_cast<sockaddr*>(&c.local), sizeof c.local},
                   {reinterpret_cast<sockaddr*>(&c.remote), sizeof c.remote},
                   nullptr};
  int rv = ngtcp2_conn_client_new(&c.conn, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &cb, &settings, &params, nullptr,
                                  &c);
  if (rv != 0) {
    fprintf(stderr, "quic_register_client: %s\n", ngtcp2_strerror(rv));
    return 1;
  }
  ngtcp2_conn_set_tls_native_handle(c.conn, c.tls);
  uint64_t end = now_ns() + uint64_t(seconds * 1e9);
  if (!flush(c)) return 1;
  bool holding = false;
  uint64_t sent_before_hold = 0;
  uint64_t next_key_update = 0;  // 0: none
  uint64_t migrate_at = 0;       // 0: none
  unsigned key_updates = 0, key_updates_refused = 0;
  ngtcp2_path path2 = path;
  for (;;) {
    if (!holding && c.replies >= want) {
      if (hold <= 0) break;
      holding = true;  // the replies are in: PINGs on the same connection from now on
      end = now_ns() + uint64_t(hold * 1e9);
      sent_before_hold = c.packets_sent;
      ngtcp2_conn_set_keep_alive_timeout(c.conn, uint64_t(ping_interval * 1e9));
      if (key_update > 0) next_key_update = now_ns() + uint64_t(key_update * 1e9);
      if (migrate > 0) migrate_at = now_ns() + uint64_t(migrate * 1e9);
    }
    if (migrate_at && now_ns() >= migrate_at) {
      migrate_at = 0;
      c.fd2 = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      if (c.fd2 < 0 || connect(c.fd2, reinterpret_cast<sockaddr*>(&c.remote), sizeof c.remote) != 0) {
        perror("quic_register_client: migrate: socket");
        return 1;
      }
      socklen_t l2 = sizeof c.local2;
      getsockname(c.fd2, reinterpret_cast<sockaddr*>(&c.local2), &l2);
      path2.local = {reinterpret_cast<sockaddr*>(&c.local2), sizeof c.local2};
      const std::string before = hex(*ngtcp2_conn_get_dcid(c.conn));
      rv = ngtcp2_conn_initiate_immediate_migration(c.conn, &path2, now_ns());
      if (rv != 0) {
        fprintf(stderr, "quic_register_client: migrate: %s\n", ngtcp2_strerror(rv));
        return 1;
      }
      fprintf(stderr, "quic_register_client: migrated to port %u: DCID %s -> %s\n", unsigned(ntohs(c.local2.sin_port)),
              before.c_str(), hex(*ngtcp2_conn_get_dcid(c.conn)).c_str());
    }
    if (next_key_update && now_ns() >= next_key_update) {
      if (ngtcp2_conn_initiate_key_update(c.conn, now_ns()) == 0)
        ++key_updates;
      else
        ++key_updates_refused;
      next_key_update = now_ns() + uint64_t(key_update * 1e9);
    }
    if (now_ns() >= end) break;
    const uint64_t expiry = ngtcp2_conn_get_expiry(c.conn), t = now_ns();
    int wait_ms = expiry <= t ? 0 : int(std::min<uint64_t>((expiry - t) / 1'000'000 + 1, 100));
    pollfd p[2] = {{c.fd, POLLIN, 0}, {c.fd2, POLLIN, 0}};
    if (poll(p, c.fd2 >= 0 ? 2 : 1, wait_ms) > 0) {
      uint8_t buf[65536];
      ssize_t n;
      int from = 0;  // the socket read (0: the first path's)
      auto next_packet = [&]() {
        n = recv(c.fd, buf, sizeof buf, MSG_DONTWAIT);
        from = 0;
        if (n <= 0 && c.fd2 >= 0) {
          n = recv(c.fd2, buf, sizeof buf, MSG_DONTWAIT);
          from = 1;
        }
        return n > 0;
      };
      while (next_packet()) {
        ngtcp2_pkt_info pi{};
        rv = ngtcp2_conn_read_pkt(c.conn, from ? &path2 : &path, &pi, buf, size_t(n), now_ns());
        if (rv == NGTCP2_ERR_CRYPTO) {  // our TLS refused dpctld (its certificate): say so, as a real client does
          ngtcp2_connection_close_error ccerr;
          ngtcp2_connection_close_error_set_transport_error_tls_alert(&ccerr, ngtcp2_conn_get_tls_alert(c.conn), nullptr,
                                                                      0);
          uint8_t out[1452];
          ngtcp2_path_storage ps;
          ngtcp2_path_storage_zero(&ps);
          ngtcp2_pkt_info opi{};
          const ngtcp2_ssize w =
              ngtcp2_conn_write_connection_close(c.conn, &ps.path, &opi, out, sizeof out, &ccerr, now_ns());
          if (w > 0) send(c.fd, out, size_t(w), 0);
        }
        if (rv != 0) {
          ngtcp2_connection_close_error e;
          ngtcp2_conn_get_connection_close_error(c.conn, &e);
          fprintf(stderr, "quic_register_client: connection ended: %s (peer's error 0x%llx, our TLS alert %u)\n",
                  ngtcp2_strerror(rv), (unsigned long long)e.error_code, unsigned(ngtcp2_conn_get_tls_alert(c.conn)));
          return c.replies >= want && !holding ? 0 : 1;
        }
      }
    }
    if (ngtcp2_conn_get_expiry(c.conn) <= now_ns() && ngtcp2_conn_handle_expiry(c.conn, now_ns()) != 0) {
      fprintf(stderr, "quic_register_client: timed out%s\n", holding ? " (idle) during the hold" : "");
      return 1;
    }
    if (c.handshake_done && c.stream < 0 && ngtcp2_conn_open_bidi_stream(c.conn, &c.stream, nullptr) != 0) {
      fprintf(stderr, "quic_register_client: cannot open a stream\n");
      return 1;
    }
    if (!flush(c)) return 1;
  }
  if (holding) {
    fprintf(stderr, "quic_register_client: packets after the replies: %llu\n",
            (unsigned long long)(c.packets_sent - sent_before_hold));
    // What ngtcp2's loss recovery says of them: bytes of ack-eliciting packets not acknowledged yet, and probe
    // timeouts since the last acknowledgement (a peer that never acknowledges leaves every PING in flight).
    ngtcp2_conn_stat cs;
    ngtcp2_conn_get_conn_stat(c.conn, &cs);
    fprintf(stderr, "quic_register_client: in flight at the end: %llu bytes, probe timeouts %zu\n",
            (unsigned long long)cs.bytes_in_flight, cs.pto_count);
    if (key_update > 0)
      fprintf(stderr, "quic_register_client: key updates started: %u, refused: %u\n", key_updates, key_updates_refused);
    fprintf(stderr, "quic_register_client: DCID at the end: %s\n", hex(*ngtcp2_conn_get_dcid(c.conn)).c_str());
    return 0;
  }
  return c.replies >= want ? 0 : 1;
}
