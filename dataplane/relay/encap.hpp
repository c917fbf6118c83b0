// Encap, client side out: an inner IPv4 packet gets its frame in its session's framing -- a relay frame, or for a
// QUIC session (`TunnelSession::quic`) a QUIC v1 short-header 1-RTT packet with one DATAGRAM frame (docs/protocol.md
// "QUIC framing") -- and outer Ethernet/IPv4/UDP headers to the session's agent, joins the worker's pending burst,
// and leaves encrypted in one AEAD call per session key (aead_burst.hpp); QUIC packets then get header protection,
// the burst's masks in one ipsec-mb call per session (crypto/hp_ipsec_mb.hpp). A packet too big for one frame leaves
// as inner IPv4 fragments, one frame each (docs/protocol.md). QuicInput queues its ACK-only packets here too
// (quic_ack), so that they take their packet numbers from the same counter and the same burst. On an edge dpgw the
// targets' replies to the concentrator are framed here too (dataplane/edge/edge_output.hpp, tunnel kEdgeTunnel).
// Touches its pending burst, the sessions' transmit counters and keys; reads the flow table (flow ids) and name
// slots (the name trailer); sends through Tx. Counts encap_*, to_agent_* per tunnel (edge_to_concentrator_* for the
// edge's frames), fragments_tx, quic_acks_tx, quic_control_tx, masque_datagrams_tx; drops no_session key_unavailable
// crypto_error no_room no_mbuf too_big masque_too_large.
#pragma once
#include <rte_mbuf.h>

