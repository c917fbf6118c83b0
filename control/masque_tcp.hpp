// dpctld's CONNECT-UDP port on TCP (`masque_tcp_listen`, docs/masque.md "HTTP/2 and HTTP/1.1 fallback"): TLS 1.3
// handshakes with a client certificate exactly as on the agent port (control/agent_listener.hpp: the same timeout,
// limits on unfinished handshakes, failure classification), on a TLS context with ALPN "h2" and "http/1.1"; then
// each connection speaks HTTP/2 (ALPN h2) or HTTP/1.1 (ALPN http/1.1, or none) through control/masque_tcp_session.hpp,
// carried here over the socket without blocking. Slow path.
//
// Bounds: at most kMaxConnections established connections, kMaxPerSource from one IPv4 address (a newcomer over
// either is closed at once, counted); a connection that has no accepted CONNECT-UDP stream and no request waiting
// for its answer for kIdleNs (from its handshake, or since its last tunnel ended) is closed, counted: a client that
// sends half a request and waits is cut after kIdleNs. Each connection queues at most
// MasqueTcpSession::kMaxPendingOutput bytes of replies plus one read's worth of protocol output.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/event_loop.hpp"
#include "control/agent_listener.hpp"
#include "control/masque_client.hpp"
#include "control/masque_tcp_session.hpp"
#include "control/tls_server.hpp"

namespace dptun {

class MasqueTcpServer {
 public:
  static constexpr size_t kMaxConnections = 1024;
  static constexpr size_t kMaxPerSource = 32;
  static constexpr uint64_t kIdleNs = 10'000'000'000ull;
  static constexpr size_t kMaxBatch = 64;  // UDP payloads per datagrams() call (a masque_datagrams message)

  struct Callbacks {
    std::function<uint64_t()> next_id;  // a connection id unique among dpctld's control connections
    std::function<void(const HandshakeEvidence&)> established;
    AgentListener::Failed failed;
    std::function<ConnectUdpAnswer(const MasqueClientView&, int32_t stream, const ConnectUdpRequest&)> connect_udp;
    std::function<void(const MasqueClientView&, int32_t stream, uint16_t status, const std::string& why)> bad_request;
    // UDP payloads of one accepted stream, 1..kMaxBatch of them, in order (what one read brought).
    std::function<void(const MasqueClientView&, int32_t stream, std::vector<std::vector<uint8_t>>&& payloads)> datagrams;
    // An accepted stream ended by the client or its connection (not after cut()).
    std::function<void(const MasqueClientView&, int32_t stream, const std::string& why)> tunnel_ended;
  };
  struct Stats {
    uint64_t connections_h2 = 0, connections_h1 = 0;  // established connections, by protocol
    uint64_t over_limit = 0;                          // closed at once: kMaxConnections or kMaxPerSource reached
    uint64_t idle_closed = 0;                         // closed after kIdleNs without a tunnel
    CapsuleStats capsules;                            // of connections closed so far (live ones: stats())
  };

  MasqueTcpServer(EventLoop& loop, const TlsServer& tls, AgentListener::Limits limits, Callbacks cb);
  ~MasqueTcpServer();
  bool listen(Endpoint at, std::string& error) { return listener_.listen(at, error); }
  void set_limits(AgentListener::Limits limits) { listener_.set_limits(limits); }
  void tick(uint64_t now_ns);

  // A reply for an accepted stream: false when dropped (the connection or stream is gone, or over its output bound).
  bool deliver(uint64_t conn, int32_t stream, std::span<const uint8_t> payload);
  void cut(uint64_t conn, int32_t stream);
  void complete(uint64_t conn, int32_t stream, const ConnectUdpAnswer& a);
  // The client of a live connection (nullopt when it is gone).
  std::optional<MasqueClientView> view(uint64_t conn) const;
  // Whether request `stream` of connection `conn` still waits for its answer (a reset stream does not).
  bool waiting(uint64_t conn, int32_t stream) const;

  size_t connections() const { return conns_.size(); }
  size_t handshakes_in_progress() const { return listener_.handshakes_in_progress(); }
  // Totals: closed connections' and live ones'.
  Stats stats() const;

 private:
  struct Conn {
    uint64_t id = 0;
    Fd fd;
    SslPtr ssl;
    HandshakeEvidence evidence;
    std::unique_ptr<MasqueTcpSession> session;
    std::string out;
    size_t out_off = 0;
    uint64_t idle_since_ns = 0;  // when it last had no tunnel and no waiting request (0: it has one)
    bool dead = false;
    bool want_write = false;
    std::map<int32_t, std::vector<std::vector<uint8_t>>> batch;  // payloads read, not yet handed on
  };
  void on_established(Fd fd, SslPtr ssl, const HandshakeEvidence& ev);
  void on_event(uint64_t id, uint32_t events);
  void read_some(Conn& c);
  void flush_batch(Conn& c);
  void write_some(Conn& c);
  void after_activity(Conn& c);
  void close(Conn& c);
  void reap();
  MasqueClientView view_of(const Conn& c) const;
  Conn* find(uint64_t id);

  EventLoop& loop_;
  Callbacks cb_;
  AgentListener listener_;
  std::map<uint64_t, std::unique_ptr<Conn>> conns_;
  Stats closed_;
};

}  // namespace dptun
