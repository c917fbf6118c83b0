// STUN Binding requests answered in place (stun_input.hpp): the request's mbuf becomes the answer.
#include "dataplane/nat/stun_input.hpp"

#include <rte_mbuf.h>

#include <cstring>

#include "common/bytes.hpp"
#include "packet/checksum.hpp"
#include "packet/headers.hpp"
#include "proto/stun.hpp"

namespace dptun {

StunInput::StunInput(WorkerContext& ctx, Tx& tx) : ctx_(ctx), tx_(tx) {}

void StunInput::input(uint8_t port, rte_mbuf** pkts, const PacketInfo* info, uint16_t n) {
  for (uint16_t i = 0; i < n; ++i) answer(port, pkts[i], info[i]);
}

void StunInput::answer(uint8_t port, rte_mbuf* m, const PacketInfo& pi) {
  uint8_t* frame = rte_pktmbuf_mtod(m, uint8_t*);
  const uint8_t* udp = frame + pi.l4_offset;
  const uint16_t udp_len = pi.l4_len;  // the parser checked it against the IP length and the frame
  // A wrong UDP checksum (0: none, RFC 768) would have the answer tell the client a corrupted address.
  if (udp_len < kUdpHeaderLen ||
      (load_be16(udp + 6) != 0 &&
       csum_fold(csum_add({udp, udp_len}, ipv4_pseudo_sum(pi.src_ip, pi.dst_ip, kIpProtoUdp, udp_len))) != 0xffff)) {
    ctx_.drop(m, Drop::StunMalformed);
    return;
  }
  // Never answered: sources that cannot be a single host (RFC 1122 3.2.2), ourselves, port 0.
  const uint32_t src = pi.src_ip;
  if (src == 0 || (src >> 24) == 127 || src >= 0xe0000000u || src == ctx_.dp.ports[port].address || pi.src_port == 0) {
    ctx_.drop(m, Drop::StunMalformed);
    return;
  }
  // RFC 3489 clients (no magic cookie) only on the STUN port: elsewhere the cookie is what makes a datagram STUN.
  const bool classic_ok = pi.dst_port == ctx_.dp.cfg->stun_port;
  const auto msg = parse_stun({udp + kUdpHeaderLen, size_t(udp_len - kUdpHeaderLen)}, classic_ok);
  if (!msg) {
    ctx_.drop(m, Drop::StunMalformed);
    return;
  }
  if (!msg->is_binding_request()) {
    ctx_.drop(m, Drop::StunNotRequest);
    return;
  }
  ctx_.stats.stun_requests.add();
  if (!answer_bucket_.take(ctx_.now_ns)) {
    ctx_.drop(m, Drop::StunLimited);
    return;
  }
  // The answer replaces the request in its mbuf (*msg holds all that is needed of it): back to the sender's MAC, a
  // header of 20 bytes from the address and port the request came to, the STUN response behind it.
  const size_t stun_len = stun_response_len(*msg);
  const size_t total = kEthHeaderLen + kIpv4HeaderLen + kUdpHeaderLen + stun_len;
  if (total > m->data_len) {
    if (!rte_pktmbuf_append(m, uint16_t(total - m->data_len))) {
      ctx_.drop(m, Drop::NoRoom);
      return;
    }
  } else {
    rte_pktmbuf_trim(m, uint16_t(m->data_len - total));  // (a longer request)
  }
  uint8_t client_mac[6];
  std::memcpy(client_mac, frame + 6, 6);
  tx_.write_ethernet(frame, port, client_mac);
  uint8_t* ip = frame + kEthHeaderLen;
  const uint16_t out_udp_len = uint16_t(kUdpHeaderLen + stun_len);
  write_ipv4_header(ip, uint16_t(kIpv4HeaderLen + out_udp_len), ctx_.next_ip_id(), kIpProtoUdp, pi.dst_ip, pi.src_ip);
  uint8_t* out = ip + kIpv4HeaderLen;
  store_be16(out, pi.dst_port);
  store_be16(out + 2, pi.src_port);
  store_be16(out + 4, out_udp_len);
  store_be16(out + 6, 0);
  write_stun_response({out + kUdpHeaderLen, stun_len}, *msg, pi.src_ip, pi.src_port);
  const uint16_t sum = ipv4_l4_checksum(pi.dst_ip, pi.src_ip, kIpProtoUdp, {out, out_udp_len});
  store_be16(out + 6, sum ? sum : 0xffff);  // RFC 768: a computed 0 is sent as all ones
  ctx_.stats.stun_responses.add();
  DPTUN_TRACE(m, Answer) tr->code = uint8_t(TraceAnswer::StunResponse);
  tx_.send(port, m);
}

}  // namespace dptun