#include <algorithm>
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
#include "dataplane/tables/quic_session.hpp"
#include "proto/quic_short_header.hpp"
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
  // An ACK-only QUIC packet to QUIC session `s` (its RX worker, which owns the replay window it acknowledges):
  // an ACK frame of the window's newest ranges with `ack_delay` (already scaled by the ack_delay_exponent), padded
  // for the header-protection sample; it joins the burst. False when nothing was queued (no endpoint or next hop,
  // no mbuf: counted as drops of those reasons; an empty window).
  bool quic_ack(TunnelSession& s, uint64_t ack_delay);
  // A 1-RTT packet to QUIC session `s` around the frames `m` holds (the slow path's PATH_CHALLENGE / PATH_RESPONSE
  // with their PADDING, main_lcore/quic_slow_path.hpp), to `to` (not necessarily the session's endpoint: a candidate
  // address), its packet number from the session's tx_counter like every other; PADDING added up to the
  // header-protection sample. It joins the burst; counted quic_control_tx. False when dropped (counted: no_route,
  // no_neighbor, no_room).
  bool quic_frames(TunnelSession& s, rte_mbuf* m, Endpoint to);
  // `m` (one segment) holds the data of one DATAGRAM frame to QUIC session `s` that is no inner packet: a MASQUE
  // client's HTTP Datagram (dataplane/masque/). It gets the frame type, the short header and outer headers to the
  // session's endpoint and joins the burst; counted like a data frame (encap_*, to_agent_* of the session's tunnel:
  // the data's bytes) and as masque_datagrams_tx. Longer than app_datagram_budget(): dropped masque_too_large, never
  // fragmented (RFC 9298 5). False when dropped (counted: that, no_session, no_route, no_neighbor, no_room).
  bool app_datagram(rte_mbuf* m, TunnelSession& s);
  // The longest DATAGRAM frame data one packet of QUIC session `s` carries out of `port`: the link's MTU and the
  // peer's max_udp_payload_size and max_datagram_frame_size (frame_budget's, with the inner header's bytes).
  uint32_t app_datagram_budget(uint8_t port, const TunnelSession& s) const {
    return QuicDatagramCodec::app_data_len(frame_budget(port, s));
  }
  void flush();  // encrypts the pending burst and hands it to Tx
  // The longest inner IP packet (and name trailer) one frame of `s`'s framing carries out of `port`; for a QUIC
  // session no more than the agent's transport parameters take (QuicSessionState::agent_max_packet).
  uint32_t frame_budget(uint8_t port, const TunnelSession& s) const {
    const uint32_t by_mtu = std::min<uint32_t>(ctx_.dp.ports[port].mtu, ctx_.max_frame_ip) -
                            uint32_t(kIpv4HeaderLen + kUdpHeaderLen) - layout_of(s).data_overhead();
    return __builtin_expect(s.quic != nullptr, 0) ? std::min(by_mtu, s.quic->agent_max_packet) : by_mtu;
  }
  // The IPv4/UDP length of a frame of `s` around `packet_len` bytes of inner packet: what the underlay carries.
  uint32_t outer_len(uint32_t packet_len, const TunnelSession& s) const {
    return uint32_t(kIpv4HeaderLen + kUdpHeaderLen) + layout_of(s).data_overhead() + packet_len;
  }

 private:
  enum class Kind : uint8_t { Relay, QuicData, QuicAck, QuicControl, QuicAppData };
  // A frame on its way to an agent, encrypted with the rest of the burst.
  struct Pending {
    rte_mbuf* m;
    TunnelSession* s;
    uint8_t* frame;          // the frame's first byte, inside the mbuf
    uint32_t encrypted_len;  // FrameLayout::encrypted_len of its inner packet (an ACK: its frames' length)
    uint8_t out_port;
    Kind kind;
    uint16_t tunnel;
  };
  const FrameLayout& layout_of(const TunnelSession& s) const {
    return __builtin_expect(s.quic != nullptr, 0) ? s.quic->codec.layout() : codec_.layout();
  }
  // Where a packet to `to` (a session's endpoint: port 0 while it is not known) leaves; false with `why`
  // (no_session, no_route, no_neighbor).
  bool route_to(Endpoint to, uint8_t& out_port, MacAddr& mac, Drop& why) {
    why = Drop::NoSession;
    return to.port && tx_.resolve_next_hop(to.ip, out_port, mac, why);
  }
  // The same for `m`, dropped (counted) when it cannot leave.
  bool route_or_drop(rte_mbuf* m, Endpoint to, uint8_t& out_port, MacAddr& mac) {
    Drop why;
    if (route_to(to, out_port, mac, why)) return true;
    ctx_.drop(m, why);
    return false;
  }
  // Ethernet, IPv4 and UDP (`outer`: the IPv4 length) to `peer` from `s`'s port at `out`; returns the frame's start.
  uint8_t* write_outer(uint8_t* out, const TunnelSession& s, Endpoint peer, uint8_t out_port, const MacAddr& next_hop,
                       uint32_t outer) {
    tx_.write_ethernet(out, out_port, next_hop.data());
    uint8_t* oip = out + kEthHeaderLen;
    write_ipv4_header(oip, uint16_t(outer), ctx_.next_ip_id(), kIpProtoUdp, ctx_.dp.ports[out_port].address,
                      peer.ip.v4());
    uint8_t* udp = oip + kIpv4HeaderLen;
    store_be16(udp, s.local_port);
    store_be16(udp + 2, peer.port);
    store_be16(udp + kUdpOffLength, uint16_t(outer - kIpv4HeaderLen));
    store_be16(udp + kUdpOffChecksum, 0);  // the AEAD protects the payload; RFC 768 allows 0 over IPv4
    return udp + kUdpHeaderLen;
  }
  template <typename Codec>
  bool framed(const Codec& codec, Kind kind, rte_mbuf* m, TunnelSession& s, Endpoint peer, uint8_t out_port,
              const MacAddr& next_hop, const InnerHeader& ih, uint32_t packet_len, uint16_t tunnel);
  // Header protection of the burst's QUIC packets (`quic`: their places in `p`, `nq` of them), after the AEAD: the
  // masks in one call per session's key. Packets whose masks failed get status -1.
  void protect_quic(const Pending* p, const uint16_t* quic, uint16_t nq, int32_t* status);
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
// it for every packet of a burst.) A QUIC session's codec is read-only here (any worker may use it at once).
template <typename Codec>
__attribute__((always_inline)) inline bool Encap::framed(const Codec& codec, Kind kind, rte_mbuf* m, TunnelSession& s,
                                                          Endpoint peer, uint8_t out_port, const MacAddr& next_hop,
                                                          const InnerHeader& ih, uint32_t packet_len,
                                                          uint16_t tunnel) {
  const FrameLayout& layout = codec.layout();
  const uint32_t outer = uint32_t(kIpv4HeaderLen + kUdpHeaderLen) + layout.data_overhead() + packet_len;
  uint8_t* out = reinterpret_cast<uint8_t*>(
      rte_pktmbuf_prepend(m, uint16_t(kEthHeaderLen + kIpv4HeaderLen + kUdpHeaderLen + layout.packet_offset())));
  if (!out || !rte_pktmbuf_append(m, uint16_t(layout.tag_len))) {
    ctx_.drop(m, Drop::NoRoom);
    return false;
  }
  uint8_t* frame = write_outer(out, s, peer, out_port, next_hop, outer);
  codec.write_inner(frame, ih);
  queue(Pending{m, &s, frame, layout.encrypted_len(packet_len), out_port, kind, tunnel});
  return true;
}

__attribute__((always_inline)) inline bool Encap::packet(rte_mbuf* m, TunnelSession& s, Endpoint peer,
                                                          uint8_t out_port, const MacAddr& next_hop,
                                                          const InnerHeader& ih, uint32_t packet_len,
                                                          uint16_t tunnel) {
  if (__builtin_expect(s.quic != nullptr, 0))
    return framed(s.quic->codec, Kind::QuicData, m, s, peer, out_port, next_hop, ih, packet_len, tunnel);
  return framed(codec_, Kind::Relay, m, s, peer, out_port, next_hop, ih, packet_len, tunnel);
}

inline void Encap::queue(const Pending& p) {
  if (n_pending_ == pending_.size()) flush();
  pending_[n_pending_++] = p;
}

}  // namespace dptun
