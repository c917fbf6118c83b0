// A local line-protocol server on a unix socket (0660): each request line gets the handler's reply; a
// connection may stay open for more requests or be closed after a reply. Polled (accept, read, write) from the
// owner's loop; never blocks. dpgw's control socket and dpctld's API socket.
#pragma once
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/unix_socket.hpp"

namespace dptun {

class LineServer {
 public:
  // Returns the reply line(s) for a request line; `close` ends the connection after the reply.
  using Handler = std::function<std::string(const std::string& line, bool& close)>;

  bool listen(const std::string& path, std::string& error);
  ~LineServer();
  void poll(const Handler& handler);
  int fd() const { return fd_.get(); }  // the listening socket: readable when a client connects
  size_t connections() const { return conns_.size(); }

 private:
  static constexpr int kIdleSeconds = 30;  // a connection neither sending nor reading this long is closed
  struct Conn {
    Fd fd;
    std::string in, out;
    bool closing = false;    // the handler asked to close after the reply
    bool peer_done = false;  // the peer shut its side down (or closed): finish the reply, then close
    std::chrono::steady_clock::time_point last_active;
  };
  Fd fd_;
  std::string path_;
  std::vector<std::unique_ptr<Conn>> conns_;
};

}  // namespace dptun
