// Unix stream sockets: an owning file descriptor, a listening socket with a given mode, and the client side of
// a one-request exchange (dpgw stats one-shots, dpctl).
#pragma once
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

// Creates the directories above `path` that are missing, with `mode` (existing ones are left as they are).
void make_parent_dirs(const std::string& path, unsigned mode);

// A non-blocking listening unix socket at `path` (stale socket removed, parent directory created, mode set).
// Fails when another running process answers on the path.
Fd unix_listen(const std::string& path, unsigned mode, std::string& error);

// Connects, sends `request` + "\n", reads the whole reply (until the server closes). nullopt with `error` on
// failure, including no reply within `timeout_ms`.
std::optional<std::string> unix_request(const std::string& path, const std::string& request, std::string& error,
                                        int timeout_ms = 10000);

}  // namespace dptun
