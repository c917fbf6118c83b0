// dpagent's control connection to dpctld, non-blocking on dpagent's event loop (common/event_loop.hpp), beside
// the data path: TLS 1.3 with a client certificate, register for a tunnel, derive the session key (TLS exporter),
// hand the session to the data path, keep the connection alive with pings, and on any loss reconnect with
// exponential backoff and register again. The data path never waits for it: dpctld's name is resolved on a
// background thread (common/background.hpp); connects, the handshake and the messages only run when their socket
// is ready. Its deadlines are checked by tick() (call it about every 100 ms): 5 s for a connect (each of the name's
// addresses in turn), 10 s for the handshake, 15 s for the answer to the registration; once registered, a ping
// every 10 s, and the connection counts as lost after 30 s without a line from dpctld. A line from dpctld is at
// most kMaxLine bytes; a longer one is logged and the connection is dropped and made again, as after any loss.
// --transport quic: once dpctld hands the QUIC connection over to dpgw ("framing":"quic" in the reply), nobody
// answers lines on it any more: no pings; the connection's own liveness (ngtcp2's keep-alive PINGs, which dpgw
// acknowledges) decides when it is lost: nothing heard for 4 keepalive intervals (a dpgw that restarted has
// forgotten the connection's keys and stays silent), or ngtcp2's idle timeout; then the agent registers again.
#pragma once
#include <openssl/types.h>
#include <netinet/in.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "agent/agent_ssl.hpp"
#include "agent/quic_control.hpp"
#include "agent/tls_failure.hpp"
#include "common/background.hpp"
#include "common/event_loop.hpp"
#include "common/inet.hpp"
#include "common/line_buffer.hpp"

namespace dptun {

struct ControlOptions {
  std::string server_host;  // dpctld's name or IPv4 address (a name is resolved at every connection) ...
  uint16_t server_port = 7443;
  std::string server_name;  // ... and the name (or IP) its certificate must carry; default: server_host
  std::string cert, key, ca;
  std::string tunnel;       // id or name
  uint8_t weight = 1;
  std::string agent_name;
  bool visitor = false;  // register to visit the tunnel (dpagent visit), not to serve it
  std::string service;   // a visitor's --host, named in the registration (a direct path's data goes by its rule)
  bool pair_data = false;  // direct paths with data here: "features":["pair_data"] in the registration
  bool quic = false;     // --transport quic: the control connection over QUIC (dpctld's agent_quic_listen)
  uint16_t underlay_mtu = 1500;  // --mtu: the QUIC connection's packets stay within it
};

// What a registration gives the data path.
struct SessionGrant {
  uint32_t index = 0;
  std::vector<uint8_t> secret;
  Endpoint gateway;
  uint8_t key_len = 16;
  uint64_t rekey_interval_ns = 120'000'000'000ull;
  uint64_t keepalive_ns = 2'000'000'000ull;
  uint16_t stun_port = 0;  // dpgw's STUN port on the gateway's address (0: none said)
  // "framing":"quic" (--transport quic, a dpctld that hands the connection over to dpgw): the data goes as DATAGRAM
  // frames on this connection, not as relay frames (secret, key_len and rekey_interval_ns are unused then). Owned by
  // the ControlClient; valid until its withdraw callback runs.
  QuicControlConnection* quic = nullptr;
};

class ControlClient {
 public:
  using Deliver = std::function<void(SessionGrant)>;
  using Fatal = std::function<void(const std::string&)>;
  // Bytes. "registered" and "pong" are under 1 KiB; the longest is a refusal, whose reason lists the
  // certificate's identities (a chain is at most 100 KiB, OpenSSL's max_cert_list) or repeats what this agent
  // sent (at most 64 KiB), JSON-escaped: under 1 MiB.
  static constexpr size_t kMaxLine = size_t(1) << 20;
  // deliver: each registration's session. fatal: the first registration failed for good -- dpctld refused it, or
  // TLS failed for a reason retrying cannot mend (tls_failure.hpp) -- with what to change; no attempt follows.
  // Both are called on the loop.
  ControlClient(EventLoop& loop, ControlOptions opt, Deliver deliver, Fatal fatal);
  ~ControlClient();
  ControlClient(const ControlClient&) = delete;
  ControlClient& operator=(const ControlClient&) = delete;
  // Loads and checks the TLS files (clear errors before anything else is set up).
  bool load(std::string& error);
  // Starts the first attempt (and the resolver thread).
  bool start(std::string& error);
  // Deadlines, pings and the reconnect backoff.
  void tick(uint64_t now_ns);
  uint64_t registrations() const { return registrations_; }
  // Sends one message line to dpctld on the registered connection; false when there is none (not registered yet,
  // or the connection was handed over to dpgw: nobody reads lines there).
  bool send_message(const std::string& line, uint64_t now_ns);
  // Called (on the loop) just before the QUIC connection a grant named goes away: lost, idle, or replaced.
  void on_withdraw(std::function<void()> fn) { withdraw_ = std::move(fn); }
  // Called (on the loop) with each line dpctld sends after the registration's answer (pairings for direct paths;
  // pongs too).
  void on_message(std::function<void(const std::string&, uint64_t now_ns)> fn) { message_ = std::move(fn); }

