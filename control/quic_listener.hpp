// dpctld's QUIC port (agent_quic_listen, UDP): QUIC version 1 (RFC 9000/9001) server connections with ngtcp2,
// TLS 1.3 by GnuTLS, one connection per agent. The client certificate is required and verified by the same OpenSSL
// store as the TCP port (TlsServer::verify_peer), so a failed QUIC handshake is classified, counted and logged
// exactly like a TCP one (HandshakeEvidence, "transport":"quic"). Once the handshake is done, the agent's first
// bidirectional stream carries the same newline-delimited JSON as the TLS connection (AgentLink).
//
// What counts as a handshake failure: a connection exists once a QUIC v1 Initial (in a datagram of at least
// 1200 bytes, RFC 9000 §14.1) from an unknown connection ID decrypts and carries CRYPTO data; it fails -- one
// JSON line, one count -- when the TLS stack refused the client, the client closed it before the handshake
// finished, it ran past handshake_timeout, or it was shed. Every other datagram that leads nowhere (not QUIC,
// another version, a short header or Handshake packet for no connection, an Initial that does not decrypt or
// carries no CRYPTO data) is dropped and counted by reason (dropped()), with no line: UDP sources are not
// verified, and a line per garbage datagram would let anyone flood the log.
//
// Bounds: at most `max_pending` connections without a registration (handshaking, or done and not registered yet)
// and `max_per_source` from one address; a newcomer over a limit makes the oldest of them give way (a handshake is
// reported as `shed`). A connection must register within `register_timeout_ns` of its handshake.
//
// Key hand-over (docs/protocol.md "Key hand-over"): every connection the listener keeps holds a session index from
// its first Initial (Callbacks::reserve_index; released when it ends unregistered), and every connection ID it
// issues is that index (4, big-endian) | a random tail (4). The 1-RTT secrets and the cipher suite are captured in
// GnuTLS's secret function. Once registered with the QUIC framing and the agent has acknowledged everything sent,
// the connection goes to dpgw (Callbacks::handed_over gets its QuicSessionSpec) and the listener forgets it without
// a CONNECTION_CLOSE; datagrams for its connection IDs that still arrive while dpctld holds the session (dpgw serves it,
// or is about to) are dropped silently (`handed_over`), never answered with a Stateless Reset. Short-header packets of
// any other connection ID (a connection dpgw lost when it restarted, whose packets its kernel path brings here) are
// answered with a Stateless Reset (RFC 9000 10.3) whose token is the one issued with that connection ID, rate-limited
// and always smaller than what triggered it, so that the agent knows at once and registers again.
#pragma once
#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <netinet/in.h>

#include <array>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>

#include "common/event_loop.hpp"
#include "common/line_buffer.hpp"
#include "control/agent_channel.hpp"
#include "control/h3_server.hpp"
#include "control/tls_server.hpp"
#include "proto/gateway_specs.hpp"

namespace dptun {

struct GnutlsCredentialsFree {
  void operator()(gnutls_certificate_credentials_st* c) const { gnutls_certificate_free_credentials(c); }
};
using GnutlsCredentials = std::unique_ptr<gnutls_certificate_credentials_st, GnutlsCredentialsFree>;
struct GnutlsSessionFree {
  void operator()(gnutls_session_int* s) const { gnutls_deinit(s); }
};
using GnutlsSession = std::unique_ptr<gnutls_session_int, GnutlsSessionFree>;
struct NgtcpConnFree {
  void operator()(ngtcp2_conn* c) const { ngtcp2_conn_del(c); }
};
using NgtcpConn = std::unique_ptr<ngtcp2_conn, NgtcpConnFree>;

// Datagrams the QUIC port dropped without a connection to blame (metric dptun_agent_quic_datagrams_dropped_total).
enum class QuicDrop : uint8_t {
  NotQuic,             // too short, or no QUIC header (RFC 9000 §17)
  UnsupportedVersion,  // a long header of another version (1200 bytes or more: answered, Version Negotiation)
  UnknownConnection,   // a connection ID no connection has (short header, Handshake, or after a close)
  BadInitial,          // an Initial ngtcp2 refuses (under 1200 bytes, ...) or that opens no handshake
  NoSessionIndex,      // an Initial while all 32768 session indexes are taken
  HandedOver,          // for a connection dpgw took over (stragglers the kernel path still brings)
  Count
};
const char* quic_drop_name(QuicDrop d);

class QuicListener;

// One QUIC connection of the port: an agent's (ALPN dptun: its registration stream, then the hand-over), or an HTTP/3
// client's (ALPN h3: an H3ServerSession answers its CONNECT-UDP requests; docs/masque.md).
class QuicAgentConnection final : public AgentLink, public H3Transport {
 public:
  QuicAgentConnection(QuicListener& owner, uint64_t id, Endpoint peer);
  ~QuicAgentConnection() override;
  QuicAgentConnection(const QuicAgentConnection&) = delete;
  QuicAgentConnection& operator=(const QuicAgentConnection&) = delete;

