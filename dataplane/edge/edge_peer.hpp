// The edge role as the workers see it (docs/operations.md "Edge role"): this dpgw is the far end of one tunnel
// session, a static peer of a concentrator dpgw, as dpagent with --gateway/--session/--psk-file is. Made by the main
// lcore before the workers start (main_lcore/edge_control.hpp) and immutable while they run, but for the session's
// own atomics (its keys, published and retired by the main lcore; its transmit counter, which every worker adds to;
// its replay window and last-RX time, written by its RX worker).
#pragma once
#include <cstdint>

#include "common/inet.hpp"
#include "dataplane/tables/session.hpp"
#include "proto/snat_codec.hpp"

namespace dptun {

struct EdgePeer {
  explicit EdgePeer(Ipv4Prefix net) : snat_net(net), snat(net) {}
  EdgePeer(const EdgePeer&) = delete;
  EdgePeer& operator=(const EdgePeer&) = delete;

  // agent_side: transmit with AgentToGateway keys, receive with GatewayToAgent ones; counters follow the wall clock
  // both ways (peer_clock_counters). Its endpoint is the concentrator's, configured.
  TunnelSession session;
  Endpoint concentrator;    // where our frames go, and the only source whose frames we take
  uint16_t local_port = 0;  // our UDP port (frames come to it, ours leave from it)
  uint8_t underlay_port = 0, lan_port = 0;
  Ipv4Prefix snat_net;      // translated sources: a LAN packet to it is a target's reply
  SnatCodec snat;
  uint64_t keepalive_ns = 2'000'000'000ull;

  bool from_concentrator(uint8_t port, uint32_t src_ip, uint16_t src_port, uint16_t dst_port) const {
    return port == underlay_port && dst_port == local_port && src_port == concentrator.port &&
           src_ip == concentrator.ip.v4();
  }
  bool to_snat(uint8_t port, uint32_t dst_ip) const { return port == lan_port && snat_net.contains(Ipv4{dst_ip}); }
  // Heard from the concentrator (an authenticated frame) within three keepalive intervals: the tunnel is up.
  bool up(uint64_t now_ns) const {
    const uint64_t last = session.last_rx_ns.load(std::memory_order_relaxed);
    return last && (now_ns < last || now_ns - last < 3 * keepalive_ns);  // (a worker's clock read may be newer)
  }
};

}  // namespace dptun
