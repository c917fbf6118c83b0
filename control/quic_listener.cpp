#include "control/quic_listener.hpp"

#include <arpa/inet.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/clock.hpp"
#include "common/log.hpp"
#include "common/ngtcp2_callbacks.hpp"
#include "control/control_protocol.hpp"
#include "control/quic_handshake.hpp"

namespace dptun {

namespace {

// TLS 1.3 only (QUIC needs it), the AES-GCM suites alone (the fast path's AEAD), no middlebox compatibility mode
// (RFC 9001 §8.4).
constexpr const char* kPriority = "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:"
                                  "%DISABLE_TLS13_COMPAT_MODE";
constexpr uint64_t kCloseLingerNs = 3'000'000'000ull;
constexpr size_t kMaxUdpPayload = 1452;
// Transport parameters: a few bidirectional streams (an agent's registration; an HTTP/3 client's requests), the 3
// unidirectional streams an HTTP/3 client opens first, and DATAGRAM frames of any size that fits a packet (RFC 9221 §3).
constexpr uint64_t kMaxStreamData = 64 * 1024;
constexpr uint64_t kMaxData = 256 * 1024;
constexpr uint64_t kMaxDatagramFrameSize = 65535;
constexpr uint64_t kMaxStreamsBidi = 4;  // an agent uses the first (its registration), HTTP/3 one per request
constexpr uint64_t kIdleTimeoutNs = 30'000'000'000ull;
// Key hand-over: how long the agent has to acknowledge its registration reply, and how long datagrams for a handed-over
// connection's IDs are dropped as `handed_over` (after that, as `unknown_connection`: silently all the same).
constexpr uint64_t kHandoverTimeoutNs = 10'000'000'000ull;
constexpr uint64_t kHandedOverMemoryNs = 60'000'000'000ull;
constexpr size_t kHandedOverMemoryMax = 65536;

Endpoint endpoint_of(const sockaddr_in& sin) { return Endpoint{Ipv4{ntohl(sin.sin_addr.s_addr)}, ntohs(sin.sin_port)}; }

std::string cid_key(const uint8_t* data, size_t len) { return std::string(reinterpret_cast<const char*>(data), len); }

QuicAgentConnection* conn_of(gnutls_session_t s) {
  auto* ref = static_cast<ngtcp2_crypto_conn_ref*>(gnutls_session_get_ptr(s));
  return ref ? static_cast<QuicAgentConnection*>(ref->user_data) : nullptr;
}

}  // namespace

const char* quic_drop_name(QuicDrop d) {
  switch (d) {
    case QuicDrop::NotQuic: return "not_quic";
    case QuicDrop::UnsupportedVersion: return "unsupported_version";
    case QuicDrop::UnknownConnection: return "unknown_connection";
    case QuicDrop::BadInitial: return "bad_initial";
    case QuicDrop::NoSessionIndex: return "no_session_index";
    case QuicDrop::HandedOver: return "handed_over";
    case QuicDrop::Count: break;
  }
  return "not_quic";
}

// ---- the connection ----

QuicAgentConnection::QuicAgentConnection(QuicListener& owner, uint64_t id, Endpoint peer) : owner_(owner), id_(id) {
  evidence_.transport = "quic";
  evidence_.client = peer;
  rx_secret_.reserve(64);  // assigned once, never reallocated: nothing of a secret is left behind unwiped
  tx_secret_.reserve(64);
}

QuicAgentConnection::~QuicAgentConnection() {
  conn_.reset();  // ngtcp2 first: it may still refer to the TLS session
  tls_.reset();
  gnutls_memset(rx_secret_.data(), 0, rx_secret_.size());
  gnutls_memset(tx_secret_.data(), 0, tx_secret_.size());
}

bool QuicAgentConnection::can_hand_over(std::string& why) const {
  const ngtcp2_cid* dcid = conn_ ? ngtcp2_conn_get_dcid(conn_.get()) : nullptr;
  const ngtcp2_transport_params* params = conn_ ? ngtcp2_conn_get_remote_transport_params(conn_.get()) : nullptr;
  const bool aes = cipher_ == GNUTLS_CIPHER_AES_128_GCM || cipher_ == GNUTLS_CIPHER_AES_256_GCM;
  if (!established_ || (alpn_ != kQuicAlpnDptun && alpn_ != kQuicAlpnH3)) why = "not a dptun or HTTP/3 connection";
  else if (!aes || rx_secret_.size() != quic_secret_len(cipher_ == GNUTLS_CIPHER_AES_256_GCM ? QuicCipher::Aes256Gcm
                                                                                             : QuicCipher::Aes128Gcm) ||
           tx_secret_.size() != rx_secret_.size())
    why = "its 1-RTT secrets were not captured";
  else if (tails_.empty() || index_ == kQuicUnassignedIndex) why = "no connection ID of dpctld's with a session index";
  else if (!dcid || dcid->datalen != kQuicCidLen) why = "its connection ID is not 8 bytes long";
  else if (!params || params->max_datagram_frame_size == 0) why = "it does not take DATAGRAM frames";
  else if (const uint64_t room = quic_peer_max_packet(kQuicTxLayout, params->max_udp_payload_size,
                                                      params->max_datagram_frame_size);
           room < kQuicMinPeerPacket)
    // dpgw would refuse the session too (make_quic_session): too small for a tunnel's packets.
    why = "its transport parameters (max_udp_payload_size " + std::to_string(params->max_udp_payload_size) +
          ", max_datagram_frame_size " + std::to_string(params->max_datagram_frame_size) +
          ") leave room for inner packets of " + std::to_string(room) + " bytes in a DATAGRAM frame; the QUIC framing " +
          "needs " + std::to_string(kQuicMinPeerPacket);
  else return true;
  return false;
}

void QuicAgentConnection::hand_over_when_acknowledged() {
  if (dead_ || handover_armed_) return;
  handover_armed_ = true;
  handover_deadline_ns_ = monotonic_ns() + kHandoverTimeoutNs;
  owner_.service(*this, monotonic_ns());
}

void QuicAgentConnection::complete_connect_udp(int64_t stream_id, const ConnectUdpAnswer& a) {
  if (dead_ || !h3_) return;
  h3_->complete(stream_id, a);
  owner_.service(*this, monotonic_ns());
}

void QuicAgentConnection::send(const std::string& line) {
  if (dead_ || closing_ || stream_id_ < 0) return;
  queue(stream_id_, line + "\n", false);
  owner_.service(*this, monotonic_ns());
}

void QuicAgentConnection::queue(int64_t stream_id, std::string bytes, bool fin) {
  StreamTx& st = tx_[stream_id];
  if (st.fin) return;  // nothing after a stream's end
  if (!bytes.empty()) {
    const uint64_t offset = st.end;
    st.end += bytes.size();
    st.chunks.push_back(TxChunk{std::move(bytes), offset});
  }
  st.fin = fin;
}

bool QuicAgentConnection::all_sent() const {
  return std::none_of(tx_.begin(), tx_.end(), [](const auto& e) { return e.second.unsent(); });
}

bool QuicAgentConnection::all_acknowledged() const {
  return std::all_of(tx_.begin(), tx_.end(), [](const auto& e) { return e.second.chunks.empty() && !e.second.unsent(); });
}

int64_t QuicAgentConnection::open_uni_stream() {
  int64_t id = -1;
  if (!conn_ || ngtcp2_conn_open_uni_stream(conn_.get(), &id, nullptr) != 0) return -1;
  return id;
}

void QuicAgentConnection::write(int64_t id, std::span<const uint8_t> bytes, bool fin) {
  if (dead_ || closing_) return;
  queue(id, std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()), fin);
}

