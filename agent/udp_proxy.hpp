// `dpagent udp` (what `pomerium-cli udp` does): a local UDP socket whose datagrams reach one target behind the gateway
// through MASQUE CONNECT-UDP (docs/masque.md), over HTTP/3 (masque_client.hpp: each datagram in a QUIC DATAGRAM
// frame) or, where UDP to the gateway is blocked, HTTP/2 over TLS on TCP to the same host and port
// (h2_masque_client.hpp: each datagram in a DATAGRAM capsule on the request stream); UdpHttp says which. Each local
// source address (a program here) gets its own connection with one CONNECT-UDP request, whichever the version, so
// the gateway sees one flow per source and one source's TCP backlog never holds up another's; replies go back to
// the source they belong to. At most max_clients sources at once (datagrams from more are dropped and counted); a
// source silent both ways for idle_ns is forgotten and its connection closed.
// At start one connection makes the request before any local traffic, so that a wrong target, a refused
// certificate or an unreachable gateway shows at once; the first local source takes that connection over. When
// that first request fails for a reason retrying cannot mend -- the gateway refuses it (4xx with its
// Proxy-Status), TLS fails permanently (tls_failure.hpp), or the gateway does not offer CONNECT-UDP -- fatal() is
// called with what to change. Transient failures (no answer, a lost connection, 5xx) are retried with backoff
// (0.5 s doubling to 30 s), logged. With UdpHttp::Auto an HTTP/3 connection that hears nothing from the gateway
// (kFallbackNs, or an ICMP port unreachable) switches dpagent to HTTP/2 for good (logged once); a refusal over
// HTTP/3 is an answer, never a reason to fall back.
// Datagrams from a source before its request is answered wait, at most kHeld of them (then dropped and counted),
// and go out after the 2xx; those still waiting when the attempt fails are dropped and counted.
#pragma once
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "agent/agent_ssl.hpp"
#include "agent/connect_udp_connection.hpp"
#include "agent/masque_client.hpp"
#include "agent/quic_client_tls.hpp"
#include "common/event_loop.hpp"
#include "common/inet.hpp"
#include "common/unix_socket.hpp"

namespace dptun {

// Which HTTP version carries the requests (--http).
enum class UdpHttp : uint8_t {
  Auto,  // HTTP/3 first; when the gateway's UDP port gives no answer (kFallbackNs, or ICMP port unreachable),
         // HTTP/2 over TCP to the same host and port, for this and every later connection
  H3,    // HTTP/3 only
  H2,    // HTTP/2 over TCP only
};
const char* udp_http_name(UdpHttp h);  // "auto", "3", "2"

struct UdpProxyOptions {
  std::string via_host;            // --via https://HOST[:PORT]: a name or IPv4 address (resolved once at start)
  uint16_t via_port = 443;
  std::string authority;           // HOST[:PORT] as written in --via: the request's :authority
  std::string server_name;         // the name the gateway's certificate must carry (default via_host)
  std::string target_host;         // --target NAME:PORT
  uint16_t target_port = 0;
  Endpoint listen;                 // --listen IP:PORT
  std::string cert, key, ca;
  unsigned max_clients = 64;
  uint64_t idle_ns = 60'000'000'000ull;
  uint16_t mtu = 1500;             // the path MTU to the gateway: QUIC packets up to mtu - 28 bytes
  UdpHttp http = UdpHttp::Auto;    // --http
};

// Why a UDP payload did not make it, one counter each (stats_json "drops", beside the receive side's reasons of
// ConnectUdpDrop: malformed, unknown_stream, context, not_open).
enum class UdpProxyDrop : uint8_t {
  TooLarge,          // local -> gateway: bigger than the connection's datagram room (never fragmented)
  Congested,         // local -> gateway: no room now (QUIC's congestion window; HTTP/2's bounded send buffer)
  ClientsFull,       // local -> gateway: a new source while max_clients sources are active
  HeldFull,          // local -> gateway: the source's request is not answered yet and kHeld datagrams wait
  ConnectionFailed,  // local -> gateway: waiting when the connection failed, or the source is in its retry backoff
  LocalSend,         // gateway -> local: sendto to the source failed
  Count
};
const char* udp_proxy_drop_name(UdpProxyDrop d);

class UdpProxy {
 public:
  static constexpr size_t kHeld = 16;  // datagrams a source may have waiting for its request's answer
  // After the 2xx, dpctld hands the connection to dpgw once this end has acknowledged it; a datagram that reaches
  // dpctld before that is dropped there. Datagrams wait this long after the 2xx (then go out at the next tick, every
  // 100 ms), which covers the acknowledgement (ngtcp2's ACK delay, 25 ms) and dpgw installing the session.
  static constexpr uint64_t kHandoverGraceNs = 100'000'000;
  // --http auto: an HTTP/3 connection that has heard nothing from the gateway this long after it started (or got
  // an ICMP port unreachable) makes dpagent use HTTP/2 over TCP from then on.
  static constexpr uint64_t kFallbackNs = 3'000'000'000ull;
  using Fatal = std::function<void(const std::string& what)>;

