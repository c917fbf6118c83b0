// The agent port: accepts TCP connections and runs their TLS 1.3 handshakes without blocking. A handshake that
// fails, or does not finish within the timeout, is classified and reported exactly once; one that succeeds is
// handed over (socket + SSL) to become an agent channel.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include "common/event_loop.hpp"
#include "control/tls_server.hpp"

namespace dptun {

class AgentListener {
 public:
  using Established = std::function<void(Fd fd, SslPtr ssl, const HandshakeEvidence& evidence)>;
  using Failed = std::function<void(const HandshakeEvidence& evidence, HandshakeFailure category)>;

  AgentListener(EventLoop& loop, const TlsServer& tls, uint64_t timeout_ns, Established established, Failed failed)
      : loop_(loop), tls_(tls), timeout_ns_(timeout_ns), established_(std::move(established)), failed_(std::move(failed)) {}
  ~AgentListener();
  bool listen(Endpoint at, std::string& error);
  // Fails handshakes that ran past the timeout.
  void tick(uint64_t now_ns);
  size_t handshakes_in_progress() const { return pending_.size(); }

 private:
  struct Pending {
    Fd fd;
    SslPtr ssl;
    HandshakeEvidence evidence;
    uint64_t deadline_ns = 0;
    bool peeked = false;
  };
  void accept_ready();
  void step(int fd);
  void fail(int fd);

  EventLoop& loop_;
  const TlsServer& tls_;
  uint64_t timeout_ns_;
  Established established_;
  Failed failed_;
  Fd listen_fd_;
  std::unordered_map<int, std::unique_ptr<Pending>> pending_;
};

}  // namespace dptun