void QuicAgentConnection::reset_stream(int64_t id, uint64_t app_error) {
  if (dead_ || closing_) return;
  resets_.emplace_back(id, app_error);
  tx_.erase(id);
}

void QuicAgentConnection::close_connection(uint64_t app_error, const std::string& reason) {
  if (dead_) return;
  LOG_WARN("client %s: HTTP/3 error 0x%llx (%s); connection closed", peer().str().c_str(),
           (unsigned long long)app_error, reason.c_str());
  close_error_ = app_error;
  closing_ = close_now_ = true;
}

void QuicAgentConnection::close(bool now) {
  if (dead_) return;
  if (!closing_) close_deadline_ns_ = monotonic_ns() + kCloseLingerNs;
  closing_ = true;
  if (now) close_now_ = true;
  owner_.service(*this, monotonic_ns());
}

std::vector<uint8_t> QuicAgentConnection::export_secret(uint32_t session_index) const {
  std::vector<uint8_t> secret(32);
  const uint8_t context[4] = {uint8_t(session_index >> 24), uint8_t(session_index >> 16), uint8_t(session_index >> 8),
                              uint8_t(session_index)};
  if (gnutls_prf_rfc5705(tls_.get(), std::strlen(kExporterLabel), kExporterLabel, sizeof context,
                         reinterpret_cast<const char*>(context), secret.size(),
                         reinterpret_cast<char*>(secret.data())) != GNUTLS_E_SUCCESS)
    return {};
  return secret;
}

bool QuicAgentConnection::start(const ngtcp2_pkt_hd& hd, const ngtcp2_path& path, uint64_t now_ns,
                                std::string& error) {
  started_ns_ = now_ns;
  deadline_ns_ = now_ns + owner_.limits_.timeout_ns;
  gnutls_session_t s = nullptr;
  if (gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NO_AUTO_SEND_TICKET | GNUTLS_NO_END_OF_EARLY_DATA) != 0) {
    error = "gnutls_init failed";
    return false;
  }
  tls_.reset(s);
  conn_ref_.get_conn = QuicListener::get_conn;
  conn_ref_.user_data = this;
  gnutls_session_set_ptr(s, &conn_ref_);
  int rv;
  if ((rv = QuicListener::configure_tls(s)) != 0 || (rv = gnutls_priority_set(s, owner_.priority_)) != 0 ||
      (rv = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, owner_.creds_.get())) != 0) {
    error = std::string("cannot set up the TLS session: ") + gnutls_strerror(rv);
    return false;
  }
  gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
  gnutls_session_set_verify_function(s, QuicListener::on_verify);
  gnutls_handshake_set_hook_function(s, GNUTLS_HANDSHAKE_ANY, GNUTLS_HOOK_PRE, QuicListener::on_handshake_message);
  const gnutls_datum_t alpn[2] = {
      {reinterpret_cast<unsigned char*>(const_cast<char*>(kQuicAlpnDptun)), unsigned(strlen(kQuicAlpnDptun))},
      {reinterpret_cast<unsigned char*>(const_cast<char*>(kQuicAlpnH3)), unsigned(strlen(kQuicAlpnH3))}};
  gnutls_alpn_set_protocols(s, alpn, 2, GNUTLS_ALPN_MANDATORY | GNUTLS_ALPN_SERVER_PRECEDENCE);

  ngtcp2_callbacks cb = ngtcp2_crypto_callbacks(QuicRole::Server);
  cb.recv_crypto_data = QuicListener::on_recv_crypto_data;
  cb.handshake_completed = QuicListener::on_handshake_completed;
  cb.recv_stream_data = QuicListener::on_recv_stream_data;
  cb.acked_stream_data_offset = QuicListener::on_acked_stream_data;
  cb.stream_reset = QuicListener::on_stream_reset;
  cb.stream_close = QuicListener::on_stream_close;
  cb.rand = QuicListener::on_rand;
  cb.get_new_connection_id = QuicListener::on_get_new_cid;
  cb.remove_connection_id = QuicListener::on_remove_cid;

  ngtcp2_settings settings;
  ngtcp2_settings_default(&settings);
  settings.initial_ts = now_ns;
  settings.max_tx_udp_payload_size = kMaxUdpPayload;
  settings.handshake_timeout = UINT64_MAX;  // handshake_timeout is dpctld's (tick), reported as `timeout`

  ngtcp2_transport_params params;
  ngtcp2_transport_params_default(&params);
  params.initial_max_stream_data_bidi_remote = kMaxStreamData;
  params.initial_max_stream_data_uni = kMaxStreamData;
  params.initial_max_data = kMaxData;
  params.initial_max_streams_bidi = kMaxStreamsBidi;
  params.initial_max_streams_uni = 3;
  params.max_idle_timeout = kIdleTimeoutNs;
  params.max_datagram_frame_size = kMaxDatagramFrameSize;
  params.ack_delay_exponent = kQuicAckDelayExponent;  // dpgw's ACK frames are written with it after the hand-over
  params.grease_quic_bit = 0;  // not what the agent is told: configure_tls leaves it out
  params.original_dcid = hd.dcid;

  ngtcp2_cid scid;
  if (!owner_.new_cid(*this, scid, params.stateless_reset_token)) {
    error = "no connection ID";
    return false;
  }
  params.stateless_reset_token_present = 1;
  ngtcp2_conn* c = nullptr;
  if ((rv = ngtcp2_conn_server_new(&c, &hd.scid, &scid, &path, hd.version, &cb, &settings, &params, nullptr, this)) !=
      0) {
    error = std::string("ngtcp2_conn_server_new: ") + ngtcp2_strerror(rv);
    return false;
  }
  conn_.reset(c);
  ngtcp2_conn_set_tls_native_handle(c, s);
  // The client's chosen DCID reaches this connection until it uses ours (RFC 9000 §7.2).
  cids_.push_back(cid_key(hd.dcid.data, hd.dcid.datalen));
  owner_.by_cid_[cids_.back()] = this;
  return true;
}

// ---- the listener ----

QuicListener::QuicListener(EventLoop& loop, const TlsServer& tls, Limits limits, Callbacks callbacks)
    : loop_(loop), tls_(tls), limits_(limits), cb_(std::move(callbacks)) {
  gnutls_rnd(GNUTLS_RND_KEY, reset_secret_.data(), reset_secret_.size());
}

QuicListener::~QuicListener() {
  conns_.clear();
  if (fd_) loop_.remove(fd_.get());
  if (timer_) loop_.remove(timer_.get());
  if (priority_) gnutls_priority_deinit(priority_);
}

bool QuicListener::load_credentials(const TlsFiles& files, std::string& error) {
  if (!priority_ && gnutls_priority_init(&priority_, kPriority, nullptr) != 0) {
    error = "GnuTLS refuses the priority string";
    priority_ = nullptr;
    return false;
  }
  gnutls_certificate_credentials_t raw = nullptr;
  if (gnutls_certificate_allocate_credentials(&raw) != 0) {
    error = "cannot allocate GnuTLS credentials";
    return false;
  }
  GnutlsCredentials creds(raw);
  const int rv = gnutls_certificate_set_x509_key_file(raw, files.cert.c_str(), files.key.c_str(), GNUTLS_X509_FMT_PEM);
  if (rv < 0) {
    error = files.cert + " / " + files.key + ": GnuTLS cannot load the certificate and key for QUIC: " +
            gnutls_strerror(rv);
    return false;
  }
  creds_ = std::shared_ptr<gnutls_certificate_credentials_st>(creds.release(), GnutlsCredentialsFree{});
  return true;
}

