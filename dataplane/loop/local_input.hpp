// Local input: packets for the gateway itself. ARP goes to the control lcore, ICMP echo is answered here, what dpgw
// does not serve goes to the port's kernel path (when it has one), ports without an entry point answer like a host
// (RST, ICMP port unreachable), and oversized DF packets get ICMP fragmentation-needed (RFC 1191). Touches its token
// buckets (kernel path per port, ICMP errors, closed-port answers: this worker's share), the control and kernel
// rings; sends through Tx. Counts to_control, to_kernel, icmp_*, closed_port_*; drops no_entry_point kernel_full
// kernel_rate control_full.
#pragma once
#include <array>
#include <cstdint>

#include "common/token_bucket.hpp"
#include "dataplane/loop/tx.hpp"
#include "dataplane/loop/worker_context.hpp"
#include "packet/parser.hpp"

struct rte_mbuf;

namespace dptun {

class LocalInput {
 public:
  LocalInput(WorkerContext& ctx, Tx& tx);
  // ARP and ICMP to our address (classify's verdict).
  void input(uint8_t port, rte_mbuf* m, const PacketInfo& pi);
  // TCP/UDP to a port without an entry point: to the kernel path, or answered as a closed port (RST / ICMP port
  // unreachable, rate-limited) and dropped as no_entry_point.
  void closed_port(uint8_t port, rte_mbuf* m, const PacketInfo& pi);
  // ICMP fragmentation needed to the sender of `orig` (which the caller still owns), rate-limited.
  void send_frag_needed(uint8_t port, rte_mbuf* orig, const PacketInfo& pi, uint16_t mtu);
  // One more ICMP error dpgw may send or pass on now (1000/s per worker, bursts of 64): false when over the rate.
  bool icmp_error_allowed() { return icmp_bucket_.take(ctx_.now_ns); }

 private:
  // A packet for our address that dpgw does not serve: to the kernel when the port has a kernel path, otherwise
  // dropped for `why`.
  void to_kernel(uint8_t port, rte_mbuf* m, Drop why);
  // ICMP destination unreachable `code` to the sender of `orig`, quoting its IP header and 8 bytes (false: no mbuf).
  bool send_icmp_unreachable(uint8_t port, const rte_mbuf* orig, const PacketInfo& pi, uint8_t code, uint16_t mtu);
  void send_closed_port_rst(uint8_t port, const rte_mbuf* orig, const PacketInfo& pi);

  WorkerContext& ctx_;
  Tx& tx_;
  std::array<TokenBucket, 8> kernel_bucket_;  // per port: this worker's share of kernel_rate / kernel_burst
  TokenBucket icmp_bucket_{1000, 64};    // ICMP errors dpgw sends or passes on (fragmentation needed, agents' errors)
  TokenBucket answer_bucket_{1000, 64};  // answers for ports without an entry point (RST, ICMP port unreachable)
};

}  // namespace dptun
