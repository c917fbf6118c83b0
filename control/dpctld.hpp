// dpctld assembled: the agent TLS port (handshakes, failure log, registrations), the session registry, metrics.
// Single-threaded on one event loop.
#pragma once
#include <atomic>
#include <cstdio>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "common/background.hpp"
#include "common/event_loop.hpp"
#include "common/token_bucket.hpp"
#include "control/agent_channel.hpp"
#include "control/agent_listener.hpp"
#include "control/quic_listener.hpp"
#include "control/direct_pairs.hpp"
#include "control/dpctld_config.hpp"
#include "control/gateway_link.hpp"
#include "control/masque_client.hpp"
#include "control/masque_tcp.hpp"
#include "common/metrics_http.hpp"
#include "control/session_registry.hpp"
#include "control/state_store.hpp"
#include "proto/gateway_messages.hpp"
#include "common/line_server.hpp"

namespace dptun {

// Why a registration was refused (the reason label of dptun_registrations_refused_total and of the
// agent_registration_refused line in the failure log).
enum class Refusal : uint8_t { BadRequest, Version, NoTunnel, NotAllowed, NoIndex, Internal, Count };
const char* refusal_name(Refusal r);

// The front ends CONNECT-UDP requests come through (docs/masque.md).
enum class MasqueFront : uint8_t { H3, H2, H1, Count };
const char* masque_front_name(MasqueFront f);  // "h3", "h2", "http/1.1"

struct DpctldCounters {
  uint64_t handshake_failures[size_t(HandshakeFailure::Count)] = {};
  uint64_t handshakes_ok = 0;
  uint64_t quic_handshakes_ok = 0;  // of handshakes_ok, those on the QUIC port
  uint64_t masque_tcp_handshakes_ok = 0;  // of handshakes_ok, those on the CONNECT-UDP TCP port (masque_tcp_listen)
  uint64_t quic_handovers = 0;      // QUIC connections dpgw took over after registration
  uint64_t quic_sessions_dropped = 0;  // handed-over QUIC sessions dropped when dpgw was replaced
  uint64_t quic_sessions_closed = 0;   // QUIC sessions dpgw ended on the agent's CONNECTION_CLOSE
  uint64_t registrations_ok = 0;
  uint64_t registrations_refused = 0;
  uint64_t refusals[size_t(Refusal::Count)] = {};
  uint64_t sessions_expired = 0;
  uint64_t candidate_reports = 0;           // agents' direct-path candidates taken (docs/nat-traversal.md)
  uint64_t candidate_reports_rejected = 0;  // ... and ignored for what they held (the session goes on)
  uint64_t sessions_revoked = 0;  // cut off after a reload: tunnel gone, no longer allowed, certificate refused
  uint64_t gateway_refusals = 0;      // changes dpgw refused (its reason in last_gateway_refusal)
  uint64_t failure_lines_suppressed = 0;  // failure log lines left out (over failure_log_rate)
  uint64_t agent_lines_too_long = 0;      // agent connections closed for a line over AgentChannel::kMaxLine
  // CONNECT-UDP requests refused, by reason (docs/masque.md): counted where a front end asks the route table.
  uint64_t masque_refusals[size_t(MasqueRefusal::Count)] = {};
  uint64_t masque_accepted = 0;  // CONNECT-UDP requests answered 2xx
  uint64_t masque_accepted_by[size_t(MasqueFront::Count)] = {};  // ... by front end
  // Capsule sessions (HTTP/2, HTTP/1.1): UDP payloads passed to dpgw, and those dropped on the way.
  uint64_t capsule_to_gateway = 0;
  uint64_t capsule_gateway_away = 0;      // from clients: dpgw not connected (or its link over kMaxGatewayQueue)
  uint64_t capsule_unknown_session = 0;   // from dpgw: no such session (gone, or another request_id)
  uint64_t capsule_client_gone = 0;       // from dpgw: the session's connection is closing
  uint64_t capsule_unreadable = 0;        // masque_datagrams messages from dpgw that do not decode
  std::string last_gateway_refusal;
};

class Dpctld {
 public:
  explicit Dpctld(DpctldConfig cfg) : cfg_(std::move(cfg)) {}
  ~Dpctld();
  bool start(std::string& error);
  // What --check does: the state file, the TLS files and the CRLs (one from every CA of tls.ca, none expired),
  // without starting anything. Warnings (a CRL due within 7 days) are logged.
  bool check(std::string& error);
  // Loads the state file and checks it against the config (dpctld --check uses it alone). With save_repairs,
  // entry points and rules of tunnels that no longer exist are removed from the file too.
  bool load_persisted(bool save_repairs, std::string& error);
  // Runs until `stop`; whenever `reload` is set (SIGHUP), reload().
  void run(const std::atomic<bool>& stop, std::atomic<bool>& reload);
  // Reads the config and the TLS files again and applies what can change while running (docs/operations.md):
  // TLS files, tunnels (their agents disconnected when a tunnel goes or no longer allows them), entry points and
  // ingress rules from the config, limits, the failure log. The rest is named as needing a restart. A bad
  // config or TLS file changes nothing.
  void reload();

