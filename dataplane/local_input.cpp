// Packets for the gateway itself: ARP goes to the control lcore, ICMP echo is answered here, what dpgw does not
// serve goes to the kernel path (when the port has one), and ICMP fragmentation-needed is generated for
// oversized DF packets.
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <cstring>

#include "common/bytes.hpp"
#include "dataplane/worker.hpp"
#include "packet/checksum.hpp"
#include "packet/headers.hpp"

namespace dptun {

void Worker::local_input(uint8_t port, rte_mbuf* m, const PacketInfo& pi) {
  if (pi.l3 == L3Kind::Arp) {
    // Only ARP about us (requests for our address, replies to our requests) or gratuitous announcements
    // reach the control lcore; the rest of the LAN's ARP chatter stops here.
    if (pi.dst_ip != dp_.ports[port].address && pi.src_ip != pi.dst_ip) {
      drop(m, Drop::NotForUs);
      return;
    }
    dp_.meta(m) = HandoffMeta{0, 0, HandoffMeta::RawFrame, port};
    if (rte_ring_mp_enqueue(dp_.control_ring, m) != 0) {
      drop(m, Drop::ControlFull);
      return;
    }
    stats.to_control.add();
    return;
  }
  // ICMP to one of our addresses: echo requests are answered here; echo replies and errors about the kernel's
  // own connections (unreachable, time exceeded, parameter problem) go to the kernel path; the rest (redirects,
  // timestamps, ...) is counted and dropped.
  if (pi.icmp_type != kIcmpEchoRequest || pi.is_fragment || pi.l4_len < kIcmpHeaderLen) {
    const bool kernel_type = pi.icmp_type == kIcmpEchoReply || pi.icmp_type == kIcmpDestUnreachable ||
                             pi.icmp_type == kIcmpTimeExceeded || pi.icmp_type == kIcmpParamProblem;
    if (kernel_type && !pi.is_fragment)
      to_kernel(port, m, Drop::UnsupportedProto);
    else
      drop(m, Drop::UnsupportedProto);
    return;
  }
  uint8_t* frame = rte_pktmbuf_mtod(m, uint8_t*);
  uint8_t* ip = frame + pi.l3_offset;
  uint8_t* icmp = frame + pi.l4_offset;
  if (csum_fold(csum_add({icmp, pi.l4_len})) != 0xffff) {
    stats.parse_errors[size_t(ParseStatus::BadL4Header)].add();
    drop(m, Drop::ParseError);
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
  stats.icmp_echo_replies.add();
  send(port, m);
}

void Worker::to_kernel(uint8_t port, rte_mbuf* m, Drop why) {
  if (!dp_.ports[port].kernel_path) {
    drop(m, why);
    return;
  }
  // Each worker hands the kernel at most its share of the port's kernel_rate (a token bucket with its share of
  // kernel_burst): a flood at the address costs the control lcore bounded work, and is counted.
  if (!kernel_bucket_[port].take(now_ns_)) {
    drop(m, Drop::KernelRate);
    return;
  }
  dp_.meta(m) = HandoffMeta{0, 0, HandoffMeta::RawFrame, port};
  if (rte_ring_mp_enqueue(dp_.kernel_ring, m) != 0) {
    drop(m, Drop::KernelFull);
    return;
  }
  stats.to_kernel.add();
}

// RFC 1191: type 3 code 4 with the next-hop MTU, quoting the IP header and 8 bytes of the offending packet.
// Sent back out the port the packet came in on, to the MAC it came from; rate-limited to 1000/s per worker
// (bursts of up to 64).
void Worker::send_frag_needed(uint8_t port, rte_mbuf* orig, const PacketInfo& pi, uint16_t mtu) {
  if (!icmp_bucket_.take(now_ns_)) return;
  rte_mbuf* m = rte_pktmbuf_alloc(dp_.pool);
  if (!m) {
    stats.drops[size_t(Drop::NoMbuf)].add();
    return;
  }
  const uint8_t* in = rte_pktmbuf_mtod(orig, const uint8_t*);
  size_t quote = pi.ip_header_len + 8u;
  if (quote > pi.ip_total_len) quote = pi.ip_total_len;
  size_t len = kEthHeaderLen + kIpv4HeaderLen + kIcmpHeaderLen + quote;
  uint8_t* out = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, uint16_t(len)));
  if (!out) {
    rte_pktmbuf_free(m);
    return;
  }
  std::memcpy(out, in + 6, 6);  // to the sender's MAC
  std::memcpy(out + 6, dp_.ports[port].mac.data(), 6);
  store_be16(out + 12, kEtherTypeIpv4);
  uint8_t* ip = out + kEthHeaderLen;
  write_ipv4_header(ip, uint16_t(len - kEthHeaderLen), ip_id_++, kIpProtoIcmp, dp_.ports[port].address, pi.src_ip);
  uint8_t* icmp = ip + kIpv4HeaderLen;
  icmp[0] = kIcmpDestUnreachable;
  icmp[1] = kIcmpFragNeeded;
  store_be16(icmp + 2, 0);
  store_be16(icmp + 4, 0);
  store_be16(icmp + 6, mtu);
  std::memcpy(icmp + kIcmpHeaderLen, in + pi.l3_offset, quote);
  store_be16(icmp + kIcmpOffChecksum, csum_finish(csum_add({icmp, kIcmpHeaderLen + quote})));
  stats.icmp_frag_needed.add();
  send(port, m);
}

}  // namespace dptun
