#include "common/tcp_socket.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace dptun {

Fd tcp_listen(Endpoint at, int backlog, std::string& error) {
  Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  int one = 1;
  if (fd) setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(at.port);
  sin.sin_addr.s_addr = htonl(at.ip.v4());
  if (!fd || bind(fd.get(), reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0 || ::listen(fd.get(), backlog) != 0) {
    error = "cannot listen on " + at.str() + ": " + strerror(errno);
    return Fd();
  }
  return fd;
}

}  // namespace dptun