  UdpProxy(EventLoop& loop, UdpProxyOptions opt, Fatal fatal);
  ~UdpProxy();
  UdpProxy(const UdpProxy&) = delete;
  UdpProxy& operator=(const UdpProxy&) = delete;

  // The certificate, key and CA files, the gateway's address, the local socket: clear errors before anything runs.
  bool load(std::string& error);
  // The first connection and request.
  bool start(std::string& error);
  // Idle sources, retries (call about every 100 ms).
  void tick(uint64_t now_ns);
  // Counters as one JSON object.
  std::string stats_json() const;

 private:
  // A local source and its connection; the first connection (the probe, key kProbeKey) has no source until one comes.
  struct Client {
    uint64_t key = 0;
    sockaddr_in addr{};
    std::unique_ptr<ConnectUdpConnection> conn;
    uint64_t opened_ns = 0;  // when conn started
    uint32_t events = 0;     // what conn's descriptor is registered for
    bool announced = false;  // its 2xx was logged
    uint64_t send_from_ns = 0;  // datagrams wait until then after the 2xx (kHandoverGraceNs)
    bool first = false;      // it makes the first request (the probe's, until that has an outcome)
    std::deque<std::vector<uint8_t>> held;
    double backoff_s = 0.5;
    uint64_t retry_at_ns = 0, last_ns = 0;
  };
  static constexpr uint64_t kProbeKey = UINT64_MAX;

  bool connect(Client& c, uint64_t now_ns);
  // --http auto: c's HTTP/3 connection has heard nothing from the gateway (kFallbackNs, ICMP): HTTP/2 from now on,
  // c connects again over it. True when it did.
  bool fall_back(Client& c, uint64_t now_ns);
  void watch(Client& c);  // the connection's descriptor registered for what it waits for
  void disconnect(Client& c, uint64_t now_ns);
  // After any event of c's connection: announce the 2xx, send what waits, handle the end.
  void progress(Client* c, uint64_t now_ns);
  void connection_ended(Client* c, uint64_t now_ns);
  void on_local(uint64_t now_ns);
  void from_local(const sockaddr_in& from, std::span<const uint8_t> payload, uint64_t now_ns);
  void send_payload(Client& c, std::span<const uint8_t> payload, uint64_t now_ns);
  void deliver(Client& c, std::span<const uint8_t> payload);
  void count(UdpProxyDrop d, uint64_t n = 1) { drops_[size_t(d)] += n; }
  void backoff(Client& c, uint64_t now_ns);
  std::string target() const;
  void give_up(const std::string& what);

  EventLoop& loop_;
  UdpProxyOptions opt_;
  Fatal fatal_;
  GnutlsClientCredentials credentials_;
  X509StorePtr store_;
  SslCtxPtr ssl_ctx_;   // HTTP/2: TLS over TCP
  bool use_h2_ = false;  // new connections use HTTP/2
  sockaddr_in gateway_{};
  Fd local_;
  std::unique_ptr<Client> probe_;
  bool probing_ = true;     // the first request has had no outcome yet
  bool gave_up_ = false;
  bool flushing_ = false;  // sending what waited: send_payload sends, never holds
  std::unordered_map<uint64_t, std::unique_ptr<Client>> clients_;
  // Local datagrams, read kBatch at a time (recvmmsg) into buf_ (kBatch x kMaxDatagram bytes).
  static constexpr size_t kBatch = 32;
  static constexpr size_t kMaxDatagram = 65536;
  std::vector<uint8_t> buf_;
  std::array<mmsghdr, kBatch> rx_msgs_{};
  std::array<iovec, kBatch> rx_iov_{};
  std::array<sockaddr_in, kBatch> rx_from_{};
  bool batching_ = false;         // in on_local: connections' packets wait in their batch
  std::vector<uint64_t> batched_;  // the sources whose connection holds a batch
  // Counters.
  uint64_t datagrams_tx_ = 0, datagrams_rx_ = 0, bytes_tx_ = 0, bytes_rx_ = 0;
  uint64_t connections_ = 0, accepted_ = 0, refused_ = 0, failed_ = 0, idle_closed_ = 0;
  uint64_t connections_h3_ = 0, connections_h2_ = 0, fallbacks_ = 0;
  std::array<uint64_t, size_t(UdpProxyDrop::Count)> drops_{};
  // Drops counted by connections that are gone.
  std::array<uint64_t, size_t(ConnectUdpDrop::Count)> rx_drops_gone_{};
  uint64_t capsules_rx_gone_ = 0, capsules_skipped_gone_ = 0, waited_gone_ = 0, waiting_dropped_gone_ = 0;
};

}  // namespace dptun
