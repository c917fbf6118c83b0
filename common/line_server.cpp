#include "common/line_server.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/log.hpp"

namespace dptun {

using Clock = std::chrono::steady_clock;

bool LineServer::listen(const std::string& path, std::string& error, Limits limits) {
  fd_ = unix_listen(path, 0660, error);
  if (!fd_) return false;
  path_ = path;
  limits_ = limits;
  return true;
}

LineServer::~LineServer() {
  if (fd_) unlink(path_.c_str());
}

bool LineServer::accept_paused() const { return Clock::now() < paused_until_; }

// Closes the oldest connection that has not finished a request (of one peer, or of any); false when none.
bool LineServer::shed_one(std::optional<uid_t> of_peer) {
  Conn* oldest = nullptr;
  for (auto& c : conns_)
    if (c->fd && !c->waiting && c->out.empty() && (!of_peer || c->uid == *of_peer) &&
        (!oldest || c->since < oldest->since))
      oldest = c.get();
  if (!oldest) return false;
  oldest->fd.reset();
  stats_.shed++;
  return true;
}

void LineServer::accept_all(Clock::time_point now) {
  if (now < paused_until_) return;
  // A bounded number per poll: requests already accepted are read before more connections come in.
  for (size_t taken = 0; taken < limits_.max_connections; ++taken) {
    Fd c(accept4(fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!c) {
      if (errno == EMFILE || errno == ENFILE) {
        // Out of descriptors: the listening socket stays readable, so waiting on it would spin. Make room by
        // shedding, or pause accepting for a moment.
        if (shed_one(std::nullopt)) {
          conns_.erase(std::remove_if(conns_.begin(), conns_.end(), [](const auto& x) { return !x->fd; }),
                       conns_.end());
          continue;
        }
        paused_until_ = now + std::chrono::milliseconds(100);
        stats_.accept_paused++;
      }
      return;
    }
    auto conn = std::make_unique<Conn>();
    ucred cred{};
    socklen_t len = sizeof cred;
    if (getsockopt(c.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) conn->uid = cred.uid;
    size_t of_peer = 0;
    for (const auto& x : conns_) of_peer += x->fd && x->uid == conn->uid;
    if (of_peer >= limits_.max_per_peer) shed_one(conn->uid);
    size_t open = 0;
    for (const auto& x : conns_) open += bool(x->fd);
    if (open >= limits_.max_connections && !shed_one(std::nullopt)) continue;  // all busy: refuse the newcomer
    conn->id = next_id_++;
    conn->in = LineBuffer(limits_.max_line);
    conn->fd = std::move(c);
    conn->since = conn->last_active = now;
    conns_.push_back(std::move(conn));
    stats_.accepted++;
  }
}

void LineServer::serve(Conn& c, const Handler& handler, Clock::time_point now) {
  char buf[8192];
  bool broken = false;  // the connection cannot be used any more: close it now
  while (!c.peer_done && !c.waiting) {
    ssize_t n = read(c.fd.get(), buf, sizeof buf);
    if (n > 0) {
      if (c.in.empty()) c.since = now;
      c.last_active = now;
      if (!c.in.append({buf, size_t(n)})) {
        stats_.too_long++;
        LOG_WARN("%s: a request line over %zu bytes from uid %u; connection closed", path_.c_str(), limits_.max_line,
                 unsigned(c.uid));
        broken = true;
        break;
      }
      if (c.in.has_line()) break;  // serve it before reading more
      continue;
    }
    if (n == 0) c.peer_done = true;  // it sent all it will; its reply may still be on its way
    else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) broken = true;
    break;
  }
  while (!broken && !c.closing && !c.waiting && c.in.has_line()) {
    std::string line = *c.in.next();
    c.since = now;
    if (line.empty()) continue;
    bool close = false;
    c.waiting = true;  // until it is answered: now (the return value), or by reply(), even from inside handler()
    std::optional<std::string> r = handler(line, close, c.id);
    if (!r) continue;  // the loop ends while it waits; a reply() made meanwhile lets it go on
    c.waiting = false;
    c.out += *r;
    if (close) c.closing = true;
  }
  while (!broken && !c.out.empty()) {
    ssize_t n = send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      broken = true;
      break;
    }
    c.out.erase(0, size_t(n));
    c.last_active = now;
  }
  const bool done = c.out.empty() && !c.waiting && (c.closing || (c.peer_done && !c.in.has_line()));
  const bool idle = !c.waiting && now - c.last_active > std::chrono::seconds(limits_.idle_s);
  // A request that does not complete in time (a client that holds it half-sent).
  const bool slow = !c.waiting && c.out.empty() && !c.in.empty() &&
                    now - c.since > std::chrono::seconds(limits_.request_timeout_s);
  if (slow) stats_.timed_out++;
  if (broken || done || idle || slow) c.fd.reset();
}

void LineServer::poll(const Handler& handler) {
  if (!fd_) return;
  const auto now = Clock::now();
  accept_all(now);
  for (size_t i = 0; i < conns_.size(); ++i)  // serve() may not add connections, but a handler may reply()
    if (conns_[i]->fd) serve(*conns_[i], handler, now);
  conns_.erase(std::remove_if(conns_.begin(), conns_.end(), [](const auto& c) { return !c->fd; }), conns_.end());
}

bool LineServer::is_open(uint64_t conn) const {
  for (const auto& c : conns_)
    if (c->id == conn) return bool(c->fd);
  return false;
}

void LineServer::reply(uint64_t conn, const std::string& text, bool close) {
  for (auto& c : conns_) {
    if (c->id != conn || !c->fd) continue;
    c->waiting = false;
    c->out += text;
    if (close) c->closing = true;
    c->last_active = Clock::now();
    return;
  }
}

bool LineServer::push(uint64_t conn, const std::string& text) {
  for (auto& c : conns_) {
    if (c->id != conn || !c->fd || c->closing) continue;
    if (c->out.size() + text.size() > limits_.max_pushed) return false;
    c->out += text;
    return true;
  }
  return false;
}

}  // namespace dptun