  uint64_t id() const override { return id_; }
  const Endpoint& peer() const override { return evidence_.client; }
  const char* transport() const override { return "quic"; }
  void send(const std::string& line) override;
  void close(bool now = false) override;
  bool closed() const override { return dead_; }
  bool registered() const override { return registered_; }
  void set_registered() override {  // the session record holds its index now
    registered_ = true;
    holds_index_ = false;
  }
  uint64_t created_ns() const override { return established_ns_; }
  bool line_too_long() const override { return in_.too_long(); }
  X509* peer_certificate() const override { return cert_.get(); }
  STACK_OF(X509)* peer_chain() const override { return chain_.get(); }
  std::vector<uint8_t> export_secret(uint32_t session_index) const override;
  uint32_t reserved_index() const override { return index_; }
  bool can_hand_over(std::string& why) const override;
  void hand_over_when_acknowledged() override;
  const std::string& alpn() const { return alpn_; }
  // What the handshake showed of the client (its certificate's subject among it).
  const HandshakeEvidence& evidence() const { return evidence_; }
  // HTTP/3: the answer to a CONNECT-UDP request that Callbacks::connect_udp left for later.
  void complete_connect_udp(int64_t stream_id, const ConnectUdpAnswer& a);
  // Whether the request on `stream_id` still waits for that answer (its stream open, nothing sent on it).
  bool connect_udp_waiting(int64_t stream_id) const { return !dead_ && !closing_ && h3_ && h3_->waiting(stream_id); }

 private:
  friend class QuicListener;
  bool start(const ngtcp2_pkt_hd& hd, const ngtcp2_path& path, uint64_t now_ns, std::string& error);
  // Unsent and unacknowledged bytes of one stream: ngtcp2 refers to them until they are acknowledged, so each piece
  // stays where it is (a deque of strings) until then.
  struct TxChunk {
    std::string data;
    uint64_t offset = 0;  // stream offset of data[0]
  };
  struct StreamTx {
    std::deque<TxChunk> chunks;
    uint64_t end = 0;   // stream offset after the last byte queued
    uint64_t sent = 0;  // stream offset up to which ngtcp2 has taken the bytes
    bool fin = false, fin_sent = false;
    bool unsent() const { return sent < end || (fin && !fin_sent); }
  };
  void queue(int64_t stream_id, std::string bytes, bool fin);
  bool all_sent() const;
  bool all_acknowledged() const;
  // H3Transport (HTTP/3 connections): streams and closes are queued and carried out by the listener's service().
  int64_t open_uni_stream() override;
  void write(int64_t id, std::span<const uint8_t> bytes, bool fin) override;
  void reset_stream(int64_t id, uint64_t app_error) override;
  void close_connection(uint64_t app_error, const std::string& reason) override;

