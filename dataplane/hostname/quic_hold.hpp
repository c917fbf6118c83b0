// QUIC holds: the first datagrams of flows on QUIC entry points, read for the SNI of the client's Initials and held
// until it is known (docs/hostname-routing.md). Anyone can make Initials, so held flows get a pool of their own
// (1024 flows x 12 KiB per worker) for at most 3 s; a full pool gives up its oldest hold. Touches its Initial reader
// (OpenSSL contexts made once), hold buffers and scratch, the worker's flow table (held flows); opens flows through
// FlowSetup and sends held datagrams through Encap. Counts quic_initials, quic_flows_held, quic_holds_evicted,
// quic_held_sent; drops no_hostname binding_full flow_table_full no_mbuf no_room.
#pragma once
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "dataplane/entry/flow_setup.hpp"
#include "dataplane/hostname/binding_buffers.hpp"
#include "dataplane/loop/worker_context.hpp"
#include "dataplane/relay/encap.hpp"
#include "ingress/quic_initial.hpp"
#include "packet/parser.hpp"

struct rte_mbuf;

namespace dptun {

class QuicHolds {
 public:
  static constexpr uint32_t kBuffers = 1024;     // QUIC flows per worker held while their ClientHello is read
  static constexpr uint32_t kBytes = 12 * 1024;  // what one may hold: 8 datagrams of a 1500-byte MTU
  QuicHolds(WorkerContext& ctx, FlowTable& flows, FlowSetup& setup, Encap& encap);
  QuicHolds(const QuicHolds&) = delete;
  QuicHolds& operator=(const QuicHolds&) = delete;

  enum class Step : uint8_t { Route, Done };  // Route: `name` is known, make the flow; Done: held or dropped
  // A datagram of a new flow (`f` null) or of a held one: read; Route with `name` (and `earlier`, the datagrams
  // held before this one, to be sent ahead of it) once the ClientHello names the host, else held or dropped.
  Step first_packets(rte_mbuf* m, const PacketInfo& pi, Flow*& f, std::string_view& name,
                     std::span<const uint8_t>& earlier);
  // The `earlier` datagrams of a flow that now has its target, rebuilt as the client's packets and sent along
  // session `s` (the first with FLOW_NEW); true when one was sent.
  bool send_held(const Flow& f, TunnelSession& s, std::span<const uint8_t> records);
  static uint32_t held_records(std::span<const uint8_t> records);  // how many datagrams `records` holds
  // Gives back the buffers of holds that ended, looking at the next `budget` of them. The worker paces it by time:
  // all kBuffers once per kSweepPeriodNs. Nothing waits on it (a full pool gives up its oldest hold), so a tenth
  // of a second is soon enough: 10 240 buffers a second.
  void sweep(uint32_t budget);
  static constexpr uint64_t kSweepPeriodNs = 100'000'000ull;

 private:
  bool hold_datagram(uint32_t buffer, std::span<const uint8_t> dgram, const PacketInfo& pi, const uint8_t* ip);
  void release(Flow& f);
  bool evict_oldest();

  WorkerContext& ctx_;
  FlowTable& flows_;
  FlowSetup& setup_;
  Encap& encap_;
  QuicInitialReader reader_;  // its OpenSSL contexts are made once, here
  BindingBuffers holds_;      // datagrams of QUIC flows whose ClientHello is not complete yet
  std::vector<uint64_t> since_;     // per hold buffer: when its flow's hold began
  std::vector<uint8_t> scratch_;    // held datagrams of the flow being routed, while it is made
  uint32_t cursor_ = 0;             // the sweep's
};

}  // namespace dptun
