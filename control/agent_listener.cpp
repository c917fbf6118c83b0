#include "control/agent_listener.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/clock.hpp"
#include "common/log.hpp"
#include "common/tcp_socket.hpp"

namespace dptun {

AgentListener::~AgentListener() {
  for (auto& [fd, p] : pending_) loop_.remove(fd);
  if (listen_fd_) loop_.remove(listen_fd_.get());
}

bool AgentListener::listen(Endpoint at, std::string& error) {
  at_ = at;
  // Unauthenticated handshakes may hold at most half the process's descriptors: the rest stay for agents that
  // registered, dpctl and dpgw.
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && limits_.max_pending > rl.rlim_cur / 2) {
    limits_.max_pending = std::max<size_t>(1, rl.rlim_cur / 2);
    LOG_WARN("agents: at most %zu unfinished handshakes (half of RLIMIT_NOFILE %llu)", limits_.max_pending,
             (unsigned long long)rl.rlim_cur);
  }
  if (try_listen(error)) return true;
  if (errno != EADDRNOTAVAIL) return false;
  LOG_WARN("%s; waiting for %s to appear on this host (with dpgw's kernel path, it exists while dpgw runs), "
           "retrying every second",
           error.c_str(), at.ip.str().c_str());
  error.clear();
  next_listen_ns_ = monotonic_ns() + 1'000'000'000ull;
  return true;
}

bool AgentListener::try_listen(std::string& error) {
  Fd fd = tcp_listen(at_, 256, error);
  if (!fd) return false;
  listen_fd_ = std::move(fd);
  loop_.add(listen_fd_.get(), EPOLLIN, [this](uint32_t) { accept_ready(); });
  return true;
}

// Makes one unfinished handshake give way: the oldest from `from` (or from anyone); false when there is none.
bool AgentListener::shed_oldest(std::optional<uint32_t> from) {
  int oldest = -1;
  uint64_t since = UINT64_MAX;
  for (const auto& [fd, p] : pending_)
    if ((!from || p->evidence.client.ip.v4() == *from) && p->started_ns < since) {
      since = p->started_ns;
      oldest = fd;
    }
  if (oldest < 0) return false;
  pending_[oldest]->evidence.shed = true;
  fail(oldest);
  return true;
}

void AgentListener::accept_ready() {
  const uint64_t now = monotonic_ns();
  if (now < paused_until_ns_) return;
  for (size_t taken = 0; taken < 64; ++taken) {  // bounded per wakeup: handshakes under way get their turn
    sockaddr_in sin{};
    socklen_t len = sizeof sin;
    Fd fd(accept4(listen_fd_.get(), reinterpret_cast<sockaddr*>(&sin), &len, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) {
      if (errno == EMFILE || errno == ENFILE) {
        // Out of descriptors: the listening socket stays readable, so waiting on it would spin.
        if (now - last_emfile_log_ns_ > 10'000'000'000ull) {
          rlimit rl{};
          getrlimit(RLIMIT_NOFILE, &rl);
          LOG_WARN("agents: out of file descriptors (RLIMIT_NOFILE %llu): the oldest unfinished handshakes give way",
                   (unsigned long long)rl.rlim_cur);
          last_emfile_log_ns_ = now;
        }
        emfile_++;
        if (shed_oldest(std::nullopt)) continue;
        paused_until_ns_ = now + 100'000'000ull;
        accept_pauses_++;
        loop_.modify(listen_fd_.get(), 0);
      }
      return;
    }
    const uint32_t source = ntohl(sin.sin_addr.s_addr);
    size_t from_source = 0;
    for (const auto& [f, p] : pending_) from_source += p->evidence.client.ip.v4() == source;
    if (from_source >= limits_.max_per_source) shed_oldest(source);
    if (pending_.size() >= limits_.max_pending) shed_oldest(std::nullopt);
    int one = 1;
    setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto p = std::make_unique<Pending>();
    p->evidence.client = Endpoint{Ipv4{source}, ntohs(sin.sin_port)};
    p->started_ns = now;
    p->deadline_ns = now + limits_.timeout_ns;
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
  if (!listen_fd_ && next_listen_ns_ && now_ns >= next_listen_ns_) {
    std::string error;
    if (try_listen(error))
      LOG_INFO("agents: listening on %s now", at_.str().c_str());
    else
      next_listen_ns_ = now_ns + 1'000'000'000ull;
  }
  if (paused_until_ns_ && now_ns >= paused_until_ns_) {
    paused_until_ns_ = 0;
    loop_.modify(listen_fd_.get(), EPOLLIN);
  }
  std::vector<int> expired;
  for (auto& [fd, p] : pending_)
    if (now_ns >= p->deadline_ns) expired.push_back(fd);
  for (int fd : expired) {
    pending_[fd]->evidence.timed_out = true;
    fail(fd);
  }
}

}  // namespace dptun
