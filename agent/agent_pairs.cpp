// dpagent's direct paths' data on the main loop (docs/nat-traversal.md "The pair's data", agent/agent.hpp "Threads"):
// the pairs dpctld offers, pair frames in (from the direct-path socket, or relayed by dpgw: handed over by downstream
// with two threads) and out (an agent's replies to a pair address: handed over by upstream with two threads; a
// visitor's flows on its pair), and the main loop's batches to the peer and to dpgw.
#include <cerrno>
#include <cstring>

#include "agent/agent.hpp"
#include "common/clock.hpp"
#include "common/log.hpp"
#include "packet/headers.hpp"
#include "packet/parser.hpp"
#include "proto/frame_codec.hpp"

namespace dptun {

// Direct paths' data (docs/nat-traversal.md "The pair's data"): on the main loop, whatever the data-path threads.
void Agent::enable_pairs(PairData::SendDirect direct, PairData::DirectRemote remote,
                         std::function<void()> flush_direct) {
  // (main.cpp gives a visitor with direct paths one thread, and tells start() that pairs come: the rings)
  if ((opt_.visit && threaded()) || (threaded() && !from_tun_ring_)) {
    LOG_ERROR("direct paths: no pair data on this dpagent's threads");
    return;
  }
  flush_direct_ = std::move(flush_direct);
  pair_tun_out_.enable_coalescing(tun_out_.coalescing(), tun_out_.coalescing_udp());
  pairs_ = std::make_unique<PairData>(*engine_, opt_.key_len, opt_.rekey_interval_ns, std::move(direct),
                                      [this](std::span<const uint8_t> f) { return relay_pair_frame(f); },
                                      std::move(remote), threaded() ? 2 : 0);
  pairs_on_.store(true, std::memory_order_release);
}

void Agent::pair_offer(const PeerOffer& o) {
  if (!pairs_) return;
  pairs_->offer(o);
  if (!opt_.visit || !o.controlling) return;
  // The visitor's flows on the pair go on in the new pairing when it carries data in the same block; else they start
  // over through dpgw (their next packets start new flows).
  const std::optional<uint16_t> block = o.data ? std::optional<uint16_t>(o.data->block) : std::nullopt;
  if (visitor_flows_.pair_flows() && block != visitor_block_) {
    LOG_INFO("direct paths: %zu flows on the pair start over through the gateway (the new pairing %s)",
             visitor_flows_.pair_flows(), block ? "has another block of tags" : "carries no data");
    visitor_flows_.forget_pair_flows();
  }
  visitor_block_ = block;
  no_pair_since_ns_ = block ? 0 : monotonic_ns();
}

void Agent::pair_gone(uint32_t pair) {
  if (!pairs_) return;
  const PairData::Pair* p = pairs_->by_id(pair);
  if (p && p->controlling) no_pair_since_ns_ = monotonic_ns();
  pairs_->gone(pair);
}

void Agent::pairs_clear() {
  if (!pairs_) return;
  pairs_->clear();
  visitor_flows_.forget_pair_flows();  // the next registration brings another block of tags
  visitor_block_.reset();
  no_pair_since_ns_ = 0;
}

// The frame is copied (it is opened in place, and the TUN writer keeps its packet until the batch ends, to coalesce
// it with the next segments of its flow) into the wakeup's arena.
void Agent::pair_datagram(std::span<const uint8_t> data, uint64_t now_ns, bool relayed) {
  if (!pairs_) return;
  if (data.size() > UdpLink::kMaxDatagram) {  // (no frame of ours is that big)
    pairs_->stats().malformed++;
    return;
  }
  if (data.size() > pair_rx_.size() - pair_rx_used_) pair_batch_end();
  uint8_t* p = pair_rx_.data() + pair_rx_used_;
  std::memcpy(p, data.data(), data.size());
  pair_rx_used_ += data.size();
  pair_frame({p, data.size()}, relayed, now_ns);
}

void Agent::pair_batch_end() {
  pair_tun_out_.flush();
  pair_rx_used_ = 0;
  pair_flush();  // (a reply the target's kernel sent at once goes out with the next batch anyway)
}

void Agent::pair_frame(std::span<uint8_t> frame, bool relayed, uint64_t now_ns) {
  std::span<uint8_t> plaintext;
  PairData::Pair* p = pairs_->open(frame, relayed, plaintext, now_ns);
  if (!p) return;
  InnerHeader ih;
  std::span<uint8_t> inner;
  if (!read_inner_plaintext(plaintext, ih, inner)) {
    pairs_->stats().malformed++;
    return;
  }
  inner_from_gateway(pair_delivery_, ih, inner, p->id, now_ns, p);
}

// An agent's packet to a pair address: a reply of the target (or an ICMP error about a pair flow), sealed into a
// frame of the pair whose block the address names.
void Agent::pair_packet_from_tun(std::span<uint8_t> packet, uint64_t now_ns) {
  packet = whole_from_tun(packet, pair_frags_tun_, main_stats_, now_ns);
  if (packet.empty()) return;
  if (packet[kIpv4OffProto] == kIpProtoIcmp) {
    // An ICMP error about a pair flow: counted by reason; not passed on to the visitor (its programs learn of the
    // failure by their timeouts). Anything else in ICMP is not ours.
    IcmpError e;
    if (parse_icmp_error(packet, e) && snat_.decode_pair(Endpoint{Ipv4{e.src_ip}, e.src_port}))
      main_stats_.unreachable[size_t(e.reason())]++;
    else
      main_stats_.icmp_ignored++;
    return;
  }
  PacketInfo pi;
  if (!parse_tunnel_packet(packet, pi)) {
    main_stats_.bad_inner++;
    return;
  }
  const std::optional<uint32_t> tag = snat_.decode_pair(Endpoint{Ipv4{pi.dst_ip}, pi.dst_port});
  if (!tag) {
    main_stats_.no_nat++;
    return;
  }
  PairData::Pair* pair = pairs_->by_block(uint16_t(SnatCodec::pair_block(*tag)));
  if (!pair) {
    pairs_->stats().no_pair++;
    return;
  }
  send_inner(pair, packet.first(pi.ip_total_len), *tag, pi.l4_proto, 0, {}, now_ns);
}

void Agent::pair_flush() {
  if (flush_direct_) flush_direct_();  // pair frames straight to peers (sealed as they were queued)
  pair_relay_flush();
}

// The pair frames for dpgw: sent (the frames a send error lost are counted by the batch, tx_dropped).
void Agent::pair_relay_flush() {
  if (pair_relay_fd_ < 0) return;
  const int err = pair_relay_.flush();
  if (!err) return;
  main_stats_.send_errors++;
  const uint64_t now_ns = monotonic_ns();
  if (now_ns - pair_relay_warn_ns_ < 5 * kNsPerSec) return;
  pair_relay_warn_ns_ = now_ns;
  LOG_WARN("direct paths: cannot send pair frames to gateway %s: %s", opt_.gateway.str().c_str(), strerror(-err));
}

// Two threads: what upstream handed over (VnetHeader, then the TUN's packet), then out at once. At most
// kHandoffPerWakeup records, then back to the loop (the control connection, the checks and the direct-path socket
// get their turn; what is left wakes it again at once).
void Agent::drain_from_tun(uint64_t now_ns) {
  from_tun_ring_->drain(kHandoffPerWakeup, [&](std::span<uint8_t> r) {
    VnetHeader vnet;
    std::memcpy(&vnet, r.data(), kVnetHeaderLen);
    pair_from_tun(r.subspan(kVnetHeaderLen), vnet, now_ns);
  });
  pair_flush();
}

// Two threads: the pair frames downstream read from the relay socket, opened here (as many per wakeup).
void Agent::drain_from_gateway(uint64_t now_ns) {
  from_gateway_ring_->drain(kHandoffPerWakeup, [&](std::span<uint8_t> r) { pair_datagram(r, now_ns, true); });
  pair_batch_end();
}

// A sealed pair frame to dpgw, which forwards it to the pair's other end: queued in the main loop's own batch on the
// relay socket (the session's frames have theirs, on upstream's thread); the kernel takes concurrent sends.
bool Agent::relay_pair_frame(std::span<const uint8_t> frame) {
  if (!link_) return false;
  if (pair_relay_fd_ < 0) {  // (adopt() lets go of a link's socket before the link goes)
    pair_relay_.use_socket(link_->fd(), UdpOffloads{opt_.offloads, false});
    pair_relay_fd_ = link_->fd();
  }
  std::memcpy(pair_relay_.tx_slot(), frame.data(), frame.size());
  pair_relay_.queue_to(frame.size(), opt_.gateway);
  if (pair_relay_.full()) pair_relay_flush();
  return true;
}

}  // namespace dptun
