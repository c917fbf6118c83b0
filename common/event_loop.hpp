// A single-threaded epoll loop: file descriptors with handlers, and a periodic tick. dpctld runs on it, and so does
// dpagent, data path included: a handler is called once per wakeup with the epoll events (EPOLLIN ...) and drains
// its descriptor in batches, so the loop's own cost (a hash lookup and a call, no allocation) is per wakeup, not
// per packet. Handlers may add or remove descriptors, including their own; one removed during a wakeup gets no
// further call from it (unless its number is added again in the same wakeup: handlers use non-blocking
// descriptors and tolerate a call without readiness).
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
  // `events` as for epoll_ctl. add returns false (errno set) when epoll refuses the descriptor.
  bool add(int fd, uint32_t events, Handler handler);
  void modify(int fd, uint32_t events);
  void remove(int fd);
  // Dispatches events until `stop` is set (checked after every wakeup; a signal ends the wait); runs `tick` about
  // every tick_ms, also while descriptors keep the loop busy.
  void run(const std::atomic<bool>& stop, int tick_ms, const std::function<void()>& tick);

 private:
  Fd epoll_;
  std::unordered_map<int, std::shared_ptr<Handler>> handlers_;
};

}  // namespace dptun
