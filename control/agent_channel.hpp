// An established agent TLS connection carrying newline-delimited JSON messages (docs/control-plane.md,
// "Registration protocol"), non-blocking in both directions on the event loop. A line from the agent is at most
// kMaxLine bytes (its largest, a registration, is well under 1 KiB); a longer one is logged and closes the
// connection (line_too_long() tells the owner's on_close why).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/event_loop.hpp"
#include "common/line_buffer.hpp"
#include "control/tls_server.hpp"

namespace dptun {

class AgentChannel {
 public:
  using OnLine = std::function<void(AgentChannel&, const std::string& line)>;
  using OnClose = std::function<void(AgentChannel&)>;
  static constexpr size_t kMaxLine = 64 * 1024;

  AgentChannel(EventLoop& loop, uint64_t id, Fd fd, SslPtr ssl, Endpoint peer, OnLine on_line, OnClose on_close);
  ~AgentChannel();
  AgentChannel(const AgentChannel&) = delete;
  AgentChannel& operator=(const AgentChannel&) = delete;

  void send(const std::string& line);  // appends '\n'
  // Closes after the queued output has been written (or at once when `now`).
  void close(bool now = false);

  uint64_t id() const { return id_; }
  SSL* ssl() const { return ssl_.get(); }
  const Endpoint& peer() const { return peer_; }
  bool closed() const { return closed_; }
  uint64_t last_rx_ns() const { return last_rx_ns_; }
  uint64_t created_ns() const { return created_ns_; }
  bool registered() const { return registered_; }
  bool line_too_long() const { return in_.too_long(); }
  void set_registered() { registered_ = true; }

 private:
  void on_event(uint32_t events);
  void read_some();
  void write_some();
  void finish();

  EventLoop& loop_;
  uint64_t id_;
  Fd fd_;
  SslPtr ssl_;
  Endpoint peer_;
  OnLine on_line_;
  OnClose on_close_;
  LineBuffer in_{kMaxLine};
  std::string out_;
  bool closing_ = false;
  bool closed_ = false;
  uint64_t last_rx_ns_ = 0;
  uint64_t created_ns_ = 0;
  bool registered_ = false;
};

}  // namespace dptun
