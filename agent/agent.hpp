// dpagent's data path: relay frames from the gateway are opened and their inner packets get the flow's translated
// source (SnatCodec) and go into the TUN (downstream); replies the kernel routes back into the TUN are sealed with
// their flow's tag and sent to the gateway in batches (upstream). Each wakeup drains its socket or the TUN
// (recvmmsg, reads, one sendmmsg per batch). tick() does the main loop's timed work: keepalives, gateway liveness,
// authentication-failure reports, expiry of previous sessions, periodic counters. The agent keeps no per-flow state.
//
// Threads (AgentOptions::threads): with 1, both directions run on the main loop (common/event_loop.hpp) beside the
// control connection; with 2, downstream and upstream each run on a thread of their own with their own event loop,
// and the main loop keeps the control connection and the timed work. Ownership (docs/architecture.md "dpagent"):
// - downstream owns the socket's receive half, the sessions' receiving halves (replay windows, receive keys),
//   reassembly of fragments from the gateway, the agent-side routing memory and the TUN writer;
// - upstream owns the socket's send half, the sessions' sending halves (transmit counters: nonces, transmit keys,
//   rekeys), reassembly of fragments from the TUN, the agent's fragment ids and keepalive sending;
// - the main thread owns the session slots, the socket's lifetime, liveness and reports. It hands the directions a
//   new Setup (sessions, socket) through one atomic pointer; each takes it at its next wakeup and acknowledges it,
//   and what the old one named is freed only when both have. Keepalives are asked for through a flag and an
//   eventfd; liveness comes back as the time each session last heard the gateway (an atomic).
// - the main thread also owns direct paths' data (PairData: the pairs' sessions, their TUN writer, reassemblers,
//   counters, engine slot and send batches). With 2 threads, upstream hands it the TUN's packets to pair addresses
//   and downstream the pair frames dpgw relayed, each through a HandoffRing.
// Every counter has one writing thread (common/counter.hpp); reports sum the threads' counters.
//
// Sessions come from a static key (--psk-file) or from dpctld registrations (--server, ControlClient): a new
// registration becomes the current session at once, and the previous one keeps receiving for a minute so
// frames already on their way are not lost.
//
// QUIC framing (--transport quic, a registration whose reply says "framing":"quic"): the registration's QUIC
// connection (agent/quic_control.hpp) carries the data instead of relay frames: each inner plaintext (inner header,
// packet, name trailer: proto/frame_codec.hpp) travels as one DATAGRAM frame, and DATAGRAM frames received go
// through the same delivery as an opened relay frame's plaintext. ngtcp2's connection is not thread-safe and the
// main loop owns it, so with --transport quic the data path runs on the main loop too (threads 1).
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent/agent_session.hpp"
#include "agent/control_client.hpp"
#include "agent/datagram_reassembler.hpp"
#include "agent/handoff_ring.hpp"
#include "agent/lan_nat.hpp"
#include "agent/pair_data.hpp"
#include "agent/service_routes.hpp"
#include "agent/session_slots.hpp"
#include "agent/tun_writer.hpp"
#include "agent/udp_link.hpp"
#include "agent/visitor_flows.hpp"
#include "common/counter.hpp"
#include "common/event_loop.hpp"
#include "common/inet.hpp"
#include "common/tun_device.hpp"
#include "common/token_bucket.hpp"
#include "crypto/aead.hpp"
#include "packet/icmp_error.hpp"
#include "proto/snat_codec.hpp"

