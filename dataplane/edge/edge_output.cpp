// Targets -> concentrator on an edge dpgw: a reply to a translated source, or an ICMP error about a flow's packet,
// goes back to the concentrator in a frame of the flow its address names.
#include "dataplane/edge/edge_output.hpp"

#include <rte_mbuf.h>

#include "packet/headers.hpp"
#include "packet/icmp_error.hpp"

namespace dptun {

bool EdgeOutput::concentrator_hop() {
  hop_ok_ = tx_.resolve_next_hop_on(edge_->underlay_port, edge_->concentrator.ip, hop_mac_, hop_why_);
  return hop_ok_;
}

void EdgeOutput::input(uint8_t port, rte_mbuf** pkts, const PacketInfo* info, uint16_t n) {
  concentrator_hop();
  for (uint16_t i = 0; i < n; ++i) {
    rte_mbuf* m = pkts[i];
    const PacketInfo& pi = info[i];
    DPTUN_TRACE(m, Classify) tr->code = uint8_t(TraceClass::EdgeReply);
    // The destination names the flow; anything else in the subnet is no flow's (the mapping's edges, low ports).
    const std::optional<uint32_t> tag = edge_->snat.decode(Endpoint{Ipv4{pi.dst_ip}, pi.dst_port});
    if (!tag) {
      ctx_.drop(m, Drop::NoSnat);
      continue;
    }
    send(port, m, pi, *tag, pi.l4_proto);
  }
  encap_.flush();
}

// ICMP errors a target or a router on the LAN sends about a flow's packet (whose source is the flow's translated
// address): passed on in a frame of the flow, inner protocol ICMP, as dpagent does (protocol.md "ICMP errors about a
// flow"); the concentrator tells the client. Other ICMP to a translated address (echo, ...) is no flow's.
void EdgeOutput::icmp(uint8_t port, rte_mbuf* m, const PacketInfo& pi) {
  DPTUN_TRACE(m, Classify) tr->code = uint8_t(TraceClass::EdgeReply);
  IcmpError e;
  const uint8_t* ip = rte_pktmbuf_mtod(m, const uint8_t*) + pi.l3_offset;
  if (m->nb_segs != 1 || !parse_icmp_error({ip, pi.ip_total_len}, e)) {
    ctx_.drop(m, Drop::UnsupportedProto);
    return;
  }
  const std::optional<uint32_t> tag = edge_->snat.decode(Endpoint{Ipv4{e.src_ip}, e.src_port});
  if (!tag || e.to != e.src_ip) {
    ctx_.drop(m, Drop::NoSnat);
    return;
  }
  ctx_.stats.edge_icmp_errors_forwarded.add();
  concentrator_hop();
  send(port, m, pi, *tag, kIpProtoIcmp);
  encap_.flush();
}

void EdgeOutput::datagram(uint8_t port, rte_mbuf* m, const PacketInfo& pi) {
  if (pi.l4_proto == kIpProtoIcmp) {
    if (m->nb_segs != 1) {
      ctx_.drop(m, Drop::Fragment);
      return;
    }
    icmp(port, m, pi);
    return;
  }
  const std::optional<uint32_t> tag = edge_->snat.decode(Endpoint{Ipv4{pi.dst_ip}, pi.dst_port});
  if (!tag) {
    ctx_.drop(m, Drop::NoSnat);
    return;
  }
  concentrator_hop();
  send(port, m, pi, *tag, pi.l4_proto);
  encap_.flush();
}

void EdgeOutput::send(uint8_t port, rte_mbuf* m, const PacketInfo& pi, uint32_t tag, uint8_t proto) {
  if (!hop_ok_) {
    ctx_.drop(m, hop_why_);
    return;
  }
  const uint8_t under = edge_->underlay_port;
  const uint32_t inner_len = pi.ip_total_len;
  TunnelSession& s = edge_->session;
  const uint32_t budget = encap_.frame_budget(under, s);
  if (inner_len > budget && pi.dont_fragment) {  // as a router on the way would: the target learns the path MTU
    local_.send_frag_needed(port, m, pi, uint16_t(budget));
    ctx_.drop(m, Drop::TooBig);
    return;
  }
  rte_pktmbuf_adj(m, pi.l3_offset);
  if (m->nb_segs == 1 && m->data_len > inner_len) rte_pktmbuf_trim(m, uint16_t(m->data_len - inner_len));  // padding
  DPTUN_TRACE(m, Encap) {
    tr->session = s.index;
    tr->flow_id = tag;
    tr->dst_ip = edge_->concentrator.ip.v4();
    tr->dst_port = edge_->concentrator.port;
    tr->port = under;
    tr->len = uint16_t(std::min<uint32_t>(encap_.outer_len(inner_len, s) + kEthHeaderLen, 0xffff));
    tr->code = m->nb_segs > 1 || inner_len > budget ? 1 : 0;
  }
  if (m->nb_segs > 1 || inner_len > budget) {
    encap_.fragments(m, tag, kEdgeTunnel, s, 0, proto, {}, under, hop_mac_);
    return;
  }
  encap_.packet(m, s, edge_->concentrator, under, hop_mac_, InnerHeader{tag, proto, 0}, inner_len, kEdgeTunnel);
}

}  // namespace dptun
