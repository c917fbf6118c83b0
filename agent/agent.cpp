#include "agent/agent.hpp"

#include <sys/epoll.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <random>

#include "common/clock.hpp"
#include "common/json_writer.hpp"
#include "common/log.hpp"
#include "crypto/aead_ipsec_mb.hpp"
#include "crypto/aead_openssl.hpp"
#include "packet/gso.hpp"
#include "packet/headers.hpp"
#include "packet/ipv4_fragment.hpp"
#include "packet/ipv4_rewrite.hpp"
#include "packet/parser.hpp"

namespace dptun {

namespace {
// Reassembly bounds per direction: 64 datagrams of up to 65535 bytes (4 MB at most), 2 s to complete.
constexpr ReassemblyLimits kAgentReassembly{64, 4096, 128, 65535, 2'000'000'000ull};

uint64_t random_seed() {
  std::random_device rd;
  return uint64_t(rd()) << 32 | rd();
}

bool is_ipv4_fragment(const uint8_t* p, size_t len) {
  return len >= kIpv4HeaderLen && (p[0] >> 4) == 4 && ipv4_is_fragment(p);
}
}  // namespace

Agent::Agent(EventLoop& loop, AgentOptions opt)
    : loop_(loop),
      opt_(std::move(opt)),
      snat_(opt_.tun_net),
      gw_frags_(kAgentReassembly, random_seed()),
      tun_frags_(kAgentReassembly, random_seed()),
      frag_id_(uint16_t(random_seed())) {}

Agent::~Agent() {
  if (link_open_) loop_.remove(link_.fd());
  if (tun_watched_) loop_.remove(tun_.fd());
}

bool Agent::start(bool static_session, std::string& error) {
  if (opt_.aead != "openssl") {
    std::string why;
    engine_ = IpsecMbAead::open(1, why);
    if (!engine_ && opt_.aead == "ipsec-mb") {
      error = "--aead ipsec-mb: " + why;
      return false;
    }
    if (!engine_) LOG_INFO("AES-GCM through OpenSSL (%s)", why.c_str());
  }
  if (!engine_) engine_ = std::make_unique<OpensslAead>(1);
  if (auto* mb = dynamic_cast<IpsecMbAead*>(engine_.get())) LOG_INFO("AES-GCM through ipsec-mb (%s)", mb->arch());
  if (!SnatCodec::valid_subnet(opt_.tun_net, error)) {
    error = "--tun-net " + opt_.tun_net.str() + ": " + error;
    return false;
  }
  // A visitor's frames carry the service's hostname after the packet: the TUN's MTU leaves room for it.
  const size_t trailer = opt_.visit && !opt_.visit->target ? opt_.visit->host.size() + 1 : 0;
  const uint16_t tun_mtu = uint16_t(opt_.underlay_mtu - kUnderlayOverhead - trailer);
  if (!tun_.open(opt_.tun_name, opt_.tun_net, tun_mtu, error, std::nullopt, opt_.offloads)) return false;
  // Super-packets from the kernel: TCP (TSO) and UDP (USO, Linux 6.2; the kernel takes USO4 only with USO6) of up
  // to 64 KiB with partial checksums; we segment them (IPv6 never comes: the TUN has none). Without TUN_F_USO4 the kernel also refuses UDP super-packets we would write, so UDP coalescing
  // follows it; TCP coalescing needs only the virtio-net header.
  const unsigned tun_offloads = tun_.set_offloads(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_USO4 | TUN_F_USO6);
  tun_out_.enable_coalescing(true, tun_offloads & TUN_F_USO4);
  if (opt_.lan_nat && !lan_nat_.enable(tun_.name(), opt_.tun_net, error)) return false;
  if (!loop_.add(tun_.fd(), EPOLLIN, [this](uint32_t) { tun_readable(monotonic_ns()); })) {
    error = std::string("epoll: cannot watch the TUN: ") + strerror(errno);
    return false;
  }
  tun_watched_ = true;
  if (static_session) {
    sessions_.adopt(std::make_unique<AgentSession>(opt_.session, opt_.psk, opt_.key_len, opt_.rekey_interval_ns, *engine_),
                    monotonic_ns());
    if (!open_link(opt_.gateway, error)) return false;
  }
  LOG_INFO("TUN %s %s mtu %u%s", tun_.name().c_str(), opt_.tun_net.str().c_str(), unsigned(tun_mtu),
           static_session ? (", static session " + std::to_string(opt_.session) + " to gateway " + opt_.gateway.str() +
                             " from " + link_.local().str())
                                .c_str()
                          : ", waiting for a session from dpctld");
  log_offloads(tun_offloads);
  started_ns_ = monotonic_ns();
  last_stats_ns_ = started_ns_;
  last_auth_report_ns_ = started_ns_;
  send_keepalive(started_ns_);
  return true;
}

bool Agent::open_link(Endpoint gateway, std::string& error) {
  if (link_open_) loop_.remove(link_.fd());
  link_open_ = false;
  if (!link_.open(gateway, opt_.bind, error, UdpOffloads{opt_.offloads, opt_.offloads})) return false;
  if (!loop_.add(link_.fd(), EPOLLIN, [this](uint32_t) { gateway_readable(monotonic_ns()); })) {
    error = "epoll: cannot watch the socket to gateway " + gateway.str() + ": " + strerror(errno);
    return false;
  }
  link_open_ = true;
  opt_.gateway = gateway;
  if (opt_.offloads)
    LOG_INFO("socket to gateway %s: UDP segmentation (UDP_SEGMENT) %s, receive coalescing (UDP_GRO) %s",
             gateway.str().c_str(), link_.offloads().gso ? "on" : "off (not in this kernel)",
             link_.offloads().gro ? "on" : "off (not in this kernel)");
  return true;
}

// One line at start: which offloads the kernel took, and what is done without the others.
void Agent::log_offloads(unsigned tun_offloads) const {
  if (!opt_.offloads) {
    LOG_INFO("offloads off (--no-offload): one TUN read or write per packet, one datagram per frame");
    return;
  }
  if (!tun_.vnet_hdr())
    LOG_WARN("TUN %s: no virtio-net headers (IFF_VNET_HDR) in this kernel: one TUN read or write per packet",
             tun_.name().c_str());
  else
    LOG_INFO("TUN %s offloads: checksum %s, TCP super-packets read (TSO) %s, UDP super-packets (USO) %s; writes "
             "coalesce TCP%s",
             tun_.name().c_str(), tun_offloads & TUN_F_CSUM ? "on" : "off", tun_offloads & TUN_F_TSO4 ? "on" : "off",
             tun_offloads & TUN_F_USO4 ? "on" : "off (kernel before 6.2)",
             tun_offloads & TUN_F_USO4 ? " and UDP" : " only");
}

// Packets the kernel dropped on their way into the TUN because we did not read them fast enough (its queue was
// full): the interface's tx_dropped, read from sysfs when counters are reported.
uint64_t Agent::tun_queue_drops() const {
  FILE* f = fopen(("/sys/class/net/" + tun_.name() + "/statistics/tx_dropped").c_str(), "r");
  if (!f) return 0;
  unsigned long long v = 0;
  if (fscanf(f, "%llu", &v) != 1) v = 0;
  fclose(f);
  return v;
}

void Agent::offer(SessionGrant grant) { adopt(std::move(grant), monotonic_ns()); }

void Agent::adopt(SessionGrant g, uint64_t now_ns) {
  flush_link(now_ns);  // frames kept for sealing belong to the session that counted them
  // The new session sends from now on; the previous one still receives what is already on its way (SessionSlots).
  const uint32_t index = g.index;
  if (sessions_.adopt(std::make_unique<AgentSession>(g.index, std::move(g.secret), g.key_len, g.rekey_interval_ns,
                                                     *engine_, AgentSession::CounterMode::FromZero),
                      now_ns))
    LOG_INFO("session %u is a new registration under an index already in use here: the old keys are discarded",
             index);
  opt_.keepalive_ns = g.keepalive_ns;
  opt_.session = g.index;
  stats_.sessions_adopted++;
  if (!link_open_ || !(g.gateway == opt_.gateway)) {
    std::string error;
    if (!open_link(g.gateway, error)) LOG_ERROR("%s", error.c_str());
  }
  link_state_ = Link::Unknown;
  last_gateway_rx_ns_ = 0;
  started_ns_ = now_ns;
  if (link_open_) send_keepalive(now_ns);
}

void Agent::note_send_error(int err, uint64_t now_ns) {
  if (!err) return;
  stats_.send_errors++;
  if (now_ns - last_warn_ns_ < 5 * kNsPerSec) return;
  last_warn_ns_ = now_ns;
  if (err == -ECONNREFUSED)
    LOG_WARN("gateway %s answers 'port unreachable': no dpgw is listening on that address and port",
             opt_.gateway.str().c_str());
  else
    LOG_WARN("cannot send to gateway %s: %s", opt_.gateway.str().c_str(), strerror(-err));
}

void Agent::send_keepalive(uint64_t now_ns) {
  if (!sessions_.current() || !link_open_) return;
  // Without an answer, the gateway may have restarted: it has keys ready for the wall clock's epoch.
  if (link_state_ != Link::Up) sessions_.current()->anchor_to_clock();
  uint8_t* frame = link_.tx_slot();
  if (!sessions_.current()->seal_later(FrameType::Keepalive, 0, frame, 0, now_ns)) {
    LOG_ERROR("cannot seal a keepalive (key derivation failed)");
    return;
  }
  stats_.keepalives_tx++;
  queue_frame(codec_.layout().frame_len(0), now_ns);
  flush_link(now_ns);
  last_keepalive_ns_ = now_ns;
}

void Agent::gateway_readable(uint64_t now_ns) {
  // At most kGatewayBatchesPerWakeup batches (256 datagrams, as tun_readable), then back to the loop: a flood
  // from the gateway cannot starve the TUN, the control connection or the timers. The socket is registered
  // level-triggered (common/event_loop.hpp adds it without EPOLLET), so what is left wakes the loop again at once.
  for (unsigned batches = 0; batches < kGatewayBatchesPerWakeup; ++batches) {
    int n = link_.receive_batch();
    if (n < 0) {
      note_send_error(n, now_ns);
      return;
    }
    if (n == 0) return;
    size_t count = 0;
    for (int i = 0; i < n; ++i) {
      // With UDP_GRO a buffer may hold several frames of one length back to back (the last may be shorter).
      const std::span<uint8_t> buffer{link_.rx_data(unsigned(i)), link_.rx_len(unsigned(i))};
      const size_t step = link_.rx_segment_size(unsigned(i)) ? link_.rx_segment_size(unsigned(i)) : buffer.size();
      for (size_t off = 0; off < buffer.size(); off += step) {
        const std::span<uint8_t> frame = buffer.subspan(off, std::min(step, buffer.size() - off));
        // The receiver index picks the session: the current one, or the previous one during its grace time.
        uint32_t receiver;
        AgentSession* s = codec_.receiver_of(frame, receiver) ? sessions_.for_index(receiver) : sessions_.current();
        rx_batch_[count++] = AgentSession::Received{frame, s, {}, AgentSession::OpenResult::Malformed};
        if (count == rx_batch_.size()) {
          frames_from_gateway({rx_batch_.data(), count}, now_ns);
          count = 0;
        }
      }
    }
    frames_from_gateway({rx_batch_.data(), count}, now_ns);
    // The packets the TUN writer holds point into the receive buffers: out before they are reused.
    tun_out_.flush();
    if (n < int(UdpLink::kBatch)) return;
  }
}

// Frames from the gateway, opened in bursts by their sessions (one AEAD call per key), then each delivered.
void Agent::frames_from_gateway(std::span<AgentSession::Received> batch, uint64_t now_ns) {
  if (batch.empty()) return;
  for (AgentSession* s : {sessions_.current(), sessions_.previous()})
    if (s) s->open_burst(batch, now_ns);
  for (AgentSession::Received& r : batch) frame_from_gateway(r, now_ns);
}

// One opened frame from the gateway: its inner packet translated and handed to the TUN writer.
void Agent::frame_from_gateway(AgentSession::Received& r, uint64_t now_ns) {
  AgentSession* s = r.session;
  if (!s) {
    stats_.no_session++;
    return;
  }
  const std::span<uint8_t> frame = r.frame;
  const FrameMeta& meta = r.meta;
  switch (r.result) {
    case AgentSession::OpenResult::Ok: break;
    case AgentSession::OpenResult::Malformed: stats_.malformed++; return;
    case AgentSession::OpenResult::WrongSession: stats_.wrong_session++; return;
    case AgentSession::OpenResult::Replay: stats_.replay++; return;
    case AgentSession::OpenResult::Stale: stats_.stale++; return;
    case AgentSession::OpenResult::NoKey: stats_.no_key++; return;
    case AgentSession::OpenResult::AuthFail: stats_.auth_fail++; return;
  }
  stats_.frames_rx++;
  if (s == sessions_.current()) {
    if (link_state_ != Link::Up)
      LOG_INFO("gateway %s %s (session %u)", opt_.gateway.str().c_str(),
               link_state_ == Link::Unknown ? "answered: tunnel up" : "answering again: tunnel up", s->index());
    link_state_ = Link::Up;
    last_gateway_rx_ns_ = now_ns;
  } else {
    sessions_.previous_heard(now_ns);
  }
  if (meta.type == FrameType::Keepalive) {
    if (meta.flags & kFlagKeepaliveReply) stats_.keepalive_replies_rx++;
    return;
  }
  if (meta.type != FrameType::Data) {
    stats_.malformed++;
    return;
  }
  InnerHeader ih;
  std::span<uint8_t> inner;
  if (!codec_.read_inner(frame, ih, inner)) {
    stats_.malformed++;
    return;
  }
  uint8_t* pkt = inner.data();
  size_t pkt_len = inner.size();
  bool reassembled = false;
  std::string_view name;
  if ((ih.flags & kInnerHasName) && !read_name_trailer(inner, name, pkt_len)) {
    stats_.bad_inner++;
    return;
  }
  // A datagram bigger than one frame comes as IPv4 fragments, one frame each: put it together first.
  if (is_ipv4_fragment(pkt, pkt_len)) {
    PacketInfo fpi;
    if (parse_ip({pkt, pkt_len}, fpi) != ParseStatus::Ok || fpi.l3 != L3Kind::Ipv4) {
      stats_.bad_inner++;
      return;
    }
    const std::span<uint8_t> whole =
        gw_frags_.add({pkt, fpi.ip_total_len}, uint64_t(s->index()) << 32 | uint32_t(ih.flow_id), now_ns);
    if (whole.empty()) return;
    pkt = whole.data();
    pkt_len = whole.size();
    reassembled = true;
  }
  PacketInfo pi;
  if (!parse_tunnel_packet({pkt, pkt_len}, pi) || pi.l4_proto != ih.proto) {
    stats_.bad_inner++;
    return;
  }
  if (opt_.visit) {
    // A reply from the service we visit: to the program that connected, from the local address it used.
    if (opt_.visit->target && pi.src_ip == opt_.visit->target->ip.v4() && pi.src_port == opt_.visit->target->port)
      ipv4_rewrite_src(pkt, pkt + pi.l4_offset, pi.l4_proto, opt_.visit->local.ip.v4(), opt_.visit->local.port);
    stats_.inner_rx_bytes += pi.ip_total_len;
    to_tun({pkt, pi.ip_total_len}, reassembled);
    return;
  }
  if (pi.dst_ip == 0) {
    // The gateway left the target to us (a hostname rule without one): the name picks it, the first time.
    const uint32_t tag = uint32_t(ih.flow_id) & SnatCodec::kTagMask;
    std::optional<Endpoint> target = name.empty() ? routed_.find(tag) : opt_.routes.lookup(name);
    if (!target) {
      stats_.no_route++;
      if (!name.empty()) LOG_DEBUG("no local target for '%.*s'", int(name.size()), name.data());
      return;
    }
    if (!name.empty()) {
      routed_.remember(tag, *target);
      stats_.routed_flows++;
    }
    ipv4_rewrite_dst(pkt, pkt + pi.l4_offset, pi.l4_proto, target->ip.v4(), target->port ? target->port : pi.dst_port);
  }
  // The source the target sees is a function of the flow's tag: no state, nothing to lose on restart.
  const Endpoint snat = snat_.encode(uint32_t(ih.flow_id));
  ipv4_rewrite_src(pkt, pkt + pi.l4_offset, pi.l4_proto, snat.ip.v4(), snat.port);
  stats_.inner_rx_bytes += pi.ip_total_len;
  to_tun({pkt, pi.ip_total_len}, reassembled);
}

// A packet for the TUN: one in a receive buffer waits in the writer until the batch ends (it may be coalesced with
// the next segments of its flow); a reassembled one lives in the reassembler's memory and goes at once.
void Agent::to_tun(std::span<uint8_t> packet, bool reassembled) {
  if (reassembled)
    tun_out_.write_now(packet);
  else
    tun_out_.add(packet);
}

void Agent::tun_readable(uint64_t now_ns) {
  for (unsigned budget = 0; budget < 256; ++budget) {
    VnetHeader vnet;
    const ssize_t n = tun_.read_packet(tun_in_, &vnet);
    if (n <= 0) break;
    if (!sessions_.current() || !link_open_) {
      stats_.no_session++;
      continue;
    }
    const std::span<uint8_t> packet{tun_in_.data(), size_t(n)};
    if ((vnet.gso_type & ~kVnetGsoEcn) == kVnetGsoNone) {
      // With checksum offload the kernel leaves the L4 checksum to us (the pseudo-header sum is in its place).
      if ((vnet.flags & kVnetNeedsCsum) && !complete_checksum(packet, vnet)) {
        stats_.bad_inner++;
        continue;
      }
      packet_from_tun(packet, now_ns);
      continue;
    }
    // A TCP/UDP super-packet (TSO/USO): cut into segments of the size the kernel chose for the TUN's MTU, each
    // written straight into the frame it will travel in.
    const uint32_t segments = gso_segment_count(packet, vnet);
    if (!segments) {
      stats_.tun_gso_malformed++;
      continue;
    }
    stats_.tun_super_packets++;
    for (uint32_t i = 0; i < segments; ++i) {
      uint8_t* slot = link_.tx_slot() + codec_.layout().packet_offset();
      const size_t len =
          gso_write_segment(packet, vnet, i, {slot, UdpLink::kMaxDatagram - codec_.layout().data_overhead()});
      if (!len) {
        stats_.tun_gso_malformed++;
        break;
      }
      stats_.tun_segments++;
      packet_from_tun({slot, len}, now_ns);
    }
  }
  flush_link(now_ns);
}

// One packet the kernel routed into the TUN (a reply of a target, or a visitor's packet): sealed into a frame of its
// flow for the gateway. It may already lie in the link's send slot (segments are written there).
void Agent::packet_from_tun(std::span<uint8_t> packet, uint64_t now_ns) {
  // The kernel fragments what it routes into the TUN beyond its MTU: the datagram is put together first (its
  // destination port names the flow), then sent on in fragments of our own.
  if (is_ipv4_fragment(packet.data(), packet.size())) {
    PacketInfo fpi;
    if (parse_ip(packet, fpi) != ParseStatus::Ok || fpi.l3 != L3Kind::Ipv4) {
      stats_.bad_inner++;
      return;
    }
    packet = tun_frags_.add(packet.first(fpi.ip_total_len), 0, now_ns);
    if (packet.empty()) return;
  }
  // An ICMP error about a flow (its target, or a router on the way, refused the packet): counted, logged, and
  // passed on to the gateway, which tells the client.
  if (!opt_.visit && packet.size() >= kIpv4HeaderLen && (packet[0] >> 4) == 4 &&
      packet[kIpv4OffProto] == kIpProtoIcmp) {
    target_unreachable(packet, now_ns);
    return;
  }
  PacketInfo pi;
  if (!parse_tunnel_packet(packet, pi)) {
    stats_.bad_inner++;
    return;
  }
  uint8_t* p = packet.data();
  packet = packet.first(pi.ip_total_len);
  if (opt_.visit) {
    // Programs here connect to the local address: the frame names the service (or, direct, its address).
    const AgentOptions::Visit& v = *opt_.visit;
    if (pi.dst_ip != v.local.ip.v4() || pi.dst_port != v.local.port) {
      stats_.no_nat++;
      return;
    }
    if (v.target) {
      ipv4_rewrite_dst(p, p + pi.l4_offset, pi.l4_proto, v.target->ip.v4(), v.target->port);
      send_inner(packet, 0, pi.l4_proto, kInnerDirect, {}, now_ns);
    } else {
      send_inner(packet, 0, pi.l4_proto, kInnerHasName, v.host, now_ns);
    }
    return;
  }
  // A reply to a translated source names its flow; anything else the kernel routed here is not ours.
  std::optional<uint32_t> tag = snat_.decode(Endpoint{Ipv4{pi.dst_ip}, pi.dst_port});
  if (!tag) {
    stats_.no_nat++;
    return;
  }
  // The gateway finds the flow by its tag and rewrites the addresses from its own state; any session of the
  // flow's tunnel may carry it, so replies always use the current one.
  send_inner(packet, *tag, pi.l4_proto, 0, {}, now_ns);
}

// The kernel routes ICMP errors about the packets we wrote into the TUN back into it, because their source is the
// flow's translated address: a route that says unreachable or prohibit, a neighbour that never answered ARP, a
// target with nothing on a UDP port, a filter that rejects. The quoted datagram's source names the flow. Each is
// counted by reason, logged (at most one line a second, bursts of 5), and sent to the gateway in a frame of the
// flow (inner protocol ICMP, protocol.md), which rewrites it for the client as a NAT router would.
void Agent::target_unreachable(std::span<uint8_t> packet, uint64_t now_ns) {
  IcmpError e;
  if (!parse_icmp_error(packet, e)) {
    stats_.icmp_ignored++;
    return;
  }
  const std::optional<uint32_t> tag = snat_.decode(Endpoint{Ipv4{e.src_ip}, e.src_port});
  if (!tag || e.to != e.src_ip) {
    stats_.no_nat++;
    return;
  }
  const IcmpErrorReason reason = e.reason();
  stats_.unreachable[size_t(reason)]++;
  if (unreachable_log_.take(now_ns)) {
    char more[64] = "";
    if (unreachable_suppressed_)
      snprintf(more, sizeof more, " (%llu more not logged)", (unsigned long long)unreachable_suppressed_);
    unreachable_suppressed_ = 0;
    char mtu[32] = "";
    if (reason == IcmpErrorReason::FragNeeded) snprintf(mtu, sizeof mtu, ", next-hop MTU %u", unsigned(e.mtu));
    LOG_WARN("target %s:%u/%s cannot be reached: %s (ICMP type %u code %u from %s%s), flow tag %u; the client is "
             "told%s",
             Ipv4{e.dst_ip}.str().c_str(), unsigned(e.dst_port), e.proto == kIpProtoTcp ? "tcp" : "udp",
             icmp_error_reason_name(reason), unsigned(e.type), unsigned(e.code), Ipv4{e.from}.str().c_str(), mtu,
             unsigned(*tag), more);
  } else {
    unreachable_suppressed_++;
  }
  send_inner(packet.first(load_be16(packet.data() + kIpv4OffTotalLen)), *tag, kIpProtoIcmp, 0, {}, now_ns);
  stats_.icmp_errors_forwarded++;
}

// Sends an inner packet to the gateway (inner header: `flow`, `proto`, `flags`; a name trailer when `name` is
// given): in one data frame when it fits one, else as IPv4 fragments of our own, one frame each (protocol.md
// "Datagrams bigger than a frame"). The frame budget is what the TUN's MTU is: --mtu less the overhead.
void Agent::send_inner(std::span<uint8_t> packet, uint32_t flow, uint8_t proto, uint8_t flags, std::string_view name,
                       uint64_t now_ns) {
  const size_t trailer = name.empty() ? 0 : name.size() + 1;
  const size_t budget = opt_.underlay_mtu - kUnderlayOverhead - trailer;
  if (packet.size() <= budget) {
    uint8_t* frame = link_.tx_slot();
    uint8_t* pkt = frame + codec_.layout().packet_offset();
    if (packet.data() != pkt) std::memmove(pkt, packet.data(), packet.size());
    size_t len = packet.size();
    if (trailer) len += write_name_trailer(pkt + packet.size(), name);
    codec_.write_inner(frame, InnerHeader{flow, proto, flags});
    send_data_frame(frame, len, packet.size(), now_ns);
    return;
  }
  const uint8_t* ip = packet.data();
  const uint32_t hl = uint32_t(ip[0] & 0x0f) * 4;
  const FragmentPlan plan = plan_ipv4_fragments(hl, uint32_t(packet.size()) - hl, uint32_t(budget));
  if (!plan.count) {
    stats_.bad_inner++;
    return;
  }
  const uint16_t id = frag_id_++;
  for (uint32_t k = 0; k < plan.count; ++k) {
    const uint32_t off = k * plan.chunk;
    const uint32_t len = std::min<uint32_t>(plan.chunk, uint32_t(packet.size()) - hl - off);
    uint8_t* frame = link_.tx_slot();
    uint8_t* out = frame + codec_.layout().packet_offset();
    const size_t fh = write_ipv4_fragment_header(out, {ip, hl}, id, off, len, k + 1 < plan.count);
    std::memcpy(out + fh, ip + hl + off, len);
    size_t packet_len = fh + len;
    if (trailer) packet_len += write_name_trailer(out + fh + len, name);
    codec_.write_inner(frame, InnerHeader{flow, proto, flags});
    send_data_frame(frame, packet_len, fh + len, now_ns);
    stats_.fragments_tx++;
  }
}

// Seals a data frame built in the link's send slot (its inner header written, `packet_len` bytes of packet and name
// trailer behind it) and queues it.
void Agent::send_data_frame(uint8_t* frame, size_t packet_len, size_t inner_bytes, uint64_t now_ns) {
  const uint32_t encrypted = codec_.layout().encrypted_len(uint32_t(packet_len));
  if (!sessions_.current()->seal_later(FrameType::Data, 0, frame, encrypted, now_ns)) {
    LOG_ERROR("cannot seal a frame (key derivation failed)");
    return;
  }
  stats_.frames_tx++;
  stats_.inner_tx_bytes += inner_bytes;
  queue_frame(codec_.layout().frame_len(encrypted), now_ns);
}

// A frame built in the link's slot and kept for sealing: queued; a full batch is sealed and sent at once.
void Agent::queue_frame(size_t len, uint64_t now_ns) {
  link_.queue(len);
  if (link_.full()) flush_link(now_ns);
}

// The queued frames: sealed in one burst (one AEAD call per key), then sent.
void Agent::flush_link(uint64_t now_ns) {
  if (AgentSession* s = sessions_.current(); s && s->sealing()) {
    if (const size_t failed = s->seal_pending()) {
      stats_.seal_errors += failed;
      link_.drop_wiped();
      LOG_ERROR("AES-GCM failed on %zu frames: not sent", failed);
    }
  }
  if (link_open_) note_send_error(link_.flush(), now_ns);
}

// One periodic tick rather than a timer each: the deadlines move with the state (probing every 250 ms until the
// gateway answers, liveness counted from its last answer, sessions and fragments expiring by their own clocks), and
// each check is a comparison.
void Agent::tick(uint64_t now_ns) {
  sessions_.expire(now_ns);
  gw_frags_.expire(now_ns);
  tun_frags_.expire(now_ns);
  if (AgentSession* current = sessions_.current()) {
    // Until the gateway has answered once, probe every 250 ms so the tunnel comes up (or back) quickly.
    uint64_t interval =
        link_state_ == Link::Up ? opt_.keepalive_ns : std::min<uint64_t>(opt_.keepalive_ns, 250'000'000ull);
    if (now_ns - last_keepalive_ns_ >= interval) send_keepalive(now_ns);
    uint64_t silent = now_ns - (last_gateway_rx_ns_ ? last_gateway_rx_ns_ : started_ns_);
    if (link_state_ != Link::Down && silent > 3 * opt_.keepalive_ns) {
      LOG_WARN("no authenticated answer from gateway %s for %.1f s: it is down or unreachable, or it does not "
               "know session %u with this key",
               opt_.gateway.str().c_str(), double(silent) / 1e9, current->index());
      link_state_ = Link::Down;
    }
  }
  if (now_ns - last_auth_report_ns_ >= 5 * kNsPerSec) {
    if (stats_.auth_fail > auth_fail_reported_)
      LOG_WARN("%llu frames from gateway %s failed authentication in the last 5 s: the gateway uses another key "
               "for session %u (or someone tampers with the traffic)",
               (unsigned long long)(stats_.auth_fail - auth_fail_reported_), opt_.gateway.str().c_str(),
               opt_.session);
    auth_fail_reported_ = stats_.auth_fail;
    last_auth_report_ns_ = now_ns;
  }
  if (opt_.stats_interval_ns && now_ns - last_stats_ns_ >= opt_.stats_interval_ns) {
    printf("%s\n", stats_json().c_str());
    fflush(stdout);
    last_stats_ns_ = now_ns;
  }
}

std::string Agent::stats_json() const {
  JsonWriter j;
  j.begin_object()
      .field("gateway", opt_.gateway.str())
      .field("session", unsigned(sessions_.current() ? sessions_.current()->index() : 0))
      .field("link", link_state_ == Link::Up ? "up" : link_state_ == Link::Down ? "down" : "unknown")
      .field("tx_epoch", sessions_.current() ? sessions_.current()->tx_epoch() : 0)
      .field("rekeys", sessions_.current() ? sessions_.current()->rekeys() : 0)
      .field("sessions_adopted", stats_.sessions_adopted)
      .field("frames_rx", stats_.frames_rx)
      .field("frames_tx", stats_.frames_tx)
      .field("inner_rx_bytes", stats_.inner_rx_bytes)
      .field("inner_tx_bytes", stats_.inner_tx_bytes)
      .field("keepalives_tx", stats_.keepalives_tx)
      .field("keepalive_replies_rx", stats_.keepalive_replies_rx)
      .field("auth_fail", stats_.auth_fail)
      .field("replay", stats_.replay)
      .field("stale", stats_.stale)
      .field("malformed", stats_.malformed)
      .field("wrong_session", stats_.wrong_session)
      .field("no_key", stats_.no_key)
      .field("no_session", stats_.no_session)
      .field("bad_inner", stats_.bad_inner)
      .field("no_nat", stats_.no_nat)
      .field("tun_write_errors", tun_out_.stats().write_errors)
      .field("tun_packets_written", tun_out_.stats().packets)
      .field("tun_writes", tun_out_.stats().writes)
      .field("tun_packets_coalesced", tun_out_.stats().coalesced)
      .field("tun_super_packets", stats_.tun_super_packets)
      .field("tun_segments", stats_.tun_segments)
      .field("tun_gso_malformed", stats_.tun_gso_malformed)
      .field("tun_queue_drops", tun_queue_drops())
      .field("socket_rx_drops", link_.stats().rx_socket_drops)
      .field("socket_rx_coalesced", link_.stats().rx_gro_datagrams)
      .field("socket_tx_dropped", link_.stats().tx_dropped)
      .field("socket_tx_sends", link_.stats().tx_sends)
      .field("routed_flows", stats_.routed_flows)
      .field("no_route", stats_.no_route)
      .field("send_errors", stats_.send_errors)
      .field("seal_errors", stats_.seal_errors)
      .field("fragments_tx", stats_.fragments_tx)
      .field("icmp_errors_forwarded", stats_.icmp_errors_forwarded)
      .field("icmp_ignored", stats_.icmp_ignored);
  // Targets that could not be reached, by the reason the ICMP error gave.
  j.key("unreachable").begin_object();
  for (size_t r = 0; r < stats_.unreachable.size(); ++r)
    j.field(icmp_error_reason_name(IcmpErrorReason(r)), stats_.unreachable[r]);
  j.end_object();
  // Reassembly by origin: fragments taken in, datagrams completed / given up, fragments dropped by reason.
  j.key("reassembly").begin_object();
  for (const auto& [side, r] : {std::pair{"from_gateway", &gw_frags_}, std::pair{"from_tun", &tun_frags_}}) {
    const DatagramReassembler::Stats& st = r->stats();
    j.key(side).begin_object();
    j.field("fragments", st.fragments).field("reassembled", st.reassembled).field("timeouts", st.timeouts);
    j.field("evictions", st.evictions).field("in_progress", uint64_t(r->datagrams()));
    for (size_t d = 0; d < st.drops.size(); ++d) j.field(frag_drop_name(FragDrop(d)), st.drops[d]);
    j.end_object();
  }
  j.end_object().end_object();
  return j.str();
}

}  // namespace dptun