namespace dptun {

struct AgentOptions {
  // Static session (--gateway, --session, --psk-file); unused when sessions come from dpctld.
  Endpoint gateway;
  uint32_t session = 0;
  std::vector<uint8_t> psk;
  std::optional<Endpoint> bind;
  std::string tun_name = "dpt0";
  Ipv4Prefix tun_net{Ipv4{0x64400001}, 16};  // 100.64.0.1/16: the TUN's address; the rest is the SNAT range
  uint16_t underlay_mtu = 1500;
  uint64_t keepalive_ns = 2'000'000'000ull;
  uint8_t key_len = 16;
  uint64_t rekey_interval_ns = 120'000'000'000ull;
  uint64_t stats_interval_ns = 0;
  bool lan_nat = false;  // forward + masquerade to targets that are not on this host
  // The kernel's offloads on the TUN (virtio-net headers: super-packets read and segmented here, segments coalesced
  // into super-packets written) and on the socket to the gateway (UDP_SEGMENT, UDP_GRO); each is probed at start
  // and left off where the kernel lacks it. --no-offload turns them all off.
  bool offloads = true;
  // AES-GCM: "ipsec-mb" (Intel's library, direct GCM calls; needs AES-NI), "openssl" (EVP), or "" for ipsec-mb
  // where it runs and OpenSSL otherwise.
  std::string aead;
  ServiceRoutes routes;  // agent-side routing of flows whose hostname rule has no target (--route, --fallback)
  // dpagent visit: one of the tunnel's services at a local address on the TUN, reached by hostname (a rule of
  // the tunnel, private ones included) or, in the gateway's direct mode, at an address the agents reach.
  struct Visit {
    Endpoint local;                      // where programs on this host connect (inside the TUN's subnet)
    std::string host;                    // the service's hostname
    std::optional<Endpoint> target;      // direct mode: the address itself
  };
  std::optional<Visit> visit;
  // Data-path threads: 1 (everything on the main loop) or 2 (downstream and upstream on a thread each).
  unsigned threads = 1;
  // --transport quic: registrations may hand over QUIC connections for the data (needs threads == 1); the TUN's MTU
  // leaves room for either framing.
  bool quic_framing = false;
  // Direct paths' data will be enabled (enable_pairs): with 2 threads, start() makes the rings they hand it through.
  bool pair_data = false;
};

struct AgentStats {
  StatCounter frames_rx, frames_tx, inner_rx_bytes, inner_tx_bytes;
  StatCounter keepalives_tx, keepalive_replies_rx;
  StatCounter auth_fail, replay, stale, malformed, wrong_session, no_key;
  StatCounter bad_inner, no_nat, no_session, send_errors;
  StatCounter seal_errors;  // frames the AEAD failed to seal (wiped, not sent)
  StatCounter tun_super_packets, tun_segments;  // TCP/UDP super-packets read from the TUN, segments made of them
  StatCounter tun_gso_malformed;  // super-packets whose headers did not add up (dropped)
  StatCounter routed_flows, no_route;  // agent-side routing: flows given a local target / none to give
  StatCounter sessions_adopted;
  StatCounter fragments_tx;  // IPv4 fragments sent, one frame each (datagrams bigger than a frame)
  // Targets that could not be reached: ICMP errors the kernel routed into the TUN about a flow, by reason; each is
  // passed on to the gateway (icmp_errors_forwarded), which tells the client.
  std::array<StatCounter, size_t(IcmpErrorReason::Count)> unreachable{};
  StatCounter icmp_errors_forwarded;
  StatCounter icmp_ignored;  // other ICMP into the TUN (not an error about a TCP/UDP flow), dropped
  // QUIC framing: DATAGRAM frames received and sent, and inner packets not sent, by reason: the congestion window
  // was full, bigger than one packet carries (cannot happen within the TUN's MTU), the connection was over.
  StatCounter datagrams_rx, datagrams_tx;
  StatCounter datagram_drops_congestion, datagram_drops_too_big, datagram_drops_closed;
  // With two data-path threads: packets or pair frames a direction could not hand the main loop (its ring was full).
  StatCounter handoff_drops;
  StatCounter mss_clamped;  // an agent: SYNs of pair flows whose MSS was lowered to fit its frames
};

class Agent final : private DatagramSink {
 public:
  // `loop` (the main loop) must outlive the Agent.
  Agent(EventLoop& loop, AgentOptions opt);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;
  // Opens the TUN (and, for a static session, the link to the gateway), watches them (on the loop, or on the
  // data-path threads it starts).
  bool start(bool static_session, std::string& error);
  // On the loop (the control client's registrations): a session to use from now on.
  void offer(SessionGrant grant);
  // On the loop: the QUIC connection of the current grant is about to go (ControlClient::on_withdraw).
  void withdraw_quic();
  // The timed work; call it about every 100 ms from the loop's tick.
  void tick(uint64_t now_ns);
  // Ends the data-path threads (before the last counters are printed); the destructor does it too.
  void stop();
  std::string stats_json() const;
  // A JSON object shown as "direct" in stats_json(): the direct-path socket's counters (agent/endpoint_discovery.hpp).
  void show_direct_stats(std::function<std::string()> json) { direct_stats_ = std::move(json); }

  // Direct paths' data (agent/pair_data.hpp). After start(). It runs on the main loop, beside the direct-path
  // socket: with two data-path threads, upstream hands it the TUN's packets of pair flows and downstream the pair
  // frames dpgw relayed (HandoffRing each). `flush_direct` sends what `direct` queued (at the end of each batch).
  void enable_pairs(PairData::SendDirect direct, PairData::DirectRemote remote, std::function<void()> flush_direct);
  void pair_offer(const PeerOffer& o);
  void pair_gone(uint32_t pair);
  void pairs_clear();  // a new registration
  // A pair frame the direct-path socket received; pair_batch_end() after the wakeup's last (the TUN writer's batch
  // goes out: what it holds lies in the receive arena).
  void pair_datagram(std::span<const uint8_t> data, uint64_t now_ns, bool relayed = false);
  void pair_batch_end();

