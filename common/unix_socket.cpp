#include "common/unix_socket.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace dptun {

void Fd::reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

static bool make_addr(const std::string& path, sockaddr_un& addr, std::string& error) {
  if (path.size() >= sizeof addr.sun_path) {
    error = "socket path too long: " + path;
    return false;
  }
  std::memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return true;
}

void make_parent_dirs(const std::string& path, unsigned mode) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return;
  std::string dir = path.substr(0, slash);
  for (size_t i = 1; i <= dir.size(); ++i)
    if (i == dir.size() || dir[i] == '/') mkdir(dir.substr(0, i).c_str(), mode_t(mode));
}

Fd unix_listen(const std::string& path, unsigned mode, std::string& error) {
  sockaddr_un addr;
  if (!make_addr(path, addr, error)) return Fd();
  make_parent_dirs(path, 0755);
  Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    error = std::string("socket: ") + strerror(errno);
    return Fd();
  }
  // A socket file nobody listens on is stale; one that answers belongs to a running process.
  Fd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (probe && connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    error = path + " is in use by another running process";
    return Fd();
  }
  unlink(path.c_str());
  // The socket file is created with `mode` (never wider for a moment, whatever the process umask).
  const mode_t old_umask = umask(~mode_t(mode) & 0777);
  const bool bound = bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  umask(old_umask);
  if (!bound || ::listen(fd.get(), 16) != 0) {
    error = "cannot listen on " + path + ": " + strerror(errno);
    return Fd();
  }
  chmod(path.c_str(), mode);  // exactly `mode`, also bits the umask would have kept off
  return fd;
}

std::optional<std::string> unix_request(const std::string& path, const std::string& request, std::string& error,
                                        int timeout_ms) {
  sockaddr_un addr;
  if (!make_addr(path, addr, error)) return std::nullopt;
  Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd || connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    error = "cannot connect to " + path + ": " + strerror(errno);
    return std::nullopt;
  }
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  std::string line = request + "\n";
  // MSG_NOSIGNAL: a server that closed first gives EPIPE here, not SIGPIPE (common/broken_pipes.hpp).
  if (const ssize_t n = send(fd.get(), line.data(), line.size(), MSG_NOSIGNAL); n != ssize_t(line.size())) {
    error = "cannot send request to " + path + ": " + (n < 0 ? strerror(errno) : "only part of it sent");
    return std::nullopt;
  }
  shutdown(fd.get(), SHUT_WR);
  std::string reply;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      error = path + ": no reply within " + std::to_string(timeout_ms / 1000) + " s";
      return std::nullopt;
    }
    if (n <= 0) break;
    reply.append(buf, size_t(n));
  }
  return reply;
}

}  // namespace dptun
