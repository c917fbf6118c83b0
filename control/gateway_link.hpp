// dpctld's link to dpgw's control socket: connects (and reconnects every second while dpgw is away), pushes
// the full state on every connect (so a restarted dpgw gets it all back), then each change as it happens, and
// asks for the gateway's status every second (session liveness, counters).
//
// dpgw takes one controller at a time (dataplane/main_lcore/control_commands.hpp): this link says who it is (instance id,
// pid, host), learns its epoch, and sends it with every change. When dpgw says another dpctld controls it
// (`controller_busy`) or that it was replaced (`fenced`), the link says so loudly, reports it (conflict()), and
// tries again every 5 seconds; it never pushes state it does not own.
//
// A line from dpgw is at most kMaxLine bytes; a longer one is logged and the link reconnects. The largest dpgw
// sends is the status reply: every session twice (its "sessions" list and the per-tunnel counters, under 300
// bytes each with every counter at 2^64), every tunnel's counters (under 600 bytes) and every entry point (under
// 250): at dpgw's limits (65535 session indexes, max_tunnels 16384, 2 x 65535 entry points) under 74 MiB.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/event_loop.hpp"
#include "common/line_buffer.hpp"

namespace dptun {

class GatewayLink {
 public:
  static constexpr size_t kMaxLine = size_t(128) << 20;  // bytes: the largest status reply (above) with margin

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
  // Gets every masque_datagrams message from dpgw (the target's replies to a MASQUE client whose capsules dpctld
  // carries, proto/gateway_messages.hpp); without it they are ignored.
  void set_on_masque_datagrams(OnMessage f) { on_masque_datagrams_ = std::move(f); }
  // Bytes queued for dpgw and not yet written (MASQUE payloads are dropped while it is large).
  size_t queued() const { return out_.size(); }
  void tick(uint64_t now_ns);
  // Sends a change now when connected; when not, the next connect's full sync carries it.
  void send(nlohmann::json msg);
  bool connected() const { return bool(fd_) && hello_done_; }
  uint64_t syncs() const { return syncs_; }
  uint64_t epoch() const { return epoch_; }
  // True while building the sync of a connect to a dpgw that may not be the process this link last controlled
  // (it restarted, or another controller held it in between): its epoch is not the last one + 1. A first connect
  // is not. QUIC sessions' packet numbers do not survive such a dpgw (Dpctld drops those sessions).
  bool gateway_replaced() const { return replaced_; }
  // Why dpgw does not take this dpctld as its controller ("" when it does, or when not connected for other
  // reasons): another dpctld holds it, or replaced this one.
  const std::string& conflict() const { return conflict_; }
  uint64_t conflicts() const { return conflicts_; }
  const std::vector<std::string>& gateway_addresses() const { return addresses_; }
  // dpgw's STUN port (its hello: no UDP entry point may take it), 0 when it has none or is not connected yet.
  uint16_t gateway_stun_port() const { return hello_done_ ? stun_port_ : 0; }

 private:
  void connect_now(uint64_t now_ns);
  void on_event(uint32_t events);
  void write_some();
  void disconnect(const char* why);
  void handle(const std::string& line);
  void dispatch(const nlohmann::json& msg);
  static std::string random_instance_id();

  EventLoop& loop_;
  std::string path_;
  FullState full_state_;
  OnMessage on_status_;
  OnMessage on_refused_;
  OnMessage on_masque_datagrams_;
  Fd fd_;
  LineBuffer in_{kMaxLine};
  std::string out_;
  bool hello_done_ = false;
  bool warned_ = false;
  uint64_t next_attempt_ns_ = 0;
  uint64_t next_status_ns_ = 0;
  uint64_t seq_ = 0;
  uint64_t syncs_ = 0;
  uint64_t epoch_ = 0;
  bool replaced_ = false;
  std::string instance_ = random_instance_id();  // random per start: dpgw tells a reconnecting dpctld from another one
  std::string conflict_;
  uint64_t conflicts_ = 0;
  std::vector<std::string> addresses_;
  uint16_t stun_port_ = 0;
};

}  // namespace dptun
