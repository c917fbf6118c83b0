// TCP binding: TCP entry points routed by hostname (sni, http; docs/hostname-routing.md). dpgw answers the client's
// SYN with a SYN cookie, keeps its first bytes (a TLS ClientHello, an HTTP request head) like a TCP receiver until
// they name a host, then opens the flow by the hostname rule, connects to the target through the tunnel and splices
// the two halves (sequence numbers rewritten on the fast path). Touches its SYN cookies and head buffers (1024 x
// 4 KiB + 256 x 33 KiB per worker: 12.3 MiB), the worker's flow table; opens flows through FlowSetup, writes name
// slots, sends to clients through Tx and to targets through Encap. Counts binding_*; drops bad_cookie
// head_too_big hostname_timeout ambiguous_host target_* bad_checksum binding_full no_rule private_rule.
#pragma once
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "dataplane/entry/entry_table.hpp"
#include "dataplane/entry/flow_setup.hpp"
#include "dataplane/hostname/binding_buffers.hpp"
#include "dataplane/hostname/name_slots.hpp"
#include "dataplane/loop/tx.hpp"
#include "dataplane/loop/worker_context.hpp"
#include "dataplane/relay/encap.hpp"
#include "ingress/syn_cookie.hpp"
#include "packet/parser.hpp"
#include "packet/tcp_segment.hpp"

struct rte_mbuf;

namespace dptun {

class TcpBinding {
 public:
  // Buffers for the client's first bytes: every connection starts in a small one; a head that outgrows it moves
  // to a large one.
  static constexpr uint32_t kBuffers = 1024;  // connections per worker held while their hostname is read
  static constexpr uint32_t kBytes = 4096;
  static constexpr uint32_t kLargeBuffers = 256;
  static constexpr uint32_t kLargeBytes = 33 * 1024;  // a 32 KiB request head or ClientHello, and a little more
  TcpBinding(WorkerContext& ctx, Tx& tx, FlowTable& flows, FlowSetup& setup, NameSlots& names, Encap& encap);
  TcpBinding(const TcpBinding&) = delete;
  TcpBinding& operator=(const TcpBinding&) = delete;

  // A client's TCP segment on hostname entry point `ep` (its flow `f`, or null); `m` is consumed.
  void input(uint8_t port, rte_mbuf* m, const PacketInfo& pi, const EntryPoint& ep, Flow* f);
  // A spliced flow's segment from the client while dpgw still keeps its first bytes (until the target has them).
  void held_from_client(Flow& f, const uint8_t* tcp, const PacketInfo& pi);
  // The target's segment on a flow dpgw binds: its SYN-ACK (splice), or an ACK of the kept bytes. False: dropped.
  bool held_from_server(Flow& f, const uint8_t* tcp, const PacketInfo& pi);
  void splice_from_server(rte_mbuf* m, Flow& f, const PacketInfo& pi);
  // The agent could not reach the target (an ICMP error about it): the client's connection is refused (502 or
  // RST); `hard` for an unreachable that will not change. `m` is consumed.
  void unreachable(Flow& f, rte_mbuf* m, bool hard);
  // Timers (our SYN and the first bytes again, answers again, steps that take too long) and buffers of ended flows:
  // looks at the next `budget` of the kSweepSlots buffers. The worker paces it by time: all of them once per
  // kSweepPeriodNs, a tenth of the shortest timer (the 200 ms retransmission timeout), so a timer fires at most
  // 20 ms late; 1280 buffers every 20 ms is 64 000 a second, most of them a byte read (free).
  void sweep(uint32_t budget);
  static constexpr uint32_t kSweepSlots = kBuffers + kLargeBuffers;
  static constexpr uint64_t kSweepPeriodNs = 20'000'000ull;

 private:
  void send_syn_ack(uint8_t port, const uint8_t* client_mac, const PacketInfo& pi, const TcpHandshakeOptions& c,
                    uint32_t client_isn);
  bool keep_client_bytes(Flow& f, uint32_t seq, std::span<const uint8_t> payload, bool& grew);
  bool grow_binding(Flow& f);
  void read_head(uint8_t port, const uint8_t* client_mac, Flow& f, bool grew);
  void route_binding(uint8_t port, const uint8_t* client_mac, Flow& f, std::string_view name);
  void send_client_ack(uint8_t port, const uint8_t* client_mac, const Flow& f);
  void send_answer(uint8_t port, const uint8_t* client_mac, const Flow& f);
  void send_client_rst(uint8_t port, const uint8_t* client_mac, const Flow& f);
  void linger(uint8_t port, const uint8_t* client_mac, Flow& f, uint32_t seq, uint32_t ack, uint8_t flags,
              uint32_t len);
  void send_server_syn(Flow& f);
  void send_held(Flow& f, bool probe);
  void binding_timer(Flow& f);
  void give_up_binding(Flow& f, Drop why);
  void refuse_binding(uint8_t port, const uint8_t* client_mac, Flow& f, Drop why, uint8_t answer);
  void release_binding(Flow& f);
  void abandon_binding(Flow& f);
  bool evict_oldest_binding(const Flow& newcomer, bool large);
  bool send_to_server(Flow& f, uint32_t seq, uint32_t ack, uint8_t flags, uint16_t window,
                      std::span<const uint8_t> options, std::span<const uint8_t> payload);
  static size_t proxy_v2_header(const Flow& f, uint8_t* out);
  uint32_t ts_clock() const;        // our TCP timestamps: milliseconds
  uint32_t ts_for_client() const;   // the TSval of every segment dpgw sends a client after its SYN-ACK
  uint16_t advertised_mss() const;  // the MSS our SYN-ACKs offer

  WorkerContext& ctx_;
  Tx& tx_;
  FlowTable& flows_;
  FlowSetup& setup_;
  NameSlots& names_;
  Encap& encap_;
  SynCookies cookies_;
  HeadBuffers<BindingProgress> bindings_;  // first bytes of TCP connections routed by hostname
  uint32_t cursor_ = 0;                    // the sweep's
  std::vector<uint8_t> hello_scratch_;     // a ClientHello spread over records, put together
};

}  // namespace dptun
