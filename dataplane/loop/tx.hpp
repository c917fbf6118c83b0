// TX, the output side of a worker: packets buffered per port and per destination worker and sent in bursts;
// next-hop resolution; dpgw's own TCP segments to clients. Touches this worker's TX queue on every port, the other
// workers' handoff rings, the route and neighbour tables (read), the resolve ring (ARP requests to the control
// lcore); counts in the context (tx_*, no_route, no_neighbor, tx_full, handoff_full, control_full).
#pragma once
#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/bytes.hpp"
#include "dataplane/loop/worker_context.hpp"
#include "packet/headers.hpp"
#include "packet/tcp_segment.hpp"

struct rte_mbuf;

namespace dptun {

class Tx {
 public:
  explicit Tx(WorkerContext& ctx);
  // Output port and next-hop MAC for `dst`; false with `why` NoRoute or NoNeighbor (then ARP is requested).
  bool resolve_next_hop(const IpAddr& dst, uint8_t& port, MacAddr& mac, Drop& why);
  // The same, out of `port` only (RouteTable::lookup_on).
  bool resolve_next_hop_on(uint8_t port, const IpAddr& dst, MacAddr& mac, Drop& why);
  void send(uint8_t port, rte_mbuf* m);  // a whole Ethernet frame, out of `port` with the next burst
  // Writes at `eth` the Ethernet header of an IPv4 packet to MAC `to` out of `port` (14 bytes).
  void write_ethernet(uint8_t* eth, uint8_t port, const uint8_t* to) const {
    std::memcpy(eth, to, 6);
    std::memcpy(eth + 6, ctx_.dp.ports[port].mac.data(), 6);
    store_be16(eth + 12, kEtherTypeIpv4);
  }
  // Puts that header in front of the IPv4 packet `m` holds; false when `m` has no room (dropped, counted no_room).
  bool prepend_ethernet(rte_mbuf* m, uint8_t port, const MacAddr& to);
  // A TCP segment dpgw makes itself (SYN-ACK, ACK, RST, an answer), in a new mbuf to `mac` out of `port`.
  void send_tcp_segment(uint8_t port, const uint8_t* mac, const TcpSegmentSpec& spec);
  void handoff(uint16_t to, rte_mbuf* m, HandoffMeta meta);  // to worker `to`'s handoff ring, with `meta`
  void flush();  // everything buffered: ports, then handoffs

 private:
  struct Buffer {
    uint16_t n = 0;
    std::array<rte_mbuf*, kBurst> pkts{};
  };
  void tx_burst(uint8_t port);
  void flush_handoffs();
  void trace_tx(uint8_t port, const rte_mbuf* m);
  bool neighbor(const Route& r, MacAddr& mac, Drop& why);  // the route's next-hop MAC, or an ARP request

  WorkerContext& ctx_;
  std::vector<Buffer> tx_;           // per port
  std::vector<Buffer> handoff_out_;  // per destination worker
  // Recently requested neighbour resolutions, so a burst of misses asks the control lcore once.
  std::array<uint64_t, 16> resolve_key_{};
  std::array<uint64_t, 16> resolve_ns_{};
};

}  // namespace dptun
