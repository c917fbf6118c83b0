// TCP entry points routed by hostname (delayed binding, docs/hostname-routing.md):
//   SYN                -> SYN-ACK whose ISN is a SYN cookie; no state
//   ACK (valid cookie) -> a flow in WaitHello, with a buffer for the client's first bytes
//   data               -> buffered until the TLS ClientHello / HTTP request head names a host; the rule decides:
//                         SYN to the target through the rule's tunnel (WaitServer), or RST / HTTP 502
//   target's SYN-ACK   -> ACK and the buffered bytes to the target, then the two halves are spliced: from here
//                         on segments only get their numbers rewritten (TcpSplice) on the normal fast path.
#include <rte_mbuf.h>

#include <cstring>

#include "common/bytes.hpp"
#include "dataplane/gateway_state.hpp"
#include "dataplane/worker.hpp"
#include "ingress/client_hello.hpp"
#include "ingress/http_host.hpp"
#include "packet/checksum.hpp"
#include "packet/headers.hpp"
#include "packet/tcp_segment.hpp"

namespace dptun {

namespace {

constexpr uint8_t kOurWscale = 7;                        // what we tell clients that scale windows
constexpr uint64_t kBindingTimeoutNs = 10'000'000'000ull;  // to name a host, then to reach the target
constexpr uint64_t kSynRetryNs = 500'000'000ull;         // resend our SYN to the target at most this often

inline bool seq_before(uint32_t a, uint32_t b) { return int32_t(a - b) < 0; }

const char kBadGateway[] =
    "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 27\r\nConnection: close\r\n\r\n"
    "no route for this hostname\n";

}  // namespace

uint32_t Worker::ts_clock() const { return uint32_t(now_ns_ / 1'000'000ull); }

uint16_t Worker::advertised_mss() const {
  // What a client may send us: a full segment must still fit one underlay packet after encapsulation.
  uint16_t mtu = 0xffff;
  for (const PortInfo& p : dp_.ports) mtu = std::min(mtu, p.mtu);
  return uint16_t(mtu - kUnderlayOverhead - 40);
}

// A TCP segment from the entry point to the client, out the port the client's frame came in on, to the MAC it
// came from.
void Worker::send_to_client(uint8_t port, const uint8_t* client_mac, const TcpSegmentSpec& spec) {
  rte_mbuf* m = rte_pktmbuf_alloc(dp_.pool);
  if (!m) {
    stats.drops[size_t(Drop::NoMbuf)].add();
    return;
  }
  const size_t room = rte_pktmbuf_tailroom(m);
  uint8_t* eth = rte_pktmbuf_mtod(m, uint8_t*);
  const size_t n = room > kEthHeaderLen ? tcp_write_packet({eth + kEthHeaderLen, room - kEthHeaderLen}, spec) : 0;
  if (!n) {
    drop(m, Drop::NoRoom);
    return;
  }
  rte_pktmbuf_append(m, uint16_t(kEthHeaderLen + n));
  std::memcpy(eth, client_mac, 6);
  std::memcpy(eth + 6, dp_.ports[port].mac.data(), 6);
  store_be16(eth + 12, kEtherTypeIpv4);
  send(port, m);
}

// A segment from the client's address to the flow's target, through the flow's session.
bool Worker::send_to_server(Flow& f, uint32_t seq, uint32_t ack, uint8_t flags, uint16_t window,
                            std::span<const uint8_t> options, std::span<const uint8_t> payload) {
  TunnelSession* s = dp_.sessions.find(f.session_index);
  if (!s || s->visitor || s->tunnel != f.tunnel) return false;
  rte_mbuf* m = rte_pktmbuf_alloc(dp_.pool);
  if (!m) {
    stats.drops[size_t(Drop::NoMbuf)].add();
    return false;
  }
  const size_t room = rte_pktmbuf_tailroom(m);
  const size_t n = tcp_write_packet({rte_pktmbuf_mtod(m, uint8_t*), room},
                                    {f.key.client_ip, f.target_ip, f.key.client_port, f.target_port, seq, ack, flags,
                                     window, options, payload, ip_id_++});
  if (!n) {
    drop(m, Drop::NoRoom);
    return false;
  }
  rte_pktmbuf_append(m, uint16_t(n));
  return encap_inner(m, f, *s, (flags & kTcpSyn) ? kInnerFlowNew : 0, kIpProtoTcp);
}

void Worker::release_binding(Flow& f) {
  release_name(f);
  // Only a buffer this flow still owns (the sweep may have given it to another flow meanwhile).
  const uint32_t b = f.bind.buffer;
  if (b != BindingBuffers::kNone && bindings_.used(b) && bindings_.owner(b) == flows_.id_of(f)) bindings_.release(b);
  f.bind.buffer = BindingBuffers::kNone;
}

// The client is gone (RST, or it starts over): forget the connection; a target we had already called gets a RST.
void Worker::abandon_binding(Flow& f) {
  if (f.binding == Binding::WaitServer)
    send_to_server(f, f.bind.client_isn + 1, 0, kTcpRst, 0, {}, {});
  release_binding(f);
  flows_.erase(f);
}

// The client asked for a host no rule serves (or the rule cannot be used): TLS gets a RST, plain HTTP a 502.
void Worker::refuse_binding(uint8_t port, const uint8_t* client_mac, Flow& f, Drop why) {
  stats.drops[size_t(why)].add();
  stats.bindings_refused.add();
  uint8_t opts[12];
  size_t olen = f.bind.client_ts ? tcp_write_timestamps(opts, ts_clock(), f.bind.client_tsval) : 0;
  if (f.bind.route == uint8_t(EntryRoute::HttpHost)) {
    send_to_client(port, client_mac,
                   {f.key.local_ip, f.key.client_ip, f.key.local_port, f.key.client_port, f.bind.our_isn + 1,
                    f.bind.next_client_seq, kTcpAck | kTcpPsh | kTcpFin, 65535, {opts, olen},
                    {reinterpret_cast<const uint8_t*>(kBadGateway), sizeof kBadGateway - 1}, ip_id_++});
  } else {
    send_to_client(port, client_mac,
                   {f.key.local_ip, f.key.client_ip, f.key.local_port, f.key.client_port, f.bind.our_isn + 1,
                    f.bind.next_client_seq, kTcpAck | kTcpRst, 0, {}, {}, ip_id_++});
  }
  release_binding(f);
  flows_.erase(f);
}

// All buffers taken: the connection that has been reading its first bytes longest gives way (a real client sends
// its ClientHello or request right after the handshake; a slow one that trickles bytes is what fills the pool).
// It gets a RST. Connections already waiting for their target keep their buffers. False when none can give way.
bool Worker::evict_oldest_binding(const Flow& newcomer) {
  Flow* oldest = nullptr;
  uint64_t since = 0;
  for (uint32_t b = 0; b < bindings_.count(); ++b) {
    if (!bindings_.used(b)) continue;
    Flow* f = flows_.find_by_id(bindings_.owner(b));
    if (!f || f->bind.buffer != b || f->deadline_ns <= now_ns_) {  // left behind by a flow that has gone
      bindings_.release(b);
      return true;
    }
    if (f == &newcomer || f->binding != Binding::WaitHello) continue;
    if (!oldest || binding_since_[b] < since) {
      oldest = f;
      since = binding_since_[b];
    }
  }
  if (!oldest) return false;
  stats.bindings_evicted.add();
  uint8_t port;
  MacAddr mac;
  Drop why;
  if (resolve_next_hop(oldest->key.client_ip, port, mac, why))  // tell the client (if its address resolves)
    send_to_client(port, mac.data(),
                   {oldest->key.local_ip, oldest->key.client_ip, oldest->key.local_port, oldest->key.client_port,
                    oldest->bind.our_isn + 1, oldest->bind.next_client_seq, kTcpAck | kTcpRst, 0, {}, {}, ip_id_++});
  abandon_binding(*oldest);
  return true;
}

void Worker::send_syn_ack(uint8_t port, const uint8_t* client_mac, const PacketInfo& pi, const TcpHandshakeOptions& c,
                          uint32_t client_isn) {
  const TcpFourTuple tuple{pi.src_ip, pi.dst_ip, pi.src_port, pi.dst_port};
  const SynOptions so{c.mss ? c.mss : uint16_t(536), c.wscale, c.sack_ok, c.has_ts};
  const uint32_t cookie = cookies_.make(tuple, client_isn, so, now_ns_ / 1'000'000'000ull);
  TcpHandshakeOptions ours;
  ours.mss = advertised_mss();
  ours.sack_ok = c.sack_ok;
  ours.has_ts = c.has_ts;
  // Our clock, with 8 more bits of the cookie's MAC in the low byte (checked when TSecr comes back).
  ours.tsval = (ts_clock() & ~0xffu) | cookies_.timestamp_bits(tuple, client_isn, cookie);
  ours.tsecr = c.tsval;
  ours.wscale = c.wscale != 0xff ? kOurWscale : 0xff;
  uint8_t opts[20];
  const size_t olen = tcp_write_handshake_options(opts, ours);
  send_to_client(port, client_mac,
                 {pi.dst_ip, pi.src_ip, pi.dst_port, pi.src_port, cookie, client_isn + 1, kTcpSyn | kTcpAck, 65535,
                  {opts, olen}, {}, ip_id_++});
  stats.syn_cookies_sent.add();
}

void Worker::hostname_tcp(uint8_t port, rte_mbuf* m, const PacketInfo& pi, const EntryPoint& ep, Flow* f) {
  const uint8_t* frame = rte_pktmbuf_mtod(m, const uint8_t*);
  const uint8_t* tcp = frame + pi.l4_offset;
  // dpgw ends these connections itself (their bytes go on in segments it builds): check what the client sent.
  if (csum_fold(csum_add({tcp, pi.l4_len}, ipv4_pseudo_sum(pi.src_ip, pi.dst_ip, kIpProtoTcp, pi.l4_len))) != 0xffff) {
    drop(m, Drop::BadChecksum);
    return;
  }
  uint8_t client_mac[6];
  std::memcpy(client_mac, frame + 6, 6);
  const uint32_t seq = load_be32(tcp + 4), ack = load_be32(tcp + 8);
  const uint8_t flags = pi.tcp_flags;
  const TcpHandshakeOptions opt = tcp_read_options(tcp, pi.tcp_header_len);

  if (f && (flags & kTcpSyn) && f->binding != Binding::Spliced && seq == f->bind.client_isn) {
    drop(m, Drop::TcpNoFlow);  // a duplicate of the SYN that started this connection
    return;
  }
  if (f && (f->binding == Binding::None || f->binding == Binding::Spliced || f->deadline_ns <= now_ns_ ||
            (flags & kTcpSyn))) {
    // A leftover (expired or closed, or the client starts over on the same ports with a new ISN): forget it.
    abandon_binding(*f);
    f = nullptr;
  }
  if (!f) {
    if ((flags & (kTcpSyn | kTcpAck | kTcpRst)) == kTcpSyn) {
      send_syn_ack(port, client_mac, pi, opt, seq);
      rte_pktmbuf_free(m);
      return;
    }
    if ((flags & (kTcpSyn | kTcpAck | kTcpRst)) != kTcpAck) {
      drop(m, Drop::TcpNoFlow);
      return;
    }
    // The handshake's last ACK (or the first data segment, if that ACK was lost): is the cookie ours? With
    // timestamps, 8 more bits of it come back in TSecr.
    const TcpFourTuple tuple{pi.src_ip, pi.dst_ip, pi.src_port, pi.dst_port};
    const auto so = cookies_.check(tuple, seq - 1, ack - 1, now_ns_ / 1'000'000'000ull);
    if (!so || (so->timestamps && (!opt.has_ts || uint8_t(opt.tsecr) != cookies_.timestamp_bits(tuple, seq - 1, ack - 1)))) {
      drop(m, Drop::BadCookie);
      return;
    }
    const FlowKey key{pi.src_ip, pi.dst_ip, pi.src_port, pi.dst_port, kIpProtoTcp, 0};
    const uint32_t h = FlowTable::hash(key);
    f = new_flow(key, h);
    if (!f) {
      drop(m, Drop::FlowTableFull);
      return;
    }
    f->hash = h;
    f->binding = Binding::WaitHello;
    f->bind = BindingState{};
    f->bind.client_isn = seq - 1;
    f->bind.our_isn = ack - 1;
    f->bind.next_client_seq = seq;
    f->bind.client_mss = so->mss;
    f->bind.client_wscale = so->wscale;
    f->bind.client_sack = so->sack;
    f->bind.client_ts = so->timestamps;
    f->bind.route = uint8_t(ep.route);
    f->tcp_state = TcpState::Established;
    f->deadline_ns = now_ns_ + kBindingTimeoutNs;
    f->last_seen_ns = now_ns_;
    stats.bindings_started.add();
  }
  Flow& fl = *f;
  if (flags & kTcpRst) {  // the client gave up (a RST must carry the next sequence number: RFC 5961)
    if (seq == fl.bind.next_client_seq) abandon_binding(fl);
    rte_pktmbuf_free(m);
    return;
  }
  if (opt.has_ts) fl.bind.client_tsval = opt.tsval;
  fl.bind.client_window = load_be16(tcp + 14);
  fl.last_seen_ns = now_ns_;

  // Keep the client's bytes: in order they extend what we have; ahead of a gap they wait for it (up to 4 pieces).
  const uint32_t len = uint32_t(pi.l4_len - pi.tcp_header_len);
  bool grew = false, too_big = false;
  if (len && fl.bind.buffer == BindingBuffers::kNone) {  // the first bytes: now the connection gets a buffer
    fl.bind.buffer = bindings_.acquire(flows_.id_of(fl));
    if (fl.bind.buffer == BindingBuffers::kNone && evict_oldest_binding(fl))
      fl.bind.buffer = bindings_.acquire(flows_.id_of(fl));
    if (fl.bind.buffer != BindingBuffers::kNone) binding_since_[fl.bind.buffer] = now_ns_;
    if (fl.bind.buffer == BindingBuffers::kNone) {
      stats.drops[size_t(Drop::BindingFull)].add();
      stats.bindings_refused.add();
      send_to_client(port, client_mac,
                     {fl.key.local_ip, fl.key.client_ip, fl.key.local_port, fl.key.client_port, fl.bind.our_isn + 1,
                      fl.bind.next_client_seq, kTcpAck | kTcpRst, 0, {}, {}, ip_id_++});
      abandon_binding(fl);
      rte_pktmbuf_free(m);
      return;
    }
  }
  if (len) {
    const uint32_t base = fl.bind.client_isn + 1;
    const uint32_t have = fl.bind.next_client_seq - base;  // contiguous bytes so far
    const uint32_t off = seq - base;
    const uint8_t* payload = tcp + pi.tcp_header_len;
    if (off <= have && off + len > have) {  // in order (possibly overlapping what we have)
      if (bindings_.write_at(fl.bind.buffer, have, {payload + (have - off), len - (have - off)})) {
        uint32_t end = off + len;
        // Pieces that were waiting for this gap join in.
        for (bool joined = true; joined;) {
          joined = false;
          for (uint8_t k = 0; k < fl.bind.n_ahead; ++k)
            if (fl.bind.ahead_start[k] <= end) {
              end = std::max<uint32_t>(end, fl.bind.ahead_end[k]);
              fl.bind.ahead_start[k] = fl.bind.ahead_start[--fl.bind.n_ahead];
              fl.bind.ahead_end[k] = fl.bind.ahead_end[fl.bind.n_ahead];
              joined = true;
              break;
            }
        }
        bindings_.extend_to(fl.bind.buffer, end);
        fl.bind.next_client_seq = base + end;
        grew = true;
      } else {
        too_big = true;
      }
    } else if (off > have && off < bindings_.size()) {  // ahead of a gap
      if (fl.bind.n_ahead < 4 && bindings_.write_at(fl.bind.buffer, off, {payload, len})) {
        fl.bind.ahead_start[fl.bind.n_ahead] = uint16_t(off);
        fl.bind.ahead_end[fl.bind.n_ahead++] = uint16_t(off + len);
      }
    }
  }
  if ((flags & kTcpFin) && seq + len == fl.bind.next_client_seq) fl.bind.fin = true;  // all its bytes, then closed
  rte_pktmbuf_free(m);

  if (fl.binding == Binding::WaitServer) {
    // The client retransmits while the target has not answered: ask it again (our SYN may have been lost).
    if (now_ns_ - fl.bind.syn_sent_ns > kSynRetryNs) send_server_syn(fl);
    return;
  }
  if (too_big) {
    refuse_binding(port, client_mac, fl, Drop::NoHostname);
    return;
  }
  if (!grew && !fl.bind.fin) return;
  if (fl.bind.buffer == BindingBuffers::kNone) {  // closed without sending a byte
    refuse_binding(port, client_mac, fl, Drop::NoHostname);
    return;
  }

  // Enough to name a host?
  const std::span<const uint8_t> head = bindings_.bytes(fl.bind.buffer);
  std::string_view name;
  if (fl.bind.route == uint8_t(EntryRoute::TlsSni)) {
    const SniResult r = sni_from_tls_stream(head, hello_scratch_);
    if (r.status == SniStatus::NeedMore && !fl.bind.fin) return;
    if (r.status != SniStatus::Found) {
      refuse_binding(port, client_mac, fl, Drop::NoHostname);
      return;
    }
    name = r.name;
  } else {
    const HostResult r = host_from_http_request(head);
    if (r.status == HostStatus::NeedMore && !fl.bind.fin) return;
    if (r.status != HostStatus::Found) {
      refuse_binding(port, client_mac, fl, Drop::NoHostname);
      return;
    }
    name = r.host;
  }
  // Public entry points never use private rules; a rule needs a target and a live session of its tunnel.
  const IngressTable* table = dp_.ingress.load(std::memory_order_acquire);
  const IngressRoute* r = table ? table->lookup(name, id_) : nullptr;
  const TunnelPool* pool = nullptr;
  TunnelSession* s = nullptr;
  Drop why = Drop::NoRule;
  if (r) {
    if (r->private_rule)
      why = Drop::PrivateRule;
    else if (!(pool = dp_.tunnels.get(r->tunnel)) || pool->generation != r->tunnel_generation ||
             !(s = pick_session(*pool, fl.hash)))
      why = Drop::NoSession;
  }
  if (!s) {
    refuse_binding(port, client_mac, fl, why);
    return;
  }
  Route rt = dp_.routes->lookup(s->peer().ip.value);
  fl.session_index = s->index;
  fl.tunnel = r->tunnel;
  fl.tunnel_generation = pool->generation;
  // A rule without a target leaves the choice to the agent (agent-side routing): 0.0.0.0 and the hostname.
  fl.target_ip = r->target ? r->target->ip.value : 0;
  fl.target_port = r->target && r->target->port ? r->target->port : fl.key.local_port;
  if (!r->target && !hold_name(fl, name)) {
    refuse_binding(port, client_mac, fl, Drop::BindingFull);
    return;
  }
  fl.mss_clamp = uint16_t(dp_.ports[rt.valid ? rt.port : 0].mtu - kUnderlayOverhead - 40);
  fl.bind.proxy_protocol = r->proxy_protocol;
  s->flows_pinned.fetch_add(1, std::memory_order_relaxed);
  stats.flows_created.add();
  stats.hostname_routed.add();
  tunnel_stats[fl.tunnel].flows_created.add();
  fl.binding = Binding::WaitServer;
  fl.deadline_ns = now_ns_ + kBindingTimeoutNs;
  send_server_syn(fl);
}

// Opens the server side with the client's own ISN and options (so the client's sequence numbers need no
// rewriting): MSS (at most what the tunnel carries), SACK, timestamps, window scale.
void Worker::send_server_syn(Flow& f) {
  TcpHandshakeOptions o;
  o.mss = std::min(f.bind.client_mss, f.mss_clamp);
  o.sack_ok = f.bind.client_sack;
  o.has_ts = f.bind.client_ts;
  o.tsval = f.bind.client_tsval;
  o.wscale = f.bind.client_wscale;
  uint8_t opts[20];
  const size_t olen = tcp_write_handshake_options(opts, o);
  f.bind.syn_sent_ns = now_ns_;
  send_to_server(f, f.bind.client_isn, 0, kTcpSyn, 65535, {opts, olen}, {});
}

// PROXY protocol v2 (haproxy's spec): signature, PROXY command over TCP/IPv4, then the client's and the entry
// point's addresses and ports. 28 bytes.
size_t Worker::proxy_v2_header(const Flow& f, uint8_t* out) {
  static const uint8_t sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
  std::memcpy(out, sig, 12);
  out[12] = 0x21;  // version 2, PROXY
  out[13] = 0x11;  // AF_INET, STREAM
  store_be16(out + 14, 12);
  store_be32(out + 16, f.key.client_ip);
  store_be32(out + 20, f.key.local_ip);
  store_be16(out + 24, f.key.client_port);
  store_be16(out + 26, f.key.local_port);
  return 28;
}

// The target answered our SYN: finish its handshake, hand it the client's first bytes, splice.
void Worker::splice_from_server(rte_mbuf* m, Flow& f, const PacketInfo& pi) {
  const uint8_t* tcp = rte_pktmbuf_mtod(m, const uint8_t*) + pi.l4_offset;
  const uint32_t seq = load_be32(tcp + 4), ack = load_be32(tcp + 8);
  if (pi.tcp_flags & kTcpRst) {  // the target refused: so do we
    rte_pktmbuf_free(m);
    uint8_t out_port;
    MacAddr mac;
    Drop why;
    if (resolve_next_hop(f.key.client_ip, out_port, mac, why))
      send_to_client(out_port, mac.data(),
                     {f.key.local_ip, f.key.client_ip, f.key.local_port, f.key.client_port, f.bind.our_isn + 1,
                      f.bind.next_client_seq, kTcpAck | kTcpRst, 0, {}, {}, ip_id_++});
    stats.drops[size_t(Drop::TargetRefused)].add();
    stats.bindings_refused.add();
    release_binding(f);
    flows_.erase(f);
    return;
  }
  if ((pi.tcp_flags & (kTcpSyn | kTcpAck)) != (kTcpSyn | kTcpAck) || ack != f.bind.client_isn + 1) {
    drop(m, Drop::FlowMismatch);
    return;
  }
  const TcpHandshakeOptions so = tcp_read_options(tcp, pi.tcp_header_len);
  rte_pktmbuf_free(m);
  const bool client_scales = f.bind.client_wscale != 0xff;
  TcpSplice& sp = f.splice;
  sp = TcpSplice{};
  sp.seq_delta = seq - f.bind.our_isn;
  sp.ts_delta = (f.bind.client_ts && so.has_ts) ? so.tsval - ts_clock() : 0;
  sp.our_wscale = client_scales ? kOurWscale : 0;
  sp.server_wscale = client_scales && so.wscale != 0xff ? so.wscale : 0;
  sp.client_window_shift = client_scales && so.wscale == 0xff ? f.bind.client_wscale : 0;

  f.bind.ts_both = f.bind.client_ts && so.has_ts;
  uint8_t opts[12];
  const size_t olen = f.bind.ts_both ? tcp_write_timestamps(opts, f.bind.client_tsval, so.tsval) : 0;
  uint32_t window = f.bind.client_window;
  if (sp.client_window_shift) window = std::min<uint32_t>(0xffff, window << sp.client_window_shift);
  const uint32_t server_ack = seq + 1;
  uint32_t next = f.bind.client_isn + 1;
  send_to_server(f, next, server_ack, kTcpAck, uint16_t(window), {opts, olen}, {});
  if (f.bind.proxy_protocol) {
    uint8_t hdr[28];
    const size_t n = proxy_v2_header(f, hdr);
    send_to_server(f, next, server_ack, kTcpAck | kTcpPsh, uint16_t(window), {opts, olen}, {hdr, n});
    next += uint32_t(n);
    sp.client_seq_delta = uint32_t(n);
  }
  // The client's first bytes, in segments the target accepts.
  const uint16_t mss = std::max<uint16_t>(536, std::min<uint16_t>(so.mss ? so.mss : 536, f.mss_clamp)) -
                       uint16_t(olen);
  const std::span<const uint8_t> data = f.bind.buffer != BindingBuffers::kNone ? bindings_.bytes(f.bind.buffer)
                                                                                : std::span<const uint8_t>{};
  for (size_t off = 0; off < data.size(); off += mss) {
    const size_t n = std::min<size_t>(mss, data.size() - off);
    const bool last = off + n == data.size();
    // The client's FIN (if it closed after its request) goes with its last bytes.
    const uint8_t flags = uint8_t(kTcpAck | (last ? kTcpPsh : 0) | (last && f.bind.fin ? kTcpFin : 0));
    send_to_server(f, next, server_ack, flags, uint16_t(window), {opts, olen}, data.subspan(off, n));
    next += uint32_t(n);
  }
  if (f.bind.fin) f.fin_seen |= 1;
  release_binding(f);
  f.binding = Binding::Spliced;
  f.deadline_ns = now_ns_ + dp_.cfg->flow.tcp_established_timeout_ns;
  stats.bindings_spliced.add();
}

// The client resends its first bytes: the target has not acknowledged them, so it may lack the PROXY header we
// sent before them (lost on the way). Send it again; a duplicate is harmless.
void Worker::resend_proxy_header(Flow& f, uint32_t server_ack, uint16_t window) {
  uint8_t hdr[28];
  const size_t n = proxy_v2_header(f, hdr);
  uint8_t opts[12];
  const size_t olen = f.bind.ts_both ? tcp_write_timestamps(opts, f.bind.client_tsval, 0) : 0;
  send_to_server(f, f.bind.client_isn + 1, server_ack, kTcpAck | kTcpPsh, window, {opts, olen}, {hdr, n});
}

// Gives back buffers (TCP bindings, held QUIC datagrams, hostnames) whose flow has gone (expired or evicted
// while waiting), a slice of each pool per call.
void Worker::sweep_bindings(uint32_t budget) {
  // Looks at `budget` buffers of `pool` from `cursor` on; `held(flow, b)`: the flow still uses buffer b.
  const auto sweep = [&](BindingBuffers& pool, uint32_t& cursor, auto held) {
    const uint32_t n = pool.count();
    for (uint32_t i = 0; i < budget && i < n; ++i) {
      const uint32_t b = cursor;
      cursor = cursor + 1 == n ? 0 : cursor + 1;
      if (!pool.used(b)) continue;
      const Flow* f = flows_.find_by_id(pool.owner(b));
      if (!f || f->deadline_ns <= now_ns_ || !held(*f, b)) pool.release(b);
    }
  };
  sweep(bindings_, binding_cursor_, [](const Flow& f, uint32_t b) {
    return f.bind.buffer == b && (f.binding == Binding::WaitHello || f.binding == Binding::WaitServer);
  });
  sweep(quic_hold_, quic_cursor_,
        [](const Flow& f, uint32_t b) { return f.bind.buffer == b && f.binding == Binding::WaitHello; });
  sweep(names_, name_cursor_, [](const Flow& f, uint32_t b) { return f.name_slot == b; });
}

}  // namespace dptun