 private:
  // What the main thread hands the data path: the sessions and the socket to the gateway. Immutable once published;
  // the objects it names live until both directions have moved past it.
  struct Setup {
    uint64_t generation = 0;
    AgentSession* current = nullptr;
    AgentSession* previous = nullptr;
    UdpLink* link = nullptr;
    Endpoint gateway;
    // The session a frame for receiver index `index` is opened with (as SessionSlots::for_index).
    AgentSession* for_index(uint32_t index) const {
      if (previous && previous->index() == index) return previous;
      return current;
    }
  };
  // One direction of the data path: its event loop (the main one, or its own on its thread), and the Setup it uses.
  struct Worker {
    EventLoop* loop = nullptr;
    std::unique_ptr<EventLoop> own_loop;  // with 2 threads
    std::thread thread;
    Fd wake;  // with 2 threads: an eventfd the main thread writes for a new Setup or a keepalive
    const Setup* setup = nullptr;  // owner thread only
    std::atomic<uint64_t> seen{0};  // generation of the Setup it uses
    uint64_t last_warn_ns = 0;  // send/receive error log lines
    uint64_t last_housekeeping_ns = 0;
  };
  struct Retired {
    uint64_t generation;  // free once both directions have seen this generation
    std::unique_ptr<AgentSession> session;
    std::unique_ptr<UdpLink> link;
    std::unique_ptr<Setup> setup;
  };

  bool threaded() const { return opt_.threads > 1; }
  // The data goes over a QUIC connection (only ever true with one thread: the main loop's).
  bool quic_active() const { return opt_.quic_framing && quic_; }
  // What the underlay MTU loses per inner packet: the framing's overhead (the larger of both with --transport quic).
  size_t underlay_overhead() const;
  void adopt_quic(const SessionGrant& g, uint64_t now_ns);
  void adopt(SessionGrant grant, uint64_t now_ns);
  bool open_link(Endpoint gateway, std::string& error);
  // Main thread: hands the directions the current sessions and link; `gone` (sessions, link) is freed later.
  void publish(SessionSlots::Retired gone, std::unique_ptr<UdpLink> old_link);
  void free_retired();
  void wake(Worker& w);
  void run_worker(Worker& w, bool downstream);
  void request_keepalive(uint64_t now_ns);

  // Where inner packets from the gateway or a pair go, and whose counters and reassembly they use: downstream's for
  // frames from the gateway (and QUIC DATAGRAM frames), the main loop's for pair frames.
  struct Delivery {
    AgentStats& stats;
    DatagramReassembler& frags;
    TunWriter& tun;
  };

  // Downstream (gateway -> TUN).
  void rx_sync();
  void rx_wakeup();
  void rx_housekeeping(uint64_t now_ns);
  // Datagrams from the gateway read per wakeup, in batches of UdpLink::kBatch: as many as tun_readable's budget.
  static constexpr unsigned kGatewayBatchesPerWakeup = 256 / UdpLink::kBatch;
  void gateway_readable(uint64_t now_ns);
  void frames_from_gateway(std::span<AgentSession::Received> batch, uint64_t now_ns);
  void frame_from_gateway(AgentSession::Received& r, uint64_t now_ns);
  // An inner plaintext's contents from the gateway, whatever the framing: `inner` is the packet with its name
  // trailer; `session` keys the reassembly of fragments.
  // `pair`: the pair whose frame it came in (PairData, `d` is then the main loop's), else nullptr.
  void inner_from_gateway(Delivery& d, const InnerHeader& ih, std::span<uint8_t> inner, uint32_t session,
                          uint64_t now_ns, PairData::Pair* pair = nullptr);
  // A pair frame (from the direct-path socket, or relayed by dpgw on the relay socket): opened and delivered.
  void pair_frame(std::span<uint8_t> frame, bool relayed, uint64_t now_ns);
  // A sealed pair frame to dpgw (the path is not direct), queued on the main loop's batch on the relay socket.
  bool relay_pair_frame(std::span<const uint8_t> frame);
  // Main loop: what the TUN gave for pair flows (an agent's: the destination is a pair address), whole or cut.
  void pair_from_tun(std::span<uint8_t> packet, const VnetHeader& vnet, uint64_t now_ns);
  void pair_packet_from_tun(std::span<uint8_t> packet, uint64_t now_ns);
  // Main loop: sends what the pair path queued (direct, and relayed through dpgw).
  void pair_flush();
  void pair_relay_flush();
  // Main loop (two threads): drains the rings the directions filled.
  void drain_from_tun(uint64_t now_ns);
  void drain_from_gateway(uint64_t now_ns);
  void to_tun(Delivery& d, std::span<uint8_t> packet, bool reassembled);
  // DatagramSink (QUIC framing, on the main loop): a DATAGRAM frame's data is an inner plaintext.
  void datagram(std::span<const uint8_t> data, uint64_t now_ns) override;
  void datagrams_done() override;

