// dpgw's local control socket (unix, 0660): one-shot stats requests ("json" / "text" for `dpgw stats`) and
// persistent dpctld sessions speaking newline-delimited JSON (docs/control-plane.md, "dpctld <-> dpgw").
// Polled from the control lcore's tick; never blocks.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/unix_socket.hpp"

namespace dptun {

class ControlSocket {
 public:
  // Returns the reply line(s) for a request line; `close` ends the connection after the reply.
  using Handler = std::function<std::string(const std::string& line, bool& close)>;

  bool listen(const std::string& path, std::string& error);
  ~ControlSocket();
  void poll(const Handler& handler);
  size_t connections() const { return conns_.size(); }

 private:
  struct Conn {
    Fd fd;
    std::string in, out;
    bool closing = false;
  };
  Fd fd_;
  std::string path_;
  std::vector<std::unique_ptr<Conn>> conns_;
};

}  // namespace dptun
