// Relay framing, client side out: an inner IPv4 packet gets its inner header, relay header and outer
// Ethernet/IPv4/UDP headers (docs/protocol.md), joins the worker's pending burst, and leaves encrypted in one AEAD
// call per session key (aead_burst.hpp).
#include <rte_mbuf.h>

#include <cstring>

#include "dataplane/loop/worker.hpp"
#include "dataplane/relay/aead_burst.hpp"
#include "packet/checksum.hpp"

namespace dptun {

// A packet dpgw made itself for a flow's server side (delayed binding): `m` holds the inner IPv4 packet; it is
// wrapped like a client's and joins the pending burst.
bool Worker::encap_inner(rte_mbuf* m, const Flow& f, TunnelSession& s, uint8_t inner_flags, uint8_t proto) {
  const Endpoint peer = s.peer();
  uint8_t out_port;
  MacAddr mac;
  Drop why;
  if (!s.has_peer() || !tx_.resolve_next_hop(peer.ip.value, out_port, mac, why)) {
    ctx_.drop(m, s.has_peer() ? why : Drop::NoSession);
    return false;
  }
  const std::span<const uint8_t> nb = names_.held(f);  // the agent picks the target: the hostname
  const uint32_t trailer = nb.empty() ? 0 : uint32_t(nb.size() + 1);
  const uint32_t inner_len = m->pkt_len;
  if (m->nb_segs > 1 || inner_len + trailer > frame_budget(out_port))
    return encap_fragments(m, f, s, inner_flags, proto, nb, out_port, mac);
  if (trailer) {
    char* t = rte_pktmbuf_append(m, uint16_t(trailer));
    if (!t) {
      ctx_.drop(m, Drop::NoRoom);
      return false;
    }
    write_name_trailer(reinterpret_cast<uint8_t*>(t), {reinterpret_cast<const char*>(nb.data()), nb.size()});
    inner_flags |= kInnerHasName;
  }
  return encap_packet(m, s, peer, out_port, mac, InnerHeader{flows_.id_of(f), proto, inner_flags}, inner_len + trailer,
                      f.tunnel);
}

// Ethernet to the next hop, IPv4 and UDP to the agent and the frame's header, prefix and inner header in front of
// the inner packet, room for the tag behind it; then the frame joins the pending burst.
bool Worker::encap_packet(rte_mbuf* m, TunnelSession& s, Endpoint peer, uint8_t out_port, const MacAddr& next_hop,
                          const InnerHeader& ih, uint32_t packet_len, uint16_t tunnel) {
  const FrameLayout& layout = codec_.layout();
  const uint32_t outer = outer_len(packet_len);
  uint8_t* out = reinterpret_cast<uint8_t*>(
      rte_pktmbuf_prepend(m, uint16_t(kEthHeaderLen + kIpv4HeaderLen + kUdpHeaderLen + layout.packet_offset())));
  if (!out || !rte_pktmbuf_append(m, uint16_t(layout.tag_len))) {
    ctx_.drop(m, Drop::NoRoom);
    return false;
  }
  std::memcpy(out, next_hop.data(), 6);
  std::memcpy(out + 6, ctx_.dp.ports[out_port].mac.data(), 6);
  store_be16(out + 12, kEtherTypeIpv4);
  uint8_t* oip = out + kEthHeaderLen;
  write_ipv4_header(oip, uint16_t(outer), ctx_.next_ip_id(), kIpProtoUdp, ctx_.dp.ports[out_port].address, peer.ip.value);
  uint8_t* udp = oip + kIpv4HeaderLen;
  store_be16(udp, ctx_.dp.cfg->tunnel_port);
  store_be16(udp + 2, peer.port);
  store_be16(udp + kUdpOffLength, uint16_t(outer - kIpv4HeaderLen));
  store_be16(udp + kUdpOffChecksum, 0);  // the AEAD protects the payload; RFC 768 allows 0 over IPv4
  uint8_t* frame = udp + kUdpHeaderLen;
  codec_.write_inner(frame, ih);
  queue_encap(EncapPending{m, &s, frame, layout.encrypted_len(packet_len), out_port, tunnel});
  return true;
}

void Worker::queue_encap(const EncapPending& p) {
  if (n_encap_ == encap_.size()) encap_flush();
  encap_[n_encap_++] = p;
}

void Worker::encap_flush() {
  const uint16_t np = n_encap_;
  n_encap_ = 0;
  if (!np) return;
  EncapPending* p = encap_.data();
  // Counters (one atomic add per session), headers, nonces; then one AEAD call per key.
  constexpr size_t kMax = std::tuple_size_v<decltype(encap_)>;  // <= 64: one bit per packet in aead_burst
  uint64_t counters[kMax];
  reserve_counters(np, [&](uint16_t i) { return p[i].s; }, counters);
  EpochCipher* cipher[kMax];
  AeadOp ops[kMax];
  uint8_t iv[kMax][kAeadIvLen];
  int32_t status[kMax];
  uint16_t nops = 0;
  for (uint16_t i = 0; i < np; ++i) {
    EpochCipher* c = p[i].s->tx_keys.find(epoch_of(counters[i]));
    if (!c) {
      ctx_.drop(p[i].m, Drop::KeyUnavailable);
      continue;
    }
    codec_.write_header(p[i].frame, FrameMeta{FrameType::Data, 0, p[i].s->index, counters[i]});
    make_nonce(iv[nops], c->salt, counters[i]);
    ops[nops] = codec_.seal_op(p[i].frame, p[i].encrypted_len, iv[nops]);
    cipher[nops] = c;
    p[nops++] = p[i];
  }
  aead_burst(cipher, ops, status, nops, ctx_.id);
  for (uint16_t i = 0; i < nops; ++i) {
    if (status[i]) {
      ctx_.drop(p[i].m, Drop::CryptoError);
      continue;
    }
    codec_.protect({p[i].frame, codec_.layout().frame_len(p[i].encrypted_len)});
    const uint32_t inner_bytes = p[i].encrypted_len - codec_.layout().encrypted_len(0);
    ctx_.stats.encap_packets.add();
    ctx_.stats.encap_bytes.add(inner_bytes);
    TunnelStats& ts = ctx_.tunnel_stats[p[i].tunnel];
    ts.to_agent_packets.add();
    ts.to_agent_bytes.add(inner_bytes);
    tx_.send(p[i].out_port, p[i].m);
  }
}

}  // namespace dptun
