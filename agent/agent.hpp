// dpagent's data path, on its event loop (common/event_loop.hpp): relay frames from the gateway are opened and their
// inner packets get the flow's translated source (SnatCodec) and go into the TUN; replies the kernel routes back
// into the TUN are sealed with their flow's tag and sent to the gateway in batches (each wakeup drains its socket or
// the TUN: recvmmsg, reads, one sendmmsg per batch). tick() does the timed work: keepalives, gateway liveness,
// authentication-failure reports, expiry of previous sessions and of unfinished reassembly, periodic counters.
// The agent keeps no per-flow state.
//
// Sessions come from a static key (--psk-file) or from dpctld registrations (--server, ControlClient): a new
// registration becomes the current session at once, and the previous one keeps receiving for a minute so
// frames already on their way are not lost.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/agent_session.hpp"
#include "agent/control_client.hpp"
#include "agent/datagram_reassembler.hpp"
#include "agent/lan_nat.hpp"
#include "agent/service_routes.hpp"
#include "agent/session_slots.hpp"
#include "agent/tun_writer.hpp"
#include "agent/udp_link.hpp"
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
};

struct AgentStats {
  uint64_t frames_rx = 0, frames_tx = 0, inner_rx_bytes = 0, inner_tx_bytes = 0;
  uint64_t keepalives_tx = 0, keepalive_replies_rx = 0;
  uint64_t auth_fail = 0, replay = 0, stale = 0, malformed = 0, wrong_session = 0, no_key = 0;
  uint64_t bad_inner = 0, no_nat = 0, no_session = 0, send_errors = 0;
  uint64_t seal_errors = 0;  // frames the AEAD failed to seal (wiped, not sent)
  uint64_t tun_super_packets = 0, tun_segments = 0;  // TCP/UDP super-packets read from the TUN, segments made of them
  uint64_t tun_gso_malformed = 0;  // super-packets whose headers did not add up (dropped)
  uint64_t routed_flows = 0, no_route = 0;  // agent-side routing: flows given a local target / none to give
  uint64_t sessions_adopted = 0;
  uint64_t fragments_tx = 0;  // IPv4 fragments sent, one frame each (datagrams bigger than a frame)
  // Targets that could not be reached: ICMP errors the kernel routed into the TUN about a flow, by reason; each is
  // passed on to the gateway (icmp_errors_forwarded), which tells the client.
  std::array<uint64_t, size_t(IcmpErrorReason::Count)> unreachable{};
  uint64_t icmp_errors_forwarded = 0;
  uint64_t icmp_ignored = 0;  // other ICMP into the TUN (not an error about a TCP/UDP flow), dropped
};

class Agent {
 public:
  // `loop` must outlive the Agent.
  Agent(EventLoop& loop, AgentOptions opt);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;
  // Opens the TUN (and, for a static session, the link to the gateway) and watches them on the loop.
  bool start(bool static_session, std::string& error);
  // On the loop (the control client's registrations): a session to use from now on.
  void offer(SessionGrant grant);
  // The timed work; call it about every 100 ms from the loop's tick.
  void tick(uint64_t now_ns);
  std::string stats_json() const;

 private:
  void adopt(SessionGrant grant, uint64_t now_ns);
  bool open_link(Endpoint gateway, std::string& error);
  // Datagrams from the gateway read per wakeup, in batches of UdpLink::kBatch: as many as tun_readable's budget.
  static constexpr unsigned kGatewayBatchesPerWakeup = 256 / UdpLink::kBatch;
  void gateway_readable(uint64_t now_ns);
  void frames_from_gateway(std::span<AgentSession::Received> batch, uint64_t now_ns);
  void frame_from_gateway(AgentSession::Received& r, uint64_t now_ns);
  void to_tun(std::span<uint8_t> packet, bool reassembled);
  void tun_readable(uint64_t now_ns);
  void packet_from_tun(std::span<uint8_t> packet, uint64_t now_ns);
  void log_offloads(unsigned tun_offloads) const;
  uint64_t tun_queue_drops() const;
  void send_keepalive(uint64_t now_ns);
  void note_send_error(int err, uint64_t now_ns);
  void queue_frame(size_t len, uint64_t now_ns);
  void flush_link(uint64_t now_ns);
  void send_data_frame(uint8_t* frame, size_t packet_len, size_t inner_bytes, uint64_t now_ns);
  void target_unreachable(std::span<uint8_t> packet, uint64_t now_ns);
  void send_inner(std::span<uint8_t> packet, uint32_t flow, uint8_t proto, uint8_t flags, std::string_view name,
                  uint64_t now_ns);

  EventLoop& loop_;
  AgentOptions opt_;
  std::unique_ptr<AeadEngine> engine_;  // ipsec-mb where it runs, else OpenSSL (AgentOptions::aead)
  SessionSlots sessions_;  // current and previous session
  RelayCodec codec_;  // the tunnel framing: where a frame's parts lie in the link's slots
  SnatCodec snat_;
  RoutedFlows routed_;  // tag -> the local target agent-side routing chose
  TunDevice tun_;
  TunWriter tun_out_{tun_};
  std::array<AgentSession::Received, 64> rx_batch_;  // frames of one receive batch, opened together
  std::vector<uint8_t> tun_in_ = std::vector<uint8_t>(kMaxSuperPacket);  // what one TUN read may bring
  LanNat lan_nat_;
  UdpLink link_;
  bool link_open_ = false;
  bool tun_watched_ = false;
  AgentStats stats_;
  // IPv4 reassembly: fragments from the gateway (datagrams bigger than a frame) and from the TUN (the kernel
  // fragments what it routes into the TUN beyond its MTU).
  DatagramReassembler gw_frags_;
  DatagramReassembler tun_frags_;
  uint16_t frag_id_ = 0;  // ids of the datagrams this agent fragments
  uint64_t last_gateway_rx_ns_ = 0;
  uint64_t last_keepalive_ns_ = 0;
  uint64_t last_stats_ns_ = 0;
  uint64_t last_warn_ns_ = 0;
  uint64_t auth_fail_reported_ = 0;
  uint64_t last_auth_report_ns_ = 0;
  TokenBucket unreachable_log_{1, 5};  // log lines about unreachable targets: 1 a second, bursts of 5
  uint64_t unreachable_suppressed_ = 0;
  uint64_t started_ns_ = 0;
  enum class Link { Unknown, Up, Down } link_state_ = Link::Unknown;
};

}  // namespace dptun
