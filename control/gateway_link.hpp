// dpctld's link to dpgw's control socket: connects (and reconnects every second while dpgw is away), pushes
// the full state on every connect (so a restarted dpgw gets it all back), then each change as it happens, and
// asks for the gateway's status every second (session liveness, counters).
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>

#include "common/event_loop.hpp"

namespace dptun {

class GatewayLink {
 public:
  using FullState = std::function<nlohmann::json()>;  // the "sync" message
  using OnMessage = std::function<void(const nlohmann::json&)>;

  // on_status gets every status reply (the first right after each sync); on_refused every change dpgw refused.
  GatewayLink(EventLoop& loop, std::string path, FullState full_state, OnMessage on_status, OnMessage on_refused)
      : loop_(loop),
        path_(std::move(path)),
        full_state_(std::move(full_state)),
        on_status_(std::move(on_status)),
        on_refused_(std::move(on_refused)) {}
  ~GatewayLink();
  void tick(uint64_t now_ns);
  // Sends a change now when connected; when not, the next connect's full sync carries it.
  void send(nlohmann::json msg);
  bool connected() const { return bool(fd_) && hello_done_; }
  uint64_t syncs() const { return syncs_; }

 private:
  void connect_now(uint64_t now_ns);
  void on_event(uint32_t events);
  void write_some();
  void disconnect(const char* why);
  void handle(const std::string& line);
  void dispatch(const nlohmann::json& msg);

  EventLoop& loop_;
  std::string path_;
  FullState full_state_;
  OnMessage on_status_;
  OnMessage on_refused_;
  Fd fd_;
  std::string in_, out_;
  bool hello_done_ = false;
  bool warned_ = false;
  uint64_t next_attempt_ns_ = 0;
  uint64_t next_status_ns_ = 0;
  uint64_t seq_ = 0;
  uint64_t syncs_ = 0;
};

}  // namespace dptun