  // Upstream (TUN -> gateway).
  void tx_sync();
  void tx_wakeup();
  void tx_housekeeping(uint64_t now_ns);
  void tun_readable(uint64_t now_ns);
  // Each packet of one TUN read to `each`: a super-packet is cut into segments, each written where a frame's packet
  // goes (plaintext_slot(pair)); counted on `st`.
  template <class Each>
  void tun_packets(std::span<uint8_t> packet, const VnetHeader& vnet, bool pair, AgentStats& st, Each&& each);
  void packet_from_tun(std::span<uint8_t> packet, uint64_t now_ns);
  std::span<uint8_t> whole_from_tun(std::span<uint8_t> packet, DatagramReassembler& frags, AgentStats& st,
                                    uint64_t now_ns);
  void send_keepalive(uint64_t now_ns);
  void queue_frame(size_t len, uint64_t now_ns);
  void flush_link(uint64_t now_ns);
  // Where the next inner plaintext is built: for the gateway in the link's send slot behind the relay frame's header,
  // or in the QUIC path's buffer; for a pair (`pair`) in the pair path's frame. How many bytes of packet fit there.
  uint8_t* plaintext_slot(bool pair = false);
  size_t packet_room(bool pair = false) const;
  // The most packet bytes one frame or datagram carries beside a name trailer of `trailer` bytes.
  size_t packet_budget(size_t trailer, bool pair = false) const;
  // Sends a plaintext built at plaintext_slot() (`inner_bytes`: its packet's, for the counters): to the gateway, or
  // in a frame of `pair`.
  void send_plaintext(PairData::Pair* pair, uint8_t* plaintext, size_t len, size_t inner_bytes, uint64_t now_ns);
  void send_data_frame(uint8_t* frame, size_t plaintext_len, size_t inner_bytes, uint64_t now_ns);
  void send_datagram(std::span<const uint8_t> plaintext, size_t inner_bytes, uint64_t now_ns);
  void target_unreachable(std::span<uint8_t> packet, uint64_t now_ns);
  // `pair`: in frames of that pair (on the main loop, with its counters and fragment ids), else to the gateway
  // (upstream).
  void send_inner(PairData::Pair* pair, std::span<uint8_t> packet, uint32_t flow, uint8_t proto, uint8_t flags,
                  std::string_view name, uint64_t now_ns);

  // Either direction (its own counters and log pacing).
  void note_send_error(Worker& w, AgentStats& stats, int err, uint64_t now_ns);

  void log_offloads(unsigned tun_offloads) const;
  uint64_t tun_queue_drops() const;
  uint64_t total(StatCounter AgentStats::*field) const;

  EventLoop& loop_;
  AgentOptions opt_;  // the main thread's; what the directions read of it does not change after start()
  std::unique_ptr<AeadEngine> engine_;  // ipsec-mb where it runs, else OpenSSL (AgentOptions::aead); a slot per direction
  const RelayCodec codec_{};  // the tunnel framing: where a frame's parts lie in the link's slots (no state)
  const SnatCodec snat_;
  TunDevice tun_;  // read by upstream, written by downstream
  LanNat lan_nat_;
  bool tun_watched_ = false;
  std::atomic<bool> stop_workers_{false};
  bool workers_started_ = false;

  // Main thread.
  SessionSlots sessions_;  // current and previous session
  std::unique_ptr<UdpLink> link_;  // the socket to the gateway (nullptr until there is one)
  std::atomic<const Setup*> setup_{nullptr};  // the latest Setup, for the directions
  std::unique_ptr<Setup> setup_owned_;
  uint64_t generation_ = 0;
  std::vector<Retired> retired_;
  UdpLinkStats old_links_;  // counters of sockets closed since start
  AgentStats main_stats_;
  std::atomic<bool> keepalive_wanted_{false};  // main -> upstream
  std::atomic<bool> link_up_{false};  // main -> upstream: the gateway answers (else keepalives re-anchor the clock)
  uint64_t last_gateway_rx_ns_ = 0;
  uint64_t last_keepalive_ns_ = 0;
  uint64_t last_stats_ns_ = 0;
  uint64_t auth_fail_reported_ = 0;
  uint64_t last_auth_report_ns_ = 0;
  uint64_t started_ns_ = 0;
  enum class Link { Unknown, Up, Down } link_state_ = Link::Unknown;

