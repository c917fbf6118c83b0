#include "agent/process_signals.hpp"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>

namespace dptun {

namespace {
std::atomic<bool> g_stop{false};
int g_dump_event = -1;

void on_stop(int) { g_stop = true; }
void on_dump(int) {
  const uint64_t one = 1;
  ssize_t w = write(g_dump_event, &one, sizeof one);
  (void)w;
}
}  // namespace

std::atomic<bool>& ProcessSignals::stop_flag() { return g_stop; }

bool ProcessSignals::install(EventLoop& loop, std::function<void()> dump) {
  dump_event_ = Fd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!dump_event_) return false;
  g_dump_event = dump_event_.get();
  const int fd = dump_event_.get();
  if (!loop.add(fd, EPOLLIN, [fd, dump = std::move(dump)](uint32_t) {
        uint64_t n;
        while (read(fd, &n, sizeof n) > 0) {
        }
        dump();
      }))
    return false;
  struct sigaction sa {};
  sa.sa_handler = on_stop;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sa.sa_handler = on_dump;
  sigaction(SIGUSR1, &sa, nullptr);
  return true;
}

}  // namespace dptun
