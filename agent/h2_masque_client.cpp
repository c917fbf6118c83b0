#include "agent/h2_masque_client.hpp"

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "agent/agent_ssl.hpp"
#include "common/openssl_errors.hpp"

namespace dptun {

namespace {
constexpr unsigned char kAlpnH2[] = {2, 'h', '2'};
constexpr size_t kReadChunk = 16384;

bool is_ipv4(const std::string& s) {
  in_addr a;
  return inet_pton(AF_INET, s.c_str(), &a) == 1;
}
}  // namespace

void H2MasqueConnection::SslFree::operator()(SSL* s) const { SSL_free(s); }

H2MasqueConnection::H2MasqueConnection(const Setup& setup)
    : setup_(setup), h2_(setup.authority, setup.target_host, setup.target_port, kPending), in_(kReadChunk) {}

H2MasqueConnection::~H2MasqueConnection() = default;

std::string H2MasqueConnection::peer() const {
  char ip[INET_ADDRSTRLEN] = "?";
  inet_ntop(AF_INET, &remote_.sin_addr, ip, sizeof ip);
  return std::string("TCP ") + ip + ":" + std::to_string(ntohs(remote_.sin_port));
}

bool H2MasqueConnection::finish(End e, std::string detail) {
  if (end_ == End::None) {
    end_ = e;
    detail_ = std::move(detail);
  }
  events_ = EPOLLIN;
  return false;
}

bool H2MasqueConnection::open(const sockaddr_in& gateway, Deliver deliver, uint64_t now_ns, std::string& error) {
  remote_ = gateway;
  deliver_ = std::move(deliver);
  opened_ns_ = now_ns;
  fd_ = Fd(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd_) {
    error = std::string("socket: ") + strerror(errno);
    return false;
  }
  if (::connect(fd_.get(), reinterpret_cast<const sockaddr*>(&gateway), sizeof gateway) != 0 &&
      errno != EINPROGRESS) {
    error = peer() + ": connect: " + strerror(errno);
    return false;
  }
  events_ = EPOLLOUT;  // writable once connected (or failed)
  return true;
}

bool H2MasqueConnection::on_io(uint32_t, uint64_t now_ns) {
  if (end_ != End::None) return false;
  switch (phase_) {
    case Phase::Connecting: return connected(now_ns);
    case Phase::Handshaking: return handshake(now_ns);
    case Phase::Running: break;
  }
  if (!read_all()) return false;
  if (!write_out()) return false;
  return check_state();
}

bool H2MasqueConnection::connected(uint64_t now_ns) {
  int soerr = 0;
  socklen_t len = sizeof soerr;
  if (getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) soerr = errno;
  if (soerr == EINPROGRESS) return true;  // a call without readiness
  if (soerr) {
    std::string d = peer() + ": connect: " + strerror(soerr);
    if (soerr == ECONNREFUSED) d += " (nothing listens there: is it dpctld's HTTP/2 listener, masque_tcp_listen?)";
    return finish(End::Closed, d);
  }
  int one = 1;
  setsockopt(fd_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ssl_.reset(SSL_new(setup_.ctx));
  if (!ssl_) return finish(End::Protocol, "TLS: " + openssl_errors());
  SSL* ssl = ssl_.get();
  SSL_set_fd(ssl, fd_.get());
  SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  agent_ssl_prepare(ssl, setup_.server_name, is_ipv4(setup_.server_name) ? std::string() : setup_.server_name, &seen_);
  SSL_set_alpn_protos(ssl, kAlpnH2, sizeof kAlpnH2);
  phase_ = Phase::Handshaking;
  return handshake(now_ns);
}

bool H2MasqueConnection::handshake(uint64_t) {
  ERR_clear_error();
  const int r = SSL_connect(ssl_.get());
  if (r != 1) {
    const int err = SSL_get_error(ssl_.get(), r);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      events_ = err == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT;
      return true;
    }
    verify_result_ = SSL_get_verify_result(ssl_.get());
    ssl_error_ = ERR_peek_error();
    std::string d = verify_result_ != X509_V_OK
                        ? std::string("server certificate: ") + X509_verify_cert_error_string(verify_result_) + "; "
                        : std::string();
    const std::string errors = openssl_errors();
    d += errors.empty() ? (err == SSL_ERROR_SYSCALL || err == SSL_ERROR_ZERO_RETURN ? "the gateway closed the connection"
                                                                                      : "handshake failed")
                        : errors;
    return finish(End::Tls, "TLS over " + peer() + ": " + d);
  }
  const unsigned char* alpn = nullptr;
  unsigned alpn_len = 0;
  SSL_get0_alpn_selected(ssl_.get(), &alpn, &alpn_len);
  if (alpn_len != 2 || std::memcmp(alpn, "h2", 2) != 0)
    return finish(End::NoConnectUdp, "the gateway did not take ALPN h2 on " + peer() + ": it does not serve HTTP/2 there");
  std::string error;
  if (!h2_.start(error)) return finish(End::Protocol, error);
  phase_ = Phase::Running;
  events_ = EPOLLIN;
  if (!read_all()) return false;  // TLS 1.3: what the gateway sent with its Finished (its SETTINGS)
  if (!write_out()) return false;
  return check_state();
}

bool H2MasqueConnection::read_all() {
  // At most 64 reads a wakeup, then more only while TLS holds decrypted bytes (epoll would not report those).
  for (int i = 0; i < 64 || SSL_pending(ssl_.get()) > 0; ++i) {
    ERR_clear_error();
    const int r = SSL_read(ssl_.get(), in_.data(), int(in_.size()));
    if (r > 0) {
      h2_.receive({in_.data(), size_t(r)}, deliver_);
      if (h2_.state() == H2ConnectUdpClient::State::Failed) return check_state();
      continue;
    }
    const int err = SSL_get_error(ssl_.get(), r);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return true;
    const bool answered = h2_.state() != H2ConnectUdpClient::State::AwaitSettings &&
                          h2_.state() != H2ConnectUdpClient::State::AwaitAnswer;
    if (err == SSL_ERROR_SSL && !answered) {
      // TLS 1.3: the gateway's refusal of our certificate comes as an alert on the first read.
      ssl_error_ = ERR_peek_error();
      return finish(End::Tls, "TLS over " + peer() + ": " + openssl_errors());
    }
    if (!check_state()) return false;
    return finish(End::Closed, err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && r == 0)
                                   ? "the gateway closed the connection (" + peer() + ")"
                                   : "the connection to the gateway broke (" + peer() + "): " +
                                         (err == SSL_ERROR_SYSCALL ? std::string(strerror(errno)) : openssl_errors()));
  }
  return true;
}