bool QuicListener::listen(Endpoint at, std::string& error) {
  at_ = at;
  Fd t(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!t) {
    error = std::string("timerfd_create: ") + strerror(errno);
    return false;
  }
  timer_ = std::move(t);
  loop_.add(timer_.get(), EPOLLIN, [this](uint32_t) { on_timer(); });
  if (try_listen(error)) return true;
  if (errno != EADDRNOTAVAIL) return false;
  LOG_WARN("%s; waiting for %s to appear on this host, retrying every second", error.c_str(), at.ip.str().c_str());
  error.clear();
  next_listen_ns_ = monotonic_ns() + kNsPerSec;
  return true;
}

bool QuicListener::try_listen(std::string& error) {
  Fd fd(socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    error = std::string("socket: ") + strerror(errno);
    return false;
  }
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(at_.ip.v4());
  sin.sin_port = htons(at_.port);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0) {
    const int e = errno;
    error = "agent_quic_listen " + at_.str() + ": cannot bind UDP: " + strerror(e);
    errno = e;
    return false;
  }
  local_ = sin;
  fd_ = std::move(fd);
  loop_.add(fd_.get(), EPOLLIN, [this](uint32_t) { on_readable(); });
  return true;
}

size_t QuicListener::handshakes_in_progress() const {
  size_t n = 0;
  for (const auto& [id, c] : conns_) n += !c->established_ && !c->dead_;
  return n;
}

QuicAgentConnection* QuicListener::find_h3(uint64_t id) {
  auto it = conns_.find(id);
  return it != conns_.end() && it->second->established_ && !it->second->dead_ && it->second->h3_ ? it->second.get()
                                                                                                : nullptr;
}

AgentLink* QuicListener::find(uint64_t id) {
  auto it = conns_.find(id);
  return it != conns_.end() && it->second->established_ && !it->second->dead_ ? it->second.get() : nullptr;
}

void QuicListener::on_readable() {
  uint8_t buf[65536];
  for (int i = 0; i < 64; ++i) {  // bounded per wakeup
    sockaddr_in from{};
    socklen_t flen = sizeof from;
    const ssize_t n = recvfrom(fd_.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &flen);
    if (n < 0) break;  // EAGAIN, or an ICMP error reported on the socket
    on_datagram(buf, size_t(n), from, monotonic_ns());
  }
  sweep();
  arm_timer(monotonic_ns());
}

void QuicListener::on_datagram(const uint8_t* data, size_t len, const sockaddr_in& from, uint64_t now) {
  if (len == 0) return drop(QuicDrop::NotQuic);  // ngtcp2 asserts on an empty datagram
  ngtcp2_version_cid vc;
  const int rv = ngtcp2_pkt_decode_version_cid(&vc, data, len, kQuicCidLen);
  if (rv == NGTCP2_ERR_VERSION_NEGOTIATION) {
    // RFC 9000 §6.1: another version in a datagram of at least 1200 bytes is answered with the versions dpctld
    // speaks (a packet far smaller than what asked for it: nothing to amplify).
    const uint32_t v1 = NGTCP2_PROTO_VER_V1;
    uint8_t unused = 0, buf[256];
    gnutls_rnd(GNUTLS_RND_NONCE, &unused, 1);
    const ngtcp2_ssize n = ngtcp2_pkt_write_version_negotiation(buf, sizeof buf, unused, vc.scid, vc.scidlen, vc.dcid,
                                                                vc.dcidlen, &v1, 1);
    if (n > 0) send_datagram(from, buf, size_t(n));
    return drop(QuicDrop::UnsupportedVersion);
  }
  if (rv != 0) return drop(QuicDrop::NotQuic);
  QuicAgentConnection* c = nullptr;
  if (auto it = by_cid_.find(cid_key(vc.dcid, vc.dcidlen)); it != by_cid_.end() && !it->second->dead_)
    c = it->second;
  const bool first = !c;
  if (!c) {
    // Never a stateless reset for these: dpgw serves the connection now (or is about to).
    const std::string key = cid_key(vc.dcid, vc.dcidlen);
    const bool held = cb_.handed_over_held ? vc.dcidlen == kQuicCidLen && cb_.handed_over_held(load_be32(vc.dcid))
                                           : handed_over_.count(key) != 0;
    if (held) return drop(QuicDrop::HandedOver);
    if (vc.version == 0) {  // a short header of no connection: dpgw lost it, or never was
      handed_over_.erase(key);
      return stateless_reset({vc.dcid, vc.dcidlen}, len, from, now);
    }
    if (handed_over_.count(key)) return drop(QuicDrop::HandedOver);
    if ((data[0] & 0x30) != 0) return drop(QuicDrop::UnknownConnection);  // 0-RTT, Handshake, Retry (RFC 9000 §17.2)
    c = accept_initial(data, len, from, now);
    if (!c) return;
  }
  sockaddr_in local = local_;
  sockaddr_in remote = from;
  ngtcp2_path path{{reinterpret_cast<sockaddr*>(&local), sizeof local},
                   {reinterpret_cast<sockaddr*>(&remote), sizeof remote},
                   nullptr};
  ngtcp2_pkt_info pi{};
  in_ngtcp2_ = true;  // send() and close() from the callbacks only queue: ngtcp2 cannot write while it reads
  const int r = ngtcp2_conn_read_pkt(c->conn_.get(), &path, &pi, data, len, now);
  in_ngtcp2_ = false;
  if (r != 0) {
    if (first && !c->crypto_seen_) {  // an Initial that opens no handshake: nobody to report
      drop(QuicDrop::BadInitial);
      retire(*c);
      return;
    }
    if (r == NGTCP2_ERR_DRAINING) {  // the peer closed (CONNECTION_CLOSE)
      if (!c->established_) {
        ngtcp2_connection_close_error ccerr;
        ngtcp2_conn_get_connection_close_error(c->conn_.get(), &ccerr);
        c->evidence_.closed_early = true;
        // A TLS alert from the client arrives as a CRYPTO_ERROR (0x100 + alert, RFC 9001 §4.8).
        if (ccerr.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_TRANSPORT && ccerr.error_code >= 0x100 &&
            ccerr.error_code <= 0x1ff) {
          const uint8_t alert = uint8_t(ccerr.error_code & 0xff);
          c->evidence_.ssl_error = openssl_error_for_alert(alert, true);
          c->evidence_.openssl_reason = alert_reason_text(alert, true);
        } else {
          c->evidence_.openssl_reason = "connection closed by the client during the handshake (error 0x" +
                                        [&] {
                                          char b[24];
                                          snprintf(b, sizeof b, "%llx", (unsigned long long)ccerr.error_code);
                                          return std::string(b);
                                        }() +
                                        ")";
        }
        fail_handshake(*c, now);
      } else {
        finish(*c, now, false);
      }
      return;
    }
    if (!c->established_) {
      if (r == NGTCP2_ERR_CRYPTO) {
        const uint8_t alert = ngtcp2_conn_get_tls_alert(c->conn_.get());
        if (!c->evidence_.ssl_error) c->evidence_.ssl_error = openssl_error_for_alert(alert, false);
        if (c->evidence_.openssl_reason.empty()) c->evidence_.openssl_reason = alert_reason_text(alert, false);
      } else if (c->evidence_.openssl_reason.empty()) {
        c->evidence_.openssl_reason = std::string("QUIC: ") + ngtcp2_strerror(r);
      }
      fail_handshake(*c, now);
    } else {
      LOG_WARN("agent %s: QUIC connection error (%s); closed", c->peer().str().c_str(), ngtcp2_strerror(r));
      finish(*c, now, r != NGTCP2_ERR_DROP_CONN);
    }
    return;
  }
  if (first && !c->crypto_seen_) {  // decrypted nothing, or held no CRYPTO data: not a client yet
    drop(QuicDrop::BadInitial);
    retire(*c);
    return;
  }
  service(*c, now);
}

