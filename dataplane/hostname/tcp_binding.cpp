// TCP entry points routed by hostname (delayed binding, docs/hostname-routing.md):
//   SYN                -> SYN-ACK whose ISN is a SYN cookie; no state
//   ACK (valid cookie) -> a flow in WaitHello
//   data               -> kept and acknowledged like a TCP receiver does (a buffer from the first byte on; bytes
//                         beyond a gap wait for it and are SACKed) until the TLS ClientHello / HTTP request head
//                         names a host; the rule decides: SYN to the target through the rule's tunnel (WaitServer),
//                         or dpgw answers itself (Refused: HTTP 400/431/502/503, TLS a RST)
//   target's SYN-ACK   -> the kept bytes to the target, and the two halves are spliced: from here on segments only
//                         get their numbers rewritten (TcpSplice) on the normal fast path. dpgw keeps the first bytes
//                         until the target has acknowledged them (the client will not send them again).
// Timers (our SYN and the first bytes sent again, answers sent again, steps that take too long) run from
// sweep(), which visits every held buffer once per kSweepPeriodNs (20 ms).
#include <rte_mbuf.h>

#include <cstring>

#include "common/bytes.hpp"
#include "dataplane/hostname/tcp_binding.hpp"
#include "dataplane/tables/flow_tracking.hpp"
#include "ingress/client_hello.hpp"
#include "ingress/http_host.hpp"
#include "packet/checksum.hpp"
#include "packet/headers.hpp"
#include "packet/tcp_segment.hpp"

