// Visitors (`dpagent visit`, docs/hostname-routing.md): frames from a visitor session open or continue flows to its
// own tunnel's services (a hostname rule of that tunnel, private ones too, or in direct mode any address its agents
// reach), and the services' replies go back in frames of the visitor's session. forward() is the one path of a
// visitor's packet into a flow, MASQUE clients' included (dataplane/masque/). Touches the worker's flow table;
// opens flows through FlowSetup and sends through Encap. Counts visitor_packets, visitor_flows (flow setup); drops
// bad_inner direct_disabled no_rule no_session stale_flow tcp_no_flow.
#pragma once
#include "dataplane/entry/flow_setup.hpp"
#include "dataplane/loop/worker_context.hpp"
#include "dataplane/relay/encap.hpp"
#include "packet/parser.hpp"

struct rte_mbuf;

namespace dptun {

class VisitorInput {
 public:
  VisitorInput(WorkerContext& ctx, FlowTable& flows, FlowSetup& setup, Encap& encap)
      : ctx_(ctx), flows_(flows), setup_(setup), encap_(encap) {}
  // A decrypted frame of visitor session `v` (this worker is its RX worker): `m` holds the inner packet and, with
  // kInnerHasName, the name trailer.
  void input(rte_mbuf* m, const InnerHeader& ih, TunnelSession& v);
  // A reply on visitor flow `f` (from its target): back to the visitor, addressed from the service it asked for.
  void deliver(rte_mbuf* m, Flow& f, const PacketInfo& pi);

  // Where a visitor's packet that starts a flow goes.
  enum class Aim : uint8_t {
    Rule,     // the hostname rule of its own tunnel for the name it gave (private rules too)
    Direct,   // the inner destination itself, when the gateway's direct_mode allows it (direct_disabled)
    Granted,  // the inner destination itself, granted by dpctld: a MASQUE client's route target (the flow is marked
              // Flow::masque, its replies go to MasqueInput)
  };
  // The one path of every visitor packet into the tunnel: IPv4 packet `m` (one segment, parsed into `pi`) of visitor
  // session `v` (on its RX worker) continues its flow, or opens one by `aim` (FlowSetup), and goes to the flow's
  // agent, its destination rewritten to the flow's target. Drops tcp_no_flow no_session direct_disabled no_rule
  // flow_table_full (and Encap's).
  void forward(rte_mbuf* m, const PacketInfo& pi, TunnelSession& v, Aim aim, std::string_view name = {});
  // The visitor session of flow `f`, or nullptr when it went (its index may serve another session now).
  TunnelSession* visitor_of(const Flow& f) const {
    TunnelSession* v = ctx_.dp.sessions.find(f.visitor);
    return v && v->visitor && v->tunnel == f.tunnel ? v : nullptr;
  }

 private:
  WorkerContext& ctx_;
  FlowTable& flows_;
  FlowSetup& setup_;
  Encap& encap_;
};

}  // namespace dptun