  QuicListener& owner_;
  uint64_t id_;
  ngtcp2_crypto_conn_ref conn_ref_{};
  GnutlsSession tls_;
  NgtcpConn conn_;
  HandshakeEvidence evidence_;
  bool crypto_seen_ = false;    // CRYPTO data arrived: a client, whose failure is a handshake failure (logged)
  bool hello_seen_ = false;     // the ClientHello reached GnuTLS (its fields are in evidence_)
  bool established_ = false;
  bool registered_ = false;
  bool closing_ = false;        // close once the stream's data is acknowledged (or close_deadline_ns_)
  bool close_now_ = false;
  bool dead_ = false;           // closed; removed at the end of the listener's current pass
  uint64_t started_ns_ = 0;
  uint64_t deadline_ns_ = 0;    // handshake_timeout
  uint64_t established_ns_ = 0;
  uint64_t close_deadline_ns_ = 0;
  std::string alpn_;
  X509Ptr cert_;
  X509StackPtr chain_;
  std::vector<std::string> cids_;  // connection IDs that lead to this connection (the listener's map keys)
  int64_t stream_id_ = -1;         // the registration stream: the first bidirectional stream the client opened
  LineBuffer in_{AgentChannel::kMaxLine};
  std::map<int64_t, StreamTx> tx_;  // by stream: the registration stream, or HTTP/3's streams
  std::vector<std::pair<int64_t, uint64_t>> resets_;  // streams to shut down, with the application error
  uint64_t close_error_ = 0;      // the application error of a close (H3_NO_ERROR for HTTP/3 when none is given)
  std::unique_ptr<H3ServerSession> h3_;  // ALPN h3 only
  sockaddr_in remote_{};  // the client's address as its first Initial came (where ngtcp2's path has none)
  // Key hand-over.
  uint32_t index_ = 0;        // the session index its connection IDs carry
  bool holds_index_ = false;  // reserved by this connection (until it registers or ends)
  // The tails of the connection IDs it issued and the agent has not retired, the first one first: what dpgw accepts
  // after the hand-over (at most kQuicMaxRxCids: ngtcp2 issues no more than the agent's active_connection_id_limit,
  // and its pool holds 8).
  std::vector<std::array<uint8_t, 4>> tails_;
  gnutls_cipher_algorithm_t cipher_ = GNUTLS_CIPHER_UNKNOWN;
  std::vector<uint8_t> rx_secret_, tx_secret_;  // 1-RTT traffic secrets (client's, server's); wiped with it
  bool handover_armed_ = false;
  uint64_t handover_deadline_ns_ = 0;
};

class QuicListener {
 public:
  struct Limits {
    uint64_t timeout_ns = 10'000'000'000ull;
    size_t max_pending = 256;
    size_t max_per_source = 16;
    uint64_t register_timeout_ns = 15'000'000'000ull;
  };
  struct Callbacks {
    std::function<uint64_t()> next_id;  // ids shared with the TCP port's connections
    std::function<void(AgentLink&, const HandshakeEvidence&)> established;
    std::function<void(const HandshakeEvidence&, HandshakeFailure)> failed;
    std::function<void(AgentLink&, const std::string& line)> line;
    std::function<void(AgentLink&)> closed;  // an established connection ended
    // A session index for a new connection (nullopt: none free; the Initial is dropped), and its release when the
    // connection ends without having registered.
    std::function<std::optional<uint32_t>()> reserve_index;
    std::function<void(uint32_t)> release_index;
    // The agent acknowledged everything after hand_over_when_acknowledged(): true when dpgw takes the connection
    // (the listener then forgets it, no CONNECTION_CLOSE, no `closed` call); false closes it as usual.
    std::function<bool(AgentLink&, QuicSessionSpec&&)> handed_over;
    // Whether dpgw serves the session of this index (a connection ID's first 4 bytes) as far as dpctld knows:
    // short-header packets with it that reach the listener are dropped silently then, never answered with a
    // Stateless Reset (the hand-over window, before dpgw installed the session; a guess at a connection ID).
    // Unset: the listener's own memory of hand-overs (60 s).
    std::function<bool(uint32_t index)> handed_over_held;
    // HTTP/3 (ALPN h3): a CONNECT-UDP request of a client to answer (the route and certificate check; kLater: answered
    // with complete_connect_udp), and a request refused before any route was looked at (docs/masque.md). Once a 2xx
    // answer is queued on a connection the owner registered (set_registered), it is handed over like an agent's once
    // the client has acknowledged everything (Callbacks::handed_over).
    std::function<ConnectUdpAnswer(QuicAgentConnection&, int64_t stream_id, const ConnectUdpRequest&)> connect_udp;
    std::function<void(QuicAgentConnection&, int64_t stream_id, uint16_t status, const std::string& why)> bad_request;
  };
  // Stateless Resets (RFC 9000 10.3) for short-header packets of no connection: a global token bucket of this many
  // per second (and as many at once).
  static constexpr uint32_t kStatelessResetsPerSec = 100;
  // The smallest reset sent (5 unpredictable bytes, the first byte's 6 bits among them, then the 16-byte token: RFC
  // 9000 10.3's 38 unpredictable bits; ngtcp2 takes no shorter one) and the biggest (43 bytes, RFC 9000 10.3: the
  // size of a small short-header packet); a reset is always smaller than the packet that triggered it (10.3.3), so
  // packets of kMinStatelessReset bytes or fewer are never answered.
  static constexpr size_t kMinStatelessReset = 21;
  static constexpr size_t kMaxStatelessReset = 43;
  QuicListener(EventLoop& loop, const TlsServer& tls, Limits limits, Callbacks callbacks);
  ~QuicListener();
  // dpctld's certificate and key (tls.cert, tls.key) for GnuTLS. Loading again replaces them only when both load;
  // connections keep what they began with.
  bool load_credentials(const TlsFiles& files, std::string& error);
  // Binds the UDP socket. An address not on this host yet is retried every second, as the TCP port does.
  bool listen(Endpoint at, std::string& error);
  bool listening() const { return bool(fd_); }
  void set_limits(Limits limits) { limits_ = limits; }
  // Handshake and registration timeouts, closes that waited for their last acknowledgement, the socket retry.
  void tick(uint64_t now_ns);
  AgentLink* find(uint64_t id);  // established connections only
  QuicAgentConnection* find_h3(uint64_t id);  // established HTTP/3 connections only
  size_t connections() const { return conns_.size(); }
  size_t handshakes_in_progress() const;
  uint64_t handovers() const { return handovers_; }
  uint64_t stateless_resets() const { return stateless_resets_; }  // sent
  uint64_t stateless_resets_limited() const { return resets_limited_; }  // not sent: over the rate
  uint64_t dropped(QuicDrop d) const { return dropped_[size_t(d)]; }

