// dpagent's control connection to dpctld, on a thread of its own so the data path never waits for it:
// TLS 1.3 with a client certificate, register for a tunnel, derive the session key (TLS exporter), hand the
// session to the data loop, keep the connection alive with pings, and on any loss reconnect with exponential
// backoff and register again.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "agent/tls_failure.hpp"
#include "common/inet.hpp"

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
};

// What a registration gives the data path.
struct SessionGrant {
  uint32_t index = 0;
  std::vector<uint8_t> secret;
  Endpoint gateway;
  uint8_t key_len = 16;
  uint64_t rekey_interval_ns = 120'000'000'000ull;
  uint64_t keepalive_ns = 2'000'000'000ull;
};

class ControlClient {
 public:
  using Deliver = std::function<void(SessionGrant)>;
  // fatal: called (from the control thread) when the first registration fails for good -- dpctld refused it, or
  // TLS failed for a reason retrying cannot mend (tls_failure.hpp) -- with what to change.
  ControlClient(ControlOptions opt, Deliver deliver, std::function<void(const std::string&)> fatal)
      : opt_(std::move(opt)), deliver_(std::move(deliver)), fatal_(std::move(fatal)) {}
  ~ControlClient();
  // Loads and checks the TLS files (clear errors before anything else is set up).
  bool load(std::string& error);
  // Starts the thread that connects, registers and keeps the connection.
  void start();
  void stop();
  uint64_t registrations() const { return registrations_.load(); }

 private:
  void run();
  // One connection: returns after it ended; `registered` tells whether it got a session.
  void session_once(bool& registered);
  // A TLS failure: logged with its advice; permanent ones end a first registration (fatal_).
  void tls_failed(long verify_result, unsigned long ssl_error, const std::string& detail);

  ControlOptions opt_;
  Deliver deliver_;
  std::function<void(const std::string&)> fatal_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> registrations_{0};
  void* ctx_ = nullptr;  // SSL_CTX
  const ServerCertSeen* seen_ = nullptr;  // the connection under way (control thread only)
};

}  // namespace dptun
