#include "agent/agent.hpp"

#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

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
#include "packet/tcp_mss.hpp"
#include "proto/quic_datagram_mtu.hpp"

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

// Relay frames carry the plaintext right behind their header: nothing of the codec's (a prefix) sits between.
static_assert(RelayCodec::kLayout.prefix_len == 0);
}  // namespace

Agent::Agent(EventLoop& loop, AgentOptions opt)
    : loop_(loop),
      opt_(std::move(opt)),
      snat_(opt_.tun_net),
      gw_frags_(kAgentReassembly, random_seed()),
      tun_frags_(kAgentReassembly, random_seed()),
      frag_id_(uint16_t(random_seed())),
      pair_frags_in_(kAgentReassembly, random_seed()),
      pair_frags_tun_(kAgentReassembly, random_seed()),
      pair_frag_id_(uint16_t(random_seed())) {}

Agent::~Agent() {
  stop();
  if (!threaded()) {  // (with threads, their loops went with them)
    if (rx_link_) loop_.remove(rx_link_->fd());
    if (tun_watched_) loop_.remove(tun_.fd());
  }
  if (ring_watched_[0]) loop_.remove(from_tun_ring_->wake_fd());
  if (ring_watched_[1]) loop_.remove(from_gateway_ring_->wake_fd());
}

void Agent::stop() {
  if (!workers_started_) return;
  stop_workers_ = true;
  for (Worker* w : {&rx_, &tx_}) {
    wake(*w);
    if (w->thread.joinable()) w->thread.join();
  }
  workers_started_ = false;
}

size_t Agent::underlay_overhead() const {
  return opt_.quic_framing ? std::max(kUnderlayOverhead, quic_underlay_overhead(opt_.underlay_mtu)) : kUnderlayOverhead;
}

bool Agent::start(bool static_session, std::string& error) {
  if (opt_.quic_framing && threaded()) {
    error = "--transport quic runs the data path on the main loop, which owns the QUIC connection: one thread";
    return false;
  }
  // A slot of the engine per thread that seals or opens (AeadKey::process): with two data-path threads one each, and
  // a third for the main loop's pair frames (enable_pairs).
  const unsigned engine_threads = threaded() ? 3 : 1;
  if (opt_.aead != "openssl") {
    std::string why;
    engine_ = IpsecMbAead::open(engine_threads, why);
    if (!engine_ && opt_.aead == "ipsec-mb") {
      error = "--aead ipsec-mb: " + why;
      return false;
    }
    if (!engine_) LOG_INFO("AES-GCM through OpenSSL (%s)", why.c_str());
  }
  if (!engine_) engine_ = std::make_unique<OpensslAead>(engine_threads);
  if (auto* mb = dynamic_cast<IpsecMbAead*>(engine_.get())) LOG_INFO("AES-GCM through ipsec-mb (%s)", mb->arch());
  if (!SnatCodec::valid_subnet(opt_.tun_net, error)) {
    error = "--tun-net " + opt_.tun_net.str() + ": " + error;
    return false;
  }
  // A visitor's frames carry the service's hostname after the packet: the TUN's MTU leaves room for it.
  const size_t trailer = opt_.visit && !opt_.visit->target ? opt_.visit->host.size() + 1 : 0;
  const uint16_t tun_mtu = uint16_t(opt_.underlay_mtu - underlay_overhead() - trailer);
  if (!tun_.open(opt_.tun_name, opt_.tun_net, tun_mtu, error, std::nullopt, opt_.offloads)) return false;
  // Super-packets from the kernel: TCP (TSO) and UDP (USO, Linux 6.2; the kernel takes USO4 only with USO6) of up
  // to 64 KiB with partial checksums; we segment them (IPv6 never comes: the TUN has none). Without TUN_F_USO4 the kernel also refuses UDP super-packets we would write, so UDP coalescing
  // follows it; TCP coalescing needs only the virtio-net header.
  const unsigned tun_offloads = tun_.set_offloads(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_USO4 | TUN_F_USO6);
  tun_out_.enable_coalescing(true, tun_offloads & TUN_F_USO4);
  if (opt_.lan_nat && !lan_nat_.enable(tun_.name(), opt_.tun_net, error)) return false;

  // Each direction's loop: the main one, or one of its own (its thread starts below) with an eventfd the main
  // thread wakes it by (a new Setup, a keepalive to send).
  for (Worker* w : {&rx_, &tx_}) {
    if (!threaded()) {
      w->loop = &loop_;
      continue;
    }
    w->own_loop = std::make_unique<EventLoop>();
    if (!w->own_loop->init(error)) return false;
    w->loop = w->own_loop.get();
    w->wake = Fd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!w->wake) {
      error = std::string("eventfd: ") + strerror(errno);
      return false;
    }
    const bool down = w == &rx_;
    if (!w->loop->add(w->wake.get(), EPOLLIN, [this, w, down](uint32_t) {
          uint64_t n;
          while (read(w->wake.get(), &n, sizeof n) > 0) {
          }
          if (down)
            rx_wakeup();
          else
            tx_wakeup();
        })) {
      error = std::string("epoll: cannot watch an eventfd: ") + strerror(errno);
      return false;
    }
  }
  // Direct paths' data with two threads: the rings the directions hand the main loop the pairs' packets through
  // (upstream: the TUN's packets to pair addresses, super-packets of up to 64 KiB; downstream: the pair frames dpgw
  // relayed). Made before the threads start, kept until they end.
  if (threaded() && opt_.pair_data) {
    from_tun_ring_ = std::make_unique<HandoffRing>(size_t(8) << 20);
    from_gateway_ring_ = std::make_unique<HandoffRing>(size_t(4) << 20);
    for (HandoffRing* ring : {from_tun_ring_.get(), from_gateway_ring_.get()}) {
      const bool from_tun = ring == from_tun_ring_.get();
      if (!ring->open() || !loop_.add(ring->wake_fd(), EPOLLIN, [this, from_tun](uint32_t) {
            if (from_tun)
              drain_from_tun(monotonic_ns());
            else
              drain_from_gateway(monotonic_ns());
          })) {
        error = std::string("direct paths: no eventfd for the data-path threads: ") + strerror(errno);
        return false;
      }
      ring_watched_[from_tun ? 0 : 1] = true;
    }
  }
  if (!tx_.loop->add(tun_.fd(), EPOLLIN, [this](uint32_t) { tun_readable(monotonic_ns()); })) {
    error = std::string("epoll: cannot watch the TUN: ") + strerror(errno);
    return false;
  }
  tun_watched_ = true;
  if (static_session) {
    auto s = std::make_unique<AgentSession>(opt_.session, opt_.psk, opt_.key_len, opt_.rekey_interval_ns, *engine_);
    s->use_engine_threads(0, threaded() ? 1 : 0);
    sessions_.adopt(std::move(s), monotonic_ns());
    if (!open_link(opt_.gateway, error)) return false;
  }
  LOG_INFO("TUN %s %s mtu %u%s", tun_.name().c_str(), opt_.tun_net.str().c_str(), unsigned(tun_mtu),
           static_session ? (", static session " + std::to_string(opt_.session) + " to gateway " + opt_.gateway.str() +
                             " from " + link_->local().str())
                                .c_str()
                          : ", waiting for a session from dpctld");
  log_offloads(tun_offloads);
  started_ns_ = monotonic_ns();
  last_stats_ns_ = started_ns_;
  last_auth_report_ns_ = started_ns_;
  publish({}, nullptr);
  if (threaded()) {
    workers_started_ = true;
    rx_.thread = std::thread([this] { run_worker(rx_, true); });
    tx_.thread = std::thread([this] { run_worker(tx_, false); });
  }
  request_keepalive(started_ns_);
  return true;
}