 private:
  enum class State : uint8_t { Waiting, Resolving, Connecting, Handshaking, Registering, Registered, GaveUp };
  struct SslFree {
    void operator()(SSL* s) const;
  };

  void attempt();
  void resolved(std::vector<sockaddr_in> addresses, const std::string& error, uint64_t now_ns);
  void connect_next(uint64_t now_ns);
  void on_event(uint32_t events);
  void connect_done(uint64_t now_ns);
  void handshake(uint64_t now_ns);
  void handshake_failed();
  void send_line(const std::string& line, uint64_t now_ns);
  void read_some(uint64_t now_ns);
  void registration_reply(const std::string& line, uint64_t now_ns);
  void no_reply();
  // Ends the connection (if any) and schedules the next attempt, or none after fatal_.
  void retry(uint64_t now_ns, bool at_once = false);  // at_once: no back-off (the gateway said it lost us)
  void lost(uint64_t now_ns);
  void close_connection();
  // A TLS failure: logged with its advice; permanent ones end a first registration (fatal_).
  void tls_failed(long verify_result, unsigned long ssl_error, const std::string& detail);
  void give_up(const std::string& reason);
  std::string registration_line() const;
  // Handles dpctld's lines, then wipes them (a pairing carries a secret).
  void got_lines(std::vector<std::string> lines, uint64_t now_ns);
  // QUIC (--transport quic): what happened on the connection after a read or a timer.
  void quic_progress(bool alive, uint64_t now_ns);

  EventLoop& loop_;
  ControlOptions opt_;
  Deliver deliver_;
  Fatal fatal_;
  std::function<void()> withdraw_;
  std::function<void(const std::string&, uint64_t)> message_;
  bool handed_over_ = false;  // the QUIC connection carries the data (a "framing":"quic" registration)
  uint64_t handed_over_ns_ = 0, keepalive_ns_ = 0;  // when, and the registration's keepalive interval
  SslCtxPtr ctx_;
  State state_ = State::Waiting;
  // The connection under way.
  Fd fd_;
  std::unique_ptr<SSL, SslFree> ssl_;
  GnutlsClientCredentials quic_credentials_;     // --transport quic
  std::unique_ptr<QuicControlConnection> quic_;  // the QUIC connection under way (instead of ssl_)
  ServerCertSeen seen_;  // what dpctld's certificate showed, for advice
  LineBuffer in_{kMaxLine};
  std::string out_;
  uint64_t deadline_ns_ = 0;  // of the connect, the handshake or the registration's answer
  uint64_t last_ping_ns_ = 0, last_heard_ns_ = 0;
  // The name's addresses, tried in turn; the last one's error.
  std::vector<sockaddr_in> addresses_;
  size_t next_address_ = 0;
  std::string peer_;  // the address being connected to, for messages
  std::string connect_error_;
  // Reconnects: 0.5 s, doubling to 30 s, jittered by +-20 % so a fleet of agents does not reconnect in lockstep.
  double backoff_s_ = 0.5;
  uint64_t next_attempt_ns_ = 0;
  std::mt19937 rng_{std::random_device{}()};
  uint64_t registrations_ = 0;
  Background resolver_;  // last: joined before anything its jobs' results touch is gone
};

}  // namespace dptun