void QuicListener::stateless_reset(std::span<const uint8_t> dcid, size_t len, const sockaddr_in& from, uint64_t now) {
  drop(QuicDrop::UnknownConnection);
  // RFC 9000 10.3.3: smaller than the packet that triggered it (two endpoints resetting each other run out of bytes),
  // and never shorter than a reset the peer can recognize.
  if (len <= kMinStatelessReset || dcid.empty() || !fd_) return;
  if (reset_refill_ns_ == 0) reset_refill_ns_ = now;
  reset_tokens_ = std::min<double>(kStatelessResetsPerSec,
                                   reset_tokens_ + double(now - reset_refill_ns_) * kStatelessResetsPerSec / 1e9);
  reset_refill_ns_ = now;
  if (reset_tokens_ < 1) {
    resets_limited_++;
    return;
  }
  reset_tokens_ -= 1;
  // The token issued with that connection ID (new_cid: the same derivation from reset_secret_), so the agent
  // recognizes it (10.3.1); for an ID dpctld never issued it is a token nobody holds.
  ngtcp2_cid cid;
  ngtcp2_cid_init(&cid, dcid.data(), dcid.size());
  uint8_t token[NGTCP2_STATELESS_RESET_TOKENLEN];
  if (ngtcp2_crypto_generate_stateless_reset_token(token, reset_secret_.data(), reset_secret_.size(), &cid) != 0)
    return;
  const size_t out_len = std::min(len - 1, kMaxStatelessReset);
  uint8_t unpredictable[kMaxStatelessReset];
  gnutls_rnd(GNUTLS_RND_NONCE, unpredictable, sizeof unpredictable);
  uint8_t buf[kMaxStatelessReset];
  const ngtcp2_ssize n =  // (ngtcp2 makes the first unpredictable byte a short header's: 0 1 and 6 random bits)
      ngtcp2_pkt_write_stateless_reset(buf, out_len, token, unpredictable, out_len - NGTCP2_STATELESS_RESET_TOKENLEN);
  if (n <= 0) return;
  send_datagram(from, buf, size_t(n));
  stateless_resets_++;
}

QuicAgentConnection* QuicListener::accept_initial(const uint8_t* data, size_t len, const sockaddr_in& from,
                                                  uint64_t now) {
  ngtcp2_pkt_hd hd;
  if (ngtcp2_accept(&hd, data, len) != 0) {
    drop(QuicDrop::BadInitial);
    return nullptr;
  }
  if (hd.type != NGTCP2_PKT_INITIAL) {  // 0-RTT for no connection: there is no session to resume
    drop(QuicDrop::UnknownConnection);
    return nullptr;
  }
  if (!creds_ || !fd_) {
    drop(QuicDrop::BadInitial);
    return nullptr;
  }
  // Room for one more unfinished connection: the oldest of its address, then of all, gives way.
  const uint32_t src = ntohl(from.sin_addr.s_addr);
  auto unfinished = [&](std::optional<uint32_t> only) {
    size_t n = 0;
    for (const auto& [id, c] : conns_)
      if (!c->dead_ && !c->registered_ && (!only || c->evidence_.client.ip.v4() == *only)) ++n;
    return n;
  };
  if (unfinished(src) >= limits_.max_per_source) shed_oldest(src);
  if (unfinished(std::nullopt) >= limits_.max_pending) shed_oldest(std::nullopt);
  // Its session index from now on (its connection IDs carry it): held by at most max_pending connections, as above.
  const std::optional<uint32_t> index = cb_.reserve_index ? cb_.reserve_index() : std::nullopt;
  if (!index) {
    drop(QuicDrop::NoSessionIndex);
    return nullptr;
  }
  auto conn = std::make_unique<QuicAgentConnection>(*this, cb_.next_id(), endpoint_of(from));
  conn->index_ = *index;
  conn->holds_index_ = true;
  sockaddr_in local = local_;
  sockaddr_in remote = from;
  ngtcp2_path path{{reinterpret_cast<sockaddr*>(&local), sizeof local},
                   {reinterpret_cast<sockaddr*>(&remote), sizeof remote},
                   nullptr};
  std::string error;
  QuicAgentConnection* c = conn.get();
  c->remote_ = from;
  conns_[c->id_] = std::move(conn);
  if (!c->start(hd, path, now, error)) {
    LOG_WARN("agent %s: cannot open a QUIC connection: %s", c->peer().str().c_str(), error.c_str());
    drop(QuicDrop::BadInitial);
    retire(*c);
    return nullptr;
  }
  return c;
}

bool QuicListener::shed_oldest(std::optional<uint32_t> from) {
  QuicAgentConnection* oldest = nullptr;
  for (const auto& [id, c] : conns_)
    if (!c->dead_ && !c->registered_ && (!from || c->evidence_.client.ip.v4() == *from) &&
        (!oldest || c->started_ns_ < oldest->started_ns_))
      oldest = c.get();
  if (!oldest) return false;
  const uint64_t now = monotonic_ns();
  if (!oldest->established_) {
    oldest->evidence_.shed = true;
    fail_handshake(*oldest, now);
  } else {
    LOG_WARN("agent %s: not registered yet while newer QUIC connections wait; closed", oldest->peer().str().c_str());
    finish(*oldest, now, true);
  }
  return true;
}

