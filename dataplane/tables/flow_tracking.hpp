// Flow lifetime rules: UDP idle TTL (refreshed only with keepalive), TCP following SYN/FIN/RST.
#pragma once
#include <cstdint>

#include "dataplane/tables/flow_table.hpp"
#include "dataplane/main_lcore/gateway_config.hpp"
#include "packet/headers.hpp"

namespace dptun {

// Is this client segment allowed to start a flow? (TCP: a SYN without ACK; UDP: always.)
inline bool flow_may_start(uint8_t proto, uint8_t tcp_flags) {
  return proto != kIpProtoTcp || (tcp_flags & (kTcpSyn | kTcpAck | kTcpRst)) == kTcpSyn;
}

// A client SYN on a flow that already closed starts the connection over (client port reuse).
inline bool flow_restarts(const Flow& f, uint8_t tcp_flags) {
  return f.key.proto == kIpProtoTcp && (tcp_flags & (kTcpSyn | kTcpAck)) == kTcpSyn &&
         (f.tcp_state == TcpState::Closed || f.fin_seen == 3);
}

// A flow that ends (expires) unanswered: TCP still in SYN state, its target never sent a SYN-ACK, a RST or an ICMP
// error (which close it). Hostname connections (delayed binding) count their own failures (target_timeout).
inline bool flow_unanswered(const Flow& f) {
  return f.key.proto == kIpProtoTcp && f.tcp_state == TcpState::SynSent && f.binding == Binding::None;
}

// Sets the initial state and deadline of a new flow from its first (client) packet.
void flow_start(Flow& f, uint8_t tcp_flags, const FlowConfig& cfg, uint64_t udp_ttl_ns, uint64_t now_ns);
// Updates state and deadline for a packet seen in one direction.
void flow_track(Flow& f, uint8_t tcp_flags, bool from_client, const FlowConfig& cfg, uint64_t udp_ttl_ns,
                uint64_t now_ns);

}  // namespace dptun
