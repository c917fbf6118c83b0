// Fragments (fragments.hpp). A reassembled datagram stays in one mbuf when it fits, else it is a chain whose first
// mbuf holds every header.
#include <rte_mbuf.h>

#include <algorithm>
#include <cstring>

#include "dataplane/loop/fragments.hpp"

#include <rte_random.h>

#include "dataplane/loop/fragment_out.hpp"
#include "packet/headers.hpp"
#include "packet/ipv4_fragment.hpp"

namespace dptun {

namespace {


Drop drop_of(FragDrop why) { return Drop(size_t(Drop::FragMalformed) + size_t(why)); }
static_assert(size_t(Drop::FragEvicted) - size_t(Drop::FragMalformed) == size_t(FragDrop::Evicted));

// The worker that reassembles a client datagram: every fragment of it hashes alike, whatever queue it came in on.
uint32_t fragment_hash(uint32_t src, uint32_t dst, uint8_t proto, uint16_t id) {
  uint64_t h = (uint64_t(src) << 32 | dst) * 0x9e3779b97f4a7c15ull;
  h ^= (uint64_t(id) << 8 | proto) * 0xc2b2ae3d27d4eb4full;
  h ^= h >> 29;
  return uint32_t(h >> 32);
}

// The headers of a datagram that may span several mbufs, from `l3_offset` on.
bool parse_datagram(const rte_mbuf* m, uint16_t l3_offset, PacketInfo& pi) {
  if (m->data_len < l3_offset) return false;
  const uint8_t* p = rte_pktmbuf_mtod(m, const uint8_t*) + l3_offset;
  if (parse_ipv4_head({p, size_t(m->data_len - l3_offset)}, m->pkt_len - l3_offset, pi) != ParseStatus::Ok)
    return false;
  pi.l3_offset = uint16_t(pi.l3_offset + l3_offset);
  pi.l4_offset = uint16_t(pi.l4_offset + l3_offset);
  return true;
}

}  // namespace

void Fragments::Sink::fragment_dropped(rte_mbuf* m, FragDrop why) { ctx.drop(m, drop_of(why)); }

void Fragments::Sink::datagram_dropped(FragDrop why) { (why == FragDrop::Timeout ? timeouts : evictions).add(); }

Fragments::Fragments(WorkerContext& ctx, Tx& tx, LocalInput& local, EntryInput& entry, EdgeOutput& edge_out)
    : ctx_(ctx),
      tx_(tx),
      local_(local),
      entry_(entry),
      edge_out_(edge_out),
      client_frags_(ctx.dp.cfg->reassembly, rte_rand()),
      inner_frags_(ctx.dp.cfg->reassembly, rte_rand()) {}

Fragments::~Fragments() {
  struct FreeAll {
    void fragment_dropped(rte_mbuf* m, FragDrop) { rte_pktmbuf_free(m); }
    void datagram_dropped(FragDrop) {}
  } sink;
  client_frags_.clear(sink);
  inner_frags_.clear(sink);
}

void Fragments::expire_due() {
  if (!client_frags_.empty()) {
    Sink sink{ctx_, ctx_.stats.frag_timeouts, ctx_.stats.frag_evictions};
    client_frags_.expire(ctx_.now_ns, 64, sink);
  }
  if (!inner_frags_.empty()) {
    Sink sink{ctx_, ctx_.stats.inner_frag_timeouts, ctx_.stats.inner_frag_evictions};
    inner_frags_.expire(ctx_.now_ns, 64, sink);
  }
}



void Fragments::client_fragment(uint8_t port, rte_mbuf* m, const PacketInfo& pi) {
  DPTUN_TRACE(m, Classify) tr->code = uint8_t(TraceClass::Fragment);
  uint8_t* ip = rte_pktmbuf_mtod(m, uint8_t*) + pi.l3_offset;
  const uint16_t ip_id = load_be16(ip + kIpv4OffId);
  const uint16_t nw = uint16_t(ctx_.dp.workers.size());
  if (nw > 1) {
    // RSS and af_packet's fanout may spread one datagram's fragments over queues: one worker takes them all.
    const uint16_t w = uint16_t(fragment_hash(pi.src_ip, pi.dst_ip, pi.l4_proto, ip_id) % nw);
    if (w != ctx_.id) {
      ctx_.stats.frag_steered.add();
      tx_.handoff(w, m, HandoffMeta{0, 0, HandoffMeta::RawFrame, port});
      return;
    }
  }
  ctx_.stats.frag_rx.add();
  const uint32_t frame_len = uint32_t(pi.l3_offset) + pi.ip_total_len;
  if (m->data_len > frame_len) rte_pktmbuf_trim(m, uint16_t(m->data_len - frame_len));  // Ethernet padding
  m->l2_len = pi.l3_offset;
  m->l3_len = pi.ip_header_len;
  Sink sink{ctx_, ctx_.stats.frag_timeouts, ctx_.stats.frag_evictions};
  FragDrop why;
  uint32_t slot;
  const FragmentKey key{pi.src_ip, pi.dst_ip, ip_id, pi.l4_proto, port};
  switch (client_frags_.add(key, ipv4_fragment_info(ip), m, ctx_.now_ns, sink, why, slot)) {
    case Ipv4Reassembly<rte_mbuf*>::Result::Held:
      DPTUN_TRACE(m, Held) tr->code = 0;
      return;
    case Ipv4Reassembly<rte_mbuf*>::Result::Dropped:
      ctx_.drop(m, drop_of(why));
      return;
    case Ipv4Reassembly<rte_mbuf*>::Result::Complete:
      break;
  }
  rte_mbuf* d = reassembled(client_frags_);
  if (!d) return;
  ctx_.stats.frag_reassembled.add();
  PacketInfo dpi;
  if (!parse_datagram(d, uint16_t(d->l2_len), dpi)) {  // e.g. a first fragment without the whole TCP header
    ctx_.drop(d, Drop::FragMalformed);
    return;
  }
  if (nw > 1) {
    const uint16_t w =
        uint16_t(FlowTable::hash(FlowKey::v4(dpi.src_ip, dpi.dst_ip, dpi.src_port, dpi.dst_port, dpi.l4_proto, 0)) % nw);
    if (w != ctx_.id) {
      tx_.handoff(w, d, HandoffMeta{0, 0, HandoffMeta::Reassembled, port});
      return;
    }
  }
  datagram_input(port, d);
}

void Fragments::datagram_input(uint8_t port, rte_mbuf* m) {
  PacketInfo pi;
  if (!parse_datagram(m, uint16_t(m->l2_len), pi)) {
    ctx_.drop(m, Drop::FragMalformed);
    return;
  }
  if (const EdgePeer* edge = ctx_.dp.edge.get()) {
    if (edge->to_snat(port, pi.dst_ip)) {  // a target's datagram, to the concentrator
      edge_out_.datagram(port, m, pi);
      return;
    }
    if (pi.l4_proto == kIpProtoUdp && edge->from_concentrator(port, pi.src_ip, pi.src_port, pi.dst_port)) {
      ctx_.drop(m, Drop::Fragment);  // relay frames are never fragmented
      return;
    }
  }
  // Relay frames are never fragmented, nor are STUN Binding requests (a few dozen bytes) in practice.
  const uint16_t stun_port = ctx_.dp.cfg->stun_port;
  if (pi.l4_proto == kIpProtoUdp && (pi.dst_port == ctx_.dp.cfg->tunnel_port || (stun_port && pi.dst_port == stun_port))) {
    ctx_.drop(m, Drop::Fragment);
    return;
  }
  const EntryTable* entries = ctx_.dp.entries.load(std::memory_order_acquire);
  const EntryPoint* ep = entries ? entries->find(pi.l4_proto, pi.dst_ip, pi.dst_port) : nullptr;
  if (!ep) {
    local_.closed_port(port, m, pi);
    return;
  }
  if (m->nb_segs > 1 && entry_route_kind(ep->route).source != NameSource::None) {  // names are read from single-buffer packets only
    ctx_.drop(m, Drop::Fragment);
    return;
  }
  entry_.input(port, &m, &pi, &ep, 1);
}

bool Fragments::inner_fragment(rte_mbuf*& m, const InnerHeader& ih, const TunnelSession& s) {
  const uint8_t* p = rte_pktmbuf_mtod(m, const uint8_t*);
  size_t len = m->data_len;
  // A visitor's frames carry its service's name behind each fragment, as behind its whole packets.
  NameCopy trailer;
  std::string_view name;
  if (ih.flags & kInnerHasName) {
    size_t rest = 0;
    if (!copy_name_trailer({p, len}, trailer, rest)) {
      ctx_.drop(m, Drop::BadInner);
      return false;
    }
    name = trailer.name;
    len = rest;
  }
  PacketInfo pi;
  if (parse_ip({p, len}, pi) != ParseStatus::Ok || pi.l3 != L3Kind::Ipv4 || !pi.is_fragment) {
    ctx_.drop(m, Drop::BadInner);
    return false;
  }
  rte_pktmbuf_trim(m, uint16_t(m->data_len - pi.ip_total_len));
  m->l2_len = 0;
  m->l3_len = pi.ip_header_len;
  ctx_.stats.inner_frag_rx.add();
  Sink sink{ctx_, ctx_.stats.inner_frag_timeouts, ctx_.stats.inner_frag_evictions};
  FragDrop why;
  uint32_t slot;
  // Fragments of one flow's datagram, on one session: an agent's fragments never mix with another's.
  const FragmentKey key{pi.src_ip, pi.dst_ip, load_be16(p + kIpv4OffId), pi.l4_proto,
                        uint64_t(s.index) << 32 | uint32_t(ih.flow_id)};
  switch (inner_frags_.add(key, ipv4_fragment_info(p), m, ctx_.now_ns, sink, why, slot)) {
    case Ipv4Reassembly<rte_mbuf*>::Result::Held:
      DPTUN_TRACE(m, Held) tr->code = 0;
      return false;
    case Ipv4Reassembly<rte_mbuf*>::Result::Dropped:
      ctx_.drop(m, drop_of(why));
      return false;
    case Ipv4Reassembly<rte_mbuf*>::Result::Complete:
      break;
  }
  m = reassembled(inner_frags_);
  if (!m) return false;
  ctx_.stats.inner_frag_reassembled.add();
  if (!name.empty()) {
    char* t = m->nb_segs == 1 ? rte_pktmbuf_append(m, uint16_t(name.size() + 1)) : nullptr;
    if (!t) {  // visitors' packets are read from single-buffer packets only
      ctx_.drop(m, Drop::Fragment);
      return false;
    }
    write_name_trailer(reinterpret_cast<uint8_t*>(t), name);
  }
  return true;
}

rte_mbuf* Fragments::reassembled(const Ipv4Reassembly<rte_mbuf*>& table) {
  const auto pieces = table.pieces();
  rte_mbuf* head = pieces[0].frag;  // offset 0: the header the datagram takes
  const uint32_t l2 = head->l2_len;
  const uint32_t total = table.first_header_len() + table.payload_len();
  rte_pktmbuf_trim(head, uint16_t(head->data_len - (l2 + head->l3_len + pieces[0].len)));
  // One mbuf when it fits (every stage takes it then), else a chain.
  const bool linear = l2 + total <= uint32_t(head->data_len) + rte_pktmbuf_tailroom(head);
  bool ok = true;
  for (size_t i = 1; i < pieces.size(); ++i) {
    rte_mbuf* f = pieces[i].frag;
    if (!ok) {
      rte_pktmbuf_free(f);
      continue;
    }
    rte_pktmbuf_adj(f, uint16_t(f->l2_len + f->l3_len));
    rte_pktmbuf_trim(f, uint16_t(f->data_len - pieces[i].len));
    if (linear) {
      std::memcpy(rte_pktmbuf_append(head, uint16_t(pieces[i].len)), rte_pktmbuf_mtod(f, const void*), pieces[i].len);
      rte_pktmbuf_free(f);
    } else if (rte_pktmbuf_chain(head, f) != 0) {
      rte_pktmbuf_free(f);
      ok = false;
    }
  }
  if (!ok) {
    ctx_.drop(head, Drop::NoRoom);
    return nullptr;
  }
  finish_reassembled_header(rte_pktmbuf_mtod(head, uint8_t*) + l2, table.payload_len());
  return head;
}

// A packet bigger than the link towards the client (a datagram reassembled from an agent's fragments): IPv4
// fragments of it, each in an Ethernet frame to `mac`, with an id of this worker's. `m` holds the packet from its
// IP header on; it is consumed.
void Fragments::send_ip_fragments(uint8_t port, const MacAddr& mac, rte_mbuf* m) {
  const uint8_t* ip = rte_pktmbuf_mtod(m, const uint8_t*);
  const uint32_t hl = uint32_t(ip[0] & 0x0f) * 4;
  const uint32_t total = load_be16(ip + kIpv4OffTotalLen);
  const FragmentPlan plan =
      plan_ipv4_fragments(hl, total - hl, std::min<uint32_t>(ctx_.dp.ports[port].mtu, ctx_.max_frame_ip));
  if (!plan.count || plan.count > kMaxFragmentsOut || total > m->pkt_len) {
    ctx_.drop(m, Drop::TooBig);
    return;
  }
  rte_mbuf* out[kMaxFragmentsOut];
  if (rte_pktmbuf_alloc_bulk(ctx_.dp.pool, out, plan.count) != 0) {
    ctx_.drop(m, Drop::NoMbuf);
    return;
  }
  uint8_t header[60];
  std::memcpy(header, ip, hl);
  const uint16_t id = ctx_.next_frag_id();
  for (uint32_t k = 0; k < plan.count; ++k) {
    const uint32_t off = k * plan.chunk;
    const uint32_t len = std::min(plan.chunk, total - hl - off);
    uint8_t* eth = build_fragment(out[k], m, {header, hl}, id, off, len, k + 1 < plan.count, kEthHeaderLen, 0);
    if (!eth) {
      for (uint32_t j = k; j < plan.count; ++j) rte_pktmbuf_free(out[j]);
      ctx_.stats.drops[size_t(Drop::NoRoom)].add();
      break;
    }
    tx_.write_ethernet(eth, port, mac.data());
    tx_.send(port, out[k]);
    ctx_.stats.fragments_tx.add();
  }
  rte_pktmbuf_free(m);
}

}  // namespace dptun