void QuicListener::handshake_done(QuicAgentConnection& c, uint64_t now) {
  c.established_ = true;
  c.established_ns_ = now;
  gnutls_datum_t proto{};
  if (gnutls_alpn_get_selected_protocol(c.tls_.get(), &proto) == 0)
    c.alpn_.assign(reinterpret_cast<const char*>(proto.data), proto.size);
  LOG_INFO("%s %s: QUIC handshake done (ALPN %s, SNI %s, %s)", c.alpn_ == kQuicAlpnH3 ? "client" : "agent",
           c.peer().str().c_str(), c.alpn_.c_str(),
           c.evidence_.sni.empty() ? "none" : c.evidence_.sni.c_str(),
           c.evidence_.certificate ? c.evidence_.certificate->subject.c_str() : "?");
  cb_.established(c, c.evidence_);
  if (c.alpn_ == kQuicAlpnH3) {
    // An HTTP/3 client (docs/masque.md): its requests are answered by an H3ServerSession; a close without an error
    // of its own says H3_NO_ERROR.
    c.close_error_ = kH3NoError;
    H3ServerSession::Callbacks h3cb;
    h3cb.connect_udp = [this, &c](int64_t stream, const ConnectUdpRequest& req) {
      if (!cb_.connect_udp) return ConnectUdpAnswer{501, "http_protocol_error", "CONNECT-UDP is not served here"};
      return cb_.connect_udp(c, stream, req);
    };
    // The 200 is queued: once the client acknowledged it (and everything before), dpgw takes the connection.
    h3cb.accepted = [&c](int64_t) {
      if (c.registered_) c.hand_over_when_acknowledged();
    };
    h3cb.bad_request = [this, &c](int64_t stream, uint16_t status, const std::string& why) {
      if (cb_.bad_request) cb_.bad_request(c, stream, status, why);
    };
    // The client ended its request before dpgw took the connection: nothing to hand over; the connection (and the
    // session dpctld made for it, Callbacks::closed) ends with H3_NO_ERROR.
    h3cb.request_ended = [&c](int64_t) {
      LOG_INFO("client %s: CONNECT-UDP request ended by the client; connection closed", c.peer().str().c_str());
      c.close(true);
    };
    const ngtcp2_transport_params* params = ngtcp2_conn_get_remote_transport_params(c.conn_.get());
    c.h3_ = std::make_unique<H3ServerSession>(c, std::move(h3cb), params && params->max_datagram_frame_size > 0);
    c.h3_->start();
  }
}

void QuicListener::service(QuicAgentConnection& c, uint64_t now) {
  if (c.dead_ || !c.conn_ || in_ngtcp2_) return;
  if (c.closing_ && (c.close_now_ || c.all_acknowledged() || now >= c.close_deadline_ns_)) {
    if (!c.close_now_ && !c.all_sent()) write_packets(c, now);  // the last line goes out first
    finish(c, now, true, c.close_error_);
    return;
  }
  for (const auto& [id, code] : c.resets_) ngtcp2_conn_shutdown_stream(c.conn_.get(), id, code);
  c.resets_.clear();
  write_packets(c, now);  // acknowledgements of what the agent sent go out before the hand-over
  if (handover_ready(c)) hand_over(c, now);
}

// Everything dpctld sent is acknowledged: the stream's lines and every ack-eliciting packet (HANDSHAKE_DONE,
// NEW_CONNECTION_ID, ...), so nothing of dpctld's is left for the agent to wait for.
bool QuicListener::handover_ready(QuicAgentConnection& c) const {
  if (!c.handover_armed_ || c.dead_ || c.closing_ || !c.conn_ || !c.all_acknowledged()) return false;
  ngtcp2_conn_stat stat;
  ngtcp2_conn_get_conn_stat(c.conn_.get(), &stat);
  return stat.bytes_in_flight == 0;
}

void QuicListener::hand_over(QuicAgentConnection& c, uint64_t now) {
  QuicSessionSpec spec;
  spec.cipher = c.cipher_ == GNUTLS_CIPHER_AES_256_GCM ? QuicCipher::Aes256Gcm : QuicCipher::Aes128Gcm;
  spec.rx_secret = c.rx_secret_;
  spec.tx_secret = c.tx_secret_;
  // Every connection ID the agent holds of dpctld's (it may switch to any, RFC 9000 5.1.1, 9.5); more than dpgw
  // takes cannot be, ngtcp2's pool being as big.
  spec.cid_tails.assign(c.tails_.begin(), c.tails_.begin() + std::min(c.tails_.size(), kQuicMaxRxCids));
  // The agent's limits on what dpgw sends it (RFC 9000 18.2, RFC 9221 3); can_hand_over made sure they exist.
  if (const ngtcp2_transport_params* p = ngtcp2_conn_get_remote_transport_params(c.conn_.get())) {
    spec.max_udp_payload_size = p->max_udp_payload_size;
    spec.max_datagram_frame_size = p->max_datagram_frame_size;
  }
  const ngtcp2_cid* dcid = ngtcp2_conn_get_dcid(c.conn_.get());
  c.handover_armed_ = false;
  if (dcid->datalen != kQuicCidLen) {  // the agent moved to a connection ID of another length since it registered
    LOG_WARN("agent %s: its connection ID is no longer 8 bytes long; not handed over, closed", c.peer().str().c_str());
    finish(c, now, true);
    return;
  }
  std::memcpy(spec.peer_cid.data(), dcid->data, spec.peer_cid.size());
  const ngtcp2_path* path = ngtcp2_conn_get_path(c.conn_.get());
  spec.path = endpoint_of(destination(c, *path));
  const bool taken = cb_.handed_over && cb_.handed_over(c, std::move(spec));
  gnutls_memset(spec.rx_secret.data(), 0, spec.rx_secret.size());  // whatever the callback did not take
  gnutls_memset(spec.tx_secret.data(), 0, spec.tx_secret.size());
  if (!taken) {
    finish(c, now, true);
    return;
  }
  handovers_++;
  // Forgotten without a word: dpgw answers the agent from now on. Its connection IDs are remembered for a while so
  // that stragglers are counted as such.
  if (handed_over_.size() + c.cids_.size() > kHandedOverMemoryMax)
    std::erase_if(handed_over_, [&](const auto& e) { return e.second <= now; });
  if (handed_over_.size() + c.cids_.size() <= kHandedOverMemoryMax)
    for (const std::string& k : c.cids_) handed_over_[k] = now + kHandedOverMemoryNs;
  retire(c);
}

void QuicListener::write_packets(QuicAgentConnection& c, uint64_t now) {
  uint8_t buf[kMaxUdpPayload];
  std::vector<int64_t> blocked;  // streams ngtcp2 cannot take more of in this pass (flow control, shut)
  for (int i = 0; i < 64 && !c.dead_; ++i) {
    // The first stream with something unsent: its first unsent bytes (and its end when they are its last).
    ngtcp2_vec vec{};
    int64_t sid = -1;
    QuicAgentConnection::StreamTx* st = nullptr;
    for (auto& [id, s] : c.tx_) {
      if (!s.unsent() || std::find(blocked.begin(), blocked.end(), id) != blocked.end()) continue;
      for (auto& chunk : s.chunks)
        if (s.sent < chunk.offset + chunk.data.size()) {
          const size_t skip = size_t(s.sent - chunk.offset);
          vec.base = reinterpret_cast<uint8_t*>(chunk.data.data()) + skip;
          vec.len = chunk.data.size() - skip;
          break;
        }
      sid = id;
      st = &s;
      break;
    }
    const bool fin = st && st->fin && st->sent + vec.len == st->end;
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_pkt_info pi{};
    ngtcp2_ssize written_data = -1;
    const ngtcp2_ssize n = ngtcp2_conn_writev_stream(
        c.conn_.get(), &ps.path, &pi, buf, sizeof buf, &written_data,
        fin ? NGTCP2_WRITE_STREAM_FLAG_FIN : NGTCP2_WRITE_STREAM_FLAG_NONE, sid, vec.len ? &vec : nullptr,
        vec.len ? 1 : 0, now);
    if (n < 0) {
      if (sid >= 0 &&
          (n == NGTCP2_ERR_STREAM_DATA_BLOCKED || n == NGTCP2_ERR_STREAM_SHUT_WR || n == NGTCP2_ERR_STREAM_NOT_FOUND)) {
        blocked.push_back(sid);
        continue;
      }
      LOG_WARN("%s %s: QUIC write error (%s); closed", c.h3_ ? "client" : "agent", c.peer().str().c_str(),
               ngtcp2_strerror(int(n)));
      if (!c.established_) {
        c.evidence_.openssl_reason = std::string("QUIC: ") + ngtcp2_strerror(int(n));
        fail_handshake(c, now);
      } else {
        finish(c, now, false);
      }
      return;
    }
    if (st && written_data >= 0) {  // the STREAM frame went into the packet (its FIN with it when asked)
      st->sent += uint64_t(written_data);
      if (fin && st->sent == st->end) st->fin_sent = true;
    }
    if (n == 0) break;
    send_datagram(destination(c, ps.path), buf, size_t(n));
  }
}

