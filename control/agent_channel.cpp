#include "control/agent_channel.hpp"

#include <openssl/err.h>
#include <sys/epoll.h>

#include "common/clock.hpp"
#include "common/log.hpp"
#include "control/control_protocol.hpp"

namespace dptun {

AgentChannel::AgentChannel(EventLoop& loop, uint64_t id, Fd fd, SslPtr ssl, Endpoint peer, OnLine on_line,
                           OnClose on_close)
    : loop_(loop),
      id_(id),
      fd_(std::move(fd)),
      ssl_(std::move(ssl)),
      peer_(peer),
      on_line_(std::move(on_line)),
      on_close_(std::move(on_close)),
      last_rx_ns_(monotonic_ns()),
      created_ns_(last_rx_ns_) {
  SSL_set_mode(ssl_.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  loop_.add(fd_.get(), EPOLLIN, [this](uint32_t ev) { on_event(ev); });
}

AgentChannel::~AgentChannel() {
  if (fd_) loop_.remove(fd_.get());
}

std::vector<uint8_t> AgentChannel::export_secret(uint32_t session_index) const {
  return export_session_secret(ssl_.get(), session_index);
}

void AgentChannel::send(const std::string& line) {
  if (closed_) return;
  out_ += line;
  out_ += '\n';
  write_some();
}

void AgentChannel::close(bool now) {
  if (closed_) return;
  closing_ = true;
  if (now || out_.empty()) finish();
}

void AgentChannel::on_event(uint32_t events) {
  if (closed_) return;
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_some();
  if (!closed_ && (events & EPOLLOUT)) write_some();
}

void AgentChannel::read_some() {
  char buf[4096];
  for (;;) {
    ERR_clear_error();
    int n = SSL_read(ssl_.get(), buf, sizeof buf);
    if (n > 0) {
      last_rx_ns_ = monotonic_ns();
      const bool fits = in_.append({buf, size_t(n)});
      while (!closed_ && in_.has_line()) {
        const std::string line = *in_.next();
        if (!line.empty()) on_line_(*this, line);
      }
      if (!fits && !closed_) {
        LOG_WARN("agent %s: a line over %zu bytes; connection closed", peer_.str().c_str(), kMaxLine);
        finish();
        return;
      }
      if (closed_) return;
      continue;
    }
    int err = SSL_get_error(ssl_.get(), n);
    if (err == SSL_ERROR_WANT_READ) return;
    if (err == SSL_ERROR_WANT_WRITE) {
      loop_.modify(fd_.get(), EPOLLIN | EPOLLOUT);
      return;
    }
    finish();  // closed by the peer, or an error
    return;
  }
}

void AgentChannel::write_some() {
  while (!out_.empty()) {
    ERR_clear_error();
    int n = SSL_write(ssl_.get(), out_.data(), int(out_.size()));
    if (n > 0) {
      out_.erase(0, size_t(n));
      continue;
    }
    int err = SSL_get_error(ssl_.get(), n);
    if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
      loop_.modify(fd_.get(), EPOLLIN | EPOLLOUT);
      return;
    }
    finish();
    return;
  }
  loop_.modify(fd_.get(), EPOLLIN);
  if (closing_) finish();
}

void AgentChannel::finish() {
  if (closed_) return;
  closed_ = true;
  SSL_shutdown(ssl_.get());
  loop_.remove(fd_.get());
  fd_.reset();
  on_close_(*this);
}

}  // namespace dptun
