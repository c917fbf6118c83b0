#include "control/gateway_link.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/clock.hpp"

#include "common/json_fields.hpp"
#include "common/log.hpp"
#include "common/uuid.hpp"
#include "proto/gateway_messages.hpp"

namespace dptun {

using nlohmann::json;

std::string GatewayLink::random_instance_id() { return Uuid::random_v4().str(); }

GatewayLink::~GatewayLink() {
  if (fd_) loop_.remove(fd_.get());
}

void GatewayLink::tick(uint64_t now_ns) {
  if (!fd_) {
    if (now_ns >= next_attempt_ns_) connect_now(now_ns);
    return;
  }
  if (hello_done_ && now_ns >= next_status_ns_) {
    next_status_ns_ = now_ns + 1'000'000'000ull;
    send(gateway_message(GatewayMessageType::Status));
  }
}

void GatewayLink::connect_now(uint64_t now_ns) {
  next_attempt_ns_ = now_ns + 1'000'000'000ull;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path_.size() >= sizeof addr.sun_path) return;
  std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
  Fd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd || connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (!warned_) LOG_WARN("gateway control socket %s: %s (retrying every second)", path_.c_str(), strerror(errno));
    warned_ = true;
    return;
  }
  warned_ = false;
  fd_ = std::move(fd);
  in_.clear();
  out_.clear();
  hello_done_ = false;
  loop_.add(fd_.get(), EPOLLIN, [this](uint32_t ev) { on_event(ev); });
  // Hello, then the whole state: a restarted dpgw gets everything back.
  // Hello first; the whole state follows once dpgw has taken this dpctld as its controller (dispatch).
  char host[256] = "?";
  gethostname(host, sizeof host - 1);
  out_ += gateway_message(GatewayMessageType::Hello, {{"version", kGatewayProtocolVersion}, {"client", "dpctld"},
                                                       {"instance", instance_}, {"pid", getpid()}, {"host", host},
                                                       {"seq", ++seq_}})
              .dump(-1, ' ', false, json::error_handler_t::replace) +
          "\n";
  write_some();
}

void GatewayLink::send(json msg) {
  if (!fd_ || !hello_done_) return;  // the sync after the next hello carries it
  msg["seq"] = ++seq_;
  if (gateway_message_type(msg) != GatewayMessageType::Status) msg["epoch"] = epoch_;
  out_ += msg.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  write_some();
}

void GatewayLink::write_some() {
  while (fd_ && !out_.empty()) {
    ssize_t n = ::send(fd_.get(), out_.data(), out_.size(), MSG_NOSIGNAL);
    if (n > 0) {
      out_.erase(0, size_t(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      loop_.modify(fd_.get(), EPOLLIN | EPOLLOUT);
      return;
    }
    disconnect("write failed");
    return;
  }
  if (fd_) loop_.modify(fd_.get(), EPOLLIN);
}

void GatewayLink::on_event(uint32_t events) {
  if (events & EPOLLOUT) write_some();
  if (!fd_) return;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd_.get(), buf, sizeof buf);
    if (n <= 0) {
      // What dpgw said before it closed (a refusal says why) was read first.
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        disconnect("gateway closed the connection");
      return;
    }
    const bool fits = in_.append({buf, size_t(n)});
    while (fd_ && in_.has_line()) handle(*in_.next());
    if (!fd_) return;  // a reply ended the connection (another dpctld controls dpgw)
    if (!fits) {
      LOG_ERROR("gateway %s: a line over %zu bytes from dpgw", path_.c_str(), kMaxLine);
      disconnect("unreadable reply");
      return;
    }
  }
}

void GatewayLink::handle(const std::string& line) {
  json msg = json::parse(line, nullptr, false);
  if (msg.is_discarded() || !msg.is_object()) return;
  try {
    dispatch(msg);
  } catch (const std::exception& e) {  // a reply we cannot read is logged, never fatal
    LOG_WARN("gateway %s: unreadable reply (%s): %.200s", path_.c_str(), e.what(), line.c_str());
  }
}

// dpgw answers with hello, status, ok (nothing to do) or error, and sends masque_datagrams on its own.
void GatewayLink::dispatch(const json& msg) {
  const std::optional<GatewayMessageType> type = gateway_message_type(msg);
  if (type == GatewayMessageType::Hello) {
    hello_done_ = true;
    const uint64_t last = epoch_;
    epoch_ = uint64_t(int_field(msg, "epoch", 0, INT64_MAX, 0));
    replaced_ = last != 0 && epoch_ != last + 1;
    stun_port_ = uint16_t(int_field(msg, "stun_port", 0, 65535, 0));
    addresses_.clear();
    for (const auto& a : array_field(msg, "addresses"))
      if (a.is_string()) addresses_.push_back(a.get<std::string>());
    if (!conflict_.empty()) LOG_WARN("gateway %s: this dpctld controls the gateway again", path_.c_str());
    conflict_.clear();
    // The whole state, then the gateway's view at once: which sessions it still holds from before (their
    // indexes are not free).
    send(full_state_());
    replaced_ = false;
    send(gateway_message(GatewayMessageType::Status));
    ++syncs_;
    LOG_INFO("gateway %s: connected (%lld worker(s)), controller epoch %llu; state pushed", path_.c_str(),
             (long long)int_field(msg, "workers", 0, 1 << 16, 0), (unsigned long long)epoch_);
  } else if (type == GatewayMessageType::Status) {
    on_status_(msg);
  } else if (type == GatewayMessageType::MasqueDatagrams) {
    if (on_masque_datagrams_) on_masque_datagrams_(msg);
  } else if (type == GatewayMessageType::Error) {
    const std::optional<GatewayErrorCode> code = gateway_error_code(msg);
    if (code == GatewayErrorCode::ControllerBusy || code == GatewayErrorCode::Fenced ||
        code == GatewayErrorCode::NotController) {
      // Another dpctld holds the gateway, or took it over: nothing this one pushes may count.
      const std::string name(name_of(*code));
      const std::string reason = string_or(msg, "reason", name);
      if (conflict_ != reason)
        LOG_ERROR("gateway %s: %s: %s; this dpctld does not control it (retrying every 5 s)", path_.c_str(),
                  name.c_str(), reason.c_str());
      conflict_ = reason;
      conflicts_++;
      disconnect(nullptr);
      next_attempt_ns_ = monotonic_ns() + 5'000'000'000ull;
      return;
    }
    LOG_WARN("gateway refused a change: %s", string_or(msg, "reason", "?").c_str());
    on_refused_(msg);
  }
}

void GatewayLink::disconnect(const char* why) {
  if (!fd_) return;
  if (why) LOG_WARN("gateway %s: %s; reconnecting", path_.c_str(), why);
  loop_.remove(fd_.get());
  fd_.reset();
  hello_done_ = false;
}

}  // namespace dptun