// Where ngtcp2 sends a packet: the path it wrote it for (a new path being validated, RFC 9000 §9), not
// necessarily where the last packet came from.
sockaddr_in QuicListener::destination(const QuicAgentConnection& c, const ngtcp2_path& path) {
  if (path.remote.addr && path.remote.addrlen == sizeof(sockaddr_in) && path.remote.addr->sa_family == AF_INET) {
    sockaddr_in to;
    std::memcpy(&to, path.remote.addr, sizeof to);
    return to;
  }
  return c.remote_;
}

void QuicListener::send_datagram(const sockaddr_in& to, const uint8_t* data, size_t len) {
  // A full socket buffer loses the packet: QUIC's loss recovery sends it again.
  (void)sendto(fd_.get(), data, len, 0, reinterpret_cast<const sockaddr*>(&to), sizeof to);
}

void QuicListener::fail_handshake(QuicAgentConnection& c, uint64_t now) {
  if (c.dead_) return;
  const HandshakeFailure category = classify_handshake(c.evidence_);
  cb_.failed(c.evidence_, category);
  finish(c, now, !c.evidence_.closed_early);
}

void QuicListener::finish(QuicAgentConnection& c, uint64_t now, bool send_close, uint64_t app_error) {
  if (c.dead_) return;
  if (send_close && c.conn_ && !ngtcp2_conn_is_in_draining_period(c.conn_.get()) &&
      !ngtcp2_conn_is_in_closing_period(c.conn_.get())) {
    ngtcp2_connection_close_error ccerr;
    const uint8_t alert = c.established_ ? 0 : ngtcp2_conn_get_tls_alert(c.conn_.get());
    if (alert)
      ngtcp2_connection_close_error_set_transport_error_tls_alert(&ccerr, alert, nullptr, 0);
    else if (c.established_)
      ngtcp2_connection_close_error_set_application_error(&ccerr, app_error, nullptr, 0);
    else
      ngtcp2_connection_close_error_set_transport_error(&ccerr, NGTCP2_CONNECTION_REFUSED, nullptr, 0);
    uint8_t buf[kMaxUdpPayload];
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_pkt_info pi{};
    const ngtcp2_ssize n =
        ngtcp2_conn_write_connection_close(c.conn_.get(), &ps.path, &pi, buf, sizeof buf, &ccerr, now);
    if (n > 0) send_datagram(destination(c, ps.path), buf, size_t(n));
  }
  if (c.established_) cb_.closed(c);
  retire(c);
}

void QuicListener::retire(QuicAgentConnection& c) {
  if (c.dead_ && std::find(retired_.begin(), retired_.end(), c.id_) != retired_.end()) return;
  c.dead_ = true;
  if (c.holds_index_ && cb_.release_index) cb_.release_index(c.index_);
  c.holds_index_ = false;
  for (const std::string& k : c.cids_) {
    auto it = by_cid_.find(k);
    if (it != by_cid_.end() && it->second == &c) by_cid_.erase(it);
  }
  c.cids_.clear();
  retired_.push_back(c.id_);
}

void QuicListener::sweep() {
  for (uint64_t id : retired_) conns_.erase(id);
  retired_.clear();
}

void QuicListener::arm_timer(uint64_t now) {
  uint64_t next = UINT64_MAX;
  for (const auto& [id, c] : conns_)
    if (!c->dead_ && c->conn_) next = std::min<uint64_t>(next, ngtcp2_conn_get_expiry(c->conn_.get()));
  if (next == armed_ns_ || !timer_) return;
  armed_ns_ = next;
  itimerspec its{};
  if (next != UINT64_MAX) {
    const uint64_t in = next > now ? next - now : 1;  // 0 would disarm
    its.it_value.tv_sec = time_t(in / kNsPerSec);
    its.it_value.tv_nsec = long(in % kNsPerSec);
  }
  timerfd_settime(timer_.get(), 0, &its, nullptr);
}

void QuicListener::on_timer() {
  uint64_t expirations;
  (void)read(timer_.get(), &expirations, sizeof expirations);
  armed_ns_ = 0;
  const uint64_t now = monotonic_ns();
  std::vector<QuicAgentConnection*> due;
  for (const auto& [id, c] : conns_)
    if (!c->dead_ && c->conn_ && ngtcp2_conn_get_expiry(c->conn_.get()) <= now) due.push_back(c.get());
  for (QuicAgentConnection* c : due) {
    in_ngtcp2_ = true;
    const int rv = ngtcp2_conn_handle_expiry(c->conn_.get(), now);
    in_ngtcp2_ = false;
    if (rv != 0) {  // the idle timeout (or a handshake timeout of ngtcp2's own): nothing more to send
      if (!c->established_) {
        c->evidence_.timed_out = true;
        fail_handshake(*c, now);
      } else {
        LOG_INFO("agent %s: QUIC connection idle; closed", c->peer().str().c_str());
        finish(*c, now, false);
      }
      continue;
    }
    service(*c, now);
  }
  sweep();
  arm_timer(now);
}

void QuicListener::tick(uint64_t now) {
  if (!fd_ && next_listen_ns_ && now >= next_listen_ns_) {
    std::string error;
    if (try_listen(error)) {
      LOG_INFO("agents: QUIC on %s", at_.str().c_str());
    } else if (errno != EADDRNOTAVAIL) {
      LOG_ERROR("%s", error.c_str());
    }
    next_listen_ns_ = now + kNsPerSec;
  }
  std::vector<QuicAgentConnection*> all;
  for (const auto& [id, c] : conns_) all.push_back(c.get());
  for (QuicAgentConnection* c : all) {
    if (c->dead_) continue;
    if (!c->established_ && now >= c->deadline_ns_) {
      c->evidence_.timed_out = true;
      fail_handshake(*c, now);
    } else if (c->established_ && !c->registered_ && !c->closing_ &&
               now - c->established_ns_ > limits_.register_timeout_ns) {
      if (c->h3_)
        LOG_WARN("client %s: no CONNECT-UDP request accepted within %.0f s of its QUIC handshake; closed",
                 c->peer().str().c_str(), double(limits_.register_timeout_ns) / 1e9);
      else
        LOG_WARN("agent %s: no registration within %.0f s of its QUIC handshake; closed", c->peer().str().c_str(),
                 double(limits_.register_timeout_ns) / 1e9);
      c->close(true);
    } else if (c->handover_armed_ && !c->closing_ && now >= c->handover_deadline_ns_) {
      LOG_WARN("%s %s: its %s was not acknowledged within %.0f s; closed", c->h3_ ? "client" : "agent",
               c->peer().str().c_str(), c->h3_ ? "CONNECT-UDP answer" : "registration reply",
               double(kHandoverTimeoutNs) / 1e9);
      c->handover_armed_ = false;
      c->close(true);
    } else if (c->closing_) {
      service(*c, now);
    }
  }
  std::erase_if(handed_over_, [&](const auto& e) { return e.second <= now; });
  sweep();
  arm_timer(now);
}

