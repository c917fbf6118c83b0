// What every lcore of dpgw shares: ports, routes, neighbours, entry points, tunnels and sessions, rings.
// Workers only read it; the control lcore owns every write (neighbours, keys) and publishes with atomics/RCU.
#pragma once
#include <rte_cycles.h>

#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/tables/counters.hpp"
#include "dataplane/entry/entry_table.hpp"
#include "dataplane/main_lcore/gateway_config.hpp"
#include "dataplane/tables/neighbor_table.hpp"
#include "dataplane/tables/route_table.hpp"
#include "dataplane/tables/session.hpp"
#include "dataplane/loop/trace.hpp"

struct rte_mbuf;
struct rte_mempool;
struct rte_ring;
struct rte_rcu_qsbr;

namespace dptun {

class Worker;
struct EdgePeer;
class IpsecMbHeaderProtection;
class PairTable;

inline constexpr uint16_t kBurst = 32;

struct PortInfo {
  std::string name;
  uint16_t port_id = 0;
  MacAddr mac{};
  uint32_t address = 0;  // host order
  uint16_t mtu = 1500;
  bool kernel_path = false;  // packets for our address that dpgw does not serve go to the kernel (a TAP)
};

// A port's link as the main lcore last saw it (main_lcore/link_watch.hpp).
struct PortLink {
  bool up = true;
  uint32_t speed_mbps = 0;  // 0: unknown (a kernel socket's interface, most vdevs)
  uint64_t changes = 0;     // transitions since start
  uint64_t since_ns = 0;    // monotonic time of the last transition (or of the first reading)
};

// Metadata an mbuf carries from one lcore to another (an mbuf dynamic field).
struct HandoffMeta {
  // Reassembled: a client datagram put together from fragments, to the worker of its 5-tuple (fragments.cpp).
  // QuicSlowPath: workers -> control ring, a QuicSlowPathHeader and the decrypted frames of a QUIC session's packet
  // (main_lcore/quic_slow_path.hpp). QuicSend: control lcore -> a QUIC session's RX worker, a QuicSendHeader and
  // frames for Encap::quic_frames to send in a 1-RTT packet (session: the session's index). MasqueInject: control
  // lcore -> a capsule session's RX worker (MasqueState::request_id), a MasqueInjectHeader and one UDP payload dpctld
  // carried, for MasqueInput::inject (session: the session's index).
  enum Stage : uint8_t {
    RawFrame = 1,
    InnerPacket = 2,
    Transmit = 3,
    Reassembled = 4,
    QuicSlowPath = 5,
    QuicSend = 6,
    MasqueInject = 7,
  };
  uint64_t flow_id;
  uint32_t session;
  uint8_t stage;
  uint8_t port;
};

// At the start of a QuicSlowPath mbuf, then the packet's frames (decrypted, between header and tag).
struct QuicSlowPathHeader {
  static constexpr uint8_t kNewPath = 1;  // the packet, newest so far, came from an address other than the endpoint
  static constexpr uint8_t kFrames = 2;   // it carries frames for the slow path (else only the new path is news)
  // The packet, newest so far and not only probing, came from the endpoint while a new address was proposed: the
  // migration is over before it was validated (RFC 9000 9.3: the address of the highest-numbered non-probing packet).
  static constexpr uint8_t kBackHome = 4;
  uint32_t session;      // index
  uint32_t serial;       // TunnelSession::serial: the index may have been given to another session since
  Endpoint from;         // the packet's source address and port
  uint64_t pn;           // its packet number
  uint32_t packet_len;   // its UDP payload length
  uint8_t flags;
};
// At the start of a QuicSend mbuf, then the frames to send (already padded as wanted).
struct QuicSendHeader {
  uint32_t serial;
  Endpoint to;  // the destination: a candidate address, or where a PATH_CHALLENGE came from
};

// At the start of a MasqueInject mbuf, then the UDP payload. The mbuf's data begins where a received frame's IPv4
// header would, minus this header and the IPv4 and UDP headers the worker writes in front of the payload: the same
// headroom for the encapsulation to the agent as any packet received (main_lcore/masque_capsules.hpp).
struct MasqueInjectHeader {
  uint32_t serial;  // TunnelSession::serial: the index may have been given to another session since
};
// At the start of a mbuf on Dataplane::masque_ring (workers -> control), then the UDP payload of a target's reply to
// a capsule session (MasqueInput::deliver): the rest of the packet, which may be a chain of segments (reassembled).
struct MasqueReplyHeader {
  uint32_t index;
  uint32_t serial;
  uint64_t request_id;  // MasqueState::request_id: what dpctld knows the client by
};

// Nanoseconds from the TSC: one rdtsc and a multiply, cheap enough to read once per poll.
class TscClock {
 public:
  TscClock() : ns_per_tick_(1e9 / double(rte_get_tsc_hz())) {}
  uint64_t now_ns() const { return uint64_t(double(rte_rdtsc()) * ns_per_tick_); }