  // Downstream.
  Worker rx_;
  AgentStats rx_stats_;
  RoutedFlows routed_;  // tag -> the local target agent-side routing chose
  TunWriter tun_out_{tun_};
  std::array<AgentSession::Received, 64> rx_batch_;  // frames of one receive batch, opened together
  DatagramReassembler gw_frags_;  // IPv4 fragments from the gateway (datagrams bigger than a frame)
  const UdpLink* rx_link_ = nullptr;  // the link whose descriptor is on rx_.loop

  // Upstream.
  Worker tx_;
  AgentStats tx_stats_;
  std::vector<uint8_t> tun_in_ = std::vector<uint8_t>(kMaxSuperPacket);  // what one TUN read may bring
  DatagramReassembler tun_frags_;  // the kernel fragments what it routes into the TUN beyond its MTU
  uint16_t frag_id_ = 0;  // ids of the datagrams this agent fragments
  TokenBucket unreachable_log_{1, 5};  // log lines about unreachable targets: 1 a second, bursts of 5
  uint64_t unreachable_suppressed_ = 0;

  // QUIC framing (main loop only; opt_.quic_framing forces one thread).
  QuicControlConnection* quic_ = nullptr;  // the connection carrying the data (the ControlClient's)
  uint32_t quic_session_ = 0;
  Endpoint quic_gateway_;
  std::vector<uint8_t> quic_plain_ =  // the plaintext being sent
      std::vector<uint8_t>(UdpLink::kMaxDatagram + kMaxNameTrailer);
  std::vector<uint8_t> quic_frag_src_;  // a datagram to fragment that lay in quic_plain_
  // Datagrams received in one burst, copied (ngtcp2's bytes are not ours to keep or rewrite) until the TUN writer's
  // batch is out.
  std::vector<uint8_t> quic_rx_arena_ = std::vector<uint8_t>(size_t(256) << 10);
  size_t quic_rx_used_ = 0;
  QuicControlConnection::Stats quic_old_;  // counters of connections withdrawn since start
  std::function<std::string()> direct_stats_;

  Delivery rx_delivery_{rx_stats_, gw_frags_, tun_out_};

  // Direct paths' data (main loop only; counted in main_stats_ beside PairData's own counters).
  std::unique_ptr<PairData> pairs_;
  std::atomic<bool> pairs_on_{false};  // pairs_ is there (the directions read this, never pairs_)
  std::function<void()> flush_direct_;
  VisitorFlows visitor_flows_;
  TunWriter pair_tun_out_{tun_};       // pair flows' packets into the TUN
  DatagramReassembler pair_frags_in_;  // fragments that came in pair frames
  DatagramReassembler pair_frags_tun_;  // fragments the kernel made of an agent's pair flows' packets
  uint16_t pair_frag_id_ = 0;
  Delivery pair_delivery_{main_stats_, pair_frags_in_, pair_tun_out_};
  UdpLink pair_relay_;  // relayed pair frames out: the main loop's own batch on the relay socket (link_'s)
  int pair_relay_fd_ = -1;
  uint64_t pair_relay_warn_ns_ = 0;
  // Two data-path threads: upstream's packets of pair flows (VnetHeader + packet) and downstream's relayed pair
  // frames, for the main loop.
  std::unique_ptr<HandoffRing> from_tun_ring_, from_gateway_ring_;
  bool ring_watched_[2] = {false, false};
  static constexpr unsigned kHandoffPerWakeup = 256;
  std::vector<uint8_t> pair_tx_ = std::vector<uint8_t>(UdpLink::kMaxDatagram);
  std::vector<uint8_t> pair_frag_src_;  // a datagram to fragment that lay in pair_tx_
  std::vector<uint8_t> pair_rx_ = std::vector<uint8_t>(size_t(64) * UdpLink::kMaxDatagram);  // a wakeup's frames
  size_t pair_rx_used_ = 0;
  // The visitor: its block of tags (flows on the pair keep it across pairings), and since when it has had no pair
  // with data (its flows on the pair wait kPairGraceNs for the next pairing, then start over through dpgw).
  std::optional<uint16_t> visitor_block_;
  uint64_t no_pair_since_ns_ = 0;
  static constexpr uint64_t kPairGraceNs = 5'000'000'000ull;
  uint64_t last_flow_expiry_ns_ = 0;
};

}  // namespace dptun
