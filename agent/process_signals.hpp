// dpagent's signals, for each of its commands: SIGINT and SIGTERM set the stop flag the event loop checks (a signal
// ends its wait at once); SIGUSR1 wakes the loop, which calls `dump` (a JSON line of counters). One per process.
#pragma once
#include <atomic>
#include <functional>

#include "common/event_loop.hpp"
#include "common/unix_socket.hpp"

namespace dptun {

class ProcessSignals {
 public:
  // Installs the handlers and adds the SIGUSR1 wakeup to `loop`; false (errno set) when it cannot.
  bool install(EventLoop& loop, std::function<void()> dump);
  static std::atomic<bool>& stop_flag();  // for EventLoop::run; set it to stop too

 private:
  Fd dump_event_;
};

}  // namespace dptun
