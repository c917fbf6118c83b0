// Entry input, client -> agent: a burst of packets to public entry points. Each finds or opens its flow (FlowSetup:
// the entry point's tunnel, or the hostname rule QUIC holds or TCP binding read), is pinned to a tunnel session,
// NAT-ed to the target with its MSS clamped, and framed for the agent (Encap), the burst encrypted together.
// Touches the worker's flow table (flow state); hands hostname connections to TCP binding and QUIC holds, packets
// too big for the path to Encap's fragments or LocalInput's fragmentation-needed. Drops tcp_no_flow no_session
// flow_table_full too_big no_room (and what flow setup refuses).
#pragma once
#include <cstdint>

#include "dataplane/entry/entry_table.hpp"
#include "dataplane/entry/flow_setup.hpp"
#include "dataplane/hostname/name_slots.hpp"
#include "dataplane/hostname/quic_hold.hpp"
#include "dataplane/hostname/tcp_binding.hpp"
#include "dataplane/loop/local_input.hpp"
#include "dataplane/loop/tx.hpp"
#include "dataplane/loop/worker_context.hpp"
#include "dataplane/relay/encap.hpp"
#include "packet/parser.hpp"

struct rte_mbuf;

namespace dptun {

class EntryInput {
 public:
  EntryInput(WorkerContext& ctx, Tx& tx, FlowTable& flows, FlowSetup& setup, NameSlots& names, Encap& encap,
             TcpBinding& binding, QuicHolds& quic, LocalInput& local)
      : ctx_(ctx), tx_(tx), flows_(flows), setup_(setup), names_(names), encap_(encap), binding_(binding),
        quic_(quic), local_(local) {}
  EntryInput(const EntryInput&) = delete;
  EntryInput& operator=(const EntryInput&) = delete;
  // `n` (<= kBurst) packets received on `in_port`, each with its parsed headers and entry point (classify's verdict).
  void input(uint8_t in_port, rte_mbuf** pkts, const PacketInfo* info, const EntryPoint* const* entry, uint16_t n);

 private:
  template <bool kTrace>  // compiled with and without trace points, picked once per burst
  void burst(uint8_t in_port, rte_mbuf** pkts, const PacketInfo* info, const EntryPoint* const* entry, uint16_t n);

  WorkerContext& ctx_;
  Tx& tx_;
  FlowTable& flows_;
  FlowSetup& setup_;
  NameSlots& names_;
  Encap& encap_;
  TcpBinding& binding_;
  QuicHolds& quic_;
  LocalInput& local_;
};

}  // namespace dptun
