// Pair frames sent on, unopened, to the other end of their pair (pair_relay.hpp).
#include "dataplane/relay/pair_relay.hpp"

#include <rte_mbuf.h>

#include "common/bytes.hpp"
#include "dataplane/tables/pair_table.hpp"
#include "packet/checksum.hpp"
#include "packet/headers.hpp"

namespace dptun {

namespace {

// A session that may carry pair frames: relay frames (not the QUIC framing), not a MASQUE client, dpgw's end of it
// (not the edge role's session to its concentrator).
inline bool pair_capable(const TunnelSession& s) { return !s.quic && !s.masque && !s.agent_side; }

}  // namespace

PairRelay::PairRelay(WorkerContext& ctx, Tx& tx) : ctx_(ctx), tx_(tx) {}

void PairRelay::input(uint8_t, rte_mbuf** pkts, const PacketInfo* info, uint16_t n) {
  // One snapshot of the pair table for the burst (valid until this poll's quiescent state).
  const PairTable* pairs = ctx_.dp.pairs.load(std::memory_order_acquire);
  for (uint16_t i = 0; i < n; ++i) relay(pairs, pkts[i], info[i]);
}

void PairRelay::relay(const PairTable* pairs, rte_mbuf* m, const PacketInfo& pi) {
  const uint32_t head = pi.l4_offset + uint32_t(kUdpHeaderLen);  // where the UDP payload starts in the frame
  const uint32_t len = pi.l4_len - uint32_t(kUdpHeaderLen);      // the UDP payload: the pair frame
  uint32_t pair;
  if (!codec_.receiver_of({rte_pktmbuf_mtod(m, const uint8_t*) + head, len}, pair)) {
    ctx_.drop(m, Drop::FrameMalformed);
    return;
  }
  const PairSpec* p = pairs ? pairs->find(pair) : nullptr;
  if (!p) {
    ctx_.drop(m, Drop::PairUnknown);
    return;
  }
  TunnelSession* a = ctx_.dp.sessions.find(p->a);
  TunnelSession* b = ctx_.dp.sessions.find(p->b);
  // From one end's current endpoint (port 0: not known, matches nothing) to the other end.
  const Endpoint from{Ipv4{pi.src_ip}, pi.src_port};
  auto at = [&](const TunnelSession* s) {
    if (!s) return false;
    const Endpoint e = s->peer();
    return e.port != 0 && e == from;
  };
  TunnelSession* to;
  if (at(a))
    to = b;
  else if (at(b))
    to = a;
  else {
    ctx_.drop(m, Drop::PairWrongSource);
    return;
  }
  if (!to) {
    ctx_.drop(m, Drop::PairNoPeer);
    return;
  }
  // (a and b are both there now.) A visitor and an agent of one tunnel, both framed as relay frames.
  if (!pair_capable(*a) || !pair_capable(*b) || !a->visitor || b->visitor || a->tunnel != b->tunnel) {
    ctx_.drop(m, Drop::PairBadSession);
    return;
  }
  const Endpoint dst = to->peer();
  if (!dst.port || !dst.ip.is_v4()) {
    ctx_.drop(m, Drop::PairNoPeer);
    return;
  }
  uint8_t out_port;
  MacAddr mac;
  Drop why;
  if (!tx_.resolve_next_hop(dst.ip, out_port, mac, why)) {
    ctx_.drop(m, why);
    return;
  }
  const uint32_t ip_len = uint32_t(kIpv4HeaderLen + kUdpHeaderLen) + len;
  if (ip_len > ctx_.dp.ports[out_port].mtu) {
    ctx_.drop(m, Drop::TooBig);
    return;
  }
  // New headers in front of the payload: the received ones may be longer (IPv4 options), and whatever follows the
  // IPv4 packet in the frame (Ethernet padding) is cut off.
  constexpr uint32_t kHead = uint32_t(kEthHeaderLen + kIpv4HeaderLen + kUdpHeaderLen);
  rte_pktmbuf_adj(m, uint16_t(head - kHead));  // (head >= kHead: no VLAN tag, an IPv4 header of 20 bytes or more)
  rte_pktmbuf_trim(m, uint16_t(m->data_len - (kHead + len)));
  uint8_t* eth = rte_pktmbuf_mtod(m, uint8_t*);
  tx_.write_ethernet(eth, out_port, mac.data());
  uint8_t* ip = eth + kEthHeaderLen;
  write_ipv4_header(ip, uint16_t(ip_len), ctx_.next_ip_id(), kIpProtoUdp, ctx_.dp.ports[out_port].address, dst.ip.v4());
  uint8_t* udp = ip + kIpv4HeaderLen;
  store_be16(udp, to->local_port);
  store_be16(udp + 2, dst.port);
  store_be16(udp + kUdpOffLength, uint16_t(kUdpHeaderLen + len));
  store_be16(udp + kUdpOffChecksum, 0);  // as in dpgw's own frames: the AEAD of the ends protects the payload
  ctx_.stats.pair_frames_relayed.add();
  ctx_.stats.pair_bytes_relayed.add(len);
  tx_.send(out_port, m);
}

}  // namespace dptun