  // What the dpctl API would answer to `line` without changing anything (a change is checked against the state
  // as it is, never saved or pushed): the fuzz harness's entry, usable before start().
  std::string api_dry_run(const std::string& line);
  const DpctldCounters& counters() const { return counters_; }
  const SessionRegistry& sessions() const { return sessions_; }
  std::string metrics_text() const;
  // The udp+https routes as they are now (config, then dpctl), for matching CONNECT-UDP requests; and the count
  // of a refusal it gave (the counters dpctl stats and the metrics show).
  MasqueRouteTable masque_route_table() const;
  void count_masque_refusal(MasqueRefusal r) { ++counters_.masque_refusals[size_t(r)]; }

 private:
  void on_established(Fd fd, SslPtr ssl, const HandshakeEvidence& ev);
  void on_failed(const HandshakeEvidence& ev, HandshakeFailure category);
  // The registration protocol, the same for both transports (AgentLink: a TLS connection or a QUIC stream).
  void on_line(AgentLink& ch, const std::string& line);
  void on_closed(AgentLink& ch);
  bool on_quic_handover(AgentLink& link, QuicSessionSpec&& spec);
  // HTTP/3 front end (docs/masque.md): a client's CONNECT-UDP request, answered from the routes and its certificate;
  // a request refused before that (its status and why).
  ConnectUdpAnswer on_connect_udp(QuicAgentConnection& c, int64_t stream, const ConnectUdpRequest& req);
  void on_masque_bad_request(QuicAgentConnection& c, int64_t stream, uint16_t status, const std::string& why);
  // An accepted request: its visitor session (handed over with the connection), answered 200.
  ConnectUdpAnswer accept_connect_udp(QuicAgentConnection& c, int64_t stream, const MasqueRoute& route, Endpoint to);
  // The route a client may use for target host:port now, or the refusal's answer (counted and logged); `route` set
  // when nullopt is returned. The same for every front end (MasqueClientView).
  std::optional<ConnectUdpAnswer> connect_udp_route(const MasqueClientView& c, int64_t stream, const std::string& host,
                                                    uint16_t port, MasqueRoute& route);
  ConnectUdpAnswer refuse_connect_udp(const MasqueClientView& c, int64_t stream, const std::string& target,
                                      MasqueRefusal why, const std::string& details);
  // The route check, a name resolved when the route's `to` is one, and the session: any front end.
  ConnectUdpAnswer answer_connect_udp(const MasqueClientView& c, int64_t stream, const ConnectUdpRequest& req);
  ConnectUdpAnswer accept_masque(const MasqueClientView& c, int64_t stream, const MasqueRoute& route, Endpoint to);
  std::optional<MasqueClientView> find_masque_client(uint64_t conn, bool quic);
  bool masque_waiting(const MasqueClientView& c, int64_t stream) const;
  void complete_connect_udp(const MasqueClientView& c, int64_t stream, const ConnectUdpAnswer& a);
  SessionRecord masque_record(const MasqueClientView& c, const MasqueRoute& route);
  // The TCP front end (control/masque_tcp.hpp): HTTP/2 and HTTP/1.1 clients whose capsules dpctld carries; each
  // accepted stream is a session with a MasqueSpec::request_id, its payloads passed to dpgw in masque_datagrams.
  ConnectUdpAnswer accept_capsule_session(const MasqueClientView& c, int64_t stream, const MasqueRoute& route, Endpoint to);
  void on_capsule_datagrams(const MasqueClientView& c, int32_t stream, std::vector<std::vector<uint8_t>>&& payloads);
  void on_capsule_tunnel_ended(const MasqueClientView& c, int32_t stream, const std::string& why);
  void on_gateway_masque_datagrams(const nlohmann::json& msg);
  // Forgets a capsule session's stream (and cuts it at the client when `cut`).
  void forget_capsule_stream(uint32_t index, bool cut);
  void check_capsule_streams();
  void drop_quic_sessions_if_gateway_replaced();
  void handle_agent_message(AgentLink& ch, const std::string& line);
  void handle_register(AgentLink& ch, const AgentMessage& m);
  void handle_candidates(AgentLink& ch, const AgentMessage& m);
  void handle_path(AgentLink& ch, const AgentMessage& m);
  // A session's pairs (dpctl session list).
  nlohmann::json direct_json(uint32_t session, const std::vector<const DirectPairs::Pair*>* pairs) const;
  nlohmann::json direct_pairs_json() const;            // counts (dpctl stats)
  // Pairs visitors with agents as the sessions are now and tells the ends (once a second).
  void reconcile_pairs();
  // Where visitor `v`'s flows go on a direct path: the target of its tunnel's rule for its service (nat-traversal.md).
  std::optional<Endpoint> visitor_target(const SessionRecord& v, std::string& why) const;
  void refuse(AgentLink& ch, Refusal why, const std::string& detail, const std::string& tunnel = "");
  // The live control connection with that id, on either transport (nullptr when gone).
  AgentLink* find_link(uint64_t id);
  const TunnelDef* find_tunnel(const std::string& id_or_name) const;
  bool tunnel_from_config(const Uuid& id) const;
  std::vector<const TunnelDef*> all_tunnels() const;
  std::vector<EntrySpec> all_entries() const;
  bool persist(std::string& error);
  void drop_tunnel_sessions(const Uuid& id);
  // The dpagent command that registers an agent for `t` (over QUIC: `quic`, to agent_quic_listen's port).
  std::string agent_command(const TunnelDef& t, bool quic) const;
  void add_agent_commands(nlohmann::json& j, const TunnelDef& t) const;
  // dpctl API (dpctld_api.cpp): one JSON request line in, one JSON reply line out -- at once for questions,
  // after the state file is saved for changes (nullopt: the reply comes through api_.reply()).
  std::optional<std::string> handle_api(const std::string& line, uint64_t conn);
  static std::string api_reply_text(const nlohmann::json& reply);
  void serve_api();
  // A dpctl change prepared against the committed state: the state it leads to, hostname patterns to compile
  // before it is saved, and what to do once it is saved (push to dpgw, disconnect, log), returning the reply.
  struct Change {
    PersistedState next;
    std::vector<std::string> patterns;
    std::function<nlohmann::json()> commit;
  };
  struct PendingChange {
    uint64_t conn;
    nlohmann::json request;
  };
  struct ChangeJob {
    uint64_t conn = 0;
    Change change;
    std::string error;  // set by the background thread
  };
  Change prepare_change(const nlohmann::json& req);
  void start_next_change();
  void on_gateway_refused(const nlohmann::json& error);
  Change api_tunnel_add(const nlohmann::json& req);
  Change api_tunnel_del(const nlohmann::json& req);
  nlohmann::json api_tunnel_list(bool detailed, const nlohmann::json& req);
  Change api_entry_add(const nlohmann::json& req);
  Change api_entry_del(const nlohmann::json& req);
  nlohmann::json api_entry_list();
  Change api_ingress_add(const nlohmann::json& req);
  Change api_ingress_del(const nlohmann::json& req);
  nlohmann::json api_ingress_list();
  std::vector<const IngressRuleSpec*> all_ingress() const;  // the config's, then dpctl's
  Change api_route_add(const nlohmann::json& req);
  Change api_route_del(const nlohmann::json& req);
  nlohmann::json api_route_list();
  nlohmann::json route_json(const MasqueRoute& r) const;
  std::vector<const MasqueRoute*> all_routes() const;  // the config's, then dpctl's
  nlohmann::json api_session_list();
  nlohmann::json api_stats();
  nlohmann::json tunnel_json(const TunnelDef& t, bool detailed) const;
  nlohmann::json entry_json(const EntrySpec& e) const;
  nlohmann::json ingress_json(const IngressRuleSpec& r) const;
  void tick();
  nlohmann::json full_state() const;
  nlohmann::json ingress_rules() const;  // every rule, as dpgw gets them
  void push_ingress();
  static SessionSpec session_spec(const SessionRecord& s);
  void on_gateway_status(const nlohmann::json& status);

