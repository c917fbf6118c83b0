// common/event_loop: what dpctld and dpagent rely on. Handlers that remove their own descriptor (dpagent's link
// to a new gateway, a control connection that ends) or another one in the same wakeup; the tick keeps running
// while a descriptor is always ready (dpagent's keepalives under load); a descriptor epoll refuses is an error.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <string>

#include "common/event_loop.hpp"

#include "tests/unit/cmocka.hpp"  // last: its fail() macro would break standard headers

using namespace dptun;

namespace {

Fd ready_eventfd() {
  Fd fd(eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC));  // readable from the start, until read
  assert_true(bool(fd));
  return fd;
}

EventLoop make_loop() {
  EventLoop loop;
  std::string error;
  assert_true(loop.init(error));
  return loop;
}

}  // namespace

// The handler removes its own descriptor and closes it: the handler object it runs in stays alive until it
// returns (ASan would see a use after free), and it is not called again.
static void handler_removes_itself(void**) {
  EventLoop loop = make_loop();
  Fd fd = ready_eventfd();
  std::atomic<bool> stop{false};
  int calls = 0, ticks = 0;
  std::string owned = "state the handler captured";
  assert_true(loop.add(fd.get(), EPOLLIN, [&, owned](uint32_t events) {
    assert_true(events & EPOLLIN);
    ++calls;
    loop.remove(fd.get());
    fd.reset();
    assert_int_equal(owned.size(), 26);  // the captured state is still there after remove()
  }));
  loop.run(stop, 1, [&] {
    if (++ticks == 3) stop = true;
  });
  assert_int_equal(calls, 1);
}

// Two descriptors ready in the same wakeup; whichever runs first removes the other, which is then not called.
static void removed_in_the_same_wakeup_is_not_called(void**) {
  EventLoop loop = make_loop();
  Fd a = ready_eventfd(), b = ready_eventfd();
  std::atomic<bool> stop{false};
  int calls_a = 0, calls_b = 0;
  assert_true(loop.add(a.get(), EPOLLIN, [&](uint32_t) {
    ++calls_a;
    loop.remove(a.get());
    loop.remove(b.get());
    stop = true;
  }));
  assert_true(loop.add(b.get(), EPOLLIN, [&](uint32_t) {
    ++calls_b;
    loop.remove(a.get());
    loop.remove(b.get());
    stop = true;
  }));
  loop.run(stop, 1000, [] {});
  assert_int_equal(calls_a + calls_b, 1);
}

// A descriptor that is never drained keeps every wait short; the tick still runs (dpagent's keepalives, session
// and reassembly expiry while traffic never stops).
static void tick_runs_while_a_descriptor_stays_ready(void**) {
  EventLoop loop = make_loop();
  Fd busy = ready_eventfd();
  std::atomic<bool> stop{false};
  uint64_t calls = 0;
  int ticks = 0;
  assert_true(loop.add(busy.get(), EPOLLIN, [&](uint32_t) { ++calls; }));
  loop.run(stop, 1, [&] {
    if (++ticks == 3) stop = true;
  });
  assert_int_equal(ticks, 3);
  assert_true(calls > 0);
}

// A handler can add a descriptor (dpagent opening the link to the gateway a registration names); the new one is
// dispatched on later wakeups.
static void handler_adds_a_descriptor(void**) {
  EventLoop loop = make_loop();
  Fd first = ready_eventfd(), second = ready_eventfd();
  std::atomic<bool> stop{false};
  int calls_second = 0;
  assert_true(loop.add(first.get(), EPOLLIN, [&](uint32_t) {
    loop.remove(first.get());
    assert_true(loop.add(second.get(), EPOLLIN, [&](uint32_t) {
      ++calls_second;
      stop = true;
    }));
  }));
  loop.run(stop, 1000, [] {});
  assert_int_equal(calls_second, 1);
}

// epoll refuses a regular file: add says so, and nothing is registered.
static void add_refused_is_an_error(void**) {
  EventLoop loop = make_loop();
  FILE* f = tmpfile();
  assert_non_null(f);
  assert_false(loop.add(fileno(f), EPOLLIN, [](uint32_t) {}));
  fclose(f);
}

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(handler_removes_itself),
      cmocka_unit_test(removed_in_the_same_wakeup_is_not_called),
      cmocka_unit_test(tick_runs_while_a_descriptor_stays_ready),
      cmocka_unit_test(handler_adds_a_descriptor),
      cmocka_unit_test(add_refused_is_an_error),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
