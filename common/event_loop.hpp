// A single-threaded epoll loop for the slow-path processes (dpctld): file descriptors with handlers, and a
// periodic tick. Handlers may add or remove descriptors, including their own.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include "common/unix_socket.hpp"

namespace dptun {

class EventLoop {
 public:
  using Handler = std::function<void(uint32_t events)>;

  bool init(std::string& error);
  bool add(int fd, uint32_t events, Handler handler);
  void modify(int fd, uint32_t events);
  void remove(int fd);
  // Dispatches events until `stop` is set; runs `tick` about every tick_ms.
  void run(const std::atomic<bool>& stop, int tick_ms, const std::function<void()>& tick);

 private:
  Fd epoll_;
  std::unordered_map<int, std::shared_ptr<Handler>> handlers_;
};

}  // namespace dptun