  DpctldConfig cfg_;
  EventLoop loop_;
  TlsServer tls_;
  std::unique_ptr<AgentListener> listener_;
  std::unique_ptr<QuicListener> quic_;  // agent_quic_listen, when set
  TlsServer masque_tls_;                // masque_tcp_listen's: the same files, ALPN h2 and http/1.1
  std::unique_ptr<MasqueTcpServer> masque_tcp_;  // masque_tcp_listen, when set
  // Capsule sessions' streams: by session index, and the index by (connection, stream).
  struct CapsuleRef {
    uint64_t conn = 0;
    int32_t stream = 0;
    uint64_t request_id = 0;
  };
  std::map<uint32_t, CapsuleRef> capsule_streams_;
  std::map<std::pair<uint64_t, int32_t>, uint32_t> capsule_index_;
  uint64_t next_request_id_ = 1;  // MasqueSpec::request_id: per dpctld run, from 1
  static constexpr size_t kMaxGatewayQueue = 4u << 20;  // bytes queued to dpgw over which client payloads are dropped
  QuicListener::Limits quic_limits() const;
  MetricsHttp metrics_;
  std::unique_ptr<GatewayLink> gateway_;
  LineServer api_;
  Background background_;         // Hyperscan compiles and state file writes, off the event loop
  // Names in udp+https routes' `to`, resolved off the event loop on a thread of their own (a slow resolver never holds
  // up state writes): at most kMaxResolving at once, one per connection, answers kept for a while.
  static constexpr size_t kMaxResolving = 16;
  Background resolver_;
  std::multiset<uint64_t> resolving_;  // connections whose CONNECT-UDP request waits for a name (HTTP/3: one each)
  struct ResolvedName {
    std::optional<Ipv4> ip;
    uint64_t until_ns = 0;
  };
  std::map<std::string, ResolvedName> resolved_;
  std::deque<PendingChange> changes_;
  bool change_running_ = false;
  PersistedState state_;  // what dpctl changed (committed: saved in cfg_.state_file)
  nlohmann::json gateway_stats_;  // the last status' "stats" (for metrics)
  std::map<uint64_t, std::unique_ptr<AgentChannel>> channels_;
  std::vector<uint64_t> closed_channels_;
  SessionRegistry sessions_;
  DpctldCounters counters_;
  DirectPairs pairs_;  // direct paths: visitors paired with agents (docs/nat-traversal.md)
  uint64_t pairs_pushed_ = 0;  // the pairs' generation dpgw was last told (pair_set)
  uint64_t rules_gen_ = 1;     // counts changes of the hostname rules (DirectPairs::reconcile)
  uint64_t next_pairing_ns_ = 0;
  FILE* failure_log_ = nullptr;
  std::string agent_ca_;           // the --ca of the printed dpagent command
  std::string agent_server_name_;  // its --server-name, when dpctld's certificate lacks the --server host
  void check_agent_command();
  // Logs (and counts for the metrics) CRLs that expired or expire within 7 days; at start, after each reload.
  void check_crls();
  void recheck_sessions();
  // Reloads the TLS files when one of them changed on disk (checked every 10 s): a CRL or certificate rotated by
  // a cron job needs no SIGHUP.
  void watch_tls_files(uint64_t now_ns);
  std::string tls_files_stamp() const;
  std::string tls_stamp_;
  uint64_t next_tls_watch_ns_ = 0;
  uint64_t next_crl_check_ns_ = 0;
  TokenBucket failure_log_budget_;
  uint64_t suppressed_since_report_ = 0;
  uint64_t last_suppressed_report_ns_ = 0;
  uint64_t next_channel_ = 1;
};

}  // namespace dptun
