// Local request/response over a unix stream socket: one request line in, one reply out, then close.
// Used by dpgw's stats one-shots and by dpctl.
#pragma once
#include <functional>
#include <optional>
#include <string>

namespace dptun {

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = o.release();
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset();
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// A non-blocking listening unix socket at `path` (stale socket removed, parent directory created, mode set).
// Fails when another running process answers on the path.
Fd unix_listen(const std::string& path, unsigned mode, std::string& error);

class UnixServer {
 public:
  // Binds `path` (removing a stale socket, creating the parent directory) with the given mode.
  // Returns false with `error` set on failure.
  bool listen(const std::string& path, unsigned mode, std::string& error);
  ~UnixServer();
  // Serves every pending connection without blocking for new ones; each gets handler(request line).
  void poll(const std::function<std::string(const std::string&)>& handler);
  const std::string& path() const { return path_; }

 private:
  Fd fd_;
  std::string path_;
};

// Connects, sends `request` + "\n", reads the whole reply (until the server closes). nullopt with `error` on
// failure, including no reply within `timeout_ms`.
std::optional<std::string> unix_request(const std::string& path, const std::string& request, std::string& error,
                                        int timeout_ms = 10000);

}  // namespace dptun