 private:
  friend class QuicAgentConnection;
  bool try_listen(std::string& error);
  void on_readable();
  void on_datagram(const uint8_t* data, size_t len, const sockaddr_in& from, uint64_t now);
  QuicAgentConnection* accept_initial(const uint8_t* data, size_t len, const sockaddr_in& from, uint64_t now);
  void drop(QuicDrop d) { dropped_[size_t(d)]++; }
  // A short-header packet of `len` bytes for connection ID `dcid` that no connection has: answered with a Stateless
  // Reset when the rate and its size allow (counted as unknown_connection either way).
  void stateless_reset(std::span<const uint8_t> dcid, size_t len, const sockaddr_in& from, uint64_t now);
  bool shed_oldest(std::optional<uint32_t> from);
  // After anything happened to a connection: writes what ngtcp2 has to send, carries out a close.
  void service(QuicAgentConnection& c, uint64_t now);
  void write_packets(QuicAgentConnection& c, uint64_t now);
  void handshake_done(QuicAgentConnection& c, uint64_t now);
  // Ends a connection: `failed` for a handshake that did not complete (logged), quietly otherwise. A CONNECTION_CLOSE
  // goes to the peer unless it already closed.
  void fail_handshake(QuicAgentConnection& c, uint64_t now);
  void finish(QuicAgentConnection& c, uint64_t now, bool send_close, uint64_t app_error = 0);
  void retire(QuicAgentConnection& c);
  void sweep();  // frees retired connections (never while one of their callbacks runs)
  void arm_timer(uint64_t now);
  void on_timer();
  void send_datagram(const sockaddr_in& to, const uint8_t* data, size_t len);
  static sockaddr_in destination(const QuicAgentConnection& c, const ngtcp2_path& path);
  bool new_cid(QuicAgentConnection& c, ngtcp2_cid& cid, uint8_t* reset_token);
  bool handover_ready(QuicAgentConnection& c) const;
  void hand_over(QuicAgentConnection& c, uint64_t now);