bool QuicListener::new_cid(QuicAgentConnection& c, ngtcp2_cid& cid, uint8_t* reset_token) {
  for (int attempt = 0; attempt < 8; ++attempt) {
    uint8_t tail[4];
    gnutls_rnd(GNUTLS_RND_NONCE, tail, sizeof tail);
    // Every connection ID carries the connection's session index and a tail of its own; dpgw accepts every tail
    // issued and not retired by the hand-over (docs/protocol.md "Key hand-over").
    const auto bytes = quic_cid(c.index_, std::span<const uint8_t, 4>(tail, 4));
    std::string key = cid_key(bytes.data(), bytes.size());
    if (by_cid_.count(key) || handed_over_.count(key)) continue;
    ngtcp2_cid_init(&cid, bytes.data(), bytes.size());
    if (ngtcp2_crypto_generate_stateless_reset_token(reset_token, reset_secret_.data(), reset_secret_.size(), &cid) !=
        0)
      return false;
    by_cid_[key] = &c;
    c.cids_.push_back(std::move(key));
    std::array<uint8_t, 4> t;
    std::memcpy(t.data(), tail, sizeof tail);
    c.tails_.push_back(t);
    return true;
  }
  return false;
}

// ---- callbacks ----

ngtcp2_conn* QuicListener::get_conn(ngtcp2_crypto_conn_ref* ref) {
  return static_cast<QuicAgentConnection*>(ref->user_data)->conn_.get();
}

void QuicListener::on_rand(uint8_t* dest, size_t len, const ngtcp2_rand_ctx*) {
  gnutls_rnd(GNUTLS_RND_RANDOM, dest, len);
}

int QuicListener::on_get_new_cid(ngtcp2_conn*, ngtcp2_cid* cid, uint8_t* token, size_t cidlen, void* user) {
  auto* c = static_cast<QuicAgentConnection*>(user);
  if (cidlen != kQuicCidLen) return NGTCP2_ERR_CALLBACK_FAILURE;
  return c->owner_.new_cid(*c, *cid, token) ? 0 : NGTCP2_ERR_CALLBACK_FAILURE;
}

int QuicListener::on_remove_cid(ngtcp2_conn*, const ngtcp2_cid* cid, void* user) {
  auto* c = static_cast<QuicAgentConnection*>(user);
  const std::string key = cid_key(cid->data, cid->datalen);
  auto it = c->owner_.by_cid_.find(key);
  if (it != c->owner_.by_cid_.end() && it->second == c) c->owner_.by_cid_.erase(it);
  std::erase(c->cids_, key);
  // One of its own (index | tail) the agent retired (RFC 9000 19.16): dpgw will not be told of it.
  if (cid->datalen == kQuicCidLen && load_be32(cid->data) == c->index_)
    std::erase_if(c->tails_, [&](const std::array<uint8_t, 4>& t) { return std::memcmp(t.data(), cid->data + 4, 4) == 0; });
  return 0;
}

// Called inside ngtcp2_conn_read_pkt: the client's first stream data may follow its Finished in the same datagram,
// so the ALPN must be known before that packet's frames are read.
int QuicListener::on_handshake_completed(ngtcp2_conn*, void* user) {
  auto* c = static_cast<QuicAgentConnection*>(user);
  c->owner_.handshake_done(*c, monotonic_ns());
  return 0;
}

int QuicListener::on_recv_crypto_data(ngtcp2_conn* conn, ngtcp2_crypto_level level, uint64_t offset,
                                      const uint8_t* data, size_t len, void* user) {
  static_cast<QuicAgentConnection*>(user)->crypto_seen_ = true;
  return ngtcp2_crypto_recv_crypto_data_cb(conn, level, offset, data, len, user);
}

int QuicListener::on_recv_stream_data(ngtcp2_conn* conn, uint32_t flags, int64_t stream_id, uint64_t, const uint8_t* data,
                                      size_t len, void* user, void*) {
  auto* c = static_cast<QuicAgentConnection*>(user);
  ngtcp2_conn_extend_max_stream_offset(conn, stream_id, len);
  ngtcp2_conn_extend_max_offset(conn, len);
  if (c->dead_) return 0;
  if (c->h3_) {
    if (!c->closing_) c->h3_->on_stream_data(stream_id, {data, len}, (flags & NGTCP2_STREAM_DATA_FLAG_FIN) != 0);
    return 0;
  }
  // Client-initiated bidirectional streams have ids 0, 4, 8, ... (RFC 9000 §2.1).
  if (c->alpn_ != kQuicAlpnDptun || (stream_id & 3) != 0) return 0;
  if (c->stream_id_ < 0) c->stream_id_ = stream_id;
  if (stream_id != c->stream_id_ || c->closing_) return 0;
  const bool fits = c->in_.append({reinterpret_cast<const char*>(data), len});
  while (!c->closing_ && !c->dead_ && c->in_.has_line()) {
    const std::string line = *c->in_.next();
    if (!line.empty()) c->owner_.cb_.line(*c, line);
  }
  if (!fits && !c->closing_) {
    LOG_WARN("agent %s: a line over %zu bytes on its QUIC stream; connection closed", c->peer().str().c_str(),
             AgentChannel::kMaxLine);
    c->close_now_ = c->closing_ = true;
  }
  return 0;
}

int QuicListener::on_acked_stream_data(ngtcp2_conn*, int64_t stream_id, uint64_t offset, uint64_t len, void* user,
                                       void*) {
  auto* c = static_cast<QuicAgentConnection*>(user);
  auto it = c->tx_.find(stream_id);
  if (it == c->tx_.end()) return 0;
  auto& chunks = it->second.chunks;
  const uint64_t acked = offset + len;
  while (!chunks.empty() && chunks.front().offset + chunks.front().data.size() <= acked) chunks.pop_front();
  return 0;
}

// A stream ngtcp2 is done with (both sides ended, reset, or stopped): what was queued on it will never be sent or
// acknowledged.
int QuicListener::on_stream_close(ngtcp2_conn*, uint32_t, int64_t stream_id, uint64_t, void* user, void*) {
  static_cast<QuicAgentConnection*>(user)->tx_.erase(stream_id);
  return 0;
}

int QuicListener::on_stream_reset(ngtcp2_conn*, int64_t stream_id, uint64_t, uint64_t, void* user, void*) {
  auto* c = static_cast<QuicAgentConnection*>(user);
  if (c->h3_ && !c->dead_) c->h3_->on_stream_reset(stream_id);
  return 0;
}

namespace {
struct HelloFields {
  HandshakeEvidence* ev;
};
int hello_extension(void* ctx, unsigned tls_id, const unsigned char* data, unsigned size) {
  auto* ev = static_cast<HelloFields*>(ctx)->ev;
  const std::span<const uint8_t> body(data, size);
  if (tls_id == 0) ev->sni = parse_server_name(body);
  if (tls_id == 43) ev->offered_versions = parse_supported_versions(body);
  if (tls_id == 16) ev->offered_alpn = parse_alpn_list(body).value_or(std::vector<std::string>{});
  return 0;
}
}  // namespace

