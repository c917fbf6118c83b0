// The agent port: accepts TCP connections and runs their TLS 1.3 handshakes without blocking. A handshake that
// fails, or does not finish within the timeout, is classified and reported exactly once; one that succeeds is
// handed over (socket + SSL) to become an agent channel.
//
// Unauthenticated connections are bounded: at most `max_pending` handshakes at once and `max_per_source` from
// one address; a newcomer over a limit makes the oldest unfinished handshake (of that address, or of all) give
// way, reported as `shed`. Out of file descriptors, the oldest gives way too, or accepting pauses for 100 ms:
// the loop never spins on a listening socket it cannot accept from. An address that does not exist (yet) --
// dpgw's kernel path creates it -- is retried every second.
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "common/event_loop.hpp"
#include "control/tls_server.hpp"

namespace dptun {

class AgentListener {
 public:
  using Established = std::function<void(Fd fd, SslPtr ssl, const HandshakeEvidence& evidence)>;
  using Failed = std::function<void(const HandshakeEvidence& evidence, HandshakeFailure category)>;

  struct Limits {
    uint64_t timeout_ns = 10'000'000'000ull;
    size_t max_pending = 256;
    size_t max_per_source = 16;
  };
  AgentListener(EventLoop& loop, const TlsServer& tls, Limits limits, Established established, Failed failed)
      : loop_(loop), tls_(tls), limits_(limits), established_(std::move(established)), failed_(std::move(failed)) {}
  ~AgentListener();
  // False only for errors retrying cannot mend; an address not on this host yet is waited for (listening()).
  bool listen(Endpoint at, std::string& error);
  bool listening() const { return bool(listen_fd_); }
  void set_limits(Limits limits) { limits_ = limits; }
  // Fails handshakes that ran past the timeout; retries the listening socket; resumes a paused accept.
  void tick(uint64_t now_ns);
  size_t handshakes_in_progress() const { return pending_.size(); }
  uint64_t accept_pauses() const { return accept_pauses_; }
  uint64_t out_of_descriptors() const { return emfile_; }

 private:
  struct Pending {
    Fd fd;
    SslPtr ssl;
    HandshakeEvidence evidence;
    uint64_t started_ns = 0;
    uint64_t deadline_ns = 0;
    bool peeked = false;
  };
  bool try_listen(std::string& error);
  void accept_ready();
  bool shed_oldest(std::optional<uint32_t> from);
  void step(int fd);
  void fail(int fd);

  EventLoop& loop_;
  const TlsServer& tls_;
  Limits limits_;
  Endpoint at_;
  uint64_t next_listen_ns_ = 0;
  uint64_t paused_until_ns_ = 0;
  uint64_t accept_pauses_ = 0;
  uint64_t emfile_ = 0;
  uint64_t last_emfile_log_ns_ = 0;
  Established established_;
  Failed failed_;
  Fd listen_fd_;
  std::unordered_map<int, std::unique_ptr<Pending>> pending_;
};

}  // namespace dptun
