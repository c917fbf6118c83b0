// Visitors (`dpagent visit`, docs/hostname-routing.md): frames from a visitor session open or continue flows to its
// own tunnel's services (a hostname rule of that tunnel, private ones too, or in direct mode any address its agents
// reach), and the services' replies go back in frames of the visitor's session. Touches the worker's flow table;
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

 private:
  WorkerContext& ctx_;
  FlowTable& flows_;
  FlowSetup& setup_;
  Encap& encap_;
};

}  // namespace dptun