bool H2MasqueConnection::write_out() {
  for (;;) {
    if (out_off_ == out_.size()) {
      out_.clear();
      out_off_ = 0;
      if (!h2_.output(out_, kTlsBatch)) return check_state();
      if (out_.empty()) break;
    }
    ERR_clear_error();
    const int r = SSL_write(ssl_.get(), out_.data() + out_off_, int(out_.size() - out_off_));
    if (r > 0) {
      out_off_ += size_t(r);
      continue;
    }
    const int err = SSL_get_error(ssl_.get(), r);
    if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
      events_ = EPOLLIN | EPOLLOUT;
      return true;
    }
    return finish(End::Closed, "the connection to the gateway broke (" + peer() + "): " +
                                   (err == SSL_ERROR_SYSCALL ? std::string(strerror(errno)) : openssl_errors()));
  }
  events_ = EPOLLIN;
  return true;
}

bool H2MasqueConnection::check_state() {
  using S = H2ConnectUdpClient::State;
  switch (h2_.state()) {
    case S::Refused: return finish(End::Refused, "the gateway refused the request: " + h2_.refusal_text());
    case S::Failed:
      return finish(h2_.no_connect_udp() ? End::NoConnectUdp : End::Protocol, "HTTP/2: " + h2_.problem());
    case S::Ended: return finish(End::Closed, h2_.problem());
    default: break;
  }
  if (h2_.finished()) return finish(End::Closed, "the gateway closed the HTTP/2 connection");
  return true;
}

bool H2MasqueConnection::check_deadline(uint64_t now_ns) {
  if (end_ != End::None) return false;
  if (is_open() || now_ns < opened_ns_ + kAnswerTimeoutNs) return true;
  switch (phase_) {
    case Phase::Connecting: return finish(End::Timeout, "no TCP connection to the gateway within 10 s (" + peer() + ")");
    case Phase::Handshaking: return finish(End::Timeout, "no TLS handshake with the gateway within 10 s (" + peer() + ")");
    case Phase::Running: break;
  }
  return finish(End::Timeout, "no answer to the CONNECT-UDP request within 10 s (HTTP/2, " + peer() + ")");
}

ConnectUdpConnection::Send H2MasqueConnection::send(std::span<const uint8_t> udp_payload, uint64_t, bool more) {
  if (end_ != End::None) return Send::Closed;
  switch (h2_.send(udp_payload)) {
    case H2ConnectUdpClient::Send::Queued: break;
    case H2ConnectUdpClient::Send::TooBig: return Send::TooBig;
    case H2ConnectUdpClient::Send::Full: return Send::Congested;
    case H2ConnectUdpClient::Send::NotOpen: return Send::NotOpen;
  }
  // Written at once (or at send_batch()) unless the socket is full (then on EPOLLOUT; queued either way).
  if (!more && out_off_ == out_.size()) write_out();
  return Send::Sent;
}

void H2MasqueConnection::send_batch() {
  if (end_ == End::None && phase_ == Phase::Running && out_off_ == out_.size()) write_out();
}

void H2MasqueConnection::close(uint64_t) {
  if (end_ == End::None && phase_ == Phase::Running) {
    h2_.terminate();
    if (out_off_ == out_.size()) write_out();
    SSL_shutdown(ssl_.get());
  }
  finish(End::Local, "closed by dpagent");
}

}  // namespace dptun
