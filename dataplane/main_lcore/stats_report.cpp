#include "dataplane/main_lcore/stats_report.hpp"

#include <rte_ethdev.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include "common/clock.hpp"
#include "common/json_writer.hpp"
#include "common/prom_text.hpp"
#include "version.hpp"
#include "dataplane/edge/edge_peer.hpp"
#include "dataplane/main_lcore/gateway_state.hpp"
#include "dataplane/tables/quic_session.hpp"
#include "dataplane/hostname/ingress_table.hpp"
#include "dataplane/tables/pair_table.hpp"
#include "dataplane/loop/worker.hpp"

namespace dptun {

namespace {

struct PortTotals {
  uint64_t rx_packets = 0, rx_bytes = 0, tx_packets = 0, tx_bytes = 0, tx_dropped = 0;
};
struct TunnelTotals {
  uint64_t to_agent_packets = 0, to_agent_bytes = 0, from_agent_packets = 0, from_agent_bytes = 0;
  uint64_t flows_created = 0, auth_fail = 0, replay = 0, key_unavailable = 0, keepalives = 0;
  uint64_t targets_unreachable = 0, flows_unanswered = 0;
};

PortTotals port_totals(const Dataplane& dp, size_t p) {
  PortTotals t;
  for (const auto& w : dp.workers) {
    const PortStats& s = w->port_stats[p];
    t.rx_packets += s.rx_packets.get();
    t.rx_bytes += s.rx_bytes.get();
    t.tx_packets += s.tx_packets.get();
    t.tx_bytes += s.tx_bytes.get();
    t.tx_dropped += s.tx_dropped.get();
  }
  return t;
}

TunnelTotals tunnel_totals(const Dataplane& dp, size_t t) {
  TunnelTotals r;
  for (const auto& w : dp.workers) {
    const TunnelStats& s = w->tunnel_stats[t];
    r.to_agent_packets += s.to_agent_packets.get();
    r.to_agent_bytes += s.to_agent_bytes.get();
    r.from_agent_packets += s.from_agent_packets.get();
    r.from_agent_bytes += s.from_agent_bytes.get();
    r.flows_created += s.flows_created.get();
    r.auth_fail += s.auth_fail.get();
    r.replay += s.replay.get();
    r.key_unavailable += s.key_unavailable.get();
    r.keepalives += s.keepalives.get();
    r.targets_unreachable += s.targets_unreachable.get();
    r.flows_unanswered += s.flows_unanswered.get();
  }
  return r;
}

uint64_t worker_sum(const Dataplane& dp, Counter WorkerStats::*c) {
  uint64_t v = 0;
  for (const auto& w : dp.workers) v += (w->stats.*c).get();
  return v;
}

// The edge role's session and traffic (docs/operations.md "Edge role").
void edge_json(JsonWriter& j, const Dataplane& dp, uint64_t now) {
  const EdgePeer& e = *dp.edge;
  const TunnelSession& s = e.session;
  j.key("edge").begin_object()
      .field("concentrator", e.concentrator.str())
      .field("session", unsigned(s.index))
      .field("local", Endpoint{Ipv4{dp.ports[e.underlay_port].address}, e.local_port}.str())
      .field("underlay_port", dp.ports[e.underlay_port].name)
      .field("lan_port", dp.ports[e.lan_port].name)
      .field("snat_net", e.snat_net.str())
      .field("up", e.up(now))
      .field("tx_epoch", epoch_of(s.tx_counter.load(std::memory_order_relaxed)));
  const uint64_t rx_epoch = s.rx_epoch.load(std::memory_order_relaxed);
  if (rx_epoch == kNoEpoch)
    j.key("rx_epoch").null();
  else
    j.field("rx_epoch", rx_epoch);
  if (const uint64_t last = s.last_rx_ns.load(std::memory_order_relaxed))
    j.field("last_rx_age_s", seconds_since(now, last));
  else
    j.key("last_rx_age_s").null();
  j.field("to_concentrator_packets", worker_sum(dp, &WorkerStats::edge_to_concentrator_packets))
      .field("to_concentrator_bytes", worker_sum(dp, &WorkerStats::edge_to_concentrator_bytes))
      .field("from_concentrator_packets", worker_sum(dp, &WorkerStats::edge_from_concentrator_packets))
      .field("from_concentrator_bytes", worker_sum(dp, &WorkerStats::edge_from_concentrator_bytes))
      .field("keepalives_tx", worker_sum(dp, &WorkerStats::edge_keepalives_tx))
      .field("keepalives_rx", worker_sum(dp, &WorkerStats::edge_keepalives_rx))
      .field("icmp_errors_forwarded", worker_sum(dp, &WorkerStats::edge_icmp_errors_forwarded))
      .field("auth_fail", worker_sum(dp, &WorkerStats::edge_auth_fail))
      .end_object();
}

uint64_t drop_total(const Dataplane& dp, size_t d) {
  uint64_t v = 0;
  for (const auto& w : dp.workers) v += w->stats.drops[d].get();
  return v;
}

uint64_t flows_active(const Dataplane& dp) {
  uint64_t v = 0;
  for (const auto& w : dp.workers) v += w->flows().size();
  return v;
}

// The QUIC slow path's counters (QuicControlStats, the control lcore's): name as `dpgw stats` and Prometheus show it.
struct QuicControlField {
  const char* name;
  const char* help;
  Counter QuicControlStats::*v;
};
const QuicControlField kQuicControlFields[] = {
    {"quic_slow_path_rx", "QUIC packets whose frames went to the control lcore (the slow path).", &QuicControlStats::slow_path_rx},
    {"quic_slow_path_malformed", "Slow-path QUIC packets whose frames did not parse (none acted on).", &QuicControlStats::frames_malformed},
    {"quic_path_challenges_tx", "PATH_CHALLENGE frames sent to candidate addresses of agents.", &QuicControlStats::path_challenges_tx},
    {"quic_path_responses_tx", "PATH_RESPONSE frames sent, answering agents' PATH_CHALLENGE.", &QuicControlStats::path_responses_tx},
    {"quic_paths_validated", "Candidate addresses validated: the agent's endpoint moved there.", &QuicControlStats::paths_validated},
    {"quic_path_validation_failed", "Candidate addresses given up (no PATH_RESPONSE in time): the endpoint stayed.", &QuicControlStats::path_validation_failed},
    {"quic_paths_abandoned", "Candidate addresses dropped: a newer non-probing packet came from the endpoint meanwhile.", &QuicControlStats::paths_abandoned},
    {"quic_path_probes_limited", "PATH_CHALLENGE / PATH_RESPONSE held back or not padded by the 3x anti-amplification limit.", &QuicControlStats::path_probes_limited},
    {"quic_connection_closes_rx", "QUIC sessions ended by their agent's CONNECTION_CLOSE.", &QuicControlStats::connection_closes_rx},
    {"quic_peer_cid_retired", "Sessions whose agent retired the connection ID dpgw sends with (kept all the same).", &QuicControlStats::peer_cid_retired},
    {"quic_control_send_full", "Slow-path frames not sent: a worker's handoff ring was full, or no mbuf.", &QuicControlStats::send_full},
};
// MASQUE clients whose capsules dpctld carries (MasqueControlStats, the control lcore's): as QuicControlField.
struct MasqueControlField {
  const char* name;
  const char* help;
  Counter MasqueControlStats::*v;
};
const MasqueControlField kMasqueControlFields[] = {
    {"masque_capsule_rx", "UDP payloads from dpctld (MASQUE clients whose capsules it carries) handed to workers.", &MasqueControlStats::rx},
    {"masque_capsule_tx", "Targets' replies to such clients sent to dpctld.", &MasqueControlStats::tx},
    {"masque_capsule_unknown", "Payloads from dpctld naming no capsule session, or another request id (dropped).", &MasqueControlStats::unknown},
    {"masque_capsule_malformed", "masque_datagrams messages from dpctld that did not decode (dropped).", &MasqueControlStats::malformed},
    {"masque_capsule_too_large", "Payloads from dpctld too large for one mbuf (dropped).", &MasqueControlStats::too_large},
    {"masque_capsule_send_full", "Payloads from dpctld not handed to a worker: its handoff ring was full, or no mbuf.", &MasqueControlStats::send_full},
    {"masque_capsule_backlog", "Replies to dpctld dropped: its connection had too much queued already.", &MasqueControlStats::backlog},
    {"masque_capsule_no_controller", "Replies to dpctld dropped: no controller connected.", &MasqueControlStats::no_controller},
};
// Frame types by QuicControlStats::frames_rx slot (RFC 9000 19; RFC 9221).
const char* quic_frame_slot_name(size_t slot) {
  static const char* const names[kQuicFrameSlots] = {
      "padding", "ping", "ack", "ack_ecn", "reset_stream", "stop_sending", "crypto", "new_token", "stream", nullptr,
      nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, "max_data", "max_stream_data", "max_streams_bidi",
      "max_streams_uni", "data_blocked", "stream_data_blocked", "streams_blocked_bidi", "streams_blocked_uni",
      "new_connection_id", "retire_connection_id", "path_challenge", "path_response", "connection_close",
      "connection_close_app", "handshake_done", "datagram"};
  return slot < kQuicFrameSlots ? names[slot] : nullptr;
}

#define WORKER_COUNTERS(X)                                                                                  \
  X(rx_packets) X(rx_bytes) X(tx_packets) X(tx_bytes) X(encap_packets) X(encap_bytes) X(decap_packets)     \
  X(decap_bytes) X(flows_created) X(flows_expired) X(flows_evicted) X(flows_repinned) X(keepalives_rx)     \
  X(keepalives_tx)                                                                                         \
  X(icmp_echo_replies) X(icmp_frag_needed) X(fragments_tx) X(to_control) X(to_kernel) X(handoff_tx) X(handoff_rx)       \
  X(idle_sleeps) X(polls) X(hostname_routed) X(syn_cookies_sent) X(bindings_started) X(bindings_spliced) \
  X(bindings_refused) X(bindings_evicted) X(bindings_grown) X(binding_retransmits) X(quic_flows_held)     \
  X(quic_held_sent) X(quic_holds_evicted) X(visitor_packets) X(visitor_flows) X(frag_rx) X(frag_steered)     \
  X(frag_reassembled) X(frag_timeouts) X(frag_evictions) X(inner_frag_rx) X(inner_frag_reassembled)          \
  X(inner_frag_timeouts) X(inner_frag_evictions) X(icmp_errors_forwarded) X(closed_port_rsts)                  \
  X(closed_port_unreachables) X(closed_port_limited) X(flows_unanswered) X(edge_to_concentrator_packets)          \
  X(edge_to_concentrator_bytes) X(edge_from_concentrator_packets) X(edge_from_concentrator_bytes)              \
  X(edge_keepalives_tx) X(edge_keepalives_rx) X(edge_icmp_errors_forwarded) X(edge_auth_fail) X(quic_acks_tx)     \
  X(quic_control_tx) X(quic_key_updates_rx) X(quic_key_updates_tx) X(masque_datagrams_rx) X(masque_datagrams_tx)     \
  X(stun_requests) X(stun_responses) X(pair_frames_relayed) X(pair_bytes_relayed)

}  // namespace

std::string stats_json(const Dataplane& dp) {
  JsonWriter j;
  uint64_t now = dp.clock.now_ns();
  j.begin_object();
  j.field("uptime_s", double(now - dp.started_ns) / 1e9);
  j.key("ports").begin_array();
  for (size_t p = 0; p < dp.ports.size(); ++p) {
    const PortInfo& pi = dp.ports[p];
    PortTotals t = port_totals(dp, p);
    rte_eth_stats es{};
    rte_eth_stats_get(pi.port_id, &es);
    j.begin_object()
        .field("name", pi.name)
        .field("address", Ipv4{pi.address}.str())
        .field("mtu", unsigned(pi.mtu));
    if (p < dp.link.size()) {  // (the main lcore's last reading, link_watch.hpp)
      const PortLink& l = dp.link[p];
      j.field("link", l.up ? "up" : "down").field("link_changes", l.changes);
      if (l.speed_mbps) j.field("link_speed_mbps", unsigned(l.speed_mbps));
    }
    j.field("rx_packets", t.rx_packets)
        .field("rx_bytes", t.rx_bytes)
        .field("tx_packets", t.tx_packets)
        .field("tx_bytes", t.tx_bytes)
        .field("tx_dropped", t.tx_dropped)
        .field("hw_rx_missed", uint64_t(es.imissed))
        .field("hw_rx_errors", uint64_t(es.ierrors))
        .field("hw_tx_errors", uint64_t(es.oerrors))
        .field("hw_rx_nombuf", uint64_t(es.rx_nombuf));
    if (p < dp.socket_counted.size() && dp.socket_counted[p])
      j.field("socket_rx_dropped", dp.socket_rx_dropped[p]);  // in front of a socket vdev (socket_drops.hpp)
    if (pi.kernel_path && p < dp.kernel_stats.size()) {
      const KernelPathStats& k = dp.kernel_stats[p];
      j.key("kernel_path")
          .begin_object()
          .field("interface", dp.cfg->ports[p].kernel_interface)
          .field("to_kernel_packets", k.to_kernel_packets.get())
          .field("to_kernel_bytes", k.to_kernel_bytes.get())
          .field("from_kernel_packets", k.from_kernel_packets.get())
          .field("from_kernel_bytes", k.from_kernel_bytes.get())
          .field("write_errors", k.write_errors.get())
          .field("refused", k.refused.get())
          .field("dropped", k.dropped.get())
          .end_object();
    }
    j.end_object();
  }
  j.end_array();
  j.key("workers").begin_array();
  for (const auto& w : dp.workers) {
    j.begin_object().field("id", unsigned(w->id())).field("lcore", w->lcore());
#define X(name) j.field(#name, w->stats.name.get());
    WORKER_COUNTERS(X)
#undef X
    j.field("flows_active", uint64_t(w->flows().size()));
    j.key("drops").begin_object();
    for (size_t d = 0; d < size_t(Drop::Count); ++d) j.field(drop_reason_name(Drop(d)), w->stats.drops[d].get());
    j.end_object();
    j.key("quic_initials").begin_object();
    for (size_t q = 0; q < w->stats.quic_initials.size(); ++q)
      j.field(quic_status_name(QuicStatus(q)), w->stats.quic_initials[q].get());
    j.end_object();
    j.end_object();
  }
  j.end_array();
  j.key("tunnels").begin_array();
  for (uint16_t slot = 0; slot < dp.tunnels.capacity(); ++slot) {
    const TunnelPool* tu = dp.tunnels.get(slot);
    if (!tu) continue;
    TunnelTotals tt = tunnel_totals(dp, slot);
    j.begin_object()
        .field("id", tu->id.str())
        .field("name", tu->name)
        .field("static", tu->from_config)
        .field("to_agent_packets", tt.to_agent_packets)
        .field("to_agent_bytes", tt.to_agent_bytes)
        .field("from_agent_packets", tt.from_agent_packets)
        .field("from_agent_bytes", tt.from_agent_bytes)
        .field("flows_created", tt.flows_created)
        .field("auth_fail", tt.auth_fail)
        .field("replay", tt.replay)
        .field("key_unavailable", tt.key_unavailable)
        .field("keepalives", tt.keepalives)
        .field("targets_unreachable", tt.targets_unreachable)
        .field("flows_unanswered", tt.flows_unanswered);
    j.key("sessions").begin_array();
    for (const TunnelSession* s : tu->sessions) {
      uint64_t last = s->last_rx_ns.load(std::memory_order_relaxed);
      j.begin_object()
          .field("index", unsigned(s->index))
          .field("weight", unsigned(s->weight))
          .field("framing", s->quic ? "quic" : "relay")
          .field("live", session_live(*s, now, dp.cfg->session_timeout_ns))
          .field("endpoint", s->has_peer() ? s->peer().str() : std::string())
          .field("endpoint_changes", s->endpoint_changes.load(std::memory_order_relaxed))
          .field("flows_pinned", uint64_t(std::max<int64_t>(0, s->flows_pinned.load(std::memory_order_relaxed))))
          .field("flows_total", s->flows_total.load(std::memory_order_relaxed))
          .field("tx_epoch", epoch_of(s->tx_counter.load(std::memory_order_relaxed)));
      if (s->quic)  // key generations (docs/protocol.md "Key updates"); the transmit one as the counter holds it
        j.field("quic_rx_generation", s->quic->rx_generation.load(std::memory_order_relaxed))
            .field("quic_tx_generation", unsigned(quic_tx_generation(s->tx_counter.load(std::memory_order_relaxed))))
            .field("quic_connection_ids", unsigned(s->quic->codec.rx_cid_count()))
            .field("quic_max_packet", unsigned(s->quic->agent_max_packet));
      uint64_t rx_epoch = s->rx_epoch.load(std::memory_order_relaxed);
      if (rx_epoch == kNoEpoch)
        j.key("rx_epoch").null();
      else
        j.field("rx_epoch", rx_epoch);
      if (last)
        j.field("last_rx_age_s", seconds_since(now, last));
      else
        j.key("last_rx_age_s").null();
      j.end_object();
    }
    j.end_array();
    j.end_object();
  }
  j.end_array();
  if (dp.edge) edge_json(j, dp, now);
  j.key("entry_points").begin_array();
  if (const EntryTable* entries = dp.entries.load(std::memory_order_acquire)) {
    for (const EntryPoint& e : entries->all()) {
      const TunnelPool* tu = dp.tunnels.get(e.tunnel);
      j.begin_object()
          .field("proto", e.proto == 6 ? "tcp" : "udp")
          .field("port", unsigned(e.port))
          .field("listen", e.listen ? e.listen->str() : std::string("*"))
          .field("route", entry_route_name(e.route));
      if (e.route == EntryRoute::Fixed) j.field("tunnel", tu ? tu->name : std::string("?")).field("target", e.target.str());
      if (e.proto == 17) j.field("keepalive", e.keepalive).field("ttl_s", double(e.udp_ttl_ns) / 1e9);
      j.end_object();
    }
  }
  j.end_array();
  if (const IngressTable* t = dp.ingress.load(std::memory_order_acquire)) {
    j.key("ingress").begin_object().field("rules", uint64_t(t->routes.size()));
    j.field("literal_api", t->matcher && t->matcher->literal_database());
    j.end_object();
  }
  // The direct-path pairs of dpctld's last pair_set (whose pair frames the workers relay); absent before the first.
  if (const PairTable* t = dp.pairs.load(std::memory_order_acquire)) j.field("pairs", uint64_t(t->size()));
  j.key("quic_control").begin_object();
  for (const QuicControlField& f : kQuicControlFields) j.field(f.name, (dp.quic_control.*f.v).get());
  j.key("quic_frames_rx").begin_object();
  for (size_t t = 0; t < kQuicFrameSlots; ++t)
    if (const char* n = quic_frame_slot_name(t)) j.field(n, dp.quic_control.frames_rx[t].get());
  j.end_object();
  j.end_object();
  j.key("masque_control").begin_object();
  for (const MasqueControlField& f : kMasqueControlFields) j.field(f.name, (dp.masque_control.*f.v).get());
  j.end_object();
  j.key("totals").begin_object();
  j.field("flows_active", flows_active(dp));
  j.field("neighbors", uint64_t(dp.neighbors.size()));
  j.key("drops").begin_object();
  for (size_t d = 0; d < size_t(Drop::Count); ++d) j.field(drop_reason_name(Drop(d)), drop_total(dp, d));
  j.end_object();
  j.key("parse_errors").begin_object();
  for (size_t s = 1; s < size_t(ParseStatus::Count); ++s) {
    uint64_t v = 0;
    for (const auto& w : dp.workers) v += w->stats.parse_errors[s].get();
    j.field(parse_status_name(ParseStatus(s)), v);
  }
  j.end_object();
  j.end_object();
  j.end_object();
  return j.str() + "\n";
}

std::string stats_text(const Dataplane& dp) {
  std::string out;
  char line[256];
  auto add = [&](const char* fmt, auto... args) {
    snprintf(line, sizeof line, fmt, args...);
    out += line;
  };
  add("%-12s %-15s %12s %14s %12s %14s %10s\n", "port", "address", "rx_packets", "rx_bytes", "tx_packets",
      "tx_bytes", "tx_drop");
  for (size_t p = 0; p < dp.ports.size(); ++p) {
    PortTotals t = port_totals(dp, p);
    add("%-12s %-15s %12" PRIu64 " %14" PRIu64 " %12" PRIu64 " %14" PRIu64 " %10" PRIu64 "\n",
        dp.ports[p].name.c_str(), Ipv4{dp.ports[p].address}.str().c_str(), t.rx_packets, t.rx_bytes, t.tx_packets,
        t.tx_bytes, t.tx_dropped);
  }
  for (size_t p = 0; p < dp.ports.size() && p < dp.link.size(); ++p)
    if (!dp.link[p].up)
      add("port %s: link down (what dpgw sends there is lost until it comes back)\n", dp.ports[p].name.c_str());
  for (size_t p = 0; p < dp.ports.size() && p < dp.socket_rx_dropped.size(); ++p)
    if (dp.socket_counted[p] && dp.socket_rx_dropped[p])
      add("port %s: %" PRIu64 " frames dropped by the kernel in front of dpgw (its socket's receive ring was full)\n",
          dp.ports[p].name.c_str(), dp.socket_rx_dropped[p]);
  for (size_t p = 0; p < dp.ports.size() && p < dp.kernel_stats.size(); ++p) {
    if (!dp.ports[p].kernel_path) continue;
    const KernelPathStats& k = dp.kernel_stats[p];
    add("kernel path %s on %s: %" PRIu64 " packets to the kernel, %" PRIu64 " from it, %" PRIu64
        " write errors, %" PRIu64 " refused, %" PRIu64 " dropped\n",
        dp.ports[p].name.c_str(), dp.cfg->ports[p].kernel_interface.c_str(), k.to_kernel_packets.get(),
        k.from_kernel_packets.get(), k.write_errors.get(), k.refused.get(), k.dropped.get());
  }
  add("\n%-20s %12s %14s %12s %14s %8s %8s %8s\n", "tunnel", "to_agent", "to_agent_B", "from_agent",
      "from_agent_B", "flows", "authfail", "replay");
  const uint64_t now = dp.clock.now_ns();
  for (uint16_t slot = 0; slot < dp.tunnels.capacity(); ++slot) {
    const TunnelPool* tu = dp.tunnels.get(slot);
    if (!tu) continue;
    TunnelTotals tt = tunnel_totals(dp, slot);
    add("%-20s %12" PRIu64 " %14" PRIu64 " %12" PRIu64 " %14" PRIu64 " %8" PRIu64 " %8" PRIu64 " %8" PRIu64 "\n",
        tu->name.c_str(), tt.to_agent_packets, tt.to_agent_bytes, tt.from_agent_packets, tt.from_agent_bytes,
        tt.flows_created, tt.auth_fail, tt.replay);
    if (tt.targets_unreachable || tt.flows_unanswered)
      add("  flows that failed at the target: %" PRIu64 " unreachable (ICMP from the agent), %" PRIu64
          " never answered\n",
          tt.targets_unreachable, tt.flows_unanswered);
    for (const TunnelSession* s : tu->sessions)
      add("  session %-5u endpoint %-21s weight %-3u %s\n", s->index,
          s->has_peer() ? s->peer().str().c_str() : "(unknown)", unsigned(s->weight),
          session_live(*s, now, dp.cfg->session_timeout_ns) ? "live" : "down");
  }
  if (const EdgePeer* e = dp.edge.get())
    add("\nedge: session %u to concentrator %s, %s; to it %" PRIu64 " packets (%" PRIu64 " B), from it %" PRIu64
        " packets (%" PRIu64 " B), %" PRIu64 " failed authentication\n",
        e->session.index, e->concentrator.str().c_str(), e->up(now) ? "up" : "down",
        worker_sum(dp, &WorkerStats::edge_to_concentrator_packets), worker_sum(dp, &WorkerStats::edge_to_concentrator_bytes),
        worker_sum(dp, &WorkerStats::edge_from_concentrator_packets),
        worker_sum(dp, &WorkerStats::edge_from_concentrator_bytes), worker_sum(dp, &WorkerStats::edge_auth_fail));
  add("\nflows active %" PRIu64 ", neighbours %u\n", flows_active(dp), dp.neighbors.size());
  auto sum = [&](Counter WorkerStats::*c) {
    uint64_t v = 0;
    for (const auto& w : dp.workers) v += (w->stats.*c).get();
    return v;
  };
  if (sum(&WorkerStats::frag_rx) || sum(&WorkerStats::inner_frag_rx) || sum(&WorkerStats::fragments_tx))
    add("fragments: from clients %" PRIu64 " (%" PRIu64 " datagrams, %" PRIu64 " timed out, %" PRIu64
        " evicted), from agents %" PRIu64 " (%" PRIu64 " datagrams, %" PRIu64 " timed out), made %" PRIu64 "\n",
        sum(&WorkerStats::frag_rx), sum(&WorkerStats::frag_reassembled), sum(&WorkerStats::frag_timeouts),
        sum(&WorkerStats::frag_evictions), sum(&WorkerStats::inner_frag_rx), sum(&WorkerStats::inner_frag_reassembled),
        sum(&WorkerStats::inner_frag_timeouts), sum(&WorkerStats::fragments_tx));
  if (sum(&WorkerStats::closed_port_rsts) || sum(&WorkerStats::closed_port_unreachables) ||
      sum(&WorkerStats::closed_port_limited) || sum(&WorkerStats::icmp_errors_forwarded))
    add("answers to clients: %" PRIu64 " RSTs and %" PRIu64 " ICMP port unreachable for ports without an entry point"
        " (%" PRIu64 " over the rate, not sent), %" PRIu64 " ICMP errors from agents passed on\n",
        sum(&WorkerStats::closed_port_rsts), sum(&WorkerStats::closed_port_unreachables),
        sum(&WorkerStats::closed_port_limited), sum(&WorkerStats::icmp_errors_forwarded));
  {
    const MasqueControlStats& mc = dp.masque_control;
    if (mc.rx.get() || mc.tx.get() || mc.unknown.get() || mc.malformed.get() || mc.too_large.get() ||
        mc.send_full.get() || mc.backlog.get() || mc.no_controller.get()) {
      out += "MASQUE capsules via dpctld:";
      for (const MasqueControlField& f : kMasqueControlFields) add(" %s %" PRIu64, f.name, (mc.*f.v).get());
      out += "\n";
    }
  }
  std::string drops;
  for (size_t d = 0; d < size_t(Drop::Count); ++d) {
    uint64_t v = drop_total(dp, d);
    if (v) drops += "  " + std::string(drop_reason_name(Drop(d))) + " " + std::to_string(v) + "\n";
  }
  out += drops.empty() ? "drops: none\n" : "drops:\n" + drops;
  return out;
}

std::string stats_prometheus(const Dataplane& dp, uint64_t controller_epoch) {
  PromText p;
  const uint64_t now = dp.clock.now_ns();
  p.family("dptun_gw_build_info", "gauge", "The running dpgw's version (label), always 1.");
  p.sample("dptun_gw_build_info", 1, prom_label("program", "dpgw") + "," + prom_label("version", DPTUN_RELEASE) + "," +
                                         prom_label("commit", DPTUN_COMMIT));
  p.family("dptun_gw_uptime_seconds", "gauge", "Seconds since dpgw started forwarding.");
  p.sample("dptun_gw_uptime_seconds", double(now - dp.started_ns) / 1e9);
  p.family("dptun_gw_controller_epoch", "gauge", "Epoch of the dpctld controlling this gateway (0: none yet).");
  p.sample("dptun_gw_controller_epoch", double(controller_epoch));

  struct PortField {
    const char* name;
    const char* help;
    uint64_t PortTotals::*v;
  };
  static const PortField port_fields[] = {
      {"dptun_gw_port_rx_packets_total", "Packets received per port.", &PortTotals::rx_packets},
      {"dptun_gw_port_rx_bytes_total", "Bytes received per port.", &PortTotals::rx_bytes},
      {"dptun_gw_port_tx_packets_total", "Packets sent per port.", &PortTotals::tx_packets},
      {"dptun_gw_port_tx_bytes_total", "Bytes sent per port.", &PortTotals::tx_bytes},
      {"dptun_gw_port_tx_dropped_total", "Packets the TX queue did not take, per port.", &PortTotals::tx_dropped}};
  for (const PortField& f : port_fields) {
    p.family(f.name, "counter", f.help);
    for (size_t i = 0; i < dp.ports.size(); ++i) p.sample(f.name, double(port_totals(dp, i).*f.v), prom_label("port", dp.ports[i].name));
  }
  p.family("dptun_gw_port_rx_missed_total", "counter", "Packets the NIC dropped for lack of RX descriptors (imissed).");
  for (size_t i = 0; i < dp.ports.size(); ++i) {
    rte_eth_stats es{};
    rte_eth_stats_get(dp.ports[i].port_id, &es);
    p.sample("dptun_gw_port_rx_missed_total", double(es.imissed), prom_label("port", dp.ports[i].name));
  }
  p.family("dptun_gw_port_link_up", "gauge", "1 while the port's link is up, 0 while it is down.");
  for (size_t i = 0; i < dp.ports.size() && i < dp.link.size(); ++i)
    p.sample("dptun_gw_port_link_up", dp.link[i].up ? 1.0 : 0.0, prom_label("port", dp.ports[i].name));
  p.family("dptun_gw_port_link_changes_total", "counter", "Times the port's link went down or came up.");
  for (size_t i = 0; i < dp.ports.size() && i < dp.link.size(); ++i)
    p.sample("dptun_gw_port_link_changes_total", double(dp.link[i].changes), prom_label("port", dp.ports[i].name));
  p.family("dptun_gw_port_socket_rx_dropped_total", "counter",
           "Frames the kernel dropped in front of a socket device (af_packet, af_xdp): its receive ring was full.");
  for (size_t i = 0; i < dp.ports.size() && i < dp.socket_counted.size(); ++i)
    if (dp.socket_counted[i])
      p.sample("dptun_gw_port_socket_rx_dropped_total", double(dp.socket_rx_dropped[i]), prom_label("port", dp.ports[i].name));
  struct KernelField {
    const char* name;
    const char* help;
    Counter KernelPathStats::*v;
  };
  static const KernelField kernel_fields[] = {
      {"dptun_gw_kernel_path_to_kernel_packets_total", "Frames handed to the kernel path.", &KernelPathStats::to_kernel_packets},
      {"dptun_gw_kernel_path_from_kernel_packets_total", "Frames the kernel path sent out.", &KernelPathStats::from_kernel_packets},
      {"dptun_gw_kernel_path_write_errors_total", "Frames the TAP did not take.", &KernelPathStats::write_errors},
      {"dptun_gw_kernel_path_refused_total", "Frames from the kernel not sent (not the port's own).", &KernelPathStats::refused},
      {"dptun_gw_kernel_path_dropped_total", "Frames from the kernel dropped (size, mbufs, ring).", &KernelPathStats::dropped}};
  for (const KernelField& f : kernel_fields) {
    p.family(f.name, "counter", f.help);
    for (size_t i = 0; i < dp.ports.size() && i < dp.kernel_stats.size(); ++i)
      if (dp.ports[i].kernel_path) p.sample(f.name, double((dp.kernel_stats[i].*f.v).get()), prom_label("port", dp.ports[i].name));
  }

  for (const QuicControlField& f : kQuicControlFields) {
    const std::string name = std::string("dptun_gw_") + f.name + "_total";
    p.family(name, "counter", f.help);
    p.sample(name, double((dp.quic_control.*f.v).get()));
  }
  for (const MasqueControlField& f : kMasqueControlFields) {
    const std::string name = std::string("dptun_gw_") + f.name + "_total";
    p.family(name, "counter", f.help);
    p.sample(name, double((dp.masque_control.*f.v).get()));
  }
  p.family("dptun_gw_quic_frames_rx_total", "counter", "Slow-path QUIC packets carrying each frame type (RFC 9000 19).");
  for (size_t t = 0; t < kQuicFrameSlots; ++t)
    if (const char* n = quic_frame_slot_name(t))
      p.sample("dptun_gw_quic_frames_rx_total", double(dp.quic_control.frames_rx[t].get()), prom_label("type", n));

#define X(name)                                                                                            \
  p.family("dptun_gw_worker_" #name "_total", "counter", "Per worker: " #name " (docs/operations.md).");  \
  for (const auto& w : dp.workers)                                                                         \
    p.sample("dptun_gw_worker_" #name "_total", double(w->stats.name.get()), prom_label("worker", std::to_string(w->id())));
  WORKER_COUNTERS(X)
#undef X
  p.family("dptun_gw_drops_total", "counter", "Packets dropped, by worker and reason (docs/operations.md lists them).");
  for (const auto& w : dp.workers)
    for (size_t d = 0; d < size_t(Drop::Count); ++d)
      p.sample("dptun_gw_drops_total", double(w->stats.drops[d].get()),
               prom_label("worker", std::to_string(w->id())) + "," + prom_label("reason", drop_reason_name(Drop(d))));
  p.family("dptun_gw_flows_active", "gauge", "Flows in each worker's flow table.");
  for (const auto& w : dp.workers)
    p.sample("dptun_gw_flows_active", double(w->flows().size()), prom_label("worker", std::to_string(w->id())));
  p.family("dptun_gw_flow_table_capacity", "gauge", "Flows each worker's table holds.");
  p.sample("dptun_gw_flow_table_capacity", double(dp.cfg->flow.table_size));
  p.family("dptun_gw_neighbors", "gauge", "Neighbour (ARP) entries.");
  p.sample("dptun_gw_neighbors", double(dp.neighbors.size()));

  struct TunnelField {
    const char* name;
    const char* help;
    uint64_t TunnelTotals::*v;
  };
  static const TunnelField tunnel_fields[] = {
      {"dptun_gw_tunnel_to_agent_packets_total", "Packets sent into the tunnel.", &TunnelTotals::to_agent_packets},
      {"dptun_gw_tunnel_to_agent_bytes_total", "Bytes sent into the tunnel.", &TunnelTotals::to_agent_bytes},
      {"dptun_gw_tunnel_from_agent_packets_total", "Packets received from the tunnel.", &TunnelTotals::from_agent_packets},
      {"dptun_gw_tunnel_from_agent_bytes_total", "Bytes received from the tunnel.", &TunnelTotals::from_agent_bytes},
      {"dptun_gw_tunnel_flows_total", "Flows created.", &TunnelTotals::flows_created},
      {"dptun_gw_tunnel_auth_failures_total", "Frames that failed authentication.", &TunnelTotals::auth_fail},
      {"dptun_gw_tunnel_replays_total", "Frames refused as replays.", &TunnelTotals::replay},
      {"dptun_gw_tunnel_targets_unreachable_total", "ICMP errors from the agents about the flows' targets.",
       &TunnelTotals::targets_unreachable},
      {"dptun_gw_tunnel_flows_unanswered_total", "TCP flows that ended without an answer from their target.",
       &TunnelTotals::flows_unanswered}};
  std::vector<std::pair<uint16_t, const TunnelPool*>> tunnels;
  for (uint16_t slot = 0; slot < dp.tunnels.capacity(); ++slot)
    if (const TunnelPool* tu = dp.tunnels.get(slot)) tunnels.emplace_back(slot, tu);
  auto tunnel_labels = [](const TunnelPool* tu) { return prom_label("tunnel", tu->id.str()) + "," + prom_label("name", tu->name); };
  for (const TunnelField& f : tunnel_fields) {
    p.family(f.name, "counter", f.help);
    for (const auto& [slot, tu] : tunnels) p.sample(f.name, double(tunnel_totals(dp, slot).*f.v), tunnel_labels(tu));
  }
  if (const EdgePeer* e = dp.edge.get()) {
    p.family("dptun_gw_edge_up", "gauge", "1 while the edge hears its concentrator (within 3 keepalive intervals).");
    p.sample("dptun_gw_edge_up", e->up(now) ? 1 : 0,
             prom_label("concentrator", e->concentrator.str()) + "," + prom_label("session", std::to_string(e->session.index)));
  }
  p.family("dptun_gw_session_live", "gauge", "1 while dpgw hears the session's agent (keepalives within session_timeout).");
  for (const auto& [slot, tu] : tunnels)
    for (const TunnelSession* s : tu->sessions)
      p.sample("dptun_gw_session_live", session_live(*s, now, dp.cfg->session_timeout_ns) ? 1 : 0,
               tunnel_labels(tu) + "," + prom_label("session", std::to_string(s->index)));
  p.family("dptun_gw_session_flows_pinned", "gauge", "Flows pinned to the session.");
  for (const auto& [slot, tu] : tunnels)
    for (const TunnelSession* s : tu->sessions)
      p.sample("dptun_gw_session_flows_pinned", double(std::max<int64_t>(0, s->flows_pinned.load(std::memory_order_relaxed))),
               tunnel_labels(tu) + "," + prom_label("session", std::to_string(s->index)));
  p.family("dptun_gw_session_last_rx_age_seconds", "gauge", "Seconds since the session's agent was last heard.");
  for (const auto& [slot, tu] : tunnels)
    for (const TunnelSession* s : tu->sessions)
      if (const uint64_t last = s->last_rx_ns.load(std::memory_order_relaxed))
        p.sample("dptun_gw_session_last_rx_age_seconds", seconds_since(now, last),
                 tunnel_labels(tu) + "," + prom_label("session", std::to_string(s->index)));
  return p.str();
}

}  // namespace dptun
