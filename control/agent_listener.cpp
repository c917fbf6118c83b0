#include "control/agent_listener.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "common/clock.hpp"
#include "common/tcp_socket.hpp"

namespace dptun {

AgentListener::~AgentListener() {
  for (auto& [fd, p] : pending_) loop_.remove(fd);
  if (listen_fd_) loop_.remove(listen_fd_.get());
}

bool AgentListener::listen(Endpoint at, std::string& error) {
  Fd fd = tcp_listen(at, 256, error);
  if (!fd) {
    return false;
  }
  listen_fd_ = std::move(fd);
  loop_.add(listen_fd_.get(), EPOLLIN, [this](uint32_t) { accept_ready(); });
  return true;
}

void AgentListener::accept_ready() {
  for (;;) {
    sockaddr_in sin{};
    socklen_t len = sizeof sin;
    Fd fd(accept4(listen_fd_.get(), reinterpret_cast<sockaddr*>(&sin), &len, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) return;
    int one = 1;
    setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto p = std::make_unique<Pending>();
    p->evidence.client = Endpoint{Ipv4{ntohl(sin.sin_addr.s_addr)}, ntohs(sin.sin_port)};
    p->deadline_ns = monotonic_ns() + timeout_ns_;
    p->ssl = tls_.make_ssl(fd.get(), &p->evidence);
    if (!p->ssl) continue;
    const int raw = fd.get();
    p->fd = std::move(fd);
    pending_[raw] = std::move(p);
    loop_.add(raw, EPOLLIN, [this, raw](uint32_t) { step(raw); });
  }
}

void AgentListener::step(int fd) {
  auto it = pending_.find(fd);
  if (it == pending_.end()) return;
  Pending& p = *it->second;
  if (!p.peeked) {
    uint8_t first;
    ssize_t n = recv(fd, &first, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 1) {
      p.evidence.first_byte = first;
      p.peeked = true;
    } else if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
      p.evidence.closed_early = true;
      fail(fd);
      return;
    } else {
      return;
    }
  }
  ERR_clear_error();
  int r = SSL_accept(p.ssl.get());
  if (r == 1) {
    std::unique_ptr<Pending> done = std::move(it->second);
    pending_.erase(it);
    loop_.remove(fd);
    established_(std::move(done->fd), std::move(done->ssl), done->evidence);
    return;
  }
  int err = SSL_get_error(p.ssl.get(), r);
  if (err == SSL_ERROR_WANT_READ) {
    loop_.modify(fd, EPOLLIN);
    return;
  }
  if (err == SSL_ERROR_WANT_WRITE) {
    loop_.modify(fd, EPOLLOUT);
    return;
  }
  unsigned long e = ERR_peek_error();
  if (e) {
    p.evidence.ssl_error = e;
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    const char* reason = ERR_reason_error_string(e);
    p.evidence.openssl_reason = reason ? reason : buf;
  } else if (err == SSL_ERROR_SYSCALL || err == SSL_ERROR_ZERO_RETURN) {
    p.evidence.closed_early = true;
  }
  if (!p.evidence.verify_error) {
    long v = SSL_get_verify_result(p.ssl.get());
    if (v != X509_V_OK && p.evidence.certificate) p.evidence.verify_error = int(v);
  }
  ERR_clear_error();
  fail(fd);
}

void AgentListener::fail(int fd) {
  auto it = pending_.find(fd);
  if (it == pending_.end()) return;
  std::unique_ptr<Pending> p = std::move(it->second);
  pending_.erase(it);
  loop_.remove(fd);
  failed_(p->evidence, classify_handshake(p->evidence));
}

void AgentListener::tick(uint64_t now_ns) {
  std::vector<int> expired;
  for (auto& [fd, p] : pending_)
    if (now_ns >= p->deadline_ns) expired.push_back(fd);
  for (int fd : expired) {
    pending_[fd]->evidence.timed_out = true;
    fail(fd);
  }
}

}  // namespace dptun
