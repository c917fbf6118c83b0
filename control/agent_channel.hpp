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

// One agent's control connection once its handshake succeeded, whatever carries it: a TLS connection on the TCP
// port (AgentChannel) or a QUIC stream (QuicAgentConnection). Dpctld's registration code speaks to this alone.
class AgentLink {
 public:
  virtual ~AgentLink() = default;
  virtual uint64_t id() const = 0;
  virtual const Endpoint& peer() const = 0;
  virtual const char* transport() const = 0;  // "tcp" or "quic"
  virtual void send(const std::string& line) = 0;  // one JSON line; '\n' appended
  // Closes after the queued output has been delivered (or at once when `now`).
  virtual void close(bool now = false) = 0;
  virtual bool closed() const = 0;
  virtual bool registered() const = 0;
  virtual void set_registered() = 0;
  virtual uint64_t created_ns() const = 0;
  virtual bool line_too_long() const = 0;  // it was closed for a line over AgentChannel::kMaxLine
  // The agent's verified certificate and the chain it sent (not owned; nullptr / empty when none).
  virtual X509* peer_certificate() const = 0;
  virtual STACK_OF(X509)* peer_chain() const = 0;
  // The session's base secret: the TLS exporter (RFC 8446 §7.5) with kExporterLabel and the index as context,
  // empty on failure (control/control_protocol.hpp).
  virtual std::vector<uint8_t> export_secret(uint32_t session_index) const = 0;
  // The QUIC framing's key hand-over (docs/protocol.md "Key hand-over"), QUIC connections only. The session index
  // the connection holds from its first Initial (its connection IDs carry it); 0 for a TLS connection.
  virtual uint32_t reserved_index() const { return 0; }
  // Whether dpgw can take the connection over once registered; `why` says why not.
  virtual bool can_hand_over(std::string& why) const {
    why = "not a QUIC connection";
    return false;
  }
  // Once the agent has acknowledged everything sent on the connection, it goes to dpgw (the QUIC listener's
  // handed_over callback) and dpctld forgets it without a CONNECTION_CLOSE.
  virtual void hand_over_when_acknowledged() {}
};

class AgentChannel : public AgentLink {
 public:
  using OnLine = std::function<void(AgentChannel&, const std::string& line)>;
  using OnClose = std::function<void(AgentChannel&)>;
  static constexpr size_t kMaxLine = 64 * 1024;

  AgentChannel(EventLoop& loop, uint64_t id, Fd fd, SslPtr ssl, Endpoint peer, OnLine on_line, OnClose on_close);
  ~AgentChannel() override;
  AgentChannel(const AgentChannel&) = delete;
  AgentChannel& operator=(const AgentChannel&) = delete;

  void send(const std::string& line) override;  // appends '\n'
  // Closes after the queued output has been written (or at once when `now`).
  void close(bool now = false) override;

  uint64_t id() const override { return id_; }
  SSL* ssl() const { return ssl_.get(); }
  const Endpoint& peer() const override { return peer_; }
  const char* transport() const override { return "tcp"; }
  bool closed() const override { return closed_; }
  uint64_t last_rx_ns() const { return last_rx_ns_; }
  uint64_t created_ns() const override { return created_ns_; }
  bool registered() const override { return registered_; }
  bool line_too_long() const override { return in_.too_long(); }
  void set_registered() override { registered_ = true; }
  X509* peer_certificate() const override { return SSL_get0_peer_certificate(ssl_.get()); }
  STACK_OF(X509)* peer_chain() const override { return SSL_get_peer_cert_chain(ssl_.get()); }
  std::vector<uint8_t> export_secret(uint32_t session_index) const override;

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
