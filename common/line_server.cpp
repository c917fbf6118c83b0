#include "common/line_server.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
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
    conns_.push_back(std::move(conn));
  }
  for (auto& c : conns_) {
    char buf[8192];
    bool eof = false;
    for (;;) {
      ssize_t n = read(c->fd.get(), buf, sizeof buf);
      if (n > 0) {
        c->in.append(buf, size_t(n));
        if (c->in.size() > (8u << 20)) eof = true;  // a runaway peer
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) eof = true;
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
        eof = true;
        break;
      }
      c->out.erase(0, size_t(n));
    }
    if (eof || (c->closing && c->out.empty())) c->fd.reset();
  }
  conns_.erase(std::remove_if(conns_.begin(), conns_.end(), [](const std::unique_ptr<Conn>& c) { return !c->fd; }),
               conns_.end());
}

}  // namespace dptun
