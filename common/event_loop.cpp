#include "common/event_loop.hpp"

#include <sys/epoll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include "common/clock.hpp"

namespace dptun {

bool EventLoop::init(std::string& error) {
  epoll_ = Fd(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) error = std::string("epoll_create1: ") + strerror(errno);
  return bool(epoll_);
}

bool EventLoop::add(int fd, uint32_t events, Handler handler) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return false;
  handlers_[fd] = std::make_shared<Handler>(std::move(handler));
  return true;
}

void EventLoop::modify(int fd, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev);
}

void EventLoop::remove(int fd) {
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  handlers_.erase(fd);
}

void EventLoop::run(const std::atomic<bool>& stop, int tick_ms, const std::function<void()>& tick) {
  uint64_t next_tick = monotonic_ns();
  while (!stop.load()) {
    const uint64_t now = monotonic_ns();
    if (now >= next_tick) {
      tick();
      next_tick = now + uint64_t(tick_ms) * 1000000ull;
    }
    int timeout = int((next_tick - std::min(next_tick, monotonic_ns())) / 1000000ull) + 1;
    epoll_event evs[64];
    int n = epoll_wait(epoll_.get(), evs, 64, timeout);
    for (int i = 0; i < n; ++i) {
      auto it = handlers_.find(evs[i].data.fd);
      if (it == handlers_.end()) continue;
      std::shared_ptr<Handler> h = it->second;  // keeps the handler alive if it removes itself
      (*h)(evs[i].events);
    }
  }
}

}  // namespace dptun
