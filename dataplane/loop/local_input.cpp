// Packets for the gateway itself: ARP goes to the control lcore, ICMP echo is answered here, what dpgw does not
// serve goes to the kernel path (when the port has one), and ICMP fragmentation-needed is generated for
// oversized DF packets.
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <algorithm>
#include <cstring>

#include "common/bytes.hpp"
#include "dataplane/loop/local_input.hpp"
#include "packet/checksum.hpp"
#include "packet/headers.hpp"
#include "packet/tcp_segment.hpp"

namespace dptun {

LocalInput::LocalInput(WorkerContext& ctx, Tx& tx) : ctx_(ctx), tx_(tx) {
  const auto& cfg = *ctx.dp.cfg;
  const uint64_t workers = cfg.workers ? cfg.workers : 1;
  for (size_t p = 0; p < cfg.ports.size() && p < kernel_bucket_.size(); ++p)
    kernel_bucket_[p].configure(std::max<uint64_t>(cfg.ports[p].kernel_rate / workers, 1),
                                std::max<uint64_t>(cfg.ports[p].kernel_burst / workers, 1));
}

void LocalInput::input(uint8_t port, rte_mbuf* m, const PacketInfo& pi) {
  if (pi.l3 == L3Kind::Arp) {
    // Only ARP about us (requests for our address, replies to our requests) or gratuitous announcements
    // reach the control lcore; the rest of the LAN's ARP chatter stops here.
    if (pi.dst_ip != ctx_.dp.ports[port].address && pi.src_ip != pi.dst_ip) {
      ctx_.drop(m, Drop::NotForUs);
      return;
    }
    DPTUN_TRACE(m, Classify) tr->code = uint8_t(TraceClass::Local);
    ctx_.dp.meta(m) = HandoffMeta{0, 0, HandoffMeta::RawFrame, port};
    DPTUN_TRACE(m, ToControl) tr->port = port;  // (before: the control lcore may free it at once)
    if (rte_ring_mp_enqueue(ctx_.dp.control_ring, m) != 0) {
      ctx_.drop(m, Drop::ControlFull);
      return;
    }
    ctx_.stats.to_control.add();
    return;
  }
  DPTUN_TRACE(m, Classify) tr->code = uint8_t(TraceClass::Local);
  // ICMP to one of our addresses: echo requests are answered here; echo replies and errors about the kernel's
  // own connections (unreachable, time exceeded, parameter problem) go to the kernel path; the rest (redirects,
  // timestamps, ...) is counted and dropped.
  if (pi.icmp_type != kIcmpEchoRequest || pi.is_fragment || pi.l4_len < kIcmpHeaderLen) {
    const bool kernel_type = pi.icmp_type == kIcmpEchoReply || pi.icmp_type == kIcmpDestUnreachable ||
                             pi.icmp_type == kIcmpTimeExceeded || pi.icmp_type == kIcmpParamProblem;
    if (kernel_type && !pi.is_fragment)
      to_kernel(port, m, Drop::UnsupportedProto);
    else
      ctx_.drop(m, Drop::UnsupportedProto);
    return;
  }
  uint8_t* frame = rte_pktmbuf_mtod(m, uint8_t*);
  uint8_t* ip = frame + pi.l3_offset;
  uint8_t* icmp = frame + pi.l4_offset;
  if (csum_fold(csum_add({icmp, pi.l4_len})) != 0xffff) {
    ctx_.stats.parse_errors[size_t(ParseStatus::BadL4Header)].add();
    ctx_.drop(m, Drop::ParseError);
    return;
  }
  uint8_t tmp[6];
  std::memcpy(tmp, frame, 6);
  std::memcpy(frame, frame + 6, 6);
  std::memcpy(frame + 6, tmp, 6);
  store_be32(ip + kIpv4OffSrc, pi.dst_ip);
  store_be32(ip + kIpv4OffDst, pi.src_ip);
  ip[kIpv4OffTtl] = 64;
  store_be16(ip + kIpv4OffChecksum, 0);
  store_be16(ip + kIpv4OffChecksum, ipv4_header_checksum({ip, pi.ip_header_len}));
  icmp[0] = kIcmpEchoReply;
  csum_replace16(icmp + kIcmpOffChecksum, uint16_t(kIcmpEchoRequest << 8), uint16_t(kIcmpEchoReply << 8));
  ctx_.stats.icmp_echo_replies.add();
  DPTUN_TRACE(m, Answer) tr->code = uint8_t(TraceAnswer::EchoReply);
  tx_.send(port, m);
}

void LocalInput::to_kernel(uint8_t port, rte_mbuf* m, Drop why) {
  if (!ctx_.dp.ports[port].kernel_path) {
    ctx_.drop(m, why);
    return;
  }
  // Each worker hands the kernel at most its share of the port's kernel_rate (a token bucket with its share of
  // kernel_burst): a flood at the address costs the control lcore bounded work, and is counted.
  if (!kernel_bucket_[port].take(ctx_.now_ns)) {
    ctx_.drop(m, Drop::KernelRate);
    return;
  }
  ctx_.dp.meta(m) = HandoffMeta{0, 0, HandoffMeta::RawFrame, port};
  DPTUN_TRACE(m, ToKernel) tr->port = port;  // (before: the control lcore may free it at once)
  if (rte_ring_mp_enqueue(ctx_.dp.kernel_ring, m) != 0) {
    ctx_.drop(m, Drop::KernelFull);
    return;
  }
  ctx_.stats.to_kernel.add();
}

// RFC 1191: type 3 code 4 with the next-hop MTU. Rate-limited to 1000/s per worker (bursts of up to 64).
void LocalInput::send_frag_needed(uint8_t port, rte_mbuf* orig, const PacketInfo& pi, uint16_t mtu) {
  if (!icmp_bucket_.take(ctx_.now_ns)) return;
  if (!send_icmp_unreachable(port, orig, pi, kIcmpFragNeeded, mtu)) return;
  ctx_.stats.icmp_frag_needed.add();
  DPTUN_TRACE(orig, Answer) tr->code = uint8_t(TraceAnswer::FragNeeded);
}

// RFC 792 destination unreachable, quoting the IP header and 8 bytes of the offending packet (RFC 1812 4.3.2.3 allows
// more; 8 is what senders use). Sent back out the port the packet came in on, to the MAC it came from.
bool LocalInput::send_icmp_unreachable(uint8_t port, const rte_mbuf* orig, const PacketInfo& pi, uint8_t code,
                                   uint16_t mtu) {
  rte_mbuf* m = rte_pktmbuf_alloc(ctx_.dp.pool);
  if (!m) {
    ctx_.stats.drops[size_t(Drop::NoMbuf)].add();
    return false;
  }
  const uint8_t* in = rte_pktmbuf_mtod(orig, const uint8_t*);
  size_t quote = pi.ip_header_len + 8u;
  if (quote > pi.ip_total_len) quote = pi.ip_total_len;
  size_t len = kEthHeaderLen + kIpv4HeaderLen + kIcmpHeaderLen + quote;
  uint8_t* out = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, uint16_t(len)));
  if (!out) {
    rte_pktmbuf_free(m);
    return false;
  }
  tx_.write_ethernet(out, port, in + 6);  // to the sender's MAC
  uint8_t* ip = out + kEthHeaderLen;
  write_ipv4_header(ip, uint16_t(len - kEthHeaderLen), ctx_.next_ip_id(), kIpProtoIcmp, ctx_.dp.ports[port].address, pi.src_ip);
  uint8_t* icmp = ip + kIpv4HeaderLen;
  icmp[0] = kIcmpDestUnreachable;
  icmp[1] = code;
  store_be16(icmp + 2, 0);
  store_be16(icmp + 4, 0);
  store_be16(icmp + 6, mtu);
  std::memcpy(icmp + kIcmpHeaderLen, in + pi.l3_offset, quote);
  store_be16(icmp + kIcmpOffChecksum, csum_finish(csum_add({icmp, kIcmpHeaderLen + quote})));
  tx_.send(port, m);
  return true;
}

