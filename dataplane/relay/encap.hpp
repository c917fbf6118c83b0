// Encap, client side out: an inner IPv4 packet gets its frame (through the codec: inner header, relay header, tag
// room) and outer Ethernet/IPv4/UDP headers to the session's agent, joins the worker's pending burst, and leaves
// encrypted in one AEAD call per session key (aead_burst.hpp). A packet too big for one frame leaves as inner IPv4
// fragments, one frame each (docs/protocol.md). On an edge dpgw the targets' replies to the concentrator are framed
// here too (dataplane/edge/edge_output.hpp, tunnel kEdgeTunnel). Touches its pending burst, the sessions' transmit
// counters and keys; reads the flow table (flow ids) and name slots (the name trailer); sends through Tx. Counts
// encap_*, to_agent_* per tunnel (edge_to_concentrator_* for the edge's frames), fragments_tx; drops no_session
// key_unavailable crypto_error no_room no_mbuf too_big.
#pragma once
#include <rte_mbuf.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <span>

#include "dataplane/hostname/name_slots.hpp"
#include "dataplane/loop/tx.hpp"
#include "dataplane/loop/worker_context.hpp"
#include "dataplane/tables/flow_table.hpp"
#include "packet/checksum.hpp"
#include "packet/headers.hpp"
#include "proto/relay_frame.hpp"


namespace dptun {

// The tunnel "slot" of the edge role's frames (not a TunnelTable slot): counted as edge_to_concentrator_*.
inline constexpr uint16_t kEdgeTunnel = 0xffff;

class Encap {
 public:
  Encap(WorkerContext& ctx, Tx& tx, const FlowTable& flows, const NameSlots& names);
  Encap(const Encap&) = delete;
  Encap& operator=(const Encap&) = delete;

  // A packet dpgw made itself for a flow's server side (delayed binding, held QUIC datagrams, visitors): `m` holds
  // the inner IPv4 packet; it gets the flow's name trailer when the agent picks the target, and is framed like a
  // client's. False when dropped (counted).
  bool inner(rte_mbuf* m, const Flow& f, TunnelSession& s, uint8_t inner_flags, uint8_t proto);
  // `m` holds an inner packet of `packet_len` bytes (name trailer included) for session `s`: it gets the frame's
  // inner header (`ih`) and outer headers to `peer` by `out_port`/`next_hop`, and joins the burst flush()
  // encrypts. False when dropped (no room, counted).
  bool packet(rte_mbuf* m, TunnelSession& s, Endpoint peer, uint8_t out_port, const MacAddr& next_hop,
              const InnerHeader& ih, uint32_t packet_len, uint16_t tunnel);
  // An inner packet that does not fit one frame (or spans mbufs): its IPv4 fragments, each in a frame of its own
  // with the flow's id (`flow_id`: its tag, from an edge) and the flow's name trailer (`name`), joining the burst.
  // `m` (from its IP header on) is consumed.
  bool fragments(rte_mbuf* m, uint64_t flow_id, uint16_t tunnel, TunnelSession& s, uint8_t inner_flags, uint8_t proto,
                 std::span<const uint8_t> name, uint8_t out_port, const MacAddr& mac);
  void flush();  // encrypts the pending burst and hands it to Tx
  // The longest inner IP packet (and name trailer) one frame carries out of `port`.
  uint32_t frame_budget(uint8_t port) const;
  // The IPv4/UDP length of a frame around `packet_len` bytes of inner packet: what the underlay carries.
  uint32_t outer_len(uint32_t packet_len) const {
    return uint32_t(kIpv4HeaderLen + kUdpHeaderLen) + codec_.layout().data_overhead() + packet_len;
  }

 private:
  // A frame on its way to an agent, encrypted with the rest of the burst.
  struct Pending {
    rte_mbuf* m;
    TunnelSession* s;
    uint8_t* frame;          // the frame's first byte, inside the mbuf
    uint32_t encrypted_len;  // FrameLayout::encrypted_len of its inner packet
    uint8_t out_port;
    uint16_t tunnel;
  };
  void queue(const Pending& p);  // joins the burst (flushing a full one first)

  WorkerContext& ctx_;
  Tx& tx_;
  const FlowTable& flows_;
  const NameSlots& names_;
  RelayCodec codec_;  // the tunnel framing: the only code here that knows where a frame's parts lie
  std::array<Pending, 2 * kBurst> pending_;
  uint16_t n_pending_ = 0;
};

// Ethernet to the next hop, IPv4 and UDP to the agent and the frame's header, prefix and inner header in front of
// the inner packet, room for the tag behind it; then the frame joins the pending burst. (Inline: entry input calls
// it for every packet of a burst.)
__attribute__((always_inline)) inline bool Encap::packet(rte_mbuf* m, TunnelSession& s, Endpoint peer,
                                                          uint8_t out_port, const MacAddr& next_hop,
                                                          const InnerHeader& ih, uint32_t packet_len,
                                                          uint16_t tunnel) {
  const FrameLayout& layout = codec_.layout();
  const uint32_t outer = outer_len(packet_len);
  uint8_t* out = reinterpret_cast<uint8_t*>(
      rte_pktmbuf_prepend(m, uint16_t(kEthHeaderLen + kIpv4HeaderLen + kUdpHeaderLen + layout.packet_offset())));
  if (!out || !rte_pktmbuf_append(m, uint16_t(layout.tag_len))) {
    ctx_.drop(m, Drop::NoRoom);
    return false;
  }
  tx_.write_ethernet(out, out_port, next_hop.data());
  uint8_t* oip = out + kEthHeaderLen;
  write_ipv4_header(oip, uint16_t(outer), ctx_.next_ip_id(), kIpProtoUdp, ctx_.dp.ports[out_port].address, peer.ip.v4());
  uint8_t* udp = oip + kIpv4HeaderLen;
  store_be16(udp, s.local_port);
  store_be16(udp + 2, peer.port);
  store_be16(udp + kUdpOffLength, uint16_t(outer - kIpv4HeaderLen));
  store_be16(udp + kUdpOffChecksum, 0);  // the AEAD protects the payload; RFC 768 allows 0 over IPv4
  uint8_t* frame = udp + kUdpHeaderLen;
  codec_.write_inner(frame, ih);
  queue(Pending{m, &s, frame, layout.encrypted_len(packet_len), out_port, tunnel});
  return true;
}

inline void Encap::queue(const Pending& p) {
  if (n_pending_ == pending_.size()) flush();
  pending_[n_pending_++] = p;
}

}  // namespace dptun