// A direction's thread: its own loop until stop(), signals left to the main thread (whose loop they must wake).
void Agent::run_worker(Worker& w, bool downstream) {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGPIPE}) sigaddset(&set, sig);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  pthread_setname_np(pthread_self(), downstream ? "dpagent-down" : "dpagent-up");
  w.loop->run(stop_workers_, 100, [this, downstream] {
    const uint64_t now = monotonic_ns();
    if (downstream)
      rx_housekeeping(now);
    else
      tx_housekeeping(now);
  });
  // The last frames kept for sealing go out before the thread ends.
  if (!downstream) flush_link(monotonic_ns());
}

void Agent::wake(Worker& w) {
  if (!w.wake) return;
  const uint64_t one = 1;
  ssize_t r = write(w.wake.get(), &one, sizeof one);
  (void)r;
}

// Main thread: a Setup naming the current sessions and link, for both directions. Each takes it at its next wakeup
// (woken now) and says so (Worker::seen); the previous Setup and what only it named (`gone`, `old_link`) are freed
// once both have (free_retired, from tick).
void Agent::publish(SessionSlots::Retired gone, std::unique_ptr<UdpLink> old_link) {
  auto s = std::make_unique<Setup>();
  s->generation = ++generation_;
  s->current = sessions_.current();
  s->previous = sessions_.previous();
  s->link = link_.get();
  s->gateway = opt_.gateway;
  setup_.store(s.get(), std::memory_order_release);
  if (setup_owned_) retired_.push_back(Retired{generation_, nullptr, nullptr, std::move(setup_owned_)});
  setup_owned_ = std::move(s);
  for (auto& g : gone) retired_.push_back(Retired{generation_, std::move(g), nullptr, nullptr});
  if (old_link) retired_.push_back(Retired{generation_, nullptr, std::move(old_link), nullptr});
  if (threaded()) {
    wake(rx_);
    wake(tx_);
  } else {
    rx_sync();
    tx_sync();
  }
  free_retired();
}

void Agent::free_retired() {
  const uint64_t seen = std::min(rx_.seen.load(std::memory_order_acquire), tx_.seen.load(std::memory_order_acquire));
  std::erase_if(retired_, [&](Retired& r) {
    if (r.generation > seen) return false;
    if (r.link) {
      const UdpLinkStats& st = r.link->stats();
      old_links_.rx_datagrams += st.rx_datagrams;
      old_links_.rx_gro_datagrams += st.rx_gro_datagrams;
      old_links_.rx_socket_drops += st.rx_socket_drops;
      old_links_.tx_frames += st.tx_frames;
      old_links_.tx_sends += st.tx_sends;
      old_links_.tx_dropped += st.tx_dropped;
    }
    return true;
  });
}

// Downstream takes the latest Setup: the socket it receives from follows the link.
void Agent::rx_sync() {
  const Setup* s = setup_.load(std::memory_order_acquire);
  if (!s || s == rx_.setup) return;
  if (s->link != rx_link_) {
    if (rx_link_) rx_.loop->remove(rx_link_->fd());
    rx_link_ = nullptr;
    if (s->link) {
      if (rx_.loop->add(s->link->fd(), EPOLLIN, [this](uint32_t) { gateway_readable(monotonic_ns()); }))
        rx_link_ = s->link;
      else
        LOG_ERROR("epoll: cannot watch the socket to gateway %s: %s", s->gateway.str().c_str(), strerror(errno));
    }
  }
  rx_.setup = s;
  rx_.seen.store(s->generation, std::memory_order_release);
}

// Upstream takes the latest Setup: frames kept for sealing belong to the session that counted them and go out on
// the link they were built in first.
void Agent::tx_sync() {
  const Setup* s = setup_.load(std::memory_order_acquire);
  if (!s || s == tx_.setup) return;
  if (tx_.setup && (s->current != tx_.setup->current || s->link != tx_.setup->link)) flush_link(monotonic_ns());
  tx_.setup = s;
  tx_.seen.store(s->generation, std::memory_order_release);
}

void Agent::rx_wakeup() { rx_sync(); }

void Agent::tx_wakeup() {
  tx_sync();
  if (keepalive_wanted_.exchange(false, std::memory_order_acq_rel)) send_keepalive(monotonic_ns());
}

void Agent::rx_housekeeping(uint64_t now_ns) {
  rx_sync();
  gw_frags_.expire(now_ns);
}

void Agent::tx_housekeeping(uint64_t now_ns) {
  tx_wakeup();
  tun_frags_.expire(now_ns);
}

// Main thread: upstream sends a keepalive at its next wakeup (at once, with one thread).
void Agent::request_keepalive(uint64_t now_ns) {
  last_keepalive_ns_ = now_ns;
  keepalive_wanted_.store(true, std::memory_order_release);
  if (threaded())
    wake(tx_);
  else
    tx_wakeup();
}