// A port without an entry point. With a kernel path the kernel answers, as the host it is. Without one, dpgw answers
// as a host with nothing listening there: a RST for any TCP segment but a RST (RFC 793 section 3.4, "reset
// generation", closed state), ICMP port unreachable for UDP (RFC 1122 3.2.2.1), never to a source that cannot be
// a single host (RFC 1122 3.2.2: broadcast, multicast, 0.0.0.0, 127/8, class E). At most 1000 answers a second per
// worker in bursts of 64 (a token bucket; the rest counted as closed_port_limited), so a scan or a spoofed flood
// cannot turn the gateway into an amplifier. The packet is counted as no_entry_point either way.
void LocalInput::closed_port(uint8_t port, rte_mbuf* m, const PacketInfo& pi) {
  DPTUN_TRACE(m, Classify) tr->code = uint8_t(TraceClass::NoEntryPoint);
  if (ctx_.dp.ports[port].kernel_path && m->nb_segs == 1) {
    to_kernel(port, m, Drop::NoEntryPoint);
    return;
  }
  const uint32_t src = pi.src_ip;
  const bool host_source = src != 0 && (src >> 24) != 127 && src < 0xe0000000u && src != ctx_.dp.ports[port].address;
  const bool answer = host_source && (pi.l4_proto == kIpProtoUdp || !(pi.tcp_flags & kTcpRst));
  if (answer) {
    if (!answer_bucket_.take(ctx_.now_ns)) {
      ctx_.stats.closed_port_limited.add();
    } else if (pi.l4_proto == kIpProtoTcp) {
      send_closed_port_rst(port, m, pi);
      DPTUN_TRACE(m, Answer) tr->code = uint8_t(TraceAnswer::Rst);
    } else if (send_icmp_unreachable(port, m, pi, kIcmpPortUnreachable, 0)) {
      ctx_.stats.closed_port_unreachables.add();
      DPTUN_TRACE(m, Answer) tr->code = uint8_t(TraceAnswer::PortUnreachable);
    }
  }
  ctx_.drop(m, Drop::NoEntryPoint);
}

void LocalInput::send_closed_port_rst(uint8_t port, const rte_mbuf* orig, const PacketInfo& pi) {
  const uint8_t* frame = rte_pktmbuf_mtod(orig, const uint8_t*);
  const uint8_t* tcp = frame + pi.l4_offset;
  TcpSegmentSpec r{};
  r.src_ip = pi.dst_ip;
  r.dst_ip = pi.src_ip;
  r.src_port = pi.dst_port;
  r.dst_port = pi.src_port;
  r.ip_id = ctx_.next_ip_id();
  if (pi.tcp_flags & kTcpAck) {  // <SEQ=SEG.ACK><CTL=RST>
    r.seq = load_be32(tcp + 8);
    r.flags = kTcpRst;
  } else {  // <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>; SYN and FIN count as one each
    const uint32_t seg_len = uint32_t(pi.ip_total_len) - pi.ip_header_len - pi.tcp_header_len +
                             ((pi.tcp_flags & kTcpSyn) ? 1 : 0) + ((pi.tcp_flags & kTcpFin) ? 1 : 0);
    r.seq = 0;
    r.ack = load_be32(tcp + 4) + seg_len;
    r.flags = kTcpRst | kTcpAck;
  }
  tx_.send_tcp_segment(port, frame + 6, r);
  ctx_.stats.closed_port_rsts.add();
}

}  // namespace dptun
