#include "common/line_server.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstring>

namespace dptun {

bool LineServer::listen(const std::string& path, std::string& error) {
  fd_ = unix_listen(path, 0660, error);
  if (!fd_) return false;
  path_ = path;
  return true;
}

LineServer::~LineServer() {
  if (fd_) unlink(path_.c_str());
}

void LineServer::poll(const Handler& handler) {
  if (!fd_) return;
  for (;;) {
    Fd c(accept4(fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!c) break;
    auto conn = std::make_unique<Conn>();
    conn->fd = std::move(c);
    conn->last_active = std::chrono::steady_clock::now();
    conns_.push_back(std::move(conn));
  }
  const auto now = std::chrono::steady_clock::now();
  for (auto& c : conns_) {
    char buf[8192];
    bool broken = false;  // the connection cannot be used any more: close it now
    while (!c->peer_done) {
      ssize_t n = read(c->fd.get(), buf, sizeof buf);
      if (n > 0) {
        c->in.append(buf, size_t(n));
        c->last_active = now;
        if (c->in.size() > (8u << 20)) broken = true;  // a runaway peer
        continue;
      }
      if (n == 0) c->peer_done = true;  // it sent all it will; its reply may still be on its way
      else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) broken = true;
      break;
    }
    size_t nl;
    while (!c->closing && (nl = c->in.find('\n')) != std::string::npos) {
      std::string line = c->in.substr(0, nl);
      c->in.erase(0, nl + 1);
      if (line.empty()) continue;
      bool close = false;
      c->out += handler(line, close);
      if (close) c->closing = true;
    }
    while (!c->out.empty()) {
      ssize_t n = send(c->fd.get(), c->out.data(), c->out.size(), MSG_NOSIGNAL);
      if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        broken = true;
        break;
      }
      c->out.erase(0, size_t(n));
      c->last_active = now;
    }
    const bool done = c->out.empty() && (c->closing || c->peer_done);
    const bool idle = now - c->last_active > std::chrono::seconds(kIdleSeconds);  // a client that stalls
    if (broken || done || idle) c->fd.reset();
  }
  conns_.erase(std::remove_if(conns_.begin(), conns_.end(), [](const std::unique_ptr<Conn>& c) { return !c->fd; }),
               conns_.end());
}

}  // namespace dptun
