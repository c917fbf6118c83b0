// A local line-protocol server on a unix socket (0660): each request line gets the handler's reply, at once or
// later (reply()); a connection may stay open for more requests or be closed after a reply. An empty reply writes
// nothing (a request that is never answered); push() sends lines nobody asked for, bounded per connection. Polled (accept,
// read, write) from the owner's loop; never blocks. dpgw's control socket and dpctld's API socket.
//
// Bounded against clients that hold connections open: at most `max_connections` (and `max_per_peer` per peer
// uid), a request must be complete within `request_timeout_s`, a line is at most `max_line` bytes (a longer one
// closes the connection, logged and counted as too_long). When a limit is reached the oldest connection that has
// not finished a request gives way. When the process is out of file
// descriptors, accepting pauses for 100 ms instead of spinning (accept_paused()).
#pragma once
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/line_buffer.hpp"
#include "common/unix_socket.hpp"

namespace dptun {

class LineServer {
 public:
  struct Limits {
    size_t max_connections = 64;
    size_t max_per_peer = 48;
    size_t max_line = 1u << 20;  // bytes, the '\n' not counted
    int request_timeout_s = 10;  // from the first byte (or the connect) to a complete line
    int idle_s = 30;             // a connection neither sending nor reading this long is closed
    size_t max_pushed = size_t(4) << 20;  // bytes queued for a connection beyond which push() refuses more
  };
  struct Stats {
    uint64_t accepted = 0, shed = 0, timed_out = 0, too_long = 0, accept_paused = 0;
  };
  // The reply line(s) for a request line, or nullopt when the reply comes later through reply(conn, ...); the
  // connection reads nothing more until it does. `close` ends the connection after the reply.
  using Handler = std::function<std::optional<std::string>(const std::string& line, bool& close, uint64_t conn)>;

  bool listen(const std::string& path, std::string& error, Limits limits);
  bool listen(const std::string& path, std::string& error) { return listen(path, error, Limits{}); }
  ~LineServer();
  void poll(const Handler& handler);
  // A deferred reply; nothing happens when the connection has gone meanwhile.
  void reply(uint64_t conn, const std::string& text, bool close);
  // Unsolicited line(s) to `conn`, whole, written by the next poll() as replies are (in order with them); nothing
  // else changes (a deferred reply is still due). False, and nothing queued: the connection is gone or closing, or
  // its queue (replies and pushes not written yet) would pass limits.max_pushed bytes.
  bool push(uint64_t conn, const std::string& text);
  bool is_open(uint64_t conn) const;
  int fd() const { return fd_.get(); }  // the listening socket: readable when a client connects
  size_t connections() const { return conns_.size(); }
  bool accept_paused() const;  // out of file descriptors: do not wait for the listening socket until it passes
  const Stats& stats() const { return stats_; }

 private:
  struct Conn {
    uint64_t id = 0;
    Fd fd;
    uid_t uid = 0;
    LineBuffer in{0};  // sized from the limits at accept
    std::string out;
    bool closing = false;    // the handler asked to close after the reply
    bool peer_done = false;  // the peer shut its side down (or closed): finish the reply, then close
    bool waiting = false;    // a deferred reply is due
    std::chrono::steady_clock::time_point since;        // when the request being read began
    std::chrono::steady_clock::time_point last_active;
  };
  void accept_all(std::chrono::steady_clock::time_point now);
  bool shed_one(std::optional<uid_t> of_peer);
  void serve(Conn& c, const Handler& handler, std::chrono::steady_clock::time_point now);

  Fd fd_;
  std::string path_;
  Limits limits_;
  Stats stats_;
  uint64_t next_id_ = 1;
  std::chrono::steady_clock::time_point paused_until_{};
  std::vector<std::unique_ptr<Conn>> conns_;
};

}  // namespace dptun