namespace dptun {

namespace {

constexpr uint8_t kOurWscale = 7;                          // what we tell clients that scale windows
constexpr uint64_t kBindingTimeoutNs = 10'000'000'000ull;  // to name a host; to reach the target; for it to take
                                                           // the first bytes
constexpr uint64_t kLingerNs = 5'000'000'000ull;           // a refused HTTP client: to read dpgw's answer
constexpr uint64_t kRstLingerNs = 2'000'000'000ull;        // a reset client: its segments get the reset again
constexpr uint64_t kFlowGraceNs = 2'000'000'000ull;        // a flow outlives its step by this (the sweep acts first)
constexpr uint32_t kSynRetryMs = 500;                      // our SYN to the target again after 0.5, 1, 2, 2, ... s
constexpr uint32_t kMinRtoMs = 200, kMaxRtoMs = 2000;      // first bytes and answers sent again
constexpr uint32_t kParseStep = 1024;                      // an unfinished head is read again after this many bytes
// Every TSval a client sees from dpgw after the SYN-ACK is our clock + 256 ms: above the SYN-ACK's, whose low byte
// carries cookie bits (so it may be up to 255 ms ahead of the clock), and never lower than an earlier one (RFC
// 7323 PAWS: a client drops segments whose TSval went back).
constexpr uint32_t kTsAhead = 256;

inline bool seq_before(uint32_t a, uint32_t b) { return int32_t(a - b) < 0; }

// dpgw's own answers to HTTP clients (BindingState::answer); each fits one segment of the smallest MSS (536).
enum Answer : uint8_t { kRst = 0, kBadRequest, kTooLarge, kBadGateway, kUnavailable };
constexpr std::string_view kAnswers[] = {
    "",
    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 50\r\nConnection: close\r\n\r\n"
    "dptun: the request does not name its host clearly\n",
    "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\nContent-Length: 37\r\nConnection: "
    "close\r\n\r\n"
    "dptun: request head over 32768 bytes\n",
    "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 27\r\nConnection: close\r\n\r\n"
    "no route for this hostname\n",
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 50\r\nConnection: close\r\n\r\n"
    "dptun: too many connections being read, try again\n",
};
// Content-Length matches the body.
constexpr bool length_matches(std::string_view a) {
  const size_t h = a.find("Content-Length: "), e = a.find("\r\n\r\n");
  size_t n = 0;
  for (size_t i = h + 16; a[i] >= '0' && a[i] <= '9'; ++i) n = n * 10 + size_t(a[i] - '0');
  return n == a.size() - e - 4 && a.size() <= 500;
}
static_assert(length_matches(kAnswers[1]) && length_matches(kAnswers[2]) && length_matches(kAnswers[3]) &&
              length_matches(kAnswers[4]));

// The next sequence number dpgw expects from the client (its FIN counts once dpgw has taken it).
inline uint32_t client_rcv_nxt(const Flow& f) { return f.bind.next_client_seq + (f.bind.fin ? 1 : 0); }

// The window of a refused connection (whatever the client still sends is taken and dropped): 32 KiB.
inline uint16_t answer_window(const Flow& f) { return f.bind.client_wscale != 0xff ? (32768 >> kOurWscale) : 32768; }

}  // namespace

TcpBinding::TcpBinding(WorkerContext& ctx, Tx& tx, FlowTable& flows, FlowSetup& setup, NameSlots& names,
                       Encap& encap)
    : ctx_(ctx),
      tx_(tx),
      flows_(flows),
      setup_(setup),
      names_(names),
      encap_(encap),
      cookies_(ctx.dp.syn_cookie_key),
      bindings_(kBuffers, kBytes, kLargeBuffers, kLargeBytes),
      hello_scratch_(kMaxClientHello + 4) {}

uint32_t TcpBinding::ts_clock() const { return uint32_t(ctx_.now_ns / 1'000'000ull); }
uint32_t TcpBinding::ts_for_client() const { return ts_clock() + kTsAhead; }

uint16_t TcpBinding::advertised_mss() const {
  // What a client may send us: a full segment must still fit one underlay packet after encapsulation.
  uint16_t mtu = 0xffff;
  for (const PortInfo& p : ctx_.dp.ports) mtu = std::min(mtu, p.mtu);
  return inner_tcp_mss(mtu);
}

// A TCP segment from the entry point to the client, out the port the client's frame came in on, to the MAC it
// came from.
// A segment from the client's address to the flow's target, through the flow's session.
bool TcpBinding::send_to_server(Flow& f, uint32_t seq, uint32_t ack, uint8_t flags, uint16_t window,
                            std::span<const uint8_t> options, std::span<const uint8_t> payload) {
  TunnelSession* s = ctx_.dp.sessions.find(f.session_index);
  if (!s || s->visitor || s->tunnel != f.tunnel) return false;
  rte_mbuf* m = rte_pktmbuf_alloc(ctx_.dp.pool);
  if (!m) {
    ctx_.stats.drops[size_t(Drop::NoMbuf)].add();
    return false;
  }
  const size_t room = rte_pktmbuf_tailroom(m);
  const size_t n = tcp_write_packet({rte_pktmbuf_mtod(m, uint8_t*), room},
                                    {f.key.client.v4(), f.target_ip.v4(), f.key.client_port, f.target_port, seq, ack, flags,
                                     window, options, payload, ctx_.next_ip_id()});
  if (!n) {
    ctx_.drop(m, Drop::NoRoom);
    return false;
  }
  rte_pktmbuf_append(m, uint16_t(n));
  return encap_.inner(m, f, *s, (flags & kTcpSyn) ? kInnerFlowNew : 0, kIpProtoTcp);
}

void TcpBinding::release_binding(Flow& f) {
  names_.release(f);
  // Only a buffer this flow still owns (the sweep may have given it to another flow meanwhile).
  const uint32_t b = f.bind.buffer;
  if (bindings_.used(b) && bindings_.owner(b) == flows_.id_of(f)) bindings_.release(b);
  f.bind.buffer = BindingBuffers::kNone;
  f.splice.hold_acks = false;
}

// The client is gone (RST, or it starts over): forget the connection; a target we had already called gets a RST.
void TcpBinding::abandon_binding(Flow& f) {
  if (f.binding == Binding::WaitServer) send_to_server(f, f.bind.client_isn + 1, 0, kTcpRst, 0, {}, {});
  release_binding(f);
  flows_.erase(f);
}

// A RST to the client, at the sequence number it expects from us.
void TcpBinding::send_client_rst(uint8_t port, const uint8_t* client_mac, const Flow& f) {
  uint32_t seq = f.bind.our_isn + 1;
  if (f.binding == Binding::Spliced && bindings_.used(f.bind.buffer)) seq = bindings_.meta(f.bind.buffer).client_rcv;
  tx_.send_tcp_segment(port, client_mac,
                 {f.key.local.v4(), f.key.client.v4(), f.key.local_port, f.key.client_port, seq, client_rcv_nxt(f),
                  kTcpAck | kTcpRst, 0, {}, {}, ctx_.next_ip_id()});
}

// What dpgw has of the client's bytes: an ACK for all it keeps in order (its FIN included), SACK blocks for
// pieces beyond a gap, and a window up to the end of the largest buffer (it never moves back).
void TcpBinding::send_client_ack(uint8_t port, const uint8_t* client_mac, const Flow& f) {
  const BindingState& b = f.bind;
  uint8_t opts[40];
  size_t n = b.client_ts ? tcp_write_timestamps(opts, ts_for_client(), b.client_tsval) : 0;
  if (b.client_sack && b.n_ahead) {
    const size_t blocks = std::min<size_t>(b.n_ahead, (40 - n - 4) / 8);
    opts[n++] = 1;
    opts[n++] = 1;
    opts[n++] = 5;
    opts[n++] = uint8_t(2 + 8 * blocks);
    for (size_t k = 0; k < blocks; ++k) {
      store_be32(opts + n, b.client_isn + 1 + b.ahead_start[k]);
      store_be32(opts + n + 4, b.client_isn + 1 + b.ahead_end[k]);
      n += 8;
    }
  }
  const uint32_t have = b.next_client_seq - (b.client_isn + 1);
  const uint32_t room = have < bindings_.large_size() ? bindings_.large_size() - have : 0;
  // Rounded up in our scale: the right edge stays where the SYN-ACK put it (a few bytes past it are not kept).
  const uint32_t window = b.client_wscale != 0xff ? (room + (1u << kOurWscale) - 1) >> kOurWscale
                                                  : std::min<uint32_t>(room, 0xffff);
  tx_.send_tcp_segment(port, client_mac,
                 {f.key.local.v4(), f.key.client.v4(), f.key.local_port, f.key.client_port, b.our_isn + 1,
                  client_rcv_nxt(f), kTcpAck, uint16_t(window), {opts, n}, {}, ctx_.next_ip_id()});
}

// dpgw's answer to an HTTP client it refused, with our FIN: 400, 431, 502 or 503.
void TcpBinding::send_answer(uint8_t port, const uint8_t* client_mac, const Flow& f) {
  const std::string_view text = kAnswers[f.bind.answer];
  uint8_t opts[12];
  const size_t olen = f.bind.client_ts ? tcp_write_timestamps(opts, ts_for_client(), f.bind.client_tsval) : 0;
  tx_.send_tcp_segment(port, client_mac,
                 {f.key.local.v4(), f.key.client.v4(), f.key.local_port, f.key.client_port, f.bind.our_isn + 1,
                  client_rcv_nxt(f), kTcpAck | kTcpPsh | kTcpFin, answer_window(f), {opts, olen},
                  {reinterpret_cast<const uint8_t*>(text.data()), text.size()}, ctx_.next_ip_id()});
}

// dpgw answers the client itself: TLS gets a RST, plain HTTP `answer` (and FIN). The connection lingers (Refused)
// so that a lost answer is sent again and the client's further bytes are acknowledged and dropped, not reset.
void TcpBinding::refuse_binding(uint8_t port, const uint8_t* client_mac, Flow& f, Drop why, uint8_t answer) {
  ctx_.stats.drops[size_t(why)].add();
  ctx_.stats.bindings_refused.add();
  names_.release(f);
  f.binding = Binding::Refused;
  // Only an HTTP client reads an answer of ours; any other is reset.
  if (entry_route_kind(EntryRoute(f.bind.route)).source != NameSource::HttpRequestHead || answer == kRst) {
    f.bind.answer = kRst;
    send_client_rst(port, client_mac, f);
    release_binding(f);
    f.bind.give_up_ns = f.deadline_ns = ctx_.now_ns + kRstLingerNs;
    return;
  }
  f.bind.answer = answer;
  // A small buffer (not a large one: they are few) puts the connection on the sweep's rounds, whose timer sends
  // the answer again until the client has it. Without one it is sent once.
  const uint32_t had = f.bind.buffer;
  if (had == BindingBuffers::kNone || (had & HeadBuffers<BindingProgress>::kLarge)) {
    const uint32_t h = bindings_.acquire(flows_.id_of(f));
    if (h != BindingBuffers::kNone) {
      bindings_.meta(h).since_ns = had != BindingBuffers::kNone ? bindings_.meta(had).since_ns : ctx_.now_ns;
      bindings_.release(had);
      f.bind.buffer = h;
    }
  }
  if (f.bind.buffer != BindingBuffers::kNone) {
    BindingProgress& p = bindings_.meta(f.bind.buffer);
    p.answered = false;
    p.resends = 0;
    p.rto_ms = kMinRtoMs;
    p.timer_ns = ctx_.now_ns + uint64_t(p.rto_ms) * 1'000'000ull;
  }
  f.bind.give_up_ns = ctx_.now_ns + kLingerNs;
  f.deadline_ns = f.bind.give_up_ns + kFlowGraceNs;
  send_answer(port, client_mac, f);
}

// A refused connection's segments: acknowledged and dropped (a lingering close) until the client has dpgw's answer
// and has closed its side; a reset one gets the RST again.
void TcpBinding::linger(uint8_t port, const uint8_t* client_mac, Flow& f, uint32_t seq, uint32_t ack, uint8_t flags,
                    uint32_t len) {
  BindingState& b = f.bind;
  if (flags & kTcpRst) {
    if (uint32_t(seq - client_rcv_nxt(f)) < 0x10000) {  // in the window: the client is gone
      release_binding(f);
      flows_.erase(f);
    }
    return;
  }
  if (b.answer == kRst) {
    send_client_rst(port, client_mac, f);
    return;
  }
  BindingProgress* p = bindings_.used(b.buffer) ? &bindings_.meta(b.buffer) : nullptr;
  const uint32_t answer_end = b.our_isn + 1 + uint32_t(kAnswers[b.answer].size()) + 1;  // our FIN included
  if ((flags & kTcpAck) && !seq_before(ack, answer_end) && p) p->answered = true;
  if (len && !b.fin && !seq_before(b.next_client_seq, seq) && seq_before(b.next_client_seq, seq + len))
    b.next_client_seq = seq + len;  // taken, and thrown away
  if ((flags & kTcpFin) && !b.fin && seq + len == b.next_client_seq) b.fin = true;
  if (len || (flags & kTcpFin)) {
    if (p && !p->answered) {
      send_answer(port, client_mac, f);  // (with the new acknowledgment)
    } else {
      uint8_t opts[12];
      const size_t olen = b.client_ts ? tcp_write_timestamps(opts, ts_for_client(), b.client_tsval) : 0;
      tx_.send_tcp_segment(port, client_mac,
                     {f.key.local.v4(), f.key.client.v4(), f.key.local_port, f.key.client_port, answer_end,
                      client_rcv_nxt(f), kTcpAck, answer_window(f), {opts, olen}, {}, ctx_.next_ip_id()});
    }
  }
  if (b.fin && (!p || p->answered)) {  // both sides closed: done
    release_binding(f);
    flows_.erase(f);
  }
}

// All buffers of a tier taken: the connection that has been reading its first bytes longest gives way (a real
// client sends its ClientHello or request right after the handshake; a slow one that trickles bytes is what
// fills the pool). It gets a RST. A refused connection that lingers gives way before any, quietly. Connections
// waiting for their target, or whose first bytes the target has not acknowledged yet, keep their buffers. False
// when none can give way.
bool TcpBinding::evict_oldest_binding(const Flow& newcomer, bool large) {
  Flow* oldest = nullptr;
  bool oldest_refused = false;
  uint64_t since = 0;
  for (uint32_t i = 0; i < bindings_.count(); ++i) {
    const uint32_t h = bindings_.handle_at(i);
    if (bool(h & HeadBuffers<BindingProgress>::kLarge) != large || !bindings_.used(h)) continue;
    Flow* f = flows_.find_by_id(bindings_.owner(h));
    if (!f || f->bind.buffer != h || f->deadline_ns <= ctx_.now_ns) {  // left behind by a flow that has gone
      bindings_.release(h);
      return true;
    }
    const bool refused = f->binding == Binding::Refused;
    if (f == &newcomer || (!refused && f->binding != Binding::WaitHello)) continue;
    const uint64_t t = bindings_.meta(h).since_ns;
    if (!oldest || (refused && !oldest_refused) || (refused == oldest_refused && t < since)) {
      oldest = f;
      oldest_refused = refused;
      since = t;
    }
  }
  if (!oldest) return false;
  if (!oldest_refused) {
    ctx_.stats.bindings_evicted.add();
    uint8_t port;
    MacAddr mac;
    Drop why;
    if (tx_.resolve_next_hop(oldest->key.client, port, mac, why)) send_client_rst(port, mac.data(), *oldest);
  }
  abandon_binding(*oldest);
  return true;
}

// The connection's bytes outgrow its small buffer: a large one (a full pool gives up its oldest reader).
bool TcpBinding::grow_binding(Flow& f) {
  uint32_t h = bindings_.grow(f.bind.buffer);
  // (Only for a head: bytes after it, while the target is called, are not worth another client's connection.)
  if (h == BindingBuffers::kNone && f.binding == Binding::WaitHello && evict_oldest_binding(f, true))
    h = bindings_.grow(f.bind.buffer);
  if (h == BindingBuffers::kNone) return false;
  f.bind.buffer = h;
  ctx_.stats.bindings_grown.add();
  return true;
}

// Keeps what is new in a client's segment: in order it extends what we have, ahead of a gap it waits for it (up
// to 4 pieces). Nothing past the end of a large buffer is kept (a head that long is refused anyway). False when
// bytes could not be kept for want of a large buffer.
bool TcpBinding::keep_client_bytes(Flow& f, uint32_t seq, std::span<const uint8_t> payload, bool& grew) {
  BindingState& b = f.bind;
  const uint32_t base = b.client_isn + 1;
  const uint32_t have = b.next_client_seq - base;  // contiguous bytes so far
  const uint32_t limit = bindings_.large_size();
  const uint32_t off = seq - base;
  if (off >= limit) return true;  // before the first byte (a duplicate) or beyond any buffer
  const uint32_t start = std::max(off, have);
  uint32_t end = std::min<uint32_t>(off + uint32_t(payload.size()), limit);
  if (end <= start) return true;  // nothing new
  bool kept_all = true;
  if (end > bindings_.capacity(b.buffer) && !grow_binding(f)) {
    kept_all = false;
    end = bindings_.capacity(b.buffer);
    if (end <= start) return false;
  }
  bindings_.write_at(b.buffer, start, payload.subspan(start - off, end - start));
  if (start == have) {
    uint32_t e = end;
    for (bool joined = true; joined;) {  // pieces that were waiting for this gap join in
      joined = false;
      for (uint8_t k = 0; k < b.n_ahead; ++k)
        if (b.ahead_start[k] <= e) {
          e = std::max<uint32_t>(e, b.ahead_end[k]);
          b.ahead_start[k] = b.ahead_start[--b.n_ahead];
          b.ahead_end[k] = b.ahead_end[b.n_ahead];
          joined = true;
          break;
        }
    }
    bindings_.extend_to(b.buffer, e);
    b.next_client_seq = base + e;
    grew = true;
  } else if (b.n_ahead < 4) {
    b.ahead_start[b.n_ahead] = uint16_t(start);
    b.ahead_end[b.n_ahead++] = uint16_t(end);
  }
  return kept_all;
}

void TcpBinding::send_syn_ack(uint8_t port, const uint8_t* client_mac, const PacketInfo& pi, const TcpHandshakeOptions& c,
                          uint32_t client_isn) {
  const TcpFourTuple tuple{Ipv4{pi.src_ip}, Ipv4{pi.dst_ip}, pi.src_port, pi.dst_port};
  const SynOptions so{c.mss ? c.mss : uint16_t(536), c.wscale, c.sack_ok, c.has_ts};
  const uint32_t cookie = cookies_.make(tuple, client_isn, so, ctx_.now_ns / 1'000'000'000ull);
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
  // The window: as much as the largest buffer for first bytes holds (later ACKs keep this right edge).
  tx_.send_tcp_segment(port, client_mac,
                 {pi.dst_ip, pi.src_ip, pi.dst_port, pi.src_port, cookie, client_isn + 1, kTcpSyn | kTcpAck,
                  uint16_t(bindings_.large_size()), {opts, olen}, {}, ctx_.next_ip_id()});
  ctx_.stats.syn_cookies_sent.add();
}

void TcpBinding::input(uint8_t port, rte_mbuf* m, const PacketInfo& pi, const EntryPoint& ep, Flow* f) {
  const uint8_t* frame = rte_pktmbuf_mtod(m, const uint8_t*);
  const uint8_t* tcp = frame + pi.l4_offset;
  // dpgw ends these connections itself (their bytes go on in segments it builds): check what the client sent.
  if (csum_fold(csum_add({tcp, pi.l4_len}, ipv4_pseudo_sum(pi.src_ip, pi.dst_ip, kIpProtoTcp, pi.l4_len))) != 0xffff) {
    ctx_.drop(m, Drop::BadChecksum);
    return;
  }
  uint8_t client_mac[6];
  std::memcpy(client_mac, frame + 6, 6);
  const uint32_t seq = load_be32(tcp + 4), ack = load_be32(tcp + 8);
  const uint8_t flags = pi.tcp_flags;
  const TcpHandshakeOptions opt = tcp_read_options(tcp, pi.tcp_header_len);

  if (f && (flags & kTcpSyn) && f->binding != Binding::Spliced && seq == f->bind.client_isn) {
    ctx_.drop(m, Drop::TcpNoFlow);  // a duplicate of the SYN that started this connection
    return;
  }
  if (f && (f->binding == Binding::None || f->binding == Binding::Spliced || f->deadline_ns <= ctx_.now_ns ||
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
      ctx_.drop(m, Drop::TcpNoFlow);
      return;
    }
    // The handshake's last ACK (or the first data segment, if that ACK was lost): is the cookie ours? With
    // timestamps, 8 more bits of it come back in TSecr.
    const TcpFourTuple tuple{Ipv4{pi.src_ip}, Ipv4{pi.dst_ip}, pi.src_port, pi.dst_port};
    const auto so = cookies_.check(tuple, seq - 1, ack - 1, ctx_.now_ns / 1'000'000'000ull);
    if (!so || (so->timestamps && (!opt.has_ts || uint8_t(opt.tsecr) != cookies_.timestamp_bits(tuple, seq - 1, ack - 1)))) {
      ctx_.drop(m, Drop::BadCookie);
      return;
    }
    const FlowKey key = FlowKey::v4(pi.src_ip, pi.dst_ip, pi.src_port, pi.dst_port, kIpProtoTcp, 0);
    const uint32_t h = FlowTable::hash(key);
    f = setup_.new_flow(key, h);
    if (!f) {
      ctx_.drop(m, Drop::FlowTableFull);
      return;
    }
    f->hash = h;
    f->binding = Binding::WaitHello;
    f->bind = BindingState{};
    f->splice = TcpSplice{};
    f->bind.client_isn = seq - 1;
    f->bind.our_isn = ack - 1;
    f->bind.next_client_seq = seq;
    f->bind.client_tsval = opt.tsval;
    f->bind.client_mss = so->mss;
    f->bind.client_wscale = so->wscale;
    f->bind.client_sack = so->sack;
    f->bind.client_ts = so->timestamps;
    f->bind.route = uint8_t(ep.route);
    f->tcp_state = TcpState::Established;
    f->bind.give_up_ns = ctx_.now_ns + kBindingTimeoutNs;
    f->deadline_ns = f->bind.give_up_ns + kFlowGraceNs;
    f->last_seen_ns = ctx_.now_ns;
    ctx_.stats.bindings_started.add();
  }
  Flow& fl = *f;
  const uint32_t len = uint32_t(pi.l4_len - pi.tcp_header_len);
  fl.last_seen_ns = ctx_.now_ns;
  if (fl.binding == Binding::Refused) {
    linger(port, client_mac, fl, seq, ack, flags, len);
    rte_pktmbuf_free(m);
    return;
  }
  if (flags & kTcpRst) {  // the client gave up (a RST must carry the next sequence number: RFC 5961)
    if (seq == client_rcv_nxt(fl)) abandon_binding(fl);
    rte_pktmbuf_free(m);
    return;
  }
  // The newest TSval (the target sees them: they never move back).
  if (opt.has_ts && int32_t(opt.tsval - fl.bind.client_tsval) > 0) fl.bind.client_tsval = opt.tsval;
  fl.bind.client_window = load_be16(tcp + 14);

  bool grew = false;
  if (len && fl.bind.buffer == BindingBuffers::kNone) {  // the first bytes: now the connection gets a buffer
    fl.bind.buffer = bindings_.acquire(flows_.id_of(fl));
    if (fl.bind.buffer == BindingBuffers::kNone && evict_oldest_binding(fl, false))
      fl.bind.buffer = bindings_.acquire(flows_.id_of(fl));
    if (fl.bind.buffer == BindingBuffers::kNone) {
      rte_pktmbuf_free(m);
      ctx_.stats.drops[size_t(Drop::BindingFull)].add();
      ctx_.stats.bindings_refused.add();
      send_client_rst(port, client_mac, fl);
      abandon_binding(fl);
      return;
    }
    bindings_.meta(fl.bind.buffer).since_ns = ctx_.now_ns;
  }
  const bool kept = !len || keep_client_bytes(fl, seq, {tcp + pi.tcp_header_len, len}, grew);
  if ((flags & kTcpFin) && !fl.bind.fin && seq + len == fl.bind.next_client_seq) {
    fl.bind.fin = true;  // all its bytes, then closed
    grew = true;
  }
  rte_pktmbuf_free(m);
  if (!kept && fl.binding == Binding::WaitHello) {  // its head needs a large buffer and none can be had
    refuse_binding(port, client_mac, fl, Drop::BindingFull, kUnavailable);
    return;
  }
  if (fl.binding == Binding::WaitHello && grew) read_head(port, client_mac, fl, grew);
  // Acknowledge what we keep (also what we had: a retransmission means our ACK was lost).
  if ((fl.binding == Binding::WaitHello || fl.binding == Binding::WaitServer) && (len || (flags & kTcpFin)))
    send_client_ack(port, client_mac, fl);
}

// Enough to name a host? The head is read whole when it may be complete (its end has come, the client closed,
// or it filled what dpgw reads), right at the start (to refuse what is not TLS or HTTP early), and otherwise
// every kParseStep bytes: a head that arrives a byte at a time costs O(its length), not O(length^2).
void TcpBinding::read_head(uint8_t port, const uint8_t* client_mac, Flow& f, bool grew) {
  if (f.bind.buffer == BindingBuffers::kNone) {  // closed without sending a byte
    refuse_binding(port, client_mac, f, Drop::NoHostname, kBadRequest);
    return;
  }
  const std::span<const uint8_t> head = bindings_.bytes(f.bind.buffer);
  BindingProgress& p = bindings_.meta(f.bind.buffer);
  bool tls = false;
  switch (entry_route_kind(EntryRoute(f.bind.route)).source) {
    case NameSource::TlsClientHello: tls = true; break;
    case NameSource::HttpRequestHead: break;
    case NameSource::None:
    case NameSource::QuicInitial: return refuse_binding(port, client_mac, f, Drop::NoHostname, kRst);  // not TCP's
  }
  const bool complete = tls ? tls_hello_complete(head, p.scan, p.scan2) : http_head_complete(head, p.scan);
  const bool full = head.size() >= (tls ? bindings_.large_size() : kMaxRequestHead);
  if (!grew || !(complete || full || f.bind.fin || head.size() <= 24 || head.size() - p.parsed >= kParseStep)) return;
  p.parsed = uint32_t(head.size());
  if (tls) {
    const SniResult r = sni_from_tls_stream(head, hello_scratch_);
    if (r.status == SniStatus::Found) return route_binding(port, client_mac, f, r.name);
    if (r.status == SniStatus::NeedMore && !f.bind.fin && !full) return;
    const bool too_big = r.status == SniStatus::TooBig || (r.status == SniStatus::NeedMore && full);
    refuse_binding(port, client_mac, f, too_big ? Drop::HeadTooBig : Drop::NoHostname, kRst);
    return;
  }
  const HostResult r = host_from_http_request(head);
  switch (r.status) {
    case HostStatus::Found: return route_binding(port, client_mac, f, r.host);
    case HostStatus::NeedMore:
      if (!f.bind.fin && !full) return;
      if (full) return refuse_binding(port, client_mac, f, Drop::HeadTooBig, kTooLarge);
      return refuse_binding(port, client_mac, f, Drop::NoHostname, kBadRequest);
    case HostStatus::TooBig: return refuse_binding(port, client_mac, f, Drop::HeadTooBig, kTooLarge);
    case HostStatus::Ambiguous: return refuse_binding(port, client_mac, f, Drop::AmbiguousHost, kBadRequest);
    case HostStatus::NoHost:
    case HostStatus::NotHttp: return refuse_binding(port, client_mac, f, Drop::NoHostname, kBadRequest);
  }
}

// The name is known: the rule decides. Public entry points never use private rules; a rule needs a target (or
// leaves it to the agent) and a live session of its tunnel.
void TcpBinding::route_binding(uint8_t port, const uint8_t* client_mac, Flow& fl, std::string_view name) {
  FlowPlan plan;
  Drop why = Drop::NoRule;
  TunnelSession* s = nullptr;
  if (setup_.plan_by_rule(name, fl.key.local_port, nullptr, plan, why) && !(s = setup_.pick_session(*plan.pool, fl.hash)))
    why = Drop::NoSession;
  if (!s) return refuse_binding(port, client_mac, fl, why, kBadGateway);
  if (!setup_.attach_flow(fl, plan, *s, why)) return refuse_binding(port, client_mac, fl, why, kUnavailable);
  fl.bind.proxy_protocol = plan.proxy_protocol;
  fl.binding = Binding::WaitServer;
  fl.bind.give_up_ns = ctx_.now_ns + kBindingTimeoutNs;
  fl.deadline_ns = fl.bind.give_up_ns + kFlowGraceNs;
  BindingProgress& p = bindings_.meta(fl.bind.buffer);
  p.syn_sent_ns = ctx_.now_ns;
  p.resends = 0;
  p.timer_ns = ctx_.now_ns + uint64_t(kSynRetryMs) * 1'000'000ull;
  send_server_syn(fl);
}

// Opens the server side with the client's own ISN and options (so the client's sequence numbers need no
// rewriting): MSS (at most what the tunnel carries), SACK, timestamps (the client's newest TSval), window scale.
void TcpBinding::send_server_syn(Flow& f) {
  TcpHandshakeOptions o;
  o.mss = std::min(f.bind.client_mss, f.mss_clamp);
  o.sack_ok = f.bind.client_sack;
  o.has_ts = f.bind.client_ts;
  o.tsval = f.bind.client_tsval;
  o.wscale = f.bind.client_wscale;
  uint8_t opts[20];
  const size_t olen = tcp_write_handshake_options(opts, o);
  send_to_server(f, f.bind.client_isn, 0, kTcpSyn, 65535, {opts, olen}, {});
}

// PROXY protocol v2 (haproxy's spec): signature, PROXY command over TCP/IPv4, then the client's and the entry
// point's addresses and ports. 28 bytes.
size_t TcpBinding::proxy_v2_header(const Flow& f, uint8_t* out) {
  static const uint8_t sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
  std::memcpy(out, sig, 12);
  out[12] = 0x21;  // version 2, PROXY
  out[13] = 0x11;  // AF_INET, STREAM
  store_be16(out + 14, 12);
  store_be32(out + 16, f.key.client.v4());
  store_be32(out + 20, f.key.local.v4());
  store_be16(out + 24, f.key.client_port);
  store_be16(out + 26, f.key.local_port);
  return 28;
}

// The target answered our SYN: the client's first bytes go to it, and the halves are spliced.
void TcpBinding::splice_from_server(rte_mbuf* m, Flow& f, const PacketInfo& pi) {
  const uint8_t* tcp = rte_pktmbuf_mtod(m, const uint8_t*) + pi.l4_offset;
  const uint32_t seq = load_be32(tcp + 4), ack = load_be32(tcp + 8);
  if (pi.tcp_flags & kTcpRst) {  // the target refused: so do we (HTTP clients get a 502)
    rte_pktmbuf_free(m);
    uint8_t out_port;
    MacAddr mac;
    Drop why;
    if (tx_.resolve_next_hop(f.key.client, out_port, mac, why)) {
      refuse_binding(out_port, mac.data(), f, Drop::TargetRefused, kBadGateway);
    } else {
      ctx_.stats.drops[size_t(Drop::TargetRefused)].add();
      release_binding(f);
      flows_.erase(f);
    }
    return;
  }
  if ((pi.tcp_flags & (kTcpSyn | kTcpAck)) != (kTcpSyn | kTcpAck) || ack != f.bind.client_isn + 1 ||
      !bindings_.used(f.bind.buffer)) {
    ctx_.drop(m, Drop::FlowMismatch);
    return;
  }
  const TcpHandshakeOptions so = tcp_read_options(tcp, pi.tcp_header_len);
  const uint16_t syn_ack_window = load_be16(tcp + 14);
  rte_pktmbuf_free(m);
  const bool client_scales = f.bind.client_wscale != 0xff;
  TcpSplice& sp = f.splice;
  sp = TcpSplice{};
  sp.seq_delta = seq - f.bind.our_isn;
  // The target's clock onto the one the client has seen from us so far (ours + kTsAhead), so it goes on rising.
  sp.ts_delta = (f.bind.client_ts && so.has_ts) ? so.tsval - ts_for_client() : 0;
  sp.our_wscale = client_scales ? kOurWscale : 0;
  sp.server_wscale = client_scales && so.wscale != 0xff ? so.wscale : 0;
  sp.client_window_shift = client_scales && so.wscale == 0xff ? f.bind.client_wscale : 0;
  sp.client_seq_delta = f.bind.proxy_protocol ? 28 : 0;  // a PROXY protocol header goes first
  // dpgw acknowledged the client's first bytes itself: the client never sees less acknowledged.
  sp.hold_acks = true;
  sp.ack_floor = client_rcv_nxt(f);
  f.bind.ts_both = f.bind.client_ts && so.has_ts;

  BindingProgress& p = bindings_.meta(f.bind.buffer);
  const uint32_t rtt_ms = uint32_t((ctx_.now_ns - p.syn_sent_ns) / 1'000'000ull);
  p.una = p.next = 0;
  p.end = sp.client_seq_delta + uint32_t(bindings_.bytes(f.bind.buffer).size()) + (f.bind.fin ? 1 : 0);
  p.server_window = syn_ack_window;  // (never scaled in a SYN-ACK)
  p.server_ack = seq + 1;
  p.server_tsval = so.tsval;
  p.client_rcv = f.bind.our_isn + 1;
  const uint16_t olen = f.bind.ts_both ? 12 : 0;
  p.mss = uint16_t(std::max<uint16_t>(536, std::min<uint16_t>(so.mss ? so.mss : 536, f.mss_clamp)) - olen);
  p.resends = 0;
  p.dup_acks = 0;
  p.rto_ms = std::clamp<uint32_t>(3 * rtt_ms, kMinRtoMs, kMaxRtoMs);
  p.timer_ns = ctx_.now_ns + uint64_t(p.rto_ms) * 1'000'000ull;

  if (f.bind.fin) f.fin_seen |= 1;
  f.binding = Binding::Spliced;
  f.deadline_ns = ctx_.now_ns + ctx_.dp.cfg->flow.tcp_established_timeout_ns;
  f.bind.give_up_ns = ctx_.now_ns + kBindingTimeoutNs;
  ctx_.stats.bindings_spliced.add();
  send_held(f, false);
}

// Sends the first bytes the target has not acknowledged, from `next` on, as far as its window goes (a probe sends
// one segment whatever the window): the PROXY header, the client's bytes, its FIN. Our segments carry the
// client's newest TSval, window and acknowledgment.
void TcpBinding::send_held(Flow& f, bool probe) {
  BindingProgress& p = bindings_.meta(f.bind.buffer);
  const std::span<const uint8_t> data = bindings_.bytes(f.bind.buffer);
  const uint32_t header = f.splice.client_seq_delta;
  const uint32_t data_end = header + uint32_t(data.size());
  uint8_t opts[12];
  const size_t olen = f.bind.ts_both ? tcp_write_timestamps(opts, f.bind.client_tsval, p.server_tsval) : 0;
  uint32_t window = f.bind.client_window;
  if (f.splice.client_window_shift) window = std::min<uint32_t>(0xffff, window << f.splice.client_window_shift);
  uint8_t hdr[28];
  if (header) proxy_v2_header(f, hdr);
  const uint32_t right = p.una + p.server_window;
  for (bool first = true; p.next < p.end && (p.next < right || (probe && first)); first = false) {
    std::span<const uint8_t> payload;
    if (p.next < header) {
      payload = std::span<const uint8_t>(hdr + p.next, header - p.next);
    } else if (p.next < data_end) {
      uint32_t n = std::min<uint32_t>(p.mss, data_end - p.next);
      if (p.next + n > right && !(probe && first)) n = right - p.next;
      payload = data.subspan(p.next - header, n);
    }
    const uint32_t seg_end = p.next + uint32_t(payload.size());
    const bool fin = f.bind.fin && seg_end == data_end;
    const uint8_t flags = uint8_t(kTcpAck | (seg_end == data_end ? kTcpPsh : 0) | (fin ? kTcpFin : 0));
    send_to_server(f, f.bind.client_isn + 1 + p.next, p.server_ack, flags, uint16_t(window), {opts, olen}, payload);
    p.next = seg_end + (fin ? 1 : 0);
  }
}

// A segment from the target while dpgw still holds first bytes it has not acknowledged: their progress (the
// acknowledgment, the window, its TSval), what the client has been sent; sent again after 3 duplicate ACKs.
// False for a bare ACK that only acknowledges part of what dpgw already acknowledged to the client (it tells the
// client nothing: dropped).
bool TcpBinding::held_from_server(Flow& f, const uint8_t* tcp, const PacketInfo& pi) {
  const uint8_t flags = pi.tcp_flags;
  if (flags & kTcpRst) {
    release_binding(f);
    return true;
  }
  BindingProgress& p = bindings_.meta(f.bind.buffer);
  const uint32_t len = uint32_t(pi.l4_len - pi.tcp_header_len);
  const TcpHandshakeOptions o = tcp_read_options(tcp, pi.tcp_header_len);
  if (o.has_ts) p.server_tsval = o.tsval;
  const uint32_t seg_end = load_be32(tcp + 4) - f.splice.seq_delta + len + ((flags & kTcpFin) ? 1 : 0);
  if (seq_before(p.client_rcv, seg_end)) p.client_rcv = seg_end;  // (what the client is sent, in its numbers)
  if (!(flags & kTcpAck)) return true;
  const uint32_t ack = load_be32(tcp + 8);
  const uint32_t off = ack - (f.bind.client_isn + 1);
  p.server_window = uint32_t(load_be16(tcp + 14)) << f.splice.server_wscale;
  if (int32_t(off - p.una) > 0) {  // progress
    p.una = int32_t(off - p.end) >= 0 ? p.end : off;
    if (int32_t(p.next - p.una) < 0) p.next = p.una;
    p.dup_acks = 0;
    p.resends = 0;
    p.timer_ns = ctx_.now_ns + uint64_t(p.rto_ms) * 1'000'000ull;
    if (p.una == p.end) {  // the target has all of them: the connection is an ordinary spliced one now
      release_binding(f);
      return true;
    }
  } else if (off == p.una && !len && !(flags & (kTcpSyn | kTcpFin)) && ++p.dup_acks == 3) {
    p.next = p.una;  // a segment was lost: again from there
    ctx_.stats.binding_retransmits.add();
    send_held(f, true);
  }
  send_held(f, false);  // the window may have opened
  return len || (flags & (kTcpSyn | kTcpFin)) || !seq_before(ack - f.splice.client_seq_delta, f.splice.ack_floor);
}

// A segment from the client while its first bytes are still on their way to the target: dpgw's segments to the
// target carry what the client's do (newest TSval, window, acknowledgment). A RST ends the holding.
void TcpBinding::held_from_client(Flow& f, const uint8_t* tcp, const PacketInfo& pi) {
  if (pi.tcp_flags & kTcpRst) {
    release_binding(f);
    return;
  }
  const TcpHandshakeOptions o = tcp_read_options(tcp, pi.tcp_header_len);
  if (o.has_ts && int32_t(o.tsval - f.bind.client_tsval) > 0) f.bind.client_tsval = o.tsval;
  f.bind.client_window = load_be16(tcp + 14);
  if (pi.tcp_flags & kTcpAck) bindings_.meta(f.bind.buffer).server_ack = load_be32(tcp + 8) + f.splice.seq_delta;
}

// A step that took too long: the client gets a RST (and the target, if it was called); counted for `why`.
// An agent's ICMP error about a hostname connection's target (tunnel_input.cpp icmp_from_agent). While dpgw waits
// for the target's SYN-ACK, the target cannot be reached: the client hears so at once, as from a proxy (HTTP a 502,
// TLS a RST), as if the target had refused, instead of after target_timeout. Spliced connections get the error
// itself.
void TcpBinding::unreachable(Flow& f, rte_mbuf* m, bool hard) {
  if (!hard) {  // fragmentation needed for our SYN: nothing the client can do about it
    ctx_.drop(m, Drop::TargetUnreachable);
    return;
  }
  rte_pktmbuf_free(m);
  uint8_t out_port;
  MacAddr mac;
  Drop why;
  if (tx_.resolve_next_hop(f.key.client, out_port, mac, why)) {
    refuse_binding(out_port, mac.data(), f, Drop::TargetUnreachable, kBadGateway);
  } else {
    ctx_.stats.drops[size_t(Drop::TargetUnreachable)].add();
    release_binding(f);
    flows_.erase(f);
  }
}

void TcpBinding::give_up_binding(Flow& f, Drop why) {
  ctx_.stats.drops[size_t(why)].add();
  ctx_.stats.bindings_refused.add();
  uint8_t port;
  MacAddr mac;
  Drop no_hop;
  if (tx_.resolve_next_hop(f.key.client, port, mac, no_hop)) send_client_rst(port, mac.data(), f);
  if (f.binding == Binding::Spliced) {
    const BindingProgress& p = bindings_.meta(f.bind.buffer);
    send_to_server(f, f.bind.client_isn + 1 + p.una, p.server_ack, kTcpAck | kTcpRst, 0, {}, {});
  }
  abandon_binding(f);  // (a RST to the target in WaitServer)
}

// The timers of a connection dpgw holds first bytes of (called by the sweep).
void TcpBinding::binding_timer(Flow& f) {
  BindingProgress& p = bindings_.meta(f.bind.buffer);
  const uint64_t ms = 1'000'000ull;
  switch (f.binding) {
    case Binding::WaitHello:
      if (ctx_.now_ns >= f.bind.give_up_ns) give_up_binding(f, Drop::HostnameTimeout);
      return;
    case Binding::WaitServer:
      if (ctx_.now_ns >= f.bind.give_up_ns) return give_up_binding(f, Drop::TargetTimeout);
      if (ctx_.now_ns >= p.timer_ns) {  // no SYN-ACK yet: our SYN (or its answer) may have been lost
        send_server_syn(f);
        ctx_.stats.binding_retransmits.add();
        ++p.resends;
        p.timer_ns = ctx_.now_ns + (uint64_t(kSynRetryMs) << std::min<uint8_t>(p.resends, 2)) * ms;
      }
      return;
    case Binding::Spliced:
      if (ctx_.now_ns >= f.bind.give_up_ns) return give_up_binding(f, Drop::TargetTimeout);
      if (ctx_.now_ns >= p.timer_ns) {  // the target has not acknowledged all the first bytes: again from the oldest
        p.next = p.una;
        send_held(f, true);
        ctx_.stats.binding_retransmits.add();
        ++p.resends;
        p.rto_ms = std::min(p.rto_ms * 2, kMaxRtoMs);
        p.timer_ns = ctx_.now_ns + uint64_t(p.rto_ms) * ms;
      }
      return;
    case Binding::Refused:
      if (ctx_.now_ns >= f.bind.give_up_ns) {
        release_binding(f);
        flows_.erase(f);
        return;
      }
      if (!p.answered && ctx_.now_ns >= p.timer_ns) {
        uint8_t port;
        MacAddr mac;
        Drop why;
        if (tx_.resolve_next_hop(f.key.client, port, mac, why)) send_answer(port, mac.data(), f);
        ctx_.stats.binding_retransmits.add();
        p.rto_ms = std::min(p.rto_ms * 2, kMaxRtoMs);
        p.timer_ns = ctx_.now_ns + uint64_t(p.rto_ms) * ms;
      }
      return;
    case Binding::None:
      release_binding(f);
      return;
  }
}

// Runs the timers of connections that hold first bytes and gives back buffers (TCP bindings, held QUIC
// datagrams, hostnames) whose flow has gone (expired or evicted while waiting), a slice of each pool per call.
void TcpBinding::sweep(uint32_t budget) {
  const uint32_t nb = bindings_.count();
  for (uint32_t i = 0; i < budget && i < nb; ++i) {
    const uint32_t h = bindings_.handle_at(cursor_);
    cursor_ = cursor_ + 1 == nb ? 0 : cursor_ + 1;
    if (!bindings_.used(h)) continue;
    Flow* f = flows_.find_by_id(bindings_.owner(h));
    if (!f || f->bind.buffer != h || f->deadline_ns <= ctx_.now_ns)
      bindings_.release(h);
    else
      binding_timer(*f);
  }
}

}  // namespace dptun
