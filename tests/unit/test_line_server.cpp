// The unix-socket line server behind dpctld's API and dpgw's control socket: replies now or later (also from
// inside the handler), and stays usable against clients that hold connections open: half-sent requests beyond
// the limits give way (oldest first) so a real request is still answered, unfinished requests time out, an
// endless line is cut (a line of max_line bytes passes, one byte more does not), and when the process is out of
// descriptors accepting pauses instead of spinning. Lines nobody asked for (push) go out in order with replies, bounded.
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/cmocka.hpp"

#include "common/line_server.hpp"

using namespace dptun;

namespace {

std::string socket_path() { return "/tmp/dptun-ls-" + std::to_string(getpid()) + ".sock"; }

int connect_to(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  timeval tv{0, 200000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

// Polls the server until `fd` has a reply line (or ~2 s pass).
std::string reply_of(LineServer& s, int fd, const LineServer::Handler& h) {
  std::string got;
  for (int i = 0; i < 200 && got.find('\n') == std::string::npos; ++i) {
    s.poll(h);
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) got.append(buf, size_t(n));
    else std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return got;
}

const LineServer::Handler echo = [](const std::string& line, bool& close, uint64_t) -> std::optional<std::string> {
  close = true;
  return "got " + line + "\n";
};

}  // namespace

static void replies_now_and_later(void**) {
  LineServer s;
  std::string error;
  assert_true(s.listen(socket_path(), error));
  int a = connect_to(socket_path());
  assert_true(write(a, "hello\n", 6) == 6);
  assert_string_equal(reply_of(s, a, echo).c_str(), "got hello\n");
  close(a);
  // Deferred: the handler answers later through reply(); and once from inside itself.
  uint64_t pending = 0;
  LineServer::Handler later = [&](const std::string& line, bool&, uint64_t conn) -> std::optional<std::string> {
    if (line == "inside") s.reply(conn, "inside done\n", true);
    else pending = conn;
    return std::nullopt;
  };
  int b = connect_to(socket_path());
  assert_true(write(b, "later\n", 6) == 6);
  for (int i = 0; i < 50 && !pending; ++i) s.poll(later);
  assert_int_not_equal(pending, 0);
  s.reply(pending, "later done\n", true);
  assert_string_equal(reply_of(s, b, later).c_str(), "later done\n");
  close(b);
  int c = connect_to(socket_path());
  assert_true(write(c, "inside\n", 7) == 7);
  assert_string_equal(reply_of(s, c, later).c_str(), "inside done\n");
  close(c);
}

// Lines nobody asked for (dpgw's masque_datagrams to its controller): an empty reply writes nothing and leaves the
// connection reading; push() queues whole lines, written by the next poll, in order with replies; over max_pushed
// bytes queued, or to a connection that is gone, it refuses and queues nothing.
static void pushes(void**) {
  LineServer s;
  std::string error;
  LineServer::Limits limits;
  limits.max_pushed = 12;
  assert_true(s.listen(socket_path(), error, limits));
  uint64_t conn = 0;
  LineServer::Handler h = [&](const std::string& line, bool&, uint64_t c) -> std::optional<std::string> {
    conn = c;
    if (line == "quiet") return std::string();
    return "got " + line + "\n";
  };
  int a = connect_to(socket_path());
  assert_true(write(a, "quiet\n", 6) == 6);
  for (int i = 0; i < 50 && !conn; ++i) s.poll(h);
  assert_int_not_equal(conn, 0);
  assert_true(s.push(conn, "p1\n"));
  assert_true(s.push(conn, "p2-long\n"));  // 3 + 8 = 11 bytes queued
  assert_false(s.push(conn, "p3\n"));      // 14 > 12: refused whole
  assert_false(s.push(conn + 1, "x\n"));   // no such connection
  assert_true(write(a, "next\n", 5) == 5);  // the empty reply left the connection reading
  std::string got;
  for (int i = 0; i < 200 && got.find("got next\n") == std::string::npos; ++i) {
    s.poll(h);
    char buf[256];
    ssize_t n = recv(a, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) got.append(buf, size_t(n));
    else std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  assert_string_equal(got.c_str(), "p1\np2-long\ngot next\n");  // nothing for "quiet"
  assert_true(s.push(conn, "p3\n"));  // written: room again
  assert_string_equal(reply_of(s, a, h).c_str(), "p3\n");
  close(a);
  for (int i = 0; i < 50 && s.is_open(conn); ++i) s.poll(h);
  assert_false(s.push(conn, "p4\n"));
}

static void held_connections_give_way(void**) {
  LineServer s;
  std::string error;
  LineServer::Limits limits;
  limits.max_connections = 16;
  limits.max_per_peer = 16;
  limits.request_timeout_s = 1;
  assert_true(s.listen(socket_path(), error, limits));
  std::vector<int> held;
  for (int i = 0; i < 60; ++i) {  // half-sent requests, far more than the limit
    int fd = connect_to(socket_path());
    assert_true(fd >= 0);
    assert_true(write(fd, "{\"cmd\": \"sta", 12) == 12);  // the oldest may be gone already: writes below may fail
    held.push_back(fd);
    s.poll(echo);
  }
  assert_true(s.connections() <= 16);
  assert_true(s.stats().shed >= 44);
  int good = connect_to(socket_path());
  assert_true(write(good, "stats\n", 6) == 6);
  assert_string_equal(reply_of(s, good, echo).c_str(), "got stats\n");
  // Unfinished requests time out.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  s.poll(echo);
  assert_int_equal(s.connections(), 0);
  assert_true(s.stats().timed_out > 0);
  for (int fd : held) close(fd);
  close(good);
  // A line without end beyond max_line is cut.
  LineServer t;
  limits.max_line = 4096;
  assert_true(t.listen(socket_path() + "2", error, limits));
  int big = connect_to(socket_path() + "2");
  std::string junk(3000, 'x');
  for (int i = 0; i < 3; ++i) {
    if (write(big, junk.data(), junk.size()) < 0) break;  // cut off: the server closed it
    t.poll(echo);
  }
  assert_true(t.stats().too_long == 1);
  assert_int_equal(t.connections(), 0);
  close(big);
  // A line of exactly max_line bytes is served; one byte more, newline and all, closes the connection unanswered.
  int exact = connect_to(socket_path() + "2");
  const std::string at_limit(4096, 'a');
  assert_true(write(exact, (at_limit + "\n").data(), 4097) == 4097);
  assert_string_equal(reply_of(t, exact, echo).c_str(), ("got " + at_limit + "\n").c_str());
  close(exact);
  int over = connect_to(socket_path() + "2");
  assert_true(write(over, (at_limit + "b\n").data(), 4098) == 4098);
  assert_string_equal(reply_of(t, over, echo).c_str(), "");
  assert_true(t.stats().too_long == 2);
  assert_int_equal(t.connections(), 0);
  char c;
  assert_int_equal(recv(over, &c, 1, 0), 0);  // closed by the server
  close(over);
}

static void out_of_descriptors_pauses(void**) {
  LineServer s;
  std::string error;
  assert_true(s.listen(socket_path(), error));
  int client = connect_to(socket_path());  // waits in the backlog
  assert_true(client >= 0);
  rlimit old{};
  getrlimit(RLIMIT_NOFILE, &old);
  rlimit low = old;
  low.rlim_cur = 64;
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
  std::vector<int> filler;
  for (int fd; (fd = dup(0)) >= 0;) filler.push_back(fd);
  s.poll(echo);  // accept fails with EMFILE and there is nothing to shed
  assert_true(s.accept_paused());
  assert_int_equal(s.stats().accept_paused, 1);
  for (int fd : filler) close(fd);
  setrlimit(RLIMIT_NOFILE, &old);
  std::this_thread::sleep_for(std::chrono::milliseconds(110));
  assert_false(s.accept_paused());
  assert_true(write(client, "again\n", 6) == 6);
  assert_string_equal(reply_of(s, client, echo).c_str(), "got again\n");
  close(client);
}

int main() {
  signal(SIGPIPE, SIG_IGN);  // the server closes connections it sheds; writes to them must not end the test
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(replies_now_and_later),
      cmocka_unit_test(pushes),
      cmocka_unit_test(held_connections_give_way),
      cmocka_unit_test(out_of_descriptors_pauses),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
