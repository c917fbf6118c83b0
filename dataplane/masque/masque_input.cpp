// MASQUE clients' HTTP Datagrams to flows and back (dataplane/masque/masque_input.hpp, docs/masque.md).
#include "dataplane/masque/masque_input.hpp"

#include <rte_mbuf.h>
#include <rte_ring.h>

#include <cstring>

#include "packet/checksum.hpp"
#include "packet/headers.hpp"
#include "proto/masque_datagram.hpp"

namespace dptun {

void MasqueInput::input(rte_mbuf* m, std::span<uint8_t> datagram, TunnelSession& s) {
  const MasqueState& ms = *s.masque;
  const std::optional<H3Datagram> d = parse_h3_datagram(datagram);
  if (!d) {
    ctx_.drop(m, Drop::MasqueMalformed);
    return;
  }
  if (d->stream_id != ms.stream_id) {
    ctx_.drop(m, Drop::MasqueUnknownStream);
    return;
  }
  if (d->udp.context_id != kUdpPayloadContextId) {
    ctx_.drop(m, Drop::MasqueContext);
    return;
  }
  // The UDP payload gets its IPv4 and UDP headers in front, in place: the packet's own headers lie before it.
  const uint8_t* payload = d->udp.payload.data();
  const uint32_t len = uint32_t(d->udp.payload.size());
  rte_pktmbuf_adj(m, uint16_t(payload - rte_pktmbuf_mtod(m, const uint8_t*)));
  rte_pktmbuf_trim(m, uint16_t(m->data_len - len));
  to_target(m, s);
}

void MasqueInput::inject(rte_mbuf* m, TunnelSession& s) { to_target(m, s); }

void MasqueInput::to_target(rte_mbuf* m, TunnelSession& s) {
  const MasqueState& ms = *s.masque;
  constexpr uint32_t kHeaders = uint32_t(kIpv4HeaderLen + kUdpHeaderLen);
  const uint32_t len = m->data_len;
  uint8_t* ip = reinterpret_cast<uint8_t*>(rte_pktmbuf_prepend(m, uint16_t(kHeaders)));
  // (neither: the QUIC packet's own headers were longer, in one mbuf; the control lcore left a frame's headroom)
  if (!ip || m->nb_segs != 1 || len > UINT16_MAX - kHeaders) {
    ctx_.drop(m, Drop::NoRoom);
    return;
  }
  const uint32_t src = ms.source.ip.v4(), dst = ms.target.ip.v4();
  write_ipv4_header(ip, uint16_t(kHeaders + len), ctx_.next_ip_id(), kIpProtoUdp, src, dst);
  uint8_t* udp = ip + kIpv4HeaderLen;
  store_be16(udp, ms.source.port);
  store_be16(udp + 2, ms.target.port);
  store_be16(udp + kUdpOffLength, uint16_t(kUdpHeaderLen + len));
  store_be16(udp + kUdpOffChecksum, 0);
  const uint16_t sum = ipv4_l4_checksum(src, dst, kIpProtoUdp, {udp, kUdpHeaderLen + len});
  store_be16(udp + kUdpOffChecksum, sum ? sum : 0xffff);  // (RFC 768: a computed 0 is sent as all ones)
  PacketInfo pi;
  if (!parse_tunnel_packet({ip, kHeaders + len}, pi)) {  // (what was just written parses)
    ctx_.drop(m, Drop::BadInner);
    return;
  }
  ctx_.stats.masque_datagrams_rx.add();
  visitors_.forward(m, pi, s, VisitorInput::Aim::Granted);
}

void MasqueInput::deliver(rte_mbuf* m, Flow& f, const PacketInfo& pi) {
  TunnelSession* v = visitors_.visitor_of(f);
  if (!v || !v->masque || (!v->quic && !v->masque->request_id)) {  // the client went (its index may serve another)
    ctx_.drop(m, Drop::StaleFlow);
    return;
  }
  if (v->masque->request_id) {  // its capsules are dpctld's: the payload goes there through the control lcore
    to_control(m, *v, pi);
    return;
  }
  // A datagram the agent sent in fragments, reassembled: one buffer, or too large for any one packet to the client.
  if (m->nb_segs > 1 && rte_pktmbuf_linearize(m) != 0) {
    ctx_.drop(m, Drop::MasqueTooLarge);
    return;
  }
  const MasqueState& ms = *v->masque;
  // The UDP payload behind the HTTP Datagram header (Quarter Stream ID, context ID 0), in place of IPv4 and UDP.
  const uint32_t len = uint32_t(pi.l4_len) - uint32_t(kUdpHeaderLen);
  const uint32_t at = uint32_t(pi.l4_offset + kUdpHeaderLen) - ms.header_len;
  rte_pktmbuf_adj(m, uint16_t(at));
  rte_pktmbuf_trim(m, uint16_t(m->data_len - ms.header_len - len));
  std::memcpy(rte_pktmbuf_mtod(m, uint8_t*), ms.header.data(), ms.header_len);
  encap_.app_datagram(m, *v);
}

void MasqueInput::to_control(rte_mbuf* m, const TunnelSession& v, const PacketInfo& pi) {
  // The UDP payload, whole: a datagram the agent sent in fragments stays the chain reassembly made (the control lcore
  // reads across segments), so a capsule client gets replies of any size UDP carries.
  const uint32_t len = uint32_t(pi.l4_len) - uint32_t(kUdpHeaderLen);
  const uint32_t at = uint32_t(pi.l4_offset + kUdpHeaderLen);
  if (at > m->data_len || m->pkt_len - at < len) {  // (never: the headers are in the first segment, pi from m)
    ctx_.drop(m, Drop::BadInner);
    return;
  }
  rte_pktmbuf_adj(m, uint16_t(at));
  if (m->pkt_len > len && rte_pktmbuf_trim(m, uint16_t(m->pkt_len - len)) != 0) {  // (padding behind the datagram)
    ctx_.drop(m, Drop::BadInner);
    return;
  }
  // The IPv4 and UDP headers' room (28 bytes and more) takes the header.
  char* out = rte_pktmbuf_prepend(m, uint16_t(sizeof(MasqueReplyHeader)));
  if (!out) {
    ctx_.drop(m, Drop::NoRoom);
    return;
  }
  const MasqueReplyHeader h{v.index, v.serial, v.masque->request_id};
  std::memcpy(out, &h, sizeof h);
  if (rte_ring_mp_enqueue(ctx_.dp.masque_ring, m) != 0) {
    ctx_.drop(m, Drop::MasqueCapsuleFull);
    return;
  }
  ctx_.stats.masque_datagrams_tx.add();
}

}  // namespace dptun