 private:
  double ns_per_tick_;
};

struct Dataplane {
  explicit Dataplane(uint16_t max_tunnels);  // defined where Worker is complete (worker.cpp)
  ~Dataplane();
  const GatewayConfig* cfg = nullptr;
  std::vector<PortInfo> ports;
  std::unique_ptr<RouteTable> routes;
  NeighborTable neighbors;
  std::atomic<const EntryTable*> entries{nullptr};  // RCU-published by GatewayState
  std::atomic<const struct IngressTable*> ingress{nullptr};  // hostname rules, RCU-published by IngressTableBuilder
  // direct-path pairs whose pair frames workers relay (tables/pair_table.hpp), RCU-published by GatewayState; nullptr:
  // none yet
  std::atomic<const PairTable*> pairs{nullptr};
  SessionTable sessions;
  TunnelTable tunnels;
  std::vector<std::unique_ptr<Worker>> workers;
  rte_mempool* pool = nullptr;
  rte_ring* control_ring = nullptr;  // workers -> control: ARP frames (multi-producer)
  // workers -> control: QUIC slow-path packets (HandoffMeta::QuicSlowPath; multi-producer). A ring of its own, so
  // that a flood of them cannot crowd ARP out of control_ring.
  rte_ring* quic_slow_ring = nullptr;
  // workers -> control: targets' replies to MASQUE clients whose capsules dpctld carries (a MasqueReplyHeader and the
  // UDP payload; multi-producer), sent to dpctld by main_lcore/masque_capsules.hpp.
  rte_ring* masque_ring = nullptr;
  rte_ring* resolve_ring = nullptr;  // workers -> control: next hops to resolve, (port << 32 | ip)
  rte_ring* kernel_ring = nullptr;   // workers -> control: frames for the kernel path (multi-producer)
  std::array<KernelPathStats, 8> kernel_stats;  // per port
  QuicControlStats quic_control;  // the QUIC slow path (control lcore)
  MasqueControlStats masque_control;  // MASQUE clients whose capsules dpctld carries (control lcore)
  // Per port, main lcore only: frames the kernel dropped in front of a socket vdev (af_packet, af_xdp), as
  // ControlLoop last read them (main_lcore/socket_drops.hpp); socket_counted: the port has such a socket.
  std::array<uint64_t, 8> socket_rx_dropped{};
  std::array<bool, 8> socket_counted{};
  std::array<PortLink, 8> link{};  // per port, main lcore only: written by LinkWatch (link_watch.hpp)
  rte_rcu_qsbr* rcu = nullptr;       // nullptr when there are no concurrent workers (bench, tests)
  int handoff_offset = -1;           // mbuf dynfield offset of HandoffMeta
  std::atomic<bool> stop{false};
  std::atomic<bool> reload{false};  // SIGHUP: the control lcore reads the config again (ControlLoop::reload)
  TscClock clock;
  std::atomic<int64_t> realtime_offset_ns{0};  // wall clock minus clock.now_ns(), refreshed by the control lcore
  uint64_t started_ns = 0;
  std::array<uint8_t, 16> syn_cookie_key{};  // random per start: SYN cookies of an earlier run are not accepted
  std::unique_ptr<Tracer> tracer;  // dpgw trace (trace.hpp); made before the workers
  std::unique_ptr<EdgePeer> edge;  // the edge role (dataplane/edge/edge_peer.hpp); made before the workers; nullptr: none
  // QUIC header-protection masks of what workers send (crypto/hp_ipsec_mb.hpp: one manager per worker, thread = the
  // worker's id); made before the workers; nullptr: ipsec-mb did not start, QUIC sessions are refused.
  std::unique_ptr<IpsecMbHeaderProtection> quic_hp;

  HandoffMeta& meta(rte_mbuf* m) const;
};

// Registers the HandoffMeta dynfield; returns its offset or -1.
int register_handoff_field();

}  // namespace dptun