bool Agent::open_link(Endpoint gateway, std::string& error) {
  auto link = std::make_unique<UdpLink>();
  if (!link->open(gateway, opt_.bind, error, UdpOffloads{opt_.offloads, opt_.offloads})) return false;
  opt_.gateway = gateway;
  if (opt_.offloads)
    LOG_INFO("socket to gateway %s: UDP segmentation (UDP_SEGMENT) %s, receive coalescing (UDP_GRO) %s",
             gateway.str().c_str(), link->offloads().gso ? "on" : "off (not in this kernel)",
             link->offloads().gro ? "on" : "off (not in this kernel)");
  link_ = std::move(link);
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

void Agent::offer(SessionGrant grant) {
  if (grant.quic)
    adopt_quic(grant, monotonic_ns());
  else
    adopt(std::move(grant), monotonic_ns());
}

// A registration whose QUIC connection carries the data: the sends and the deliveries go through it from now on
// (relay sessions of earlier registrations keep receiving until they expire).
void Agent::adopt_quic(const SessionGrant& g, uint64_t now_ns) {
  if (!opt_.quic_framing) {  // the ControlClient hands over connections only with --transport quic
    LOG_ERROR("session %u: a QUIC connection for the data without --transport quic: ignored", g.index);
    return;
  }
  if (quic_ && quic_ != g.quic) withdraw_quic();
  quic_ = g.quic;
  quic_session_ = g.index;
  quic_gateway_ = g.gateway;
  opt_.session = g.index;
  opt_.keepalive_ns = g.keepalive_ns;
  quic_->use_for_data(this, g.keepalive_ns);
  main_stats_.sessions_adopted++;
  link_state_ = Link::Unknown;
  link_up_.store(false, std::memory_order_relaxed);
  last_gateway_rx_ns_ = 0;
  started_ns_ = now_ns;
  LOG_INFO("session %u: data as QUIC DATAGRAM frames, up to %zu bytes of inner packet each; keep-alive PINGs every "
           "%.1f s",
           g.index, packet_budget(0), double(std::min(g.keepalive_ns, QuicControlConnection::kIdleTimeoutNs / 3)) / 1e9);
}

void Agent::withdraw_quic() {
  if (!quic_) return;
  datagrams_done();  // nothing may point into the connection's burst
  const QuicControlConnection::Stats& st = quic_->stats();
  quic_old_.packets_rx += st.packets_rx;
  quic_old_.packets_tx += st.packets_tx;
  quic_old_.sends += st.sends;
  quic_old_.send_drops += st.send_drops;
  quic_old_.socket_rx_drops += st.socket_rx_drops;
  quic_old_.stateless_resets += st.stateless_resets;
  quic_old_.datagrams_waited += st.datagrams_waited;
  quic_old_.waiting_dropped += st.waiting_dropped + quic_->waiting();  // (what still waits goes with it)
  quic_->use_for_data(nullptr, QuicControlConnection::kControlKeepAliveNs);
  quic_ = nullptr;
  link_state_ = Link::Unknown;
  link_up_.store(false, std::memory_order_relaxed);
  LOG_INFO("session %u: its QUIC connection is gone; packets from the TUN count as no_session until the next "
           "registration",
           quic_session_);
}

void Agent::adopt(SessionGrant g, uint64_t now_ns) {
  // The new session sends from now on; the previous one still receives what is already on its way (SessionSlots).
  // Frames upstream kept for sealing under the old one go out first (tx_sync).
  const uint32_t index = g.index;
  auto session = std::make_unique<AgentSession>(g.index, std::move(g.secret), g.key_len, g.rekey_interval_ns,
                                                *engine_, AgentSession::CounterMode::FromZero);
  session->use_engine_threads(0, threaded() ? 1 : 0);
  SessionSlots::Retired gone;
  if (sessions_.adopt(std::move(session), now_ns, &gone))
    LOG_INFO("session %u is a new registration under an index already in use here: the old keys are discarded",
             index);
  opt_.keepalive_ns = g.keepalive_ns;
  opt_.session = g.index;
  main_stats_.sessions_adopted++;
  std::unique_ptr<UdpLink> old_link;
  if (!link_ || !(g.gateway == opt_.gateway)) {
    // The pair frames queued for dpgw go out on the old socket before it goes; the next ones on the new one.
    pair_relay_flush();
    pair_relay_fd_ = -1;
    std::string error;
    old_link = std::move(link_);
    if (!open_link(g.gateway, error)) LOG_ERROR("%s", error.c_str());
  }
  link_state_ = Link::Unknown;
  link_up_.store(false, std::memory_order_relaxed);
  last_gateway_rx_ns_ = 0;
  started_ns_ = now_ns;
  publish(std::move(gone), std::move(old_link));
  if (link_) request_keepalive(now_ns);
}

// A send or receive error on the socket to the gateway, counted and logged (at most every 5 s) by the direction
// that saw it.
void Agent::note_send_error(Worker& w, AgentStats& stats, int err, uint64_t now_ns) {
  if (!err) return;
  stats.send_errors++;
  if (now_ns - w.last_warn_ns < 5 * kNsPerSec) return;
  w.last_warn_ns = now_ns;
  const std::string gateway = w.setup ? w.setup->gateway.str() : std::string("?");
  if (err == -ECONNREFUSED)
    LOG_WARN("gateway %s answers 'port unreachable': no dpgw is listening on that address and port", gateway.c_str());
  else
    LOG_WARN("cannot send to gateway %s: %s", gateway.c_str(), strerror(-err));
}

// Upstream: a keepalive (the main thread asked for it), sealed with the current session's transmit counter.
void Agent::send_keepalive(uint64_t now_ns) {
  const Setup* s = tx_.setup;
  if (!s || !s->current || !s->link) return;
  // Without an answer, the gateway may have restarted: it has keys ready for the wall clock's epoch.
  if (!link_up_.load(std::memory_order_relaxed)) s->current->anchor_to_clock();
  uint8_t* frame = s->link->tx_slot();
  if (!s->current->seal_later(FrameType::Keepalive, 0, frame, 0, now_ns)) {
    LOG_ERROR("cannot seal a keepalive (key derivation failed)");
    return;
  }
  tx_stats_.keepalives_tx++;
  queue_frame(codec_.layout().frame_len(0), now_ns);
  flush_link(now_ns);
}

// Downstream.
void Agent::gateway_readable(uint64_t now_ns) {
  rx_sync();
  UdpLink* link = rx_.setup ? rx_.setup->link : nullptr;
  if (!link) return;
  // At most kGatewayBatchesPerWakeup batches (256 datagrams, as tun_readable), then back to the loop: a flood
  // from the gateway cannot starve the TUN, the control connection or the timers. The socket is registered
  // level-triggered (common/event_loop.hpp adds it without EPOLLET), so what is left wakes the loop again at once.
  for (unsigned batches = 0; batches < kGatewayBatchesPerWakeup; ++batches) {
    int n = link->receive_batch();
    if (n < 0) {
      note_send_error(rx_, rx_stats_, n, now_ns);
      return;
    }
    if (n == 0) return;
    size_t count = 0;
    bool pair_frames = false;  // (one thread: opened in place, their packets in the pair path's TUN writer)
    for (int i = 0; i < n; ++i) {
      link->each_frame(unsigned(i), [&](std::span<uint8_t> frame) {
        if (frame.size() > 2 && frame[0] == kRelayVersion && (frame[2] & kFlagPair)) {  // relayed by dpgw
          if (!pairs_on_.load(std::memory_order_acquire)) {
            rx_stats_.wrong_session++;
          } else if (!threaded()) {
            pair_frame(frame, true, now_ns);
            pair_frames = true;
          } else if (uint8_t* p = from_gateway_ring_->reserve(frame.size())) {  // the main loop opens it
            std::memcpy(p, frame.data(), frame.size());
            from_gateway_ring_->commit();
          } else {
            rx_stats_.handoff_drops++;
          }
          return;
        }
        // The receiver index picks the session: the current one, or the previous one during its grace time.
        uint32_t receiver;
        AgentSession* s = codec_.receiver_of(frame, receiver) ? rx_.setup->for_index(receiver) : rx_.setup->current;
        rx_batch_[count++] = AgentSession::Received{frame, s, {}, AgentSession::OpenResult::Malformed};
        if (count == rx_batch_.size()) {
          frames_from_gateway({rx_batch_.data(), count}, now_ns);
          count = 0;
        }
      });
    }
    frames_from_gateway({rx_batch_.data(), count}, now_ns);
    // The packets the TUN writers hold point into the receive buffers: out before they are reused.
    tun_out_.flush();
    if (pair_frames) pair_batch_end();
    if (from_gateway_ring_) from_gateway_ring_->wake();
    if (n < int(UdpLink::kBatch)) return;
  }
}

// Frames from the gateway, opened in bursts by their sessions (one AEAD call per key), then each delivered.
void Agent::frames_from_gateway(std::span<AgentSession::Received> batch, uint64_t now_ns) {
  if (batch.empty()) return;
  for (AgentSession* s : {rx_.setup->current, rx_.setup->previous})
    if (s) s->open_burst(batch, now_ns);
  for (AgentSession::Received& r : batch) frame_from_gateway(r, now_ns);
}

// One opened frame from the gateway: its inner packet translated and handed to the TUN writer.
void Agent::frame_from_gateway(AgentSession::Received& r, uint64_t now_ns) {
  AgentSession* s = r.session;
  if (!s) {
    rx_stats_.no_session++;
    return;
  }
  const std::span<uint8_t> frame = r.frame;
  const FrameMeta& meta = r.meta;
  switch (r.result) {
    case AgentSession::OpenResult::Ok: break;
    case AgentSession::OpenResult::Malformed: rx_stats_.malformed++; return;
    case AgentSession::OpenResult::WrongSession: rx_stats_.wrong_session++; return;
    case AgentSession::OpenResult::Replay: rx_stats_.replay++; return;
    case AgentSession::OpenResult::Stale: rx_stats_.stale++; return;
    case AgentSession::OpenResult::NoKey: rx_stats_.no_key++; return;
    case AgentSession::OpenResult::AuthFail: rx_stats_.auth_fail++; return;
  }
  rx_stats_.frames_rx++;
  // The gateway answers on this session (the main thread's tick turns this into liveness, or a longer grace time
  // for a previous session).
  s->heard(now_ns);
  if (meta.type == FrameType::Keepalive) {
    if (meta.flags & kFlagKeepaliveReply) rx_stats_.keepalive_replies_rx++;
    return;
  }
  if (meta.type != FrameType::Data) {
    rx_stats_.malformed++;
    return;
  }
  InnerHeader ih;
  std::span<uint8_t> inner;
  if (!codec_.read_inner(frame, ih, inner)) {
    rx_stats_.malformed++;
    return;
  }
  inner_from_gateway(rx_delivery_, ih, inner, s->index(), now_ns);
}

// QUIC framing: a DATAGRAM frame from the gateway. Its data is copied into the burst's arena (the packet is rewritten
// in place and the TUN writer keeps it until the burst ends), then handled as an opened relay frame's plaintext.
void Agent::datagram(std::span<const uint8_t> data, uint64_t now_ns) {
  rx_stats_.datagrams_rx++;
  if (data.size() > quic_rx_arena_.size() - quic_rx_used_) {
    tun_out_.flush();
    quic_rx_used_ = 0;
  }
  if (data.size() > quic_rx_arena_.size()) {  // over 256 KiB: cannot be an inner packet
    rx_stats_.malformed++;
    return;
  }
  uint8_t* p = quic_rx_arena_.data() + quic_rx_used_;
  std::memcpy(p, data.data(), data.size());
  quic_rx_used_ += data.size();
  InnerHeader ih;
  std::span<uint8_t> inner;
  if (!read_inner_plaintext({p, data.size()}, ih, inner)) {
    rx_stats_.malformed++;
    return;
  }
  inner_from_gateway(rx_delivery_, ih, inner, quic_session_, now_ns);
}

void Agent::datagrams_done() {
  tun_out_.flush();
  quic_rx_used_ = 0;
}

void Agent::inner_from_gateway(Delivery& d, const InnerHeader& ih, std::span<uint8_t> inner, uint32_t session,
                               uint64_t now_ns, PairData::Pair* pair) {
  uint8_t* pkt = inner.data();
  size_t pkt_len = inner.size();
  bool reassembled = false;
  std::string_view name;
  if ((ih.flags & kInnerHasName) && !read_name_trailer(inner, name, pkt_len)) {
    d.stats.bad_inner++;
    return;
  }
  // A pair frame names a flow of its visitor's block, or nothing (checked before any reassembly state is spent).
  const uint32_t tag = uint32_t(ih.flow_id);
  if (pair && (!SnatCodec::is_pair_tag(tag) || SnatCodec::pair_block(tag) != pair->block)) {
    pairs_->stats().bad_tag++;
    return;
  }
  // A datagram bigger than one frame comes as IPv4 fragments, one frame each: put it together first (a pair's in the
  // main loop's reassembler).
  if (is_ipv4_fragment(pkt, pkt_len)) {
    PacketInfo fpi;
    if (parse_ip({pkt, pkt_len}, fpi) != ParseStatus::Ok || fpi.l3 != L3Kind::Ipv4) {
      d.stats.bad_inner++;
      return;
    }
    const uint64_t key = uint64_t(session) << 32 | uint32_t(ih.flow_id);
    const std::span<uint8_t> whole = d.frags.add({pkt, fpi.ip_total_len}, key, now_ns);
    if (whole.empty()) return;
    pkt = whole.data();
    pkt_len = whole.size();
    reassembled = true;
  }
  PacketInfo pi;
  if (!parse_tunnel_packet({pkt, pkt_len}, pi) || pi.l4_proto != ih.proto) {
    d.stats.bad_inner++;
    return;
  }
  if (pair && pair->controlling) {
    // A reply on one of our pair flows: to the program that connected, from the local address it used.
    const std::optional<VisitorFlows::Program> to =
        visitor_flows_.reply(SnatCodec::pair_index(tag), pi.l4_proto, pi.tcp_flags, now_ns);
    if (!to) {
      pairs_->stats().no_flow++;
      return;
    }
    ipv4_rewrite_src(pkt, pkt + pi.l4_offset, pi.l4_proto, opt_.visit->local.ip.v4(), opt_.visit->local.port);
    ipv4_rewrite_dst(pkt, pkt + pi.l4_offset, pi.l4_proto, to->ip, to->port);
    d.stats.inner_rx_bytes += pi.ip_total_len;
    to_tun(d, {pkt, pi.ip_total_len}, reassembled);
    return;
  }
  if (pair) {
    // The agent: a visitor's flow goes to the target of its rule, whatever the visitor wrote (as dpgw rewrites a
    // visitor's packets to it): never elsewhere, never to a translated address of this TUN (another flow's).
    if (!pairs_->address_to_target(*pair, pkt, pi, opt_.tun_net)) return;
    // The target's segments come back through this end's frames: its SYN says they fit them (the visitor's --mtu
    // may be larger than ours), as dpgw clamps the SYNs it forwards to the tunnel's MTU.
    if (pi.l4_proto == kIpProtoTcp && (pi.tcp_flags & kTcpSyn) &&
        tcp_clamp_mss(pkt + pi.l4_offset, pi.tcp_header_len,
                      uint16_t(packet_budget(0, true) - kIpv4HeaderLen - kTcpHeaderLen)))
      d.stats.mss_clamped++;
    const Endpoint snat = snat_.encode_pair(tag);
    ipv4_rewrite_src(pkt, pkt + pi.l4_offset, pi.l4_proto, snat.ip.v4(), snat.port);
    d.stats.inner_rx_bytes += pi.ip_total_len;
    to_tun(d, {pkt, pi.ip_total_len}, reassembled);
    return;
  }
  if (opt_.visit) {
    // A reply from the service we visit: to the program that connected, from the local address it used.
    if (opt_.visit->target && pi.src_ip == opt_.visit->target->ip.v4() && pi.src_port == opt_.visit->target->port)
      ipv4_rewrite_src(pkt, pkt + pi.l4_offset, pi.l4_proto, opt_.visit->local.ip.v4(), opt_.visit->local.port);
    d.stats.inner_rx_bytes += pi.ip_total_len;
    to_tun(d, {pkt, pi.ip_total_len}, reassembled);
    return;
  }
  if (pi.dst_ip == 0) {
    // The gateway left the target to us (a hostname rule without one): the name picks it, the first time.
    const uint32_t tag = uint32_t(ih.flow_id) & SnatCodec::kTagMask;
    std::optional<Endpoint> target = name.empty() ? routed_.find(tag) : opt_.routes.lookup(name);
    if (!target) {
      rx_stats_.no_route++;
      if (!name.empty()) LOG_DEBUG("no local target for '%.*s'", int(name.size()), name.data());
      return;
    }
    if (!name.empty()) {
      routed_.remember(tag, *target);
      rx_stats_.routed_flows++;
    }
    ipv4_rewrite_dst(pkt, pkt + pi.l4_offset, pi.l4_proto, target->ip.v4(), target->port ? target->port : pi.dst_port);
  }
  // The source the target sees is a function of the flow's tag: no state, nothing to lose on restart.
  const Endpoint snat = snat_.encode(uint32_t(ih.flow_id));
  ipv4_rewrite_src(pkt, pkt + pi.l4_offset, pi.l4_proto, snat.ip.v4(), snat.port);
  d.stats.inner_rx_bytes += pi.ip_total_len;
  to_tun(d, {pkt, pi.ip_total_len}, reassembled);
}

// A packet for the TUN: one in a receive buffer waits in the writer until the batch ends (it may be coalesced with
// the next segments of its flow); a reassembled one lives in the reassembler's memory and goes at once.
void Agent::to_tun(Delivery& d, std::span<uint8_t> packet, bool reassembled) {
  if (reassembled)
    d.tun.write_now(packet);
  else
    d.tun.add(packet);
}

// Upstream.
template <class Each>
void Agent::tun_packets(std::span<uint8_t> packet, const VnetHeader& vnet, bool pair, AgentStats& st, Each&& each) {
  if ((vnet.gso_type & ~kVnetGsoEcn) == kVnetGsoNone) {
    // With checksum offload the kernel leaves the L4 checksum to us (the pseudo-header sum is in its place).
    if ((vnet.flags & kVnetNeedsCsum) && !complete_checksum(packet, vnet)) {
      st.bad_inner++;
      return;
    }
    each(packet);
    return;
  }
  // A TCP/UDP super-packet (TSO/USO): cut into segments of the size the kernel chose for the TUN's MTU, each
  // written straight into the frame (or datagram plaintext) it will travel in.
  const uint32_t segments = gso_segment_count(packet, vnet);
  if (!segments) {
    st.tun_gso_malformed++;
    return;
  }
  st.tun_super_packets++;
  for (uint32_t i = 0; i < segments; ++i) {
    uint8_t* slot = inner_packet_at(plaintext_slot(pair));
    const size_t len = gso_write_segment(packet, vnet, i, {slot, packet_room(pair)});
    if (!len) {
      st.tun_gso_malformed++;
      break;
    }
    st.tun_segments++;
    each(std::span<uint8_t>{slot, len});
  }
}

void Agent::tun_readable(uint64_t now_ns) {
  tx_sync();
  static const Setup kNone{};  // nothing published yet: packets are counted as no_session
  const Setup* setup = tx_.setup ? tx_.setup : &kNone;
  // An agent's packets to a pair address belong to a visitor's flow that came in pair frames: the main loop's pair
  // path sends them (handed over with two threads), whether or not the gateway's session is there.
  const bool pair_replies = !opt_.visit && pairs_on_.load(std::memory_order_acquire);
  for (unsigned budget = 0; budget < 256; ++budget) {
    VnetHeader vnet;
    const ssize_t n = tun_.read_packet(tun_in_, &vnet);
    if (n <= 0) break;
    const std::span<uint8_t> packet{tun_in_.data(), size_t(n)};
    if (pair_replies && packet.size() >= kIpv4HeaderLen && (packet[0] >> 4) == 4 &&
        snat_.is_pair_address(load_be32(packet.data() + kIpv4OffDst))) {
      if (!threaded()) {
        pair_from_tun(packet, vnet, now_ns);
      } else if (uint8_t* p = from_tun_ring_->reserve(kVnetHeaderLen + packet.size())) {
        std::memcpy(p, &vnet, kVnetHeaderLen);
        std::memcpy(p + kVnetHeaderLen, packet.data(), packet.size());
        from_tun_ring_->commit();
      } else {
        tx_stats_.handoff_drops++;
      }
      continue;
    }
    if (!quic_active() && (!setup->current || !setup->link)) {
      tx_stats_.no_session++;
      continue;
    }
    tun_packets(packet, vnet, false, tx_stats_, [&](std::span<uint8_t> p) { packet_from_tun(p, now_ns); });
  }
  if (from_tun_ring_) from_tun_ring_->wake();
  flush_link(now_ns);
}

// The kernel fragments what it routes into the TUN beyond its MTU: a fragment is kept in `frags` until its datagram
// is whole (its destination port names the flow). Returns the datagram, or nothing (not whole yet, or malformed:
// counted on `st`).
std::span<uint8_t> Agent::whole_from_tun(std::span<uint8_t> packet, DatagramReassembler& frags, AgentStats& st,
                                         uint64_t now_ns) {
  if (!is_ipv4_fragment(packet.data(), packet.size())) return packet;
  PacketInfo fpi;
  if (parse_ip(packet, fpi) != ParseStatus::Ok || fpi.l3 != L3Kind::Ipv4) {
    st.bad_inner++;
    return {};
  }
  return frags.add(packet.first(fpi.ip_total_len), 0, now_ns);
}

// One packet the kernel routed into the TUN (a reply of a target, or a visitor's packet): sealed into a frame of its
// flow for the gateway. It may already lie in the link's send slot (segments are written there).
void Agent::packet_from_tun(std::span<uint8_t> packet, uint64_t now_ns) {
  // A fragmented datagram is put together first, then sent on in fragments of our own.
  packet = whole_from_tun(packet, tun_frags_, tx_stats_, now_ns);
  if (packet.empty()) return;
  // An ICMP error about a flow (its target, or a router on the way, refused the packet): counted, logged, and
  // passed on to the gateway, which tells the client.
  if (!opt_.visit && packet.size() >= kIpv4HeaderLen && (packet[0] >> 4) == 4 &&
      packet[kIpv4OffProto] == kIpProtoIcmp) {
    target_unreachable(packet, now_ns);
    return;
  }
  PacketInfo pi;
  if (!parse_tunnel_packet(packet, pi)) {
    tx_stats_.bad_inner++;
    return;
  }
  uint8_t* p = packet.data();
  packet = packet.first(pi.ip_total_len);
  if (opt_.visit) {
    // Programs here connect to the local address: the frame names the service (or, direct, its address).
    const AgentOptions::Visit& v = *opt_.visit;
    if (pi.dst_ip != v.local.ip.v4() || pi.dst_port != v.local.port) {
      tx_stats_.no_nat++;
      return;
    }
    if (pairs_) {
      // Which way the flow goes was chosen when it started (agent/visitor_flows.hpp): on the pair if its path was
      // direct then, else through dpgw.
      PairData::Pair* pair = pairs_->visitor_pair();
      const bool pair_ok = pair && pair->target && pairs_->direct(*pair);
      const uint32_t index = visitor_flows_.from_program(pi.l4_proto, pi.src_ip, pi.src_port,
                                                         pi.l4_proto == kIpProtoTcp ? pi.tcp_flags : 0, pair_ok, now_ns);
      if (index != VisitorFlows::kNone) {
        if (!pair || !pair->target) {  // between two pairings: the flow waits for the next (its packets are lost)
          pairs_->stats().no_pair++;
          return;
        }
        const Endpoint& t = *pair->target;
        ipv4_rewrite_dst(p, p + pi.l4_offset, pi.l4_proto, t.ip.v4(), t.port ? t.port : v.local.port);
        send_inner(pair, packet, SnatCodec::pair_tag(pair->block, index), pi.l4_proto, 0, {}, now_ns);
        return;
      }
    }
    if (v.target) {
      ipv4_rewrite_dst(p, p + pi.l4_offset, pi.l4_proto, v.target->ip.v4(), v.target->port);
      send_inner(nullptr, packet, 0, pi.l4_proto, kInnerDirect, {}, now_ns);
    } else {
      send_inner(nullptr, packet, 0, pi.l4_proto, kInnerHasName, v.host, now_ns);
    }
    return;
  }
  // A reply to a translated source names its flow; anything else the kernel routed here is not ours (a pair flow's
  // went to the pair path before: tun_readable).
  std::optional<uint32_t> tag = snat_.decode(Endpoint{Ipv4{pi.dst_ip}, pi.dst_port});
  if (!tag) {
    tx_stats_.no_nat++;
    return;
  }
  // The gateway finds the flow by its tag and rewrites the addresses from its own state; any session of the
  // flow's tunnel may carry it, so replies always use the current one.
  send_inner(nullptr, packet, *tag, pi.l4_proto, 0, {}, now_ns);
}

// The kernel routes ICMP errors about the packets we wrote into the TUN back into it, because their source is the
// flow's translated address: a route that says unreachable or prohibit, a neighbour that never answered ARP, a
// target with nothing on a UDP port, a filter that rejects. The quoted datagram's source names the flow. Each is
// counted by reason, logged (at most one line a second, bursts of 5), and sent to the gateway in a frame of the
// flow (inner protocol ICMP, protocol.md), which rewrites it for the client as a NAT router would.
void Agent::target_unreachable(std::span<uint8_t> packet, uint64_t now_ns) {
  IcmpError e;
  if (!parse_icmp_error(packet, e)) {
    tx_stats_.icmp_ignored++;
    return;
  }
  const std::optional<uint32_t> tag = snat_.decode(Endpoint{Ipv4{e.src_ip}, e.src_port});
  if (!tag || e.to != e.src_ip) {
    tx_stats_.no_nat++;
    return;
  }
  const IcmpErrorReason reason = e.reason();
  tx_stats_.unreachable[size_t(reason)]++;
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
  send_inner(nullptr, packet.first(load_be16(packet.data() + kIpv4OffTotalLen)), *tag, kIpProtoIcmp, 0, {}, now_ns);
  tx_stats_.icmp_errors_forwarded++;
}

// Sends an inner packet to the gateway (inner header: `flow`, `proto`, `flags`; a name trailer when `name` is
// given): in one data frame (or DATAGRAM frame) when it fits one, else as IPv4 fragments of our own, one frame each
// (protocol.md "Datagrams bigger than a frame"). The budget is what the TUN's MTU is: --mtu less the overhead.
void Agent::send_inner(PairData::Pair* pair, std::span<uint8_t> packet, uint32_t flow, uint8_t proto, uint8_t flags,
                       std::string_view name, uint64_t now_ns) {
  AgentStats& st = pair ? main_stats_ : tx_stats_;
  const size_t trailer = name.empty() ? 0 : name.size() + 1;
  const size_t budget = packet_budget(trailer, pair);
  const InnerHeader ih{flow, proto, flags};
  if (packet.size() <= budget) {
    uint8_t* plain = plaintext_slot(pair);
    uint8_t* pkt = inner_packet_at(plain);
    if (packet.data() != pkt) std::memmove(pkt, packet.data(), packet.size());
    send_plaintext(pair, plain, write_inner_plaintext(plain, ih, packet.size(), name), packet.size(), now_ns);
    return;
  }
  // Each fragment is built where the next plaintext goes: a datagram lying there moves first.
  const uint8_t* ip = packet.data();
  const std::span<const uint8_t> slot_area = pair ? std::span<const uint8_t>(pair_tx_)
                                             : quic_active() ? std::span<const uint8_t>(quic_plain_)
                                                             : std::span<const uint8_t>();
  if (ip >= slot_area.data() && ip < slot_area.data() + slot_area.size()) {
    std::vector<uint8_t>& copy = pair ? pair_frag_src_ : quic_frag_src_;
    copy.assign(packet.begin(), packet.end());
    ip = copy.data();
  }
  const uint32_t hl = uint32_t(ip[0] & 0x0f) * 4;
  const FragmentPlan plan = plan_ipv4_fragments(hl, uint32_t(packet.size()) - hl, uint32_t(budget));
  if (!plan.count) {
    st.bad_inner++;
    return;
  }
  const uint16_t id = pair ? pair_frag_id_++ : frag_id_++;
  for (uint32_t k = 0; k < plan.count; ++k) {
    const uint32_t off = k * plan.chunk;
    const uint32_t len = std::min<uint32_t>(plan.chunk, uint32_t(packet.size()) - hl - off);
    uint8_t* plain = plaintext_slot(pair);
    uint8_t* out = inner_packet_at(plain);
    const size_t fh = write_ipv4_fragment_header(out, {ip, hl}, id, off, len, k + 1 < plan.count);
    std::memcpy(out + fh, ip + hl + off, len);
    send_plaintext(pair, plain, write_inner_plaintext(plain, ih, fh + len, name), fh + len, now_ns);
    st.fragments_tx++;
  }
}

uint8_t* Agent::plaintext_slot(bool pair) {
  if (pair) return pair_tx_.data() + codec_.layout().inner_offset();
  if (quic_active()) return quic_plain_.data();
  return tx_.setup->link->tx_slot() + codec_.layout().inner_offset();
}

size_t Agent::packet_room(bool pair) const {
  if (pair) return pair_tx_.size() - codec_.layout().data_overhead();
  if (quic_active()) return quic_plain_.size() - inner_plaintext_overhead();
  return UdpLink::kMaxDatagram - codec_.layout().data_overhead();
}

size_t Agent::packet_budget(size_t trailer, bool pair) const {
  size_t budget = opt_.underlay_mtu - underlay_overhead();
  // (the same by construction: quic_max_datagram_data of --mtu less IPv4 and UDP)
  if (!pair && quic_active()) budget = std::min(budget, quic_->max_datagram() - inner_plaintext_overhead());
  return budget - trailer;
}

void Agent::send_plaintext(PairData::Pair* pair, uint8_t* plaintext, size_t len, size_t inner_bytes,
                           uint64_t now_ns) {
  if (pair) {
    pairs_->send(*pair, plaintext - codec_.layout().inner_offset(), len, now_ns);
    main_stats_.inner_tx_bytes += inner_bytes;
    return;
  }
  if (quic_active())
    send_datagram({plaintext, len}, inner_bytes, now_ns);
  else
    send_data_frame(plaintext - codec_.layout().inner_offset(), len, inner_bytes, now_ns);
}

// QUIC framing: the plaintext as one DATAGRAM frame; when the congestion window is full it waits in the
// connection's bounded slots for ACKs to open it, and beyond them it is dropped and counted (an inner TCP flow slows
// down as after any loss); nothing blocks.
void Agent::send_datagram(std::span<const uint8_t> plaintext, size_t inner_bytes, uint64_t now_ns) {
  switch (quic_->send_datagram(plaintext, now_ns)) {
    case QuicControlConnection::SendResult::Sent:
    case QuicControlConnection::SendResult::Waiting:
      tx_stats_.datagrams_tx++;
      tx_stats_.inner_tx_bytes += inner_bytes;
      break;
    case QuicControlConnection::SendResult::Congested: tx_stats_.datagram_drops_congestion++; break;
    case QuicControlConnection::SendResult::TooBig: tx_stats_.datagram_drops_too_big++; break;
    case QuicControlConnection::SendResult::Closed: tx_stats_.datagram_drops_closed++; break;
  }
}

// Seals a data frame built in the link's send slot (its plaintext, `plaintext_len` bytes, written behind the header)
// and queues it.
void Agent::send_data_frame(uint8_t* frame, size_t plaintext_len, size_t inner_bytes, uint64_t now_ns) {
  const uint32_t encrypted = codec_.layout().prefix_len + uint32_t(plaintext_len);
  if (!tx_.setup->current->seal_later(FrameType::Data, 0, frame, encrypted, now_ns)) {
    LOG_ERROR("cannot seal a frame (key derivation failed)");
    return;
  }
  tx_stats_.frames_tx++;
  tx_stats_.inner_tx_bytes += inner_bytes;
  queue_frame(codec_.layout().frame_len(encrypted), now_ns);
}

// A frame built in the link's slot and kept for sealing: queued; a full batch is sealed and sent at once.
void Agent::queue_frame(size_t len, uint64_t now_ns) {
  tx_.setup->link->queue(len);
  if (tx_.setup->link->full()) flush_link(now_ns);
}

// The queued frames: sealed in one burst (one AEAD call per key), then sent.
void Agent::flush_link(uint64_t now_ns) {
  if (quic_active()) quic_->flush_packets(now_ns);  // the datagrams' packets (the QUIC path seals as it writes)
  if (!threaded()) pair_flush();  // (with two threads the main loop sends the pair path's frames)
  const Setup* setup = tx_.setup;
  if (!setup) return;
  if (AgentSession* s = setup->current; s && s->sealing()) {
    if (const size_t failed = s->seal_pending()) {
      tx_stats_.seal_errors += failed;
      if (setup->link) setup->link->drop_wiped();
      LOG_ERROR("AES-GCM failed on %zu frames: not sent", failed);
    }
  }
  if (setup->link) note_send_error(tx_, tx_stats_, setup->link->flush(), now_ns);
}

// One periodic tick rather than a timer each: the deadlines move with the state (probing every 250 ms until the
// gateway answers, liveness counted from its last answer, sessions expiring by their own clocks), and each check is
// a comparison. With one thread the directions' housekeeping (unfinished reassembly) runs here too.
void Agent::tick(uint64_t now_ns) {
  if (!threaded()) {
    rx_housekeeping(now_ns);
    tx_housekeeping(now_ns);
  }
  free_retired();
  if (pairs_) {
    pair_frags_in_.expire(now_ns);
    pair_frags_tun_.expire(now_ns);
  }
  if (pairs_ && now_ns - last_flow_expiry_ns_ >= kNsPerSec) {
    visitor_flows_.expire(now_ns);
    last_flow_expiry_ns_ = now_ns;
    // No pairing with data came back in time: the flows on the pair start over through dpgw.
    if (no_pair_since_ns_ && now_ns - no_pair_since_ns_ >= kPairGraceNs && !pairs_->visitor_pair()) {
      if (visitor_flows_.pair_flows())
        LOG_INFO("direct paths: no pair for %.0f s: %zu flows on the pair start over through the gateway",
                 double(now_ns - no_pair_since_ns_) / 1e9, visitor_flows_.pair_flows());
      visitor_flows_.forget_pair_flows();
      no_pair_since_ns_ = 0;
    }
  }
  if (quic_active()) {
    // QUIC framing: any packet on the connection (dpgw's ACKs of our PINGs included) says the gateway is there;
    // ngtcp2 sends the keepalives and ends the connection after its idle timeout (the ControlClient then registers
    // again).
    const uint64_t heard = quic_->last_rx_ns();
    if (heard && heard != last_gateway_rx_ns_) {
      if (link_state_ != Link::Up)
        LOG_INFO("QUIC connection to gateway %s answers (session %u): tunnel up", quic_gateway_.str().c_str(),
                 quic_session_);
      link_state_ = Link::Up;
      last_gateway_rx_ns_ = heard;
    }
    const uint64_t silent = now_ns - (last_gateway_rx_ns_ ? std::min(last_gateway_rx_ns_, now_ns) : started_ns_);
    if (link_state_ != Link::Down && silent > 3 * opt_.keepalive_ns) {
      LOG_WARN("nothing from gateway %s on the QUIC connection for %.1f s (session %u): it is down or unreachable",
               quic_gateway_.str().c_str(), double(silent) / 1e9, quic_session_);
      link_state_ = Link::Down;
    }
  }
  // What downstream heard: the current session's answers make the link live, the previous one's keep it receiving.
  AgentSession* current = quic_active() ? nullptr : sessions_.current();
  if (current) {
    const uint64_t heard = current->last_heard_ns();
    if (heard && heard != last_gateway_rx_ns_) {
      if (link_state_ != Link::Up)
        LOG_INFO("gateway %s %s (session %u)", opt_.gateway.str().c_str(),
                 link_state_ == Link::Unknown ? "answered: tunnel up" : "answering again: tunnel up",
                 current->index());
      link_state_ = Link::Up;
      link_up_.store(true, std::memory_order_relaxed);
      last_gateway_rx_ns_ = heard;
    }
  }
  if (AgentSession* previous = sessions_.previous(); previous && previous->last_heard_ns())
    sessions_.previous_heard(previous->last_heard_ns());
  SessionSlots::Retired gone;
  if (sessions_.expire(now_ns, &gone)) publish(std::move(gone), nullptr);
  if (current) {
    // Until the gateway has answered once, probe every 250 ms so the tunnel comes up (or back) quickly.
    uint64_t interval =
        link_state_ == Link::Up ? opt_.keepalive_ns : std::min<uint64_t>(opt_.keepalive_ns, 250'000'000ull);
    if (now_ns - last_keepalive_ns_ >= interval) request_keepalive(now_ns);
    uint64_t silent = now_ns - (last_gateway_rx_ns_ ? std::min(last_gateway_rx_ns_, now_ns) : started_ns_);
    if (link_state_ != Link::Down && silent > 3 * opt_.keepalive_ns) {
      LOG_WARN("no authenticated answer from gateway %s for %.1f s: it is down or unreachable, or it does not "
               "know session %u with this key",
               opt_.gateway.str().c_str(), double(silent) / 1e9, current->index());
      link_state_ = Link::Down;
      link_up_.store(false, std::memory_order_relaxed);
    }
  }
  if (now_ns - last_auth_report_ns_ >= 5 * kNsPerSec) {
    const uint64_t auth_fail = total(&AgentStats::auth_fail);
    if (auth_fail > auth_fail_reported_)
      LOG_WARN("%llu frames from gateway %s failed authentication in the last 5 s: the gateway uses another key "
               "for session %u (or someone tampers with the traffic)",
               (unsigned long long)(auth_fail - auth_fail_reported_), opt_.gateway.str().c_str(), opt_.session);
    auth_fail_reported_ = auth_fail;
    last_auth_report_ns_ = now_ns;
  }
  if (opt_.stats_interval_ns && now_ns - last_stats_ns_ >= opt_.stats_interval_ns) {
    printf("%s\n", stats_json().c_str());
    fflush(stdout);
    last_stats_ns_ = now_ns;
  }
}

// A counter summed over the threads that count it.
uint64_t Agent::total(StatCounter AgentStats::*field) const {
  return (rx_stats_.*field).get() + (tx_stats_.*field).get() + (main_stats_.*field).get();
}

std::string Agent::stats_json() const {
  // The socket's counters: the current one's and those of sockets closed since start.
  UdpLinkStats link;
  link = old_links_;
  if (link_) {
    const UdpLinkStats& st = link_->stats();
    link.rx_socket_drops += st.rx_socket_drops;
    link.rx_gro_datagrams += st.rx_gro_datagrams;
    link.tx_dropped += st.tx_dropped;
    link.tx_sends += st.tx_sends;
  }
  JsonWriter j;
  const bool quic = quic_active();
  j.begin_object()
      .field("framing", quic ? "quic" : "relay")
      .field("gateway", quic ? quic_gateway_.str() : opt_.gateway.str())
      .field("session", unsigned(quic ? quic_session_ : sessions_.current() ? sessions_.current()->index() : 0))
      .field("link", link_state_ == Link::Up ? "up" : link_state_ == Link::Down ? "down" : "unknown")
      .field("tx_epoch", sessions_.current() ? sessions_.current()->tx_epoch() : 0)
      .field("rekeys", sessions_.current() ? sessions_.current()->rekeys() : 0)
      .field("sessions_adopted", total(&AgentStats::sessions_adopted))
      .field("frames_rx", total(&AgentStats::frames_rx))
      .field("frames_tx", total(&AgentStats::frames_tx))
      .field("inner_rx_bytes", total(&AgentStats::inner_rx_bytes))
      .field("inner_tx_bytes", total(&AgentStats::inner_tx_bytes))
      .field("keepalives_tx", total(&AgentStats::keepalives_tx))
      .field("keepalive_replies_rx", total(&AgentStats::keepalive_replies_rx))
      .field("auth_fail", total(&AgentStats::auth_fail))
      .field("replay", total(&AgentStats::replay))
      .field("stale", total(&AgentStats::stale))
      .field("malformed", total(&AgentStats::malformed))
      .field("wrong_session", total(&AgentStats::wrong_session))
      .field("no_key", total(&AgentStats::no_key))
      .field("no_session", total(&AgentStats::no_session))
      .field("bad_inner", total(&AgentStats::bad_inner))
      .field("no_nat", total(&AgentStats::no_nat))
      .field("tun_write_errors", tun_out_.stats().write_errors.get() + pair_tun_out_.stats().write_errors.get())
      .field("tun_packets_written", tun_out_.stats().packets.get() + pair_tun_out_.stats().packets.get())
      .field("tun_writes", tun_out_.stats().writes.get() + pair_tun_out_.stats().writes.get())
      .field("tun_packets_coalesced", tun_out_.stats().coalesced.get() + pair_tun_out_.stats().coalesced.get())
      .field("tun_super_packets", total(&AgentStats::tun_super_packets))
      .field("tun_segments", total(&AgentStats::tun_segments))
      .field("tun_gso_malformed", total(&AgentStats::tun_gso_malformed))
      .field("tun_queue_drops", tun_queue_drops())
      .field("socket_rx_drops", link.rx_socket_drops.get())
      .field("socket_rx_coalesced", link.rx_gro_datagrams.get())
      .field("socket_tx_dropped", link.tx_dropped.get())
      .field("socket_tx_sends", link.tx_sends.get())
      .field("routed_flows", total(&AgentStats::routed_flows))
      .field("no_route", total(&AgentStats::no_route))
      .field("send_errors", total(&AgentStats::send_errors))
      .field("seal_errors", total(&AgentStats::seal_errors))
      .field("fragments_tx", total(&AgentStats::fragments_tx))
      .field("icmp_errors_forwarded", total(&AgentStats::icmp_errors_forwarded))
      .field("icmp_ignored", total(&AgentStats::icmp_ignored))
      .field("datagrams_rx", total(&AgentStats::datagrams_rx))
      .field("datagrams_tx", total(&AgentStats::datagrams_tx));
  // QUIC framing: inner packets not sent as DATAGRAM frames, by reason; the connection's packets and path.
  j.key("datagram_drops")
      .begin_object()
      .field("congestion", total(&AgentStats::datagram_drops_congestion))
      .field("too_big", total(&AgentStats::datagram_drops_too_big))
      .field("closed", total(&AgentStats::datagram_drops_closed))
      .end_object();
  {
    QuicControlConnection::Stats st = quic_old_;
    uint64_t cwnd = 0, in_flight = 0, srtt = 0;
    if (quic) {
      st.packets_rx += quic_->stats().packets_rx;
      st.packets_tx += quic_->stats().packets_tx;
      st.sends += quic_->stats().sends;
      st.send_drops += quic_->stats().send_drops;
      st.socket_rx_drops += quic_->stats().socket_rx_drops;
      st.stateless_resets += quic_->stats().stateless_resets;
      st.datagrams_waited += quic_->stats().datagrams_waited;
      st.waiting_dropped += quic_->stats().waiting_dropped;
      quic_->path_stats(cwnd, in_flight, srtt);
    }
    j.key("quic").begin_object();
    j.field("packets_rx", st.packets_rx).field("packets_tx", st.packets_tx).field("sends", st.sends);
    j.field("send_drops", st.send_drops).field("socket_rx_drops", st.socket_rx_drops);
    j.field("cwnd", cwnd).field("bytes_in_flight", in_flight);
    j.field("smoothed_rtt_us", srtt / 1000);
    j.field("datagrams_waited", st.datagrams_waited).field("waiting", quic ? quic_->waiting() : 0u);
    j.field("waiting_dropped", st.waiting_dropped).field("stateless_resets", st.stateless_resets);
    j.end_object();
  }
  // Targets that could not be reached, by the reason the ICMP error gave.
  j.key("unreachable").begin_object();
  // (upstream's, and the main loop's for pair flows)
  for (size_t r = 0; r < tx_stats_.unreachable.size(); ++r)
    j.field(icmp_error_reason_name(IcmpErrorReason(r)),
            tx_stats_.unreachable[r].get() + main_stats_.unreachable[r].get());
  j.end_object();
  // Reassembly by origin: fragments taken in, datagrams completed / given up, fragments dropped by reason.
  j.key("reassembly").begin_object();
  for (const auto& [side, r] : {std::pair{"from_gateway", &gw_frags_}, std::pair{"from_tun", &tun_frags_},
                                std::pair{"pair_frames", &pair_frags_in_}, std::pair{"pair_from_tun", &pair_frags_tun_}}) {
    const DatagramReassembler::Stats& st = r->stats();
    j.key(side).begin_object();
    j.field("fragments", st.fragments.get()).field("reassembled", st.reassembled.get());
    j.field("timeouts", st.timeouts.get()).field("evictions", st.evictions.get());
    j.field("in_progress", st.in_progress.get());
    for (size_t d = 0; d < st.drops.size(); ++d) j.field(frag_drop_name(FragDrop(d)), st.drops[d].get());
    j.end_object();
  }
  j.end_object().end_object();
  std::string out = j.str();
  if (direct_stats_) out.insert(out.size() - 1, ",\"direct\":" + direct_stats_());  // a JSON object of its own
  if (pairs_) {
    std::string data = pairs_->stats_json();
    if (opt_.visit) {
      const VisitorFlows::Stats& f = visitor_flows_.stats();
      JsonWriter j;
      j.begin_object()
          .field("on_pair", uint64_t(visitor_flows_.pair_flows()))
          .field("through_gateway", uint64_t(visitor_flows_.gateway_flows()))
          .field("started_on_pair", f.pair_flows.get())
          .field("started_through_gateway", f.gateway_flows.get())
          .field("expired", f.expired.get())
          .field("pair_full", f.pair_full.get())
          .field("gateway_full", f.gateway_full.get())
          .end_object();
      data.insert(data.size() - 1, ",\"flows\":" + j.str());
    }
    data.insert(data.size() - 1, ",\"handoff_drops\":" + std::to_string(total(&AgentStats::handoff_drops)) +
                                     ",\"mss_clamped\":" + std::to_string(total(&AgentStats::mss_clamped)) +
                                     ",\"relay_frames_sent\":" + std::to_string(pair_relay_.stats().tx_frames.get()) +
                                     ",\"relay_frames_send_dropped\":" +
                                     std::to_string(pair_relay_.stats().tx_dropped.get()));
    out.insert(out.size() - 1, ",\"pair_data\":" + data);
  }
  return out;
}

// Main loop: the TUN's packets to pair addresses (the pair path itself: agent/agent_pairs.cpp).
void Agent::pair_from_tun(std::span<uint8_t> packet, const VnetHeader& vnet, uint64_t now_ns) {
  if (!pairs_) return;
  tun_packets(packet, vnet, true, main_stats_, [&](std::span<uint8_t> p) { pair_packet_from_tun(p, now_ns); });
}

}  // namespace dptun