  // ngtcp2 and GnuTLS callbacks.
  static int on_recv_stream_data(ngtcp2_conn*, uint32_t flags, int64_t stream_id, uint64_t offset,
                                 const uint8_t* data, size_t len, void* user, void* stream_user);
  static int on_acked_stream_data(ngtcp2_conn*, int64_t stream_id, uint64_t offset, uint64_t len, void* user,
                                  void* stream_user);
  static int on_stream_reset(ngtcp2_conn*, int64_t stream_id, uint64_t final_size, uint64_t app_error, void* user,
                             void* stream_user);
  static int on_stream_close(ngtcp2_conn*, uint32_t flags, int64_t stream_id, uint64_t app_error, void* user,
                             void* stream_user);
  static int on_handshake_completed(ngtcp2_conn*, void* user);
  static int on_recv_crypto_data(ngtcp2_conn*, ngtcp2_crypto_level level, uint64_t offset, const uint8_t* data,
                                 size_t len, void* user);
  static int on_get_new_cid(ngtcp2_conn*, ngtcp2_cid* cid, uint8_t* token, size_t cidlen, void* user);
  static int on_remove_cid(ngtcp2_conn*, const ngtcp2_cid* cid, void* user);
  static void on_rand(uint8_t* dest, size_t len, const ngtcp2_rand_ctx*);
  static ngtcp2_conn* get_conn(ngtcp2_crypto_conn_ref* ref);
  static int on_handshake_message(gnutls_session_t s, unsigned htype, unsigned when, unsigned incoming,
                                  const gnutls_datum_t* msg);
  static int on_verify(gnutls_session_t s);
  static int configure_tls(gnutls_session_t s);
  static int on_secret(gnutls_session_t s, gnutls_record_encryption_level_t level, const void* rx_secret,
                       const void* tx_secret, size_t len);

  EventLoop& loop_;
  const TlsServer& tls_;
  Limits limits_;
  Callbacks cb_;
  std::shared_ptr<gnutls_certificate_credentials_st> creds_;
  gnutls_priority_t priority_ = nullptr;
  Endpoint at_;
  sockaddr_in local_{};
  Fd fd_;
  Fd timer_;
  uint64_t next_listen_ns_ = 0;
  std::array<uint8_t, 32> reset_secret_{};  // stateless reset tokens (RFC 9000 §10.3) derive from it
  std::map<uint64_t, std::unique_ptr<QuicAgentConnection>> conns_;
  std::unordered_map<std::string, QuicAgentConnection*> by_cid_;
  std::vector<uint64_t> retired_;
  // Connection IDs of connections handed over to dpgw, until when datagrams for them are dropped as `handed_over`.
  std::unordered_map<std::string, uint64_t> handed_over_;
  uint64_t handovers_ = 0;
  uint64_t stateless_resets_ = 0, resets_limited_ = 0;
  double reset_tokens_ = kStatelessResetsPerSec;  // the token bucket, refilled by time
  uint64_t reset_refill_ns_ = 0;
  uint64_t dropped_[size_t(QuicDrop::Count)] = {};
  uint64_t armed_ns_ = 0;
  bool in_ngtcp2_ = false;  // inside ngtcp2_conn_read_pkt / handle_expiry (their callbacks may call send, close)
};

}  // namespace dptun
