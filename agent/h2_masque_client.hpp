// One `dpagent udp` connection to the gateway over HTTP/2 (the fallback where UDP to the gateway is blocked): a
// non-blocking TCP connection, TLS 1.3 by OpenSSL with the client certificate and ALPN "h2", the gateway's
// certificate verified against --ca and the name or IPv4 address it must carry exactly as the HTTP/3 path and the
// control connection do (agent_ssl.hpp; failures classified by tls_failure.hpp), and one CONNECT-UDP request on one
// HTTP/2 stream (h2_connect_udp.hpp). After the 2xx each UDP payload goes whole in one DATAGRAM capsule on the
// request stream, both ways.
// Output waits in at most two bounded places: the request stream's capsule buffer (H2ConnectUdpClient, kPending
// bytes) and one batch of HTTP/2 frames the socket has not taken yet (kTlsBatch bytes, written again on EPOLLOUT):
// a payload for which there is no room is refused (Congested) and counted by the caller, never queued without bound.
#pragma once
#include <netinet/in.h>
#include <openssl/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "agent/connect_udp_connection.hpp"
#include "agent/h2_connect_udp.hpp"
#include "common/unix_socket.hpp"

namespace dptun {

class H2MasqueConnection final : public ConnectUdpConnection {
 public:
  struct Setup {
    SSL_CTX* ctx = nullptr;   // make_agent_ssl_ctx: the client certificate, --ca
    std::string server_name;  // the name or IPv4 address the gateway's certificate must carry (the SNI if a name)
    std::string authority;    // :authority of the request (--via's host[:port])
    std::string target_host;  // --target
    uint16_t target_port = 0;
  };
  static constexpr uint64_t kAnswerTimeoutNs = 10'000'000'000ull;  // TCP, TLS and the answer, from open()
  static constexpr size_t kPending = 256 * 1024;  // capsule bytes waiting for the request stream at most
  static constexpr size_t kTlsBatch = 64 * 1024;  // HTTP/2 bytes handed to TLS at once at most

  H2MasqueConnection(const Setup& setup);
  ~H2MasqueConnection() override;
  H2MasqueConnection(const H2MasqueConnection&) = delete;
  H2MasqueConnection& operator=(const H2MasqueConnection&) = delete;

  // A non-blocking TCP connection to `gateway` started. False with `error` when it cannot start.
  bool open(const sockaddr_in& gateway, Deliver deliver, uint64_t now_ns, std::string& error);

  const char* protocol() const override { return "h2"; }
  int fd() const override { return fd_.get(); }
  uint32_t events() const override { return events_; }
  int timer_fd() const override { return -1; }
  bool on_io(uint32_t events, uint64_t now_ns) override;
  bool on_timer(uint64_t) override { return end_ == End::None; }
  bool check_deadline(uint64_t now_ns) override;
  // With `more` the capsule waits for send_batch(), so that a burst leaves in few TLS records.
  Send send(std::span<const uint8_t> udp_payload, uint64_t now_ns, bool more = false) override;
  void send_batch() override;
  size_t max_payload() const override { return is_open() ? H2ConnectUdpClient::kMaxPayload : 0; }
  // GOAWAY (NO_ERROR) and TLS close_notify, as far as the socket takes them now.
  void close(uint64_t now_ns) override;

  bool is_open() const override { return h2_.state() == H2ConnectUdpClient::State::Open && end_ == End::None; }
  End over() const override { return end_; }
  const std::string& detail() const override { return detail_; }
  const H2ConnectUdpClient& h2() const { return h2_; }
  const ConnectUdpResponse& answer() const override { return h2_.answer(); }
  int64_t request_stream() const override { return h2_.request_stream(); }
  uint64_t drops(ConnectUdpDrop d) const override { return h2_.drops(d); }
  uint64_t capsules_rx() const override { return h2_.capsules_rx(); }
  uint64_t capsules_skipped() const override { return h2_.capsules_skipped(); }
  long verify_result() const override { return verify_result_; }
  unsigned long ssl_error() const override { return ssl_error_; }
  const ServerCertSeen& seen() const override { return seen_; }
  bool heard_from_gateway() const override { return phase_ != Phase::Connecting; }

 private:
  enum class Phase : uint8_t { Connecting, Handshaking, Running };
  struct SslFree {
    void operator()(SSL* s) const;
  };
  bool connected(uint64_t now_ns);
  bool handshake(uint64_t now_ns);
  bool read_all();
  bool write_out();
  bool check_state();
  bool finish(End e, std::string detail);  // always false
  std::string peer() const;

  Setup setup_;
  Fd fd_;
  std::unique_ptr<SSL, SslFree> ssl_;
  sockaddr_in remote_{};
  H2ConnectUdpClient h2_;
  Deliver deliver_;
  Phase phase_ = Phase::Connecting;
  uint32_t events_ = EPOLLOUT;
  End end_ = End::None;
  std::string detail_;
  long verify_result_ = 0;  // X509_V_OK
  unsigned long ssl_error_ = 0;
  ServerCertSeen seen_;
  uint64_t opened_ns_ = 0;
  std::vector<uint8_t> out_;  // HTTP/2 bytes SSL_write has not taken yet, from out_off_
  size_t out_off_ = 0;
  std::vector<uint8_t> in_;
};

}  // namespace dptun