int QuicListener::on_handshake_message(gnutls_session_t s, unsigned htype, unsigned, unsigned incoming,
                                       const gnutls_datum_t* msg) {
  QuicAgentConnection* c = conn_of(s);
  if (!c || !incoming || !msg) return 0;
  if (htype == GNUTLS_HANDSHAKE_CERTIFICATE_PKT) {
    // The client's Certificate: an empty one is `no_client_cert`, whatever alert GnuTLS then picks.
    if (tls13_certificate_is_empty({msg->data, msg->size}).value_or(false))
      c->evidence_.ssl_error = ERR_PACK(ERR_LIB_SSL, 0, SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE);
    return 0;
  }
  if (htype != GNUTLS_HANDSHAKE_CLIENT_HELLO || c->hello_seen_) return 0;
  c->hello_seen_ = true;
  HelloFields f{&c->evidence_};
  gnutls_ext_raw_parse(&f, hello_extension, msg, GNUTLS_EXT_RAW_FLAG_TLS_CLIENT_HELLO);
  if (c->evidence_.offered_versions.empty() && msg->size >= 2)  // no supported_versions: the legacy version
    c->evidence_.offered_versions.push_back(uint16_t(msg->data[0] << 8 | msg->data[1]));
  return 0;
}

// The TLS session's links to ngtcp2, as ngtcp2_crypto_gnutls_configure_server_session makes them (secrets, handshake
// data, alerts, the quic_transport_parameters extension), with two differences for the key hand-over: the secret
// function keeps the 1-RTT secrets (on_secret), and the transport parameters sent leave out grease_quic_bit
// (RFC 9287), which ngtcp2 always advertises: an agent told so may clear the fixed bit of its short headers, and
// dpgw's fast path takes only those with the bit set.
int QuicListener::configure_tls(gnutls_session_t s) {
  gnutls_handshake_set_secret_function(s, on_secret);
  gnutls_handshake_set_read_function(
      s, [](gnutls_session_t session, gnutls_record_encryption_level_t level, gnutls_handshake_description_t htype,
            const void* data, size_t len) -> int {
        QuicAgentConnection* c = conn_of(session);
        if (!c || !c->conn_) return -1;
        if (htype == GNUTLS_HANDSHAKE_CHANGE_CIPHER_SPEC) return 0;
        const int rv = ngtcp2_conn_submit_crypto_data(
            c->conn_.get(), ngtcp2_crypto_gnutls_from_gnutls_record_encryption_level(level),
            static_cast<const uint8_t*>(data), len);
        if (rv != 0) {
          ngtcp2_conn_set_tls_error(c->conn_.get(), rv);
          return -1;
        }
        return 0;
      });
  gnutls_alert_set_read_function(
      s, [](gnutls_session_t session, gnutls_record_encryption_level_t, gnutls_alert_level_t,
            gnutls_alert_description_t alert) -> int {
        if (QuicAgentConnection* c = conn_of(session); c && c->conn_) ngtcp2_conn_set_tls_alert(c->conn_.get(), uint8_t(alert));
        return 0;
      });
  return gnutls_session_ext_register(
      s, "QUIC Transport Parameters", NGTCP2_TLSEXT_QUIC_TRANSPORT_PARAMETERS_V1, GNUTLS_EXT_TLS,
      [](gnutls_session_t session, const unsigned char* data, size_t len) -> int {
        QuicAgentConnection* c = conn_of(session);
        if (!c || !c->conn_) return -1;
        const int rv = ngtcp2_conn_decode_remote_transport_params(c->conn_.get(), data, len);
        if (rv != 0) {
          ngtcp2_conn_set_tls_error(c->conn_.get(), rv);
          return -1;
        }
        return 0;
      },
      [](gnutls_session_t session, gnutls_buffer_t out) -> int {
        QuicAgentConnection* c = conn_of(session);
        if (!c || !c->conn_) return -1;
        ngtcp2_transport_params params = *ngtcp2_conn_get_local_transport_params(c->conn_.get());
        params.grease_quic_bit = 0;
        uint8_t buf[512];
        const ngtcp2_ssize n =
            ngtcp2_encode_transport_params(buf, sizeof buf, NGTCP2_TRANSPORT_PARAMS_TYPE_ENCRYPTED_EXTENSIONS, &params);
        if (n < 0 || gnutls_buffer_append_data(out, buf, size_t(n)) != 0) return -1;
        return 0;
      },
      nullptr, nullptr, nullptr, GNUTLS_EXT_FLAG_TLS | GNUTLS_EXT_FLAG_CLIENT_HELLO | GNUTLS_EXT_FLAG_EE);
}

// GnuTLS's new traffic secrets of an encryption level: installed in ngtcp2 as its helper's own secret function does
// (ngtcp2_crypto_derive_and_install_*_key), and the 1-RTT ones kept for the hand-over. Never logged.
int QuicListener::on_secret(gnutls_session_t s, gnutls_record_encryption_level_t gtls_level, const void* rx_secret,
                            const void* tx_secret, size_t len) {
  QuicAgentConnection* c = conn_of(s);
  if (!c || !c->conn_) return -1;
  const ngtcp2_crypto_level level = ngtcp2_crypto_gnutls_from_gnutls_record_encryption_level(gtls_level);
  ngtcp2_conn* conn = c->conn_.get();
  if (rx_secret && ngtcp2_crypto_derive_and_install_rx_key(conn, nullptr, nullptr, nullptr, level,
                                                           static_cast<const uint8_t*>(rx_secret), len) != 0)
    return -1;
  if (tx_secret && ngtcp2_crypto_derive_and_install_tx_key(conn, nullptr, nullptr, nullptr, level,
                                                           static_cast<const uint8_t*>(tx_secret), len) != 0)
    return -1;
  if (level == NGTCP2_CRYPTO_LEVEL_APPLICATION) {
    c->cipher_ = gnutls_cipher_get(s);
    const auto* rx = static_cast<const uint8_t*>(rx_secret);
    const auto* tx = static_cast<const uint8_t*>(tx_secret);
    if (rx) c->rx_secret_.assign(rx, rx + len);
    if (tx) c->tx_secret_.assign(tx, tx + len);
  }
  return 0;
}

int QuicListener::on_verify(gnutls_session_t s) {
  QuicAgentConnection* c = conn_of(s);
  if (!c) return -1;
  unsigned n = 0;
  const gnutls_datum_t* certs = gnutls_certificate_get_peers(s, &n);
  if (!certs || n == 0) return -1;  // GnuTLS refuses the handshake itself (certificate_required)
  std::vector<X509Ptr> parsed;
  for (unsigned i = 0; i < n; ++i) {
    const unsigned char* p = certs[i].data;
    X509* x = d2i_X509(nullptr, &p, long(certs[i].size));
    if (!x) {
      ERR_clear_error();
      c->evidence_.openssl_reason = "the client's certificate does not parse";
      c->evidence_.verify_error = X509_V_ERR_UNSPECIFIED;
      return -1;
    }
    parsed.emplace_back(x);
  }
  X509StackPtr chain(sk_X509_new_null());
  for (size_t i = 1; i < parsed.size(); ++i) sk_X509_push(chain.get(), parsed[i].release());
  if (!c->owner_.tls_.verify_peer(parsed[0].get(), chain.get(), c->evidence_)) {
    c->evidence_.openssl_reason = std::string("certificate verify failed: ") +
                                  X509_verify_cert_error_string(c->evidence_.verify_error);
    return -1;
  }
  c->cert_ = std::move(parsed[0]);
  c->chain_ = std::move(chain);
  return 0;
}

}  // namespace dptun
