// One thread for a slow-path process's slow work (Hyperscan compiles, fsynced file writes), so that its event
// loop never waits for it. Jobs run in submission order; each job's `done` runs afterwards on the loop thread
// (woken through an eventfd), in the same order.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "common/event_loop.hpp"

namespace dptun {

class Background {
 public:
  ~Background();
  bool start(EventLoop& loop, std::string& error);
  // `work` runs on the background thread, then `done` on the loop thread. Never blocks the caller.
  void submit(std::function<void()> work, std::function<void()> done);
  size_t pending() const { return in_flight_; }

 private:
  void run();
  void drain_done();

  EventLoop* loop_ = nullptr;
  Fd wake_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::deque<std::pair<std::function<void()>, std::function<void()>>> todo_;
  std::deque<std::function<void()>> done_;
  size_t in_flight_ = 0;  // loop thread only
};

}  // namespace dptun
