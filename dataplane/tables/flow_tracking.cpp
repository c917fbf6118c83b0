#include "dataplane/tables/flow_tracking.hpp"

namespace dptun {

void flow_start(Flow& f, uint8_t tcp_flags, const FlowConfig& cfg, uint64_t udp_ttl_ns, uint64_t now_ns) {
  f.last_seen_ns = now_ns;
  f.fin_seen = 0;
  if (f.key.proto == kIpProtoTcp) {
    (void)tcp_flags;
    f.tcp_state = TcpState::SynSent;
    f.deadline_ns = now_ns + cfg.tcp_syn_timeout_ns;
  } else {
    f.tcp_state = TcpState::None;
    f.deadline_ns = now_ns + udp_ttl_ns;
  }
}

void flow_track(Flow& f, uint8_t flags, bool from_client, const FlowConfig& cfg, uint64_t udp_ttl_ns,
                uint64_t now_ns) {
  f.last_seen_ns = now_ns;
  if (f.key.proto != kIpProtoTcp) {
    if (f.keepalive) f.deadline_ns = now_ns + udp_ttl_ns;
    return;
  }
  if (flags & kTcpRst) {
    f.tcp_state = TcpState::Closed;
    f.deadline_ns = now_ns + cfg.tcp_closed_timeout_ns;
    return;
  }
  if (from_client && flow_restarts(f, flags)) {
    flow_start(f, flags, cfg, udp_ttl_ns, now_ns);
    return;
  }
  if (flags & kTcpFin) f.fin_seen |= from_client ? 1 : 2;
  switch (f.tcp_state) {
    case TcpState::SynSent:
      if (!from_client && (flags & (kTcpSyn | kTcpAck)) == (kTcpSyn | kTcpAck)) {
        f.tcp_state = TcpState::Established;
        f.deadline_ns = now_ns + cfg.tcp_established_timeout_ns;
      }
      break;
    case TcpState::Established:
      if (f.fin_seen) {
        f.tcp_state = TcpState::Closing;
        f.deadline_ns = now_ns + cfg.tcp_closing_timeout_ns;
      } else {
        f.deadline_ns = now_ns + cfg.tcp_established_timeout_ns;
      }
      break;
    case TcpState::Closing:
      if (f.fin_seen == 3) {
        // Both sides sent FIN: the last ACKs follow quickly; keep the flow only briefly.
        if (f.deadline_ns > now_ns + cfg.tcp_closed_timeout_ns) f.deadline_ns = now_ns + cfg.tcp_closed_timeout_ns;
      } else {
        // Half-closed: the other side may still stream for as long as it likes.
        f.deadline_ns = now_ns + cfg.tcp_closing_timeout_ns;
      }
      break;
    case TcpState::Closed:
    case TcpState::None:
      break;
  }
}

}  // namespace dptun
