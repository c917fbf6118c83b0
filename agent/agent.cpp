#include "agent/agent.hpp"

#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/clock.hpp"
#include "common/json_writer.hpp"
#include "common/log.hpp"
#include "packet/headers.hpp"
#include "packet/ipv4_rewrite.hpp"
#include "packet/parser.hpp"
#include <optional>

namespace dptun {

namespace {
constexpr size_t kInnerOffset = kRelayHeaderLen + kInnerHeaderLen;  // where the inner IP packet starts
}

Agent::Agent(AgentOptions opt)
    : opt_(std::move(opt)),
      session_(opt_.session, opt_.psk, opt_.key_len, opt_.rekey_interval_ns, engine_),
      snat_(opt_.tun_net) {}

bool Agent::start(std::string& error) {
  if (!SnatCodec::valid_subnet(opt_.tun_net, error)) {
    error = "--tun-net " + opt_.tun_net.str() + ": " + error;
    return false;
  }
  const uint16_t tun_mtu = uint16_t(opt_.underlay_mtu - kUnderlayOverhead);
  if (!tun_.open(opt_.tun_name, opt_.tun_net, tun_mtu, error)) return false;
  if (opt_.lan_nat && !lan_nat_.enable(tun_.name(), opt_.tun_net, error)) return false;
  if (!link_.open(opt_.gateway, opt_.bind, error)) return false;
  LOG_INFO("TUN %s %s mtu %u; session %u to gateway %s from %s", tun_.name().c_str(), opt_.tun_net.str().c_str(),
           unsigned(tun_mtu), opt_.session, opt_.gateway.str().c_str(), link_.local().str().c_str());
  return true;
}

void Agent::note_send_error(int err, uint64_t now_ns) {
  if (!err) return;
  stats_.send_errors++;
  if (now_ns - last_warn_ns_ < 5 * kNsPerSec) return;
  last_warn_ns_ = now_ns;
  if (err == -ECONNREFUSED)
    LOG_WARN("gateway %s answers 'port unreachable': no dpgw is listening on that address and port",
             opt_.gateway.str().c_str());
  else
    LOG_WARN("cannot send to gateway %s: %s", opt_.gateway.str().c_str(), strerror(-err));
}

void Agent::send_keepalive(uint64_t now_ns) {
  // Without an answer, the gateway may have restarted: it has keys ready for the wall clock's epoch.
  if (link_state_ != Link::Up) session_.anchor_to_clock();
  uint8_t* frame = link_.tx_slot();
  if (!session_.seal(FrameType::Keepalive, 0, frame, 0, now_ns)) {
    LOG_ERROR("cannot seal a keepalive (key derivation failed)");
    return;
  }
  stats_.keepalives_tx++;
  note_send_error(link_.queue(kRelayHeaderLen + kRelayTagLen), now_ns);
  note_send_error(link_.flush(), now_ns);
  last_keepalive_ns_ = now_ns;
}

void Agent::gateway_readable(uint64_t now_ns) {
  for (;;) {
    int n = link_.receive_batch();
    if (n < 0) {
      note_send_error(n, now_ns);
      return;
    }
    if (n == 0) return;
    for (int i = 0; i < n; ++i) {
      uint8_t* frame = link_.rx_data(unsigned(i));
      size_t len = link_.rx_len(unsigned(i));
      FrameMeta meta;
      switch (session_.open(frame, len, meta, now_ns)) {
        case AgentSession::OpenResult::Ok: break;
        case AgentSession::OpenResult::Malformed: stats_.malformed++; continue;
        case AgentSession::OpenResult::WrongSession: stats_.wrong_session++; continue;
        case AgentSession::OpenResult::Replay: stats_.replay++; continue;
        case AgentSession::OpenResult::Stale: stats_.stale++; continue;
        case AgentSession::OpenResult::NoKey: stats_.no_key++; continue;
        case AgentSession::OpenResult::AuthFail: stats_.auth_fail++; continue;
      }
      stats_.frames_rx++;
      if (link_state_ != Link::Up)
        LOG_INFO("gateway %s %s", opt_.gateway.str().c_str(),
                 link_state_ == Link::Unknown ? "answered: tunnel up" : "answering again: tunnel up");
      link_state_ = Link::Up;
      last_gateway_rx_ns_ = now_ns;
      if (meta.type == FrameType::Keepalive) {
        if (meta.flags & kFlagKeepaliveReply) stats_.keepalive_replies_rx++;
        continue;
      }
      if (meta.type != FrameType::Data) {
        stats_.malformed++;
        continue;
      }
      const InnerHeader ih = decode_inner_header(frame + kRelayHeaderLen);
      uint8_t* pkt = frame + kInnerOffset;
      const size_t pkt_len = len - kRelayFrameOverhead;
      PacketInfo pi;
      if (!parse_tunnel_packet({pkt, pkt_len}, pi) || pi.l4_proto != ih.proto) {
        stats_.bad_inner++;
        continue;
      }
      // The source the target sees is a function of the flow's tag: no state, nothing to lose on restart.
      const Endpoint snat = snat_.encode(uint32_t(ih.flow_id));
      ipv4_rewrite_src(pkt, pkt + pi.l4_offset, pi.l4_proto, snat.ip.value, snat.port);
      stats_.inner_rx_bytes += pi.ip_total_len;
      if (!tun_.write_packet({pkt, pi.ip_total_len})) stats_.tun_write_errors++;
    }
    if (n < int(UdpLink::kBatch)) return;
  }
}

void Agent::tun_readable(uint64_t now_ns) {
  for (unsigned budget = 0; budget < 256; ++budget) {
    uint8_t* frame = link_.tx_slot();
    uint8_t* pkt = frame + kInnerOffset;
    ssize_t n = tun_.read_packet({pkt, UdpLink::kMaxDatagram - kRelayFrameOverhead});
    if (n <= 0) break;
    PacketInfo pi;
    if (!parse_tunnel_packet({pkt, size_t(n)}, pi)) {
      stats_.bad_inner++;
      continue;
    }
    // A reply to a translated source names its flow; anything else the kernel routed here is not ours.
    std::optional<uint32_t> tag = snat_.decode(pi.dst_ip, pi.dst_port);
    if (!tag) {
      stats_.no_nat++;
      continue;
    }
    // The gateway finds the flow by its tag and rewrites the addresses from its own state.
    encode_inner_header(frame + kRelayHeaderLen, InnerHeader{*tag, pi.l4_proto, 0, 0});
    const size_t plain = kInnerHeaderLen + pi.ip_total_len;
    if (!session_.seal(FrameType::Data, 0, frame, plain, now_ns)) {
      LOG_ERROR("cannot seal a frame (key derivation failed)");
      continue;
    }
    stats_.frames_tx++;
    stats_.inner_tx_bytes += pi.ip_total_len;
    note_send_error(link_.queue(kRelayHeaderLen + plain + kRelayTagLen), now_ns);
  }
  note_send_error(link_.flush(), now_ns);
}

void Agent::timer(uint64_t now_ns) {
  // Until the gateway has answered once, probe every 250 ms so the tunnel comes up (or back) quickly.
  uint64_t interval = link_state_ == Link::Up ? opt_.keepalive_ns : std::min<uint64_t>(opt_.keepalive_ns, 250'000'000ull);
  if (now_ns - last_keepalive_ns_ >= interval) send_keepalive(now_ns);
  uint64_t silent = now_ns - (last_gateway_rx_ns_ ? last_gateway_rx_ns_ : started_ns_);
  if (link_state_ != Link::Down && silent > 3 * opt_.keepalive_ns) {
    LOG_WARN("no authenticated answer from gateway %s for %.1f s: it is down or unreachable, or it does not "
             "know session %u with this key",
             opt_.gateway.str().c_str(), double(silent) / 1e9, opt_.session);
    link_state_ = Link::Down;
  }
  if (now_ns - last_auth_report_ns_ >= 5 * kNsPerSec) {
    if (stats_.auth_fail > auth_fail_reported_)
      LOG_WARN("%llu frames from gateway %s failed authentication in the last 5 s: the gateway uses another key "
               "for session %u (or someone tampers with the traffic)",
               (unsigned long long)(stats_.auth_fail - auth_fail_reported_), opt_.gateway.str().c_str(),
               opt_.session);
    auth_fail_reported_ = stats_.auth_fail;
    last_auth_report_ns_ = now_ns;
  }
  if (opt_.stats_interval_ns && now_ns - last_stats_ns_ >= opt_.stats_interval_ns) {
    printf("%s\n", stats_json().c_str());
    fflush(stdout);
    last_stats_ns_ = now_ns;
  }
}

int Agent::run(const std::atomic<bool>& stop, std::atomic<bool>& dump_stats) {
  Fd ep(epoll_create1(EPOLL_CLOEXEC));
  Fd tfd(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  itimerspec its{{0, 100'000'000}, {0, 100'000'000}};
  timerfd_settime(tfd.get(), 0, &its, nullptr);
  for (int fd : {link_.fd(), tun_.fd(), tfd.get()}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    epoll_ctl(ep.get(), EPOLL_CTL_ADD, fd, &ev);
  }
  started_ns_ = monotonic_ns();
  last_stats_ns_ = started_ns_;
  last_auth_report_ns_ = started_ns_;
  send_keepalive(started_ns_);
  while (!stop.load()) {
    epoll_event evs[4];
    int n = epoll_wait(ep.get(), evs, 4, 500);
    uint64_t now = monotonic_ns();
    for (int i = 0; i < n; ++i) {
      if (evs[i].data.fd == link_.fd()) {
        gateway_readable(now);
      } else if (evs[i].data.fd == tun_.fd()) {
        tun_readable(now);
      } else {
        uint64_t ticks;
        while (read(tfd.get(), &ticks, sizeof ticks) > 0) {
        }
        timer(now);
      }
    }
    if (dump_stats.exchange(false)) {
      printf("%s\n", stats_json().c_str());
      fflush(stdout);
    }
  }
  return 0;
}

std::string Agent::stats_json() const {
  JsonWriter j;
  j.begin_object()
      .field("gateway", opt_.gateway.str())
      .field("session", unsigned(opt_.session))
      .field("link", link_state_ == Link::Up ? "up" : link_state_ == Link::Down ? "down" : "unknown")
      .field("tx_epoch", session_.tx_epoch())
      .field("rekeys", session_.rekeys())
      .field("frames_rx", stats_.frames_rx)
      .field("frames_tx", stats_.frames_tx)
      .field("inner_rx_bytes", stats_.inner_rx_bytes)
      .field("inner_tx_bytes", stats_.inner_tx_bytes)
      .field("keepalives_tx", stats_.keepalives_tx)
      .field("keepalive_replies_rx", stats_.keepalive_replies_rx)
      .field("auth_fail", stats_.auth_fail)
      .field("replay", stats_.replay)
      .field("stale", stats_.stale)
      .field("malformed", stats_.malformed)
      .field("wrong_session", stats_.wrong_session)
      .field("no_key", stats_.no_key)
      .field("bad_inner", stats_.bad_inner)
      .field("no_nat", stats_.no_nat)
      .field("tun_write_errors", stats_.tun_write_errors)
      .field("send_errors", stats_.send_errors)
      .end_object();
  return j.str();
}

}  // namespace dptun
