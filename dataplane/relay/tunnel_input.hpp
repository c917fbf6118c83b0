// Tunnel input, agent -> client: relay frames on the tunnel port. Each is read through the codec, checked against
// its session's replay window (on the session's RX worker: frames of other sessions are handed over), decrypted in
// one AEAD call per key, and its inner packet NAT-reversed onto the flow it belongs to (on the worker that owns the
// flow) and sent to the client; keepalives are answered; an agent's ICMP errors are passed on as a NAT would.
// Touches the sessions' replay windows, receive epochs and endpoints (written by their RX worker only), the worker's
// flow table (flow state, reply checks); hands inner fragments to Fragments, visitor frames to VisitorInput (replies
// on MASQUE clients' flows to MasqueInput), hostname connections' segments to TcpBinding. Counts decap_*,
// from_agent_* and replay/auth_fail per tunnel, keepalives; drops frame_malformed unknown_session replay stale_counter auth_fail key_unavailable bad_inner
// stale_flow flow_mismatch target_unreachable masque_target_unreachable masque_capsule_frame (a frame naming a MASQUE
// client whose capsules dpctld carries: nothing of it comes from the network).
#pragma once
#include <cstdint>

#include "dataplane/hostname/name_slots.hpp"
#include "dataplane/hostname/tcp_binding.hpp"
#include "dataplane/hostname/visitor_input.hpp"
#include "dataplane/loop/fragments.hpp"
#include "dataplane/loop/local_input.hpp"
#include "dataplane/loop/tx.hpp"
#include "dataplane/loop/worker_context.hpp"
#include "dataplane/masque/masque_input.hpp"
#include "packet/parser.hpp"
#include "proto/relay_frame.hpp"

struct rte_mbuf;

namespace dptun {

class TunnelInput {
 public:
  TunnelInput(WorkerContext& ctx, Tx& tx, FlowTable& flows, NameSlots& names, TcpBinding& binding,
              VisitorInput& visitors, MasqueInput& masque, Fragments& frags, LocalInput& local)
      : ctx_(ctx), tx_(tx), flows_(flows), names_(names), binding_(binding), visitors_(visitors), masque_(masque),
        frags_(frags), local_(local) {}
  TunnelInput(const TunnelInput&) = delete;
  TunnelInput& operator=(const TunnelInput&) = delete;
  // `n` UDP datagrams to the tunnel port received on `port`, with their parsed headers.
  void input(uint8_t port, rte_mbuf** pkts, const PacketInfo* info, uint16_t n);
  // An inner packet (`m` from its IP header on) of flow `flow_id` from session `s`, on the flow's worker.
  void deliver_to_client(rte_mbuf* m, uint64_t flow_id, TunnelSession& s);
  // The inner packet of an opened data frame (any framing: relay frames here, QUIC DATAGRAMs from QuicInput) of
  // session `s`, on its RX worker: counted, cut out of `m`, reassembled when a fragment, then to the visitor input
  // or to the worker that owns its flow.
  void from_agent(rte_mbuf* m, const InnerHeader& ih, std::span<uint8_t> inner, TunnelSession& s);
  // A data frame of session `s` with `bytes` of plaintext after its inner header (a MASQUE client's: its HTTP
  // Datagram) received: counted decap_* and from_agent_* of its tunnel.
  void count_from_agent(const TunnelSession& s, uint32_t bytes) {
    TunnelStats& ts = ctx_.tunnel_stats[s.tunnel];
    ts.from_agent_packets.add();
    ts.from_agent_bytes.add(bytes);
    ctx_.stats.decap_packets.add();
    ctx_.stats.decap_bytes.add(bytes);
  }
  // After the AEAD ran on a frame of `s` (any framing), on its RX worker: a failed tag (auth_fail) or a duplicate
  // within the burst (replay) is dropped and counted, false; otherwise the counter enters the replay window and a
  // frame newer than all before moves the agent's endpoint to its source (`pi`), true. A QUIC session's endpoint,
  // once known, is not moved here: `path` (non-null for QUIC sessions) tells where a frame newer than all before
  // came from instead, for path validation.
  enum class PathNews : uint8_t { Older, Endpoint, Elsewhere };
  bool take_opened(rte_mbuf* m, TunnelSession& s, const FrameMeta& meta, int32_t status, const PacketInfo& pi,
                   PathNews* path = nullptr);

 private:
  template <bool kTrace>  // compiled with and without trace points, picked once per burst
  void burst(uint8_t port, rte_mbuf** pkts, const PacketInfo* info, uint16_t n);
  Flow* flow_of_reply(uint64_t flow_id, const TunnelSession& s, uint8_t proto, uint32_t ip, uint16_t port, Drop& why);
  // An agent's ICMP error about a flow's target (inner protocol ICMP): passed on to the client, rewritten as a NAT
  // would, or (hostname connections) the client's connection refused.
  void icmp_from_agent(rte_mbuf* m, uint64_t flow_id, TunnelSession& s);
  void reply_keepalive(uint8_t port, rte_mbuf* m, TunnelSession& s, const PacketInfo& pi);

  WorkerContext& ctx_;
  Tx& tx_;
  FlowTable& flows_;
  NameSlots& names_;
  TcpBinding& binding_;
  VisitorInput& visitors_;
  MasqueInput& masque_;
  Fragments& frags_;
  LocalInput& local_;
  RelayCodec codec_;  // the tunnel framing: where a frame's parts lie
};

}  // namespace dptun
