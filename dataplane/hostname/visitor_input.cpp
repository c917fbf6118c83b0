// Frames from visitors (dpagent visit, docs/hostname-routing.md "Visitors"): each opens or continues a flow from
// the visitor to one of its own tunnel's services, chosen by the hostname the visitor names (any rule of the
// tunnel, private ones included: visitors hold the tunnel's id) or, in direct mode, by the inner destination
// itself. The flow then goes to an agent of the tunnel like a client's; replies return to the visitor in frames
// of its own session.
#include <rte_mbuf.h>

#include <cstring>

#include "dataplane/tables/flow_tracking.hpp"
#include "dataplane/hostname/visitor_input.hpp"
#include "ingress/client_hello.hpp"
#include "packet/ipv4_rewrite.hpp"
#include "packet/tcp_mss.hpp"

namespace dptun {

void VisitorInput::input(rte_mbuf* m, const InnerHeader& ih, TunnelSession& v) {
  ctx_.stats.visitor_packets.add();
  size_t len = m->data_len;
  NameCopy trailer;
  std::string_view name;
  if (ih.flags & kInnerHasName) {
    size_t rest = 0;
    if (!copy_name_trailer({rte_pktmbuf_mtod(m, const uint8_t*), len}, trailer, rest) ||
        !plausible_hostname(trailer.name)) {
      ctx_.drop(m, Drop::BadInner);
      return;
    }
    name = trailer.name;
    rte_pktmbuf_trim(m, uint16_t(len - rest));
    len = rest;
  }
  PacketInfo pi;
  if (!parse_tunnel_packet({rte_pktmbuf_mtod(m, const uint8_t*), len}, pi) || pi.l4_proto != ih.proto) {
    ctx_.drop(m, Drop::BadInner);
    return;
  }
  forward(m, pi, v, ih.flags & kInnerDirect ? Aim::Direct : Aim::Rule, name);
}

void VisitorInput::forward(rte_mbuf* m, const PacketInfo& pi, TunnelSession& v, Aim aim, std::string_view name) {
  const TunnelPool* pool = ctx_.dp.tunnels.get(v.tunnel);
  if (!pool) {
    ctx_.drop(m, Drop::NoSession);
    return;
  }
  const FlowConfig& fc = ctx_.dp.cfg->flow;
  const FlowKey key = FlowKey::v4(pi.src_ip, pi.dst_ip, pi.src_port, pi.dst_port, pi.l4_proto, uint16_t(v.index));
  const uint32_t h = FlowTable::hash(key);
  Flow* f = flows_.find(key, h);
  if (f && ((f->deadline_ns <= ctx_.now_ns && !flow_restarts(*f, pi.tcp_flags)) ||
            f->tunnel_generation != pool->generation)) {
    setup_.end_flow(*f);
    f = nullptr;
  }
  uint8_t inner_flags = 0;
  TunnelSession* s = nullptr;
  if (f) {
    bool repinned = false;
    s = setup_.flow_session(*f, *pool, repinned);
    if (!s) {
      ctx_.drop(m, Drop::NoSession);
      return;
    }
    if (flow_restarts(*f, pi.tcp_flags)) inner_flags = kInnerFlowNew;
    flow_track(*f, pi.tcp_flags, true, fc, uint64_t(f->udp_ttl_ms) * 1000000ull, ctx_.now_ns);
  } else {
    if (!flow_may_start(pi.l4_proto, pi.tcp_flags)) {
      ctx_.drop(m, Drop::TcpNoFlow);
      return;
    }
    // Where the visitor asked to go: any address its tunnel's agents reach (direct mode, the gateway's say-so),
    // or a hostname rule of its own tunnel.
    FlowPlan plan;
    plan.target = Endpoint{Ipv4{pi.dst_ip}, pi.dst_port};
    plan.udp_ttl_ns = fc.udp_ttl_ns;
    plan.keepalive = true;
    plan.visitor = v.index;
    Drop why = Drop::NoSession;
    bool planned = false;
    switch (aim) {
      case Aim::Direct:
        why = Drop::DirectDisabled;
        planned = ctx_.dp.cfg->direct_mode && setup_.plan_tunnel(v.tunnel, pool->generation, plan, why);
        break;
      case Aim::Granted:
        plan.masque = true;
        planned = setup_.plan_tunnel(v.tunnel, pool->generation, plan, why);
        break;
      case Aim::Rule:
        planned = setup_.plan_by_rule(name, pi.dst_port, &v, plan, why);
        break;
    }
    if (!planned) {
      ctx_.drop(m, why);
      return;
    }
    f = setup_.open_flow(key, h, plan, s, why);
    if (!f) {
      ctx_.drop(m, why);
      return;
    }
    flow_start(*f, pi.tcp_flags, fc, fc.udp_ttl_ns, ctx_.now_ns);
    inner_flags = kInnerFlowNew;
  }
  uint8_t* ip = rte_pktmbuf_mtod(m, uint8_t*);
  uint8_t* l4 = ip + pi.l4_offset;
  if (pi.l4_proto == kIpProtoTcp && (pi.tcp_flags & kTcpSyn)) tcp_clamp_mss(l4, pi.tcp_header_len, f->mss_clamp);
  ipv4_rewrite_dst(ip, l4, pi.l4_proto, f->target_ip.v4(), f->target_port);
  if (m->data_len > pi.ip_total_len) rte_pktmbuf_trim(m, uint16_t(m->data_len - pi.ip_total_len));
  encap_.inner(m, *f, *s, inner_flags, pi.l4_proto);
}

// A reply for a visitor's flow: addressed back from the service the visitor asked for, in a frame of the
// visitor's own session.
void VisitorInput::deliver(rte_mbuf* m, Flow& f, const PacketInfo& pi) {
  TunnelSession* v = visitor_of(f);
  if (!v) {  // the visitor went (its index may serve another now)
    ctx_.drop(m, Drop::StaleFlow);
    return;
  }
  uint8_t* ip = rte_pktmbuf_mtod(m, uint8_t*);
  uint8_t* l4 = ip + pi.l4_offset;
  if (pi.l4_proto == kIpProtoTcp && (pi.tcp_flags & kTcpSyn)) tcp_clamp_mss(l4, pi.tcp_header_len, f.mss_clamp);
  ipv4_rewrite_src(ip, l4, pi.l4_proto, f.key.local.v4(), f.key.local_port);
  ipv4_rewrite_dst(ip, l4, pi.l4_proto, f.key.client.v4(), f.key.client_port);
  if (m->data_len > pi.ip_total_len) rte_pktmbuf_trim(m, uint16_t(m->data_len - pi.ip_total_len));
  encap_.inner(m, f, *v, 0, pi.l4_proto);
}

}  // namespace dptun
