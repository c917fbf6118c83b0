#include "control/metrics_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "common/tcp_socket.hpp"

namespace dptun {

MetricsServer::~MetricsServer() {
  for (auto& [fd, c] : clients_) loop_.remove(fd);
  if (listen_fd_) loop_.remove(listen_fd_.get());
}

bool MetricsServer::listen(Endpoint at, std::string& error) {
  Fd fd = tcp_listen(at, 16, error);
  if (!fd) {
    error = "metrics: " + error;
    return false;
  }
  listen_fd_ = std::move(fd);
  loop_.add(listen_fd_.get(), EPOLLIN, [this](uint32_t) { accept_ready(); });
  return true;
}

void MetricsServer::accept_ready() {
  for (;;) {
    Fd fd(accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) return;
    const int raw = fd.get();
    auto c = std::make_unique<Client>();
    c->fd = std::move(fd);
    clients_[raw] = std::move(c);
    loop_.add(raw, EPOLLIN, [this, raw](uint32_t) { on_client(raw); });
  }
}

void MetricsServer::on_client(int fd) {
  auto it = clients_.find(fd);
  if (it == clients_.end()) return;
  Client& c = *it->second;
  char buf[1024];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) c.request.append(buf, size_t(n));
  bool eof = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
  bool complete = c.request.find("\r\n\r\n") != std::string::npos || c.request.find("\n\n") != std::string::npos;
  if (!complete && !eof && c.request.size() < 8192) return;
  std::string response;
  if (c.request.rfind("GET /metrics", 0) == 0) {
    std::string body = render_();
    response = "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: " +
               std::to_string(body.size()) + "\r\n\r\n" + body;
  } else {
    response = "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n";
  }
  // Small responses: a blocking write on a local socket is fine here.
  int flags = 0;
  size_t off = 0;
  while (off < response.size()) {
    ssize_t w = send(fd, response.data() + off, response.size() - off, flags | MSG_NOSIGNAL);
    if (w < 0 && errno == EAGAIN) continue;
    if (w <= 0) break;
    off += size_t(w);
  }
  loop_.remove(fd);
  clients_.erase(it);
}

void PromText::family(const std::string& name, const char* type, const std::string& help) {
  out_ += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void PromText::sample(const std::string& name, double value, const std::string& labels) {
  char num[64];
  if (std::floor(value) == value && std::fabs(value) < 1e15)
    snprintf(num, sizeof num, "%.0f", value);
  else
    snprintf(num, sizeof num, "%.6g", value);
  out_ += name + (labels.empty() ? "" : "{" + labels + "}") + " " + num + "\n";
}

}  // namespace dptun
