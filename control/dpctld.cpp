#include "control/dpctld.hpp"

#include <arpa/inet.h>
#include <netdb.h>

#include <nlohmann/json.hpp>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <sys/epoll.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "common/clock.hpp"
#include "common/config_file.hpp"
#include "common/hex.hpp"
#include "common/json_fields.hpp"
#include "common/json_writer.hpp"
#include "common/prom_text.hpp"
#include "version.hpp"
#include "common/log.hpp"
#include "control/control_protocol.hpp"
#include "proto/gateway_messages.hpp"

namespace dptun {

using nlohmann::json;

namespace {
constexpr uint64_t kRegisterTimeoutNs = 15'000'000'000ull;
constexpr uint64_t kQuicHandoverGraceNs = 3'000'000'000ull;
}  // namespace

Dpctld::~Dpctld() {
  channels_.clear();
  quic_.reset();
  masque_tcp_.reset();
  listener_.reset();
  if (failure_log_ && failure_log_ != stdout) fclose(failure_log_);
}

bool Dpctld::load_persisted(bool save_repairs, std::string& error) {
  auto state = load_state(cfg_.state_file, error);
  if (!state) return false;
  state_ = std::move(*state);
  for (const TunnelDef& t : state_.tunnels)
    for (const TunnelDef& c : cfg_.tunnels)
      if (t.id == c.id || tunnel_name_key(t.name) == tunnel_name_key(c.name)) {
        error = cfg_.state_file + ": tunnel " + t.name + " (" + t.id.str() + ") is also in " + cfg_.path +
                "; remove one of them";
        return false;
      }
  for (const EntrySpec& e : state_.entry_points)
    for (const EntrySpec& c : cfg_.entry_points)
      if (e.proto == c.proto && e.port == c.port) {
        error = cfg_.state_file + ": entry point " + (e.proto == 6 ? "tcp/" : "udp/") + std::to_string(e.port) +
                " is also in " + cfg_.path + "; remove one of them";
        return false;
      }
  for (const IngressRuleSpec& r : state_.ingress)
    for (const IngressRuleSpec& c : cfg_.ingress)
      if (r.hostname == c.hostname) {
        error = cfg_.state_file + ": ingress rule " + r.hostname + " is also in " + cfg_.path + "; remove one of them";
        return false;
      }
  for (const MasqueRoute& r : state_.routes)
    for (const MasqueRoute& c : cfg_.routes)
      if (r.host == c.host && r.port == c.port) {
        error = cfg_.state_file + ": route " + r.from_url() + " is also in " + cfg_.path + "; remove one of them";
        return false;
      }
  // What dpctl added for a tunnel that has since left the config goes with it (said, and saved).
  const size_t before = state_.entry_points.size() + state_.ingress.size() + state_.routes.size();
  std::erase_if(state_.entry_points, [&](const EntrySpec& e) {
    // The config changed under it (say, agent_listen moved onto its port): the config wins, and says so.
    if (std::string problem = entry_point_problem(e, cfg_); !problem.empty()) {
      LOG_WARN("%s: entry point %s/%u: %s: removed", cfg_.state_file.c_str(), e.proto == 6 ? "tcp" : "udp",
               unsigned(e.port), problem.c_str());
      return true;
    }
    if (e.route != EntryRoute::Fixed || find_tunnel(e.tunnel.str())) return false;
    LOG_WARN("%s: entry point %s/%u names tunnel %s, which no longer exists: removed", cfg_.state_file.c_str(),
             e.proto == 6 ? "tcp" : "udp", unsigned(e.port), e.tunnel.str().c_str());
    return true;
  });
  std::erase_if(state_.ingress, [&](const IngressRuleSpec& r) {
    if (find_tunnel(r.tunnel.str())) return false;
    LOG_WARN("%s: ingress rule %s names tunnel %s, which no longer exists: removed", cfg_.state_file.c_str(),
             r.hostname.c_str(), r.tunnel.str().c_str());
    return true;
  });
  std::erase_if(state_.routes, [&](const MasqueRoute& r) {
    if (find_tunnel(r.tunnel.str())) return false;
    LOG_WARN("%s: route %s names tunnel %s, which no longer exists: removed", cfg_.state_file.c_str(),
             r.from_url().c_str(), r.tunnel.str().c_str());
    return true;
  });
  if (save_repairs && state_.entry_points.size() + state_.ingress.size() + state_.routes.size() != before &&
      !persist(error))
    return false;
  return true;
}

bool Dpctld::start(std::string& error) {
  if (!loop_.init(error)) return false;
  if (!load_persisted(true, error)) return false;
  if (!tls_.load(cfg_.tls, error)) return false;
  tls_stamp_ = tls_files_stamp();
  check_agent_command();
  check_crls();
  failure_log_budget_.configure(cfg_.failure_log_rate, uint64_t(cfg_.failure_log_rate) * 5);
  if (cfg_.failure_log == "-") {
    failure_log_ = stdout;
  } else {
    make_parent_dirs(cfg_.failure_log, 0750);  // /var/log/dptun on a host without systemd's LogsDirectory
    failure_log_ = fopen(cfg_.failure_log.c_str(), "a");
    if (!failure_log_) {
      error = cfg_.failure_log + ": cannot open the handshake failure log: " + strerror(errno);
      return false;
    }
  }
  listener_ = std::make_unique<AgentListener>(
      loop_, tls_,
      AgentListener::Limits{cfg_.handshake_timeout_ns, cfg_.max_pending_handshakes, cfg_.max_pending_per_source},
      [this](Fd fd, SslPtr ssl, const HandshakeEvidence& ev) { on_established(std::move(fd), std::move(ssl), ev); },
      [this](const HandshakeEvidence& ev, HandshakeFailure c) { on_failed(ev, c); });
  if (!listener_->listen(cfg_.agent_listen, error)) return false;
  if (cfg_.agent_quic_listen) {
    QuicListener::Callbacks cb;
    cb.next_id = [this] { return next_channel_++; };
    cb.established = [this](AgentLink&, const HandshakeEvidence&) {
      counters_.handshakes_ok++;
      counters_.quic_handshakes_ok++;
    };
    cb.failed = [this](const HandshakeEvidence& ev, HandshakeFailure c) { on_failed(ev, c); };
    cb.line = [this](AgentLink& link, const std::string& line) { on_line(link, line); };
    cb.closed = [this](AgentLink& link) { on_closed(link); };
    cb.reserve_index = [this] { return sessions_.reserve_index(); };
    cb.release_index = [this](uint32_t index) { sessions_.release_index(index); };
    cb.handed_over = [this](AgentLink& link, QuicSessionSpec&& spec) { return on_quic_handover(link, std::move(spec)); };
    cb.connect_udp = [this](QuicAgentConnection& c, int64_t stream, const ConnectUdpRequest& req) {
      return on_connect_udp(c, stream, req);
    };
    cb.bad_request = [this](QuicAgentConnection& c, int64_t stream, uint16_t status, const std::string& why) {
      on_masque_bad_request(c, stream, status, why);
    };
    // The index of a handed-over session dpctld still holds (dpgw serves it, or is about to): packets with it are
    // dropped, never reset. Once the session is dropped (dpgw restarted, expiry), they get a Stateless Reset.
    cb.handed_over_held = [this](uint32_t index) {
      const SessionRecord* s = sessions_.find(index);
      return s && s->quic.has_value();
    };
    quic_ = std::make_unique<QuicListener>(loop_, tls_, quic_limits(), std::move(cb));
    if (!quic_->load_credentials(cfg_.tls, error)) return false;
    if (!quic_->listen(*cfg_.agent_quic_listen, error)) return false;
  }
  if (cfg_.masque_tcp_listen) {
    masque_tls_.set_alpn({"h2", "http/1.1"});
    if (!masque_tls_.load(cfg_.tls, error)) return false;
    MasqueTcpServer::Callbacks cb;
    cb.next_id = [this] { return next_channel_++; };
    cb.established = [this](const HandshakeEvidence&) {
      counters_.handshakes_ok++;
      counters_.masque_tcp_handshakes_ok++;
    };
    cb.failed = [this](const HandshakeEvidence& ev, HandshakeFailure c) { on_failed(ev, c); };
    cb.connect_udp = [this](const MasqueClientView& c, int32_t stream, const ConnectUdpRequest& req) {
      return answer_connect_udp(c, stream, req);
    };
    cb.bad_request = [this](const MasqueClientView& c, int32_t stream, uint16_t status, const std::string& why) {
      count_masque_refusal(MasqueRefusal::BadRequest);
      const bool h2 = std::string(c.protocol) == "h2";
      LOG_WARN("client %s (%s): %s request%s refused: %u bad_request: %s", c.peer.str().c_str(), c.subject.c_str(),
               h2 ? "HTTP/2" : "HTTP/1.1", h2 ? (" (stream " + std::to_string(stream) + ")").c_str() : "",
               unsigned(status), why.c_str());
    };
    cb.datagrams = [this](const MasqueClientView& c, int32_t stream, std::vector<std::vector<uint8_t>>&& p) {
      on_capsule_datagrams(c, stream, std::move(p));
    };
    cb.tunnel_ended = [this](const MasqueClientView& c, int32_t stream, const std::string& why) {
      on_capsule_tunnel_ended(c, stream, why);
    };
    masque_tcp_ = std::make_unique<MasqueTcpServer>(
        loop_, masque_tls_,
        AgentListener::Limits{cfg_.handshake_timeout_ns, cfg_.max_pending_handshakes, cfg_.max_pending_per_source},
        std::move(cb));
    if (!masque_tcp_->listen(*cfg_.masque_tcp_listen, error)) return false;
  }
  gateway_ = std::make_unique<GatewayLink>(
      loop_, cfg_.gateway_socket,
      [this] {
        drop_quic_sessions_if_gateway_replaced();
        return full_state();
      },
      [this](const json& s) { on_gateway_status(s); },
      [this](const json& e) { on_gateway_refused(e); });
  gateway_->set_on_masque_datagrams([this](const json& m) { on_gateway_masque_datagrams(m); });
  if (!background_.start(loop_, error) || !resolver_.start(loop_, error)) return false;
  if (!cfg_.api_socket.empty()) {
    if (!api_.listen(cfg_.api_socket, error)) return false;
    loop_.add(api_.fd(), EPOLLIN, [this](uint32_t) { serve_api(); });
  }
  if (cfg_.metrics_listen) {
    metrics_.publish(metrics_text());
    if (!metrics_.start(*cfg_.metrics_listen, error)) return false;
  }
  LOG_INFO("agents: TLS 1.3 on %s%s%s%s%s; %zu tunnel(s); metrics %s", cfg_.agent_listen.str().c_str(),
           cfg_.agent_quic_listen ? ", QUIC on udp " : "",
           cfg_.agent_quic_listen ? cfg_.agent_quic_listen->str().c_str() : "",
           cfg_.masque_tcp_listen ? ", CONNECT-UDP (HTTP/2, HTTP/1.1) on tcp " : "",
           cfg_.masque_tcp_listen ? cfg_.masque_tcp_listen->str().c_str() : "", all_tunnels().size(),
           cfg_.metrics_listen ? ("http://" + cfg_.metrics_listen->str() + "/metrics").c_str() : "off");
  return true;
}

QuicListener::Limits Dpctld::quic_limits() const {
  return QuicListener::Limits{cfg_.handshake_timeout_ns, cfg_.max_pending_handshakes, cfg_.max_pending_per_source,
                              kRegisterTimeoutNs};
}

AgentLink* Dpctld::find_link(uint64_t id) {
  if (auto it = channels_.find(id); it != channels_.end()) return it->second.get();
  return quic_ ? quic_->find(id) : nullptr;
}

void Dpctld::run(const std::atomic<bool>& stop, std::atomic<bool>& reload_requested) {
  loop_.run(stop, 100, [this, &reload_requested] {
    if (reload_requested.exchange(false)) reload();
    tick();
  });
}

bool Dpctld::check(std::string& error) {
  if (!load_persisted(false, error)) return false;
  if (!tls_.load(cfg_.tls, error)) return false;
  if (cfg_.agent_quic_listen && !QuicListener(loop_, tls_, {}, {}).load_credentials(cfg_.tls, error)) return false;
  check_agent_command();
  // An expired CRL makes every agent it covers fail; a missing one every agent its CA signed: both are errors.
  for (const CrlInfo& c : tls_.crls())
    if (c.expired) {
      error = cfg_.tls.crl + ": the CRL of " + c.issuer + " expired at " + iso8601_utc(uint64_t(c.next_update) * kNsPerSec) +
              " (its nextUpdate): every agent certificate it covers would be refused; fetch a fresh CRL";
      return false;
    }
  if (!tls_.cas_without_crl().empty()) {
    error = cfg_.tls.crl + " has no CRL from " + tls_.cas_without_crl().front() +
            " (a CA in " + cfg_.tls.ca + "): agents with certificates it issued would be refused ('unable to get "
            "certificate CRL'); add its CRL to the file";
    return false;
  }
  check_crls();
  return true;
}

// After a reload or a route change: every registered session must still be one dpctld would accept now -- its
// tunnel exists, its certificate's identities are in the tunnel's allow list (a CONNECT-UDP client's: its route still
// exists, leads to the same tunnel and target, and allows it), and the certificate verifies against the CA and the
// CRLs now loaded. One that is not is cut off at once (its agent disconnected, dpgw told to drop it).
void Dpctld::recheck_sessions() {
  std::vector<std::pair<uint32_t, std::string>> gone;
  const MasqueRouteTable routes = masque_route_table();
  for (const auto& [index, s] : sessions_.all()) {
    const TunnelDef* t = find_tunnel(s.tunnel.str());
    std::string why;
    const MasqueMatch m = s.masque ? routes.match(s.masque_host, s.masque_port, s.identities, true) : MasqueMatch{};
    if (!t)
      why = "its tunnel is gone";
    else if (!s.visitor && !identity_allowed(t->allow, s.identities))
      why = "tunnel " + t->name + " no longer allows its certificate";
    else if (s.masque && !m)
      why = "its route udp+https://" + s.masque_host + ":" + std::to_string(s.masque_port) + " no longer serves it (" +
            masque_refusal_name(m.refusal) + ")";
    else if (s.masque && (m.route->tunnel != s.tunnel || m.route->to_port != s.masque->target.port ||
                          (Ipv4::parse(m.route->to_host) && Endpoint{*Ipv4::parse(m.route->to_host), m.route->to_port} !=
                                                                s.masque->target)))
      why = "its route udp+https://" + s.masque_host + ":" + std::to_string(s.masque_port) + " leads elsewhere now";
    else if (s.certificate && !tls_.verify_client(s.certificate.get(), s.chain.get(), why))
      why = "its certificate no longer verifies: " + why;
    if (!why.empty()) gone.emplace_back(index, why);
  }
  for (const auto& [index, why] : gone) {
    SessionRecord* s = sessions_.find(index);
    LOG_WARN("session %u (%s): %s; disconnected", index, s->certificate_subject.c_str(), why.c_str());
    const bool at_gateway = !s->handover_pending;  // a QUIC session not handed over yet: dpgw never had it
    if (s->channel) {
      if (AgentLink* link = find_link(s->channel)) {
        JsonWriter j;
        j.begin_object().field("type", name_of(AgentMessageType::Refused)).field("version", kControlProtocolVersion)
            .field("reason", "session ended: " + why).end_object();
        link->send(j.str());
        link->close();
      }
    }
    forget_capsule_stream(index, true);  // an HTTP/2 or HTTP/1.1 client's stream: reset, or its connection closed
    sessions_.remove(index);  // (closing a link may have removed a session not handed over already)
    counters_.sessions_revoked++;
    if (at_gateway) gateway_->send(gateway_message(GatewayMessageType::SessionDel, {{"index", index}}));
  }
}

void Dpctld::reload() {
  rules_gen_++;  // (the config's hostname rules may change)
  DpctldConfig next;
  try {
    next = load_dpctld_config(cfg_.path);
  } catch (const ConfigError& e) {
    LOG_ERROR("reload: %s; nothing changed", e.what());
    return;
  }
  // The config must agree with what dpctl added (state file), as at start.
  for (const TunnelDef& t : state_.tunnels)
    for (const TunnelDef& c : next.tunnels)
      if (t.id == c.id || tunnel_name_key(t.name) == tunnel_name_key(c.name)) {
        LOG_ERROR("reload: tunnel %s is both in %s and added with dpctl; nothing changed", c.name.c_str(),
                  cfg_.path.c_str());
        return;
      }
  for (const EntrySpec& e : state_.entry_points)
    for (const EntrySpec& c : next.entry_points)
      if (e.proto == c.proto && e.port == c.port) {
        LOG_ERROR("reload: entry point %s/%u is both in %s and added with dpctl; nothing changed",
                  e.proto == 6 ? "tcp" : "udp", unsigned(e.port), cfg_.path.c_str());
        return;
      }
  for (const IngressRuleSpec& r : state_.ingress)
    for (const IngressRuleSpec& c : next.ingress)
      if (r.hostname == c.hostname) {
        LOG_ERROR("reload: ingress rule %s is both in %s and added with dpctl; nothing changed", r.hostname.c_str(),
                  cfg_.path.c_str());
        return;
      }
  for (const MasqueRoute& r : state_.routes)
    for (const MasqueRoute& c : next.routes)
      if (r.host == c.host && r.port == c.port) {
        LOG_ERROR("reload: route %s is both in %s and added with dpctl; nothing changed", r.from_url().c_str(),
                  cfg_.path.c_str());
        return;
      }
  std::string error;
  if (!tls_.load(next.tls, error) || (quic_ && !quic_->load_credentials(next.tls, error))) {
    LOG_ERROR("reload: %s; nothing changed", error.c_str());
    if (quic_) tls_.load(cfg_.tls, error);  // the TCP side back to the files QUIC still uses
    return;
  }
  if (masque_tcp_ && !masque_tls_.load(next.tls, error))  // the same files as tls_ just took: only memory fails here
    LOG_ERROR("reload: the CONNECT-UDP TCP port keeps its previous TLS files: %s", error.c_str());
  // What only a restart applies: the sockets dpctld holds.
  std::vector<std::string> restart;
  if (!(next.agent_listen == cfg_.agent_listen)) restart.push_back("agent_listen");
  if (next.agent_quic_listen != cfg_.agent_quic_listen) restart.push_back("agent_quic_listen");
  if (next.masque_tcp_listen != cfg_.masque_tcp_listen) restart.push_back("masque_tcp_listen");
  if (next.api_socket != cfg_.api_socket) restart.push_back("api_socket");
  if (next.gateway_socket != cfg_.gateway_socket) restart.push_back("gateway_socket");
  if (next.state_file != cfg_.state_file) restart.push_back("state_file");
  if (next.metrics_listen != cfg_.metrics_listen) restart.push_back("metrics_listen");
  if (next.openssl_conf != cfg_.openssl_conf) restart.push_back("openssl_conf");  // OpenSSL reads it once
  next.openssl_conf = cfg_.openssl_conf;
  next.openssl_conf_where = cfg_.openssl_conf_where;
  next.agent_listen = cfg_.agent_listen;
  next.agent_quic_listen = cfg_.agent_quic_listen;
  next.masque_tcp_listen = cfg_.masque_tcp_listen;
  next.api_socket = cfg_.api_socket;
  next.gateway_socket = cfg_.gateway_socket;
  next.state_file = cfg_.state_file;
  next.metrics_listen = cfg_.metrics_listen;
  if (next.failure_log != cfg_.failure_log) {
    if (next.failure_log != "-") make_parent_dirs(next.failure_log, 0750);
    FILE* f = next.failure_log == "-" ? stdout : fopen(next.failure_log.c_str(), "a");
    if (!f) {
      LOG_ERROR("reload: %s: cannot open the failure log (%s); keeping %s", next.failure_log.c_str(), strerror(errno),
                cfg_.failure_log.c_str());
      next.failure_log = cfg_.failure_log;
    } else {
      if (failure_log_ && failure_log_ != stdout) fclose(failure_log_);
      failure_log_ = f;
    }
  }
  const size_t tunnels_before = cfg_.tunnels.size(), entries_before = cfg_.entry_points.size(),
               rules_before = cfg_.ingress.size(), routes_before = cfg_.routes.size();
  cfg_ = std::move(next);
  failure_log_budget_.configure(cfg_.failure_log_rate, uint64_t(cfg_.failure_log_rate) * 5);
  listener_->set_limits(
      AgentListener::Limits{cfg_.handshake_timeout_ns, cfg_.max_pending_handshakes, cfg_.max_pending_per_source});
  if (quic_) quic_->set_limits(quic_limits());
  if (masque_tcp_)
    masque_tcp_->set_limits(
        AgentListener::Limits{cfg_.handshake_timeout_ns, cfg_.max_pending_handshakes, cfg_.max_pending_per_source});
  // What dpctl added for a tunnel that left the config goes with it, as at start.
  std::string repair_error;
  if (!load_persisted(true, repair_error)) LOG_ERROR("reload: state file: %s", repair_error.c_str());
  tls_stamp_ = tls_files_stamp();
  check_agent_command();
  check_crls();
  recheck_sessions();
  gateway_->send(full_state());  // tunnels, entry points and rules as they are now (sessions unchanged stay)
  std::string pending;
  for (const std::string& k : restart) pending += (pending.empty() ? "" : ", ") + k;
  LOG_INFO("reloaded %s: TLS files; %zu tunnel(s) (was %zu), %zu entry point(s) (was %zu), %zu ingress rule(s) "
           "(was %zu), %zu route(s) (was %zu) from the config%s%s",
           cfg_.path.c_str(), cfg_.tunnels.size(), tunnels_before, cfg_.entry_points.size(), entries_before,
           cfg_.ingress.size(), rules_before, cfg_.routes.size(), routes_before, pending.empty() ? "" : "; these need a restart and were not applied: ",
           pending.c_str());
}

void Dpctld::check_crls() {
  const int64_t now = int64_t(realtime_ns() / kNsPerSec);
  for (const CrlInfo& c : tls_.crls()) {
    if (c.expired || (c.next_update && now > c.next_update))
      LOG_ERROR("tls.crl %s: the CRL of %s expired at %s: every agent certificate it covers is refused until a "
                "fresh CRL is loaded (SIGHUP, or replace the file)",
                cfg_.tls.crl.c_str(), c.issuer.c_str(), iso8601_utc(uint64_t(c.next_update) * kNsPerSec).c_str());
    else if (c.next_update && c.next_update - now < 7 * 86400)
      LOG_WARN("tls.crl %s: the CRL of %s expires at %s (in %.1f days): fetch a fresh one before then",
               cfg_.tls.crl.c_str(), c.issuer.c_str(), iso8601_utc(uint64_t(c.next_update) * kNsPerSec).c_str(),
               double(c.next_update - now) / 86400);
  }
  for (const std::string& ca : tls_.cas_without_crl())
    LOG_WARN("tls.crl %s has no CRL from %s: agents with certificates it issued are refused (crl_missing)",
             cfg_.tls.crl.c_str(), ca.c_str());
}

std::string Dpctld::tls_files_stamp() const {
  std::string stamp;
  for (const std::string* f : {&cfg_.tls.ca, &cfg_.tls.cert, &cfg_.tls.key, &cfg_.tls.crl}) {
    struct stat st {};
    if (!f->empty() && stat(f->c_str(), &st) == 0)
      stamp += std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec) + "/" +
               std::to_string(st.st_size) + ";";
    else
      stamp += "-;";
  }
  return stamp;
}

void Dpctld::watch_tls_files(uint64_t now_ns) {
  if (now_ns < next_tls_watch_ns_) return;
  next_tls_watch_ns_ = now_ns + 10 * kNsPerSec;
  const std::string stamp = tls_files_stamp();
  if (stamp == tls_stamp_) return;
  tls_stamp_ = stamp;
  std::string error;
  if (!tls_.load(cfg_.tls, error)) {
    LOG_ERROR("TLS files changed but do not load (%s): still using the previous ones", error.c_str());
    return;
  }
  if (quic_ && !quic_->load_credentials(cfg_.tls, error))
    LOG_ERROR("TLS files changed; the QUIC port keeps its previous certificate: %s", error.c_str());
  if (masque_tcp_ && !masque_tls_.load(cfg_.tls, error))
    LOG_ERROR("TLS files changed; the CONNECT-UDP TCP port keeps its previous ones: %s", error.c_str());
  LOG_INFO("TLS files changed on disk: reloaded (certificate, key, CA, CRL)");
  check_crls();
  check_agent_command();
  recheck_sessions();
}

void Dpctld::tick() {
  const uint64_t now = monotonic_ns();
  listener_->tick(now);
  if (quic_) quic_->tick(now);
  if (masque_tcp_) masque_tcp_->tick(now);
  check_capsule_streams();
  reconcile_pairs();
  watch_tls_files(now);
  if (now >= next_crl_check_ns_) {  // a CRL that is about to expire is said again every hour
    if (next_crl_check_ns_) check_crls();
    next_crl_check_ns_ = now + 3600 * kNsPerSec;
  }
  serve_api();
  if (metrics_.wanted()) metrics_.publish(metrics_text());  // a scrape waits for it
  gateway_->tick(now);
  // A session whose agent is gone (no control connection) and that carries no traffic any more is removed.
  std::vector<uint32_t> expired;
  for (const auto& [index, s] : sessions_.all())
    if (!s.channel && !s.live && now - s.last_live_mono_ns > cfg_.session_expiry_ns) expired.push_back(index);
  for (uint32_t index : expired) {
    LOG_INFO("session %u: agent gone and no traffic for %.0f s; removed", index, double(cfg_.session_expiry_ns) / 1e9);
    sessions_.remove(index);
    counters_.sessions_expired++;
    gateway_->send(gateway_message(GatewayMessageType::SessionDel, {{"index", index}}));
  }
  // A connection that finished its handshake must register soon; it holds a descriptor until it does.
  for (auto& [id, ch] : channels_)
    if (!ch->registered() && !ch->closed() && now - ch->created_ns() > kRegisterTimeoutNs) {
      LOG_WARN("agent %s: no registration within %.0f s of its handshake; closed", ch->peer().str().c_str(),
               double(kRegisterTimeoutNs) / 1e9);
      ch->close(true);
    }
  for (uint64_t id : closed_channels_) channels_.erase(id);
  closed_channels_.clear();
  if (suppressed_since_report_ && now - last_suppressed_report_ns_ >= 1'000'000'000ull) {
    JsonWriter j;
    j.begin_object()
        .field("time", iso8601_utc(realtime_ns()))
        .field("event", "agent_tls_handshake_failures_suppressed")
        .field("count", suppressed_since_report_)
        .field("reason", "more than failure_log_rate failures a second; all are counted in the metrics")
        .end_object();
    fprintf(failure_log_, "%s\n", j.str().c_str());
    fflush(failure_log_);
    suppressed_since_report_ = 0;
    last_suppressed_report_ns_ = now;
  }
}

// What the printed dpagent command must say for it to work: checked against dpctld's own certificate, so the
// operator hears at start (not from every agent) when agent_address or agent_ca cannot work.
void Dpctld::check_agent_command() {
  std::string why;
  if (!cfg_.agent_ca.empty()) {
    agent_ca_ = cfg_.agent_ca;
  } else if (tls_.own_certificate_verifies_with(cfg_.tls.ca, why)) {
    agent_ca_ = cfg_.tls.ca;  // one CA signs both dpctld's and the agents' certificates
  } else {
    agent_ca_ = "SERVER-CA.pem";
    LOG_WARN("tls.ca %s does not verify dpctld's own certificate (%s): agents need the CA that does; set agent_ca "
             "to its path on agent hosts (printed dpagent commands say SERVER-CA.pem until then)",
             cfg_.tls.ca.c_str(), why.c_str());
  }
  agent_server_name_.clear();
  auto hp = parse_host_port(cfg_.agent_address);
  X509* own = tls_.own_certificate();
  if (hp && own && !certificate_has_name(own, hp->first)) {
    const std::vector<std::string> names = certificate_names(own);
    std::string list;
    for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
    if (!names.empty()) agent_server_name_ = names.front();
    LOG_WARN("dpctld's certificate does not carry %s (agent_address); it names %s: agents must connect with "
             "--server-name %s (printed dpagent commands say so), or reissue the certificate with %s in its "
             "subjectAltName",
             hp->first.c_str(), list.empty() ? "nothing" : list.c_str(),
             names.empty() ? "?" : names.front().c_str(), hp->first.c_str());
  }
}

void Dpctld::serve_api() {
  if (cfg_.api_socket.empty()) return;
  api_.poll([this](const std::string& line, bool& close, uint64_t conn) {
    close = true;
    return handle_api(line, conn);
  });
  // Out of file descriptors: do not wake up for the listening socket until accepting resumes (tick polls).
  loop_.modify(api_.fd(), api_.accept_paused() ? 0u : uint32_t(EPOLLIN));
}

void Dpctld::on_failed(const HandshakeEvidence& ev, HandshakeFailure category) {
  counters_.handshake_failures[size_t(category)]++;
  // Every failure is counted; at most failure_log_rate lines a second are written (bursts of 5 s worth), and
  // what a flood leaves out is said once a second in a line of its own.
  if (!failure_log_budget_.take(monotonic_ns())) {
    counters_.failure_lines_suppressed++;
    suppressed_since_report_++;
    return;
  }
  fprintf(failure_log_, "%s\n", handshake_failure_json(ev, category, realtime_ns()).c_str());
  fflush(failure_log_);
}

void Dpctld::on_established(Fd fd, SslPtr ssl, const HandshakeEvidence& ev) {
  counters_.handshakes_ok++;
  // Connections that finished the handshake but have not registered yet are unfinished too: bounded per
  // address and in total like handshakes, the oldest giving way.
  auto oldest_unregistered = [&](bool same_source) -> AgentChannel* {
    AgentChannel* oldest = nullptr;
    size_t n = 0;
    for (auto& [id, ch] : channels_) {
      if (ch->registered() || ch->closed() || (same_source && ch->peer().ip.v4() != ev.client.ip.v4())) continue;
      ++n;
      if (!oldest || ch->created_ns() < oldest->created_ns()) oldest = ch.get();
    }
    const size_t limit = same_source ? cfg_.max_pending_per_source : cfg_.max_pending_handshakes;
    return n >= limit ? oldest : nullptr;
  };
  for (bool same_source : {true, false})
    if (AgentChannel* ch = oldest_unregistered(same_source)) {
      LOG_WARN("agent %s: not registered yet while newer connections wait; closed", ch->peer().str().c_str());
      ch->close(true);
    }
  const uint64_t id = next_channel_++;
  channels_[id] = std::make_unique<AgentChannel>(
      loop_, id, std::move(fd), std::move(ssl), ev.client,
      [this](AgentChannel& ch, const std::string& line) { on_line(ch, line); },
      [this](AgentChannel& ch) { on_closed(ch); });
}

void Dpctld::on_closed(AgentLink& ch) {
  if (ch.line_too_long()) counters_.agent_lines_too_long++;
  if (SessionRecord* s = sessions_.find_by_channel(ch.id())) {
    if (s->handover_pending) {  // a QUIC connection that ended before dpgw took it: dpgw never had the session
      LOG_INFO("session %u (tunnel %s, %s): QUIC connection closed before the hand-over; removed", s->index,
               s->tunnel.str().c_str(), s->certificate_subject.c_str());
      sessions_.remove(s->index);
    } else {
      LOG_INFO("session %u (tunnel %s, %s): control connection closed", s->index, s->tunnel.str().c_str(),
               s->certificate_subject.c_str());
      s->channel = 0;
    }
  }
  closed_channels_.push_back(ch.id());
}

const char* refusal_name(Refusal r) {
  switch (r) {
    case Refusal::BadRequest: return "bad_request";
    case Refusal::Version: return "protocol_version";
    case Refusal::NoTunnel: return "no_tunnel";
    case Refusal::NotAllowed: return "not_allowed";
    case Refusal::NoIndex: return "no_session_index";
    case Refusal::Internal: return "internal";
    case Refusal::Count: break;
  }
  return "internal";
}

// A refused registration: counted by reason, one JSON line in the failure log (like a failed handshake), the
// reason sent to the agent, and the connection closed.
void Dpctld::refuse(AgentLink& ch, Refusal why, const std::string& detail, const std::string& tunnel) {
  counters_.registrations_refused++;
  counters_.refusals[size_t(why)]++;
  LOG_WARN("agent %s: registration refused (%s): %s", ch.peer().str().c_str(), refusal_name(why), detail.c_str());
  if (failure_log_budget_.take(monotonic_ns())) {
    JsonWriter line;
    line.begin_object()
        .field("time", iso8601_utc(realtime_ns()))
        .field("event", "agent_registration_refused")
        .field("client", ch.peer().str())
        .field("reason", refusal_name(why))
        .field("detail", detail);
    if (tunnel.empty()) line.key("tunnel").null(); else line.field("tunnel", tunnel);
    X509* cert = ch.peer_certificate();
    if (cert) {
      const PeerCertificate c = describe_certificate(cert);
      line.key("certificate").begin_object().field("subject", c.subject).field("issuer", c.issuer)
          .field("serial", c.serial).end_object();
    } else {
      line.key("certificate").null();
    }
    line.end_object();
    fprintf(failure_log_, "%s\n", line.str().c_str());
    fflush(failure_log_);
  } else {
    counters_.failure_lines_suppressed++;
    suppressed_since_report_++;
  }
  JsonWriter j;
  j.begin_object().field("type", name_of(AgentMessageType::Refused)).field("version", kControlProtocolVersion);
  j.field("reason", detail).end_object();
  ch.send(j.str());
  ch.close();
}

const TunnelDef* Dpctld::find_tunnel(const std::string& id_or_name) const {
  for (const TunnelDef* t : all_tunnels())
    if (tunnel_is(t->id, t->name, id_or_name)) return t;
  return nullptr;
}

bool Dpctld::tunnel_from_config(const Uuid& id) const {
  for (const TunnelDef& t : cfg_.tunnels)
    if (t.id == id) return true;
  return false;
}

std::vector<const TunnelDef*> Dpctld::all_tunnels() const {
  std::vector<const TunnelDef*> out;
  for (const TunnelDef& t : cfg_.tunnels) out.push_back(&t);
  for (const TunnelDef& t : state_.tunnels) out.push_back(&t);
  return out;
}

std::vector<const MasqueRoute*> Dpctld::all_routes() const {
  std::vector<const MasqueRoute*> out;
  for (const MasqueRoute& r : cfg_.routes) out.push_back(&r);
  for (const MasqueRoute& r : state_.routes) out.push_back(&r);
  return out;
}

namespace {
std::string subject_of(const QuicAgentConnection& c) {
  return c.evidence().certificate ? c.evidence().certificate->subject : std::string("?");
}
MasqueClientView view_of(QuicAgentConnection& c) {
  MasqueClientView v;
  v.id = c.id();
  v.peer = c.peer();
  v.certificate = c.peer_certificate();
  v.chain = c.peer_chain();
  v.subject = subject_of(c);
  v.protocol = "h3";
  v.quic = &c;
  return v;
}
}  // namespace

ConnectUdpAnswer Dpctld::refuse_connect_udp(const MasqueClientView& c, int64_t stream, const std::string& target,
                                            MasqueRefusal why, const std::string& details) {
  count_masque_refusal(why);
  const int status = masque_refusal_http_status(why);
  // HTTP/3: "(stream N)"; HTTP/2: "(h2 stream N)"; HTTP/1.1: "(http/1.1)".
  const std::string where = c.quic ? "stream " + std::to_string(stream)
                            : std::string(c.protocol) == "h2" ? "h2 stream " + std::to_string(stream)
                                                              : std::string(c.protocol);
  LOG_WARN("client %s (%s): CONNECT-UDP to %s (%s) refused: %d %s", c.peer.str().c_str(), c.subject.c_str(),
           target.c_str(), where.c_str(), status, masque_refusal_name(why));
  return ConnectUdpAnswer{uint16_t(status), masque_refusal_proxy_status(why), details};
}

std::optional<ConnectUdpAnswer> Dpctld::connect_udp_route(const MasqueClientView& c, int64_t stream,
                                                          const std::string& host, uint16_t port, MasqueRoute& route) {
  const std::string target = host + ":" + std::to_string(port);
  const MasqueRouteTable table = masque_route_table();
  const MasqueMatch m = table.match(host, port, certificate_identities(c.certificate), true);
  // A private route is refused as an unknown target, in the answer and the log line's status; the reason label
  // (private_route) is for the operator only.
  if (!m)
    return refuse_connect_udp(c, stream, target, m.refusal,
                              m.refusal == MasqueRefusal::NotAllowed ? "the client certificate may not use udp+https://" + target
                                                                     : "no udp+https route for " + target);
  route = *m.route;
  bool served = false;
  for (const auto& [index, s] : sessions_.all()) served |= s.tunnel == route.tunnel && !s.visitor && !s.handover_pending;
  if (!served)
    return refuse_connect_udp(c, stream, target, MasqueRefusal::NoAgent,
                              "no agent serves the tunnel of udp+https://" + target + " now");
  std::string why;
  if (c.quic && !c.quic->can_hand_over(why))
    return refuse_connect_udp(c, stream, target, MasqueRefusal::BadRequest,
                              "the connection cannot carry the datagrams: " + why);
  return std::nullopt;
}

std::optional<MasqueClientView> Dpctld::find_masque_client(uint64_t conn, bool quic) {
  if (quic) {
    QuicAgentConnection* c = quic_ ? quic_->find_h3(conn) : nullptr;
    if (!c) return std::nullopt;
    return view_of(*c);
  }
  return masque_tcp_ ? masque_tcp_->view(conn) : std::nullopt;
}

bool Dpctld::masque_waiting(const MasqueClientView& c, int64_t stream) const {
  if (c.quic) return c.quic->connect_udp_waiting(stream);
  return masque_tcp_ && masque_tcp_->waiting(c.id, int32_t(stream));
}

void Dpctld::complete_connect_udp(const MasqueClientView& c, int64_t stream, const ConnectUdpAnswer& a) {
  if (c.quic) return c.quic->complete_connect_udp(stream, a);
  if (masque_tcp_) masque_tcp_->complete(c.id, int32_t(stream), a);
}

ConnectUdpAnswer Dpctld::accept_masque(const MasqueClientView& c, int64_t stream, const MasqueRoute& route, Endpoint to) {
  return c.quic ? accept_connect_udp(*c.quic, stream, route, to) : accept_capsule_session(c, stream, route, to);
}

// A CONNECT-UDP request of an HTTP/3 client (docs/masque.md): refused with its reason, or accepted as a visitor
// session of the route's tunnel that dpgw takes over with the connection once the client has the 200.
ConnectUdpAnswer Dpctld::on_connect_udp(QuicAgentConnection& qc, int64_t stream, const ConnectUdpRequest& req) {
  const MasqueClientView c = view_of(qc);
  const std::string target = req.target.host + ":" + std::to_string(req.target.port);
  if (sessions_.find_by_channel(c.id) || resolving_.count(c.id))
    return refuse_connect_udp(c, stream, target, MasqueRefusal::BadRequest,
                              "one CONNECT-UDP request per connection: open another connection");
  return answer_connect_udp(c, stream, req);
}

// The route check and the answer, the same for every front end: at once, or after the route's name is resolved.
ConnectUdpAnswer Dpctld::answer_connect_udp(const MasqueClientView& c, int64_t stream, const ConnectUdpRequest& req) {
  const std::string host = req.target.host;
  const uint16_t port = req.target.port;
  const std::string target = host + ":" + std::to_string(port);
  MasqueRoute route;
  if (std::optional<ConnectUdpAnswer> refused = connect_udp_route(c, stream, host, port, route)) return *refused;
  if (const std::optional<Ipv4> ip = Ipv4::parse(route.to_host))
    return accept_masque(c, stream, route, Endpoint{*ip, route.to_port});
  // A name: known from a recent answer, or resolved off the event loop with the answer following.
  const uint64_t now = monotonic_ns();
  if (auto it = resolved_.find(route.to_host); it != resolved_.end() && it->second.until_ns > now) {
    if (it->second.ip) return accept_masque(c, stream, route, Endpoint{*it->second.ip, route.to_port});
    return refuse_connect_udp(c, stream, target, MasqueRefusal::DnsError,
                              route.to_host + " does not resolve to an IPv4 address");
  }
  if (resolving_.size() >= kMaxResolving)
    return refuse_connect_udp(c, stream, target, MasqueRefusal::DnsError,
                              "too many names being resolved now; try again");
  const uint64_t conn = c.id;
  const bool quic = c.quic != nullptr;
  resolving_.insert(conn);
  auto resolved = std::make_shared<std::optional<Ipv4>>();
  resolver_.submit(
      [resolved, name = route.to_host] {
        addrinfo hints{};
        hints.ai_family = AF_INET;
        hints.ai_socktype = SOCK_DGRAM;
        addrinfo* res = nullptr;
        if (getaddrinfo(name.c_str(), nullptr, &hints, &res) == 0 && res) {
          *resolved = Ipv4{ntohl(reinterpret_cast<const sockaddr_in*>(res->ai_addr)->sin_addr.s_addr)};
          freeaddrinfo(res);
        }
      },
      [this, resolved, conn, quic, stream, host, port, name = route.to_host] {
        if (auto r = resolving_.find(conn); r != resolving_.end()) resolving_.erase(r);
        // Kept 30 s (a name that does not resolve: 5 s), so that a burst of clients asks the resolver once.
        resolved_[name] = ResolvedName{*resolved, monotonic_ns() + (*resolved ? 30'000'000'000ull : 5'000'000'000ull)};
        if (resolved_.size() > 4096) std::erase_if(resolved_, [](const auto& e) { return e.second.until_ns <= monotonic_ns(); });
        // The connection and its request may be gone, and routes, agents and allow lists may have changed meanwhile:
        // everything is checked again.
        const std::optional<MasqueClientView> c = find_masque_client(conn, quic);
        if (!c || !masque_waiting(*c, stream)) return;
        const std::string target = host + ":" + std::to_string(port);
        MasqueRoute now_route;
        if (std::optional<ConnectUdpAnswer> refused = connect_udp_route(*c, stream, host, port, now_route))
          return complete_connect_udp(*c, stream, *refused);
        if (now_route.to_host != name || now_route.to_port == 0)
          return complete_connect_udp(*c, stream, refuse_connect_udp(*c, stream, target, MasqueRefusal::NoAgent,
                                                                     "the route changed while its target was resolved"));
        if (!*resolved)
          return complete_connect_udp(*c, stream, refuse_connect_udp(*c, stream, target, MasqueRefusal::DnsError,
                                                                     name + " does not resolve to an IPv4 address"));
        complete_connect_udp(*c, stream, accept_masque(*c, stream, now_route, Endpoint{**resolved, now_route.to_port}));
      });
  return ConnectUdpAnswer{ConnectUdpAnswer::kLater, {}, {}};
}

ConnectUdpAnswer Dpctld::accept_connect_udp(QuicAgentConnection& c, int64_t stream, const MasqueRoute& route,
                                            Endpoint to) {
  const uint32_t index = c.reserved_index();
  const std::string target = route.host + ":" + std::to_string(route.port);
  if (!index || !sessions_.reserved(index)) {
    LOG_ERROR("client %s: its connection holds no session index; CONNECT-UDP to %s refused", c.peer().str().c_str(),
              target.c_str());
    return ConnectUdpAnswer{500, "proxy_internal_error", "no session index"};
  }
  SessionRecord rec = masque_record(view_of(c), route);
  rec.index = index;
  rec.control_transport = "quic";
  rec.base_secret = c.export_secret(index);
  if (rec.base_secret.empty()) return ConnectUdpAnswer{500, "proxy_internal_error", "key export failed"};
  rec.masque = MasqueSpec{uint64_t(stream), to};
  rec.handover_pending = true;
  sessions_.add(std::move(rec));
  c.set_registered();
  counters_.masque_accepted++;
  counters_.masque_accepted_by[size_t(MasqueFront::H3)]++;
  LOG_INFO("session %u: client %s (%s): CONNECT-UDP to %s (stream %lld) accepted: tunnel %s, udp://%s", index,
           c.peer().str().c_str(), subject_of(c).c_str(), target.c_str(), (long long)stream,
           route.tunnel.str().c_str(), to.str().c_str());
  return ConnectUdpAnswer{200, {}, {}};
}

// The session record of an accepted CONNECT-UDP request, without what depends on the front end (index, keys, masque).
SessionRecord Dpctld::masque_record(const MasqueClientView& c, const MasqueRoute& route) {
  SessionRecord rec;
  rec.tunnel = route.tunnel;
  rec.visitor = true;
  rec.agent_name = "connect-udp " + route.host + ":" + std::to_string(route.port);
  rec.certificate_subject = c.subject;
  rec.identities = certificate_identities(c.certificate);
  if (c.certificate) {
    X509_up_ref(c.certificate);
    rec.certificate.reset(c.certificate);
  }
  if (c.chain) rec.chain.reset(X509_chain_up_ref(c.chain));
  rec.control_peer = c.peer;
  rec.registered_unix_ns = realtime_ns();
  rec.channel = c.id;
  rec.last_live_mono_ns = monotonic_ns();
  rec.masque_host = route.host;
  rec.masque_port = route.port;
  return rec;
}

const char* masque_front_name(MasqueFront f) {
  switch (f) {
    case MasqueFront::H3: return "h3";
    case MasqueFront::H2: return "h2";
    case MasqueFront::H1: return "http/1.1";
    case MasqueFront::Count: break;
  }
  return "?";
}

// An HTTP/2 or HTTP/1.1 client's accepted request: a visitor session of the route's tunnel that dpgw gets at once
// (session_add without a `quic` object: its datagrams come from dpctld, masque_datagrams), keyed by request_id.
ConnectUdpAnswer Dpctld::accept_capsule_session(const MasqueClientView& c, int64_t stream, const MasqueRoute& route,
                                                Endpoint to) {
  const std::string target = route.host + ":" + std::to_string(route.port);
  const std::optional<uint32_t> index = sessions_.allocate_index();
  if (!index) {
    LOG_ERROR("client %s (%s): no free session index; CONNECT-UDP to %s refused", c.peer.str().c_str(),
              c.subject.c_str(), target.c_str());
    return ConnectUdpAnswer{503, "proxy_internal_error", "no free session index"};
  }
  SessionRecord rec = masque_record(c, route);
  rec.index = *index;
  rec.control_transport = c.protocol;
  // Nobody derives keys from it (the session never takes a packet from the network), and nobody else ever gets it.
  rec.base_secret.resize(32);
  if (RAND_bytes(rec.base_secret.data(), int(rec.base_secret.size())) != 1)
    return ConnectUdpAnswer{500, "proxy_internal_error", "no random bytes"};
  const uint64_t request_id = next_request_id_++;
  rec.masque = MasqueSpec{0, to, request_id};
  const SessionRecord& added = sessions_.add(std::move(rec));
  // A stream left mapped to the index's previous session (if any) loses the mapping: its datagrams are dropped from
  // now on. (Not cut here: this runs inside the client connection's own request callback.)
  forget_capsule_stream(*index, false);
  capsule_streams_[*index] = CapsuleRef{c.id, int32_t(stream), request_id};
  capsule_index_[{c.id, int32_t(stream)}] = *index;
  gateway_->send(gateway_message(GatewayMessageType::SessionAdd, encode_session(session_spec(added))));
  const MasqueFront front = std::string(c.protocol) == "h2" ? MasqueFront::H2 : MasqueFront::H1;
  counters_.masque_accepted++;
  counters_.masque_accepted_by[size_t(front)]++;
  const std::string where = std::string(c.protocol) == "h2" ? "h2 stream " + std::to_string(stream) : std::string(c.protocol);
  LOG_INFO("session %u: client %s (%s): CONNECT-UDP to %s (%s, request %llu) accepted: tunnel %s, udp://%s", *index,
           c.peer.str().c_str(), c.subject.c_str(), target.c_str(), where.c_str(), (unsigned long long)request_id,
           route.tunnel.str().c_str(), to.str().c_str());
  return ConnectUdpAnswer{200, {}, {}};
}

void Dpctld::on_capsule_datagrams(const MasqueClientView& c, int32_t stream, std::vector<std::vector<uint8_t>>&& payloads) {
  auto it = capsule_index_.find({c.id, stream});
  if (it == capsule_index_.end()) return;  // its session was just revoked
  auto ref_it = capsule_streams_.find(it->second);
  // The index's stream must be this one: an index given to another request since is not this client's.
  if (ref_it == capsule_streams_.end() || ref_it->second.conn != c.id || ref_it->second.stream != stream) {
    capsule_index_.erase(it);
    counters_.capsule_unknown_session += payloads.size();
    return;
  }
  const CapsuleRef& ref = ref_it->second;
  if (!gateway_->connected() || gateway_->queued() > kMaxGatewayQueue) {
    counters_.capsule_gateway_away += payloads.size();
    return;
  }
  MasqueDatagrams d;
  d.index = it->second;
  d.request_id = ref.request_id;
  d.datagrams = std::move(payloads);
  counters_.capsule_to_gateway += d.datagrams.size();
  gateway_->send(encode_masque_datagrams(d));
}

void Dpctld::on_capsule_tunnel_ended(const MasqueClientView& c, int32_t stream, const std::string& why) {
  auto it = capsule_index_.find({c.id, stream});
  if (it == capsule_index_.end()) return;
  const uint32_t index = it->second;
  LOG_INFO("session %u: client %s (%s): CONNECT-UDP (%s stream %d) ended: %s; session removed", index,
           c.peer.str().c_str(), c.subject.c_str(), c.protocol, int(stream), why.c_str());
  forget_capsule_stream(index, false);
  if (sessions_.find(index)) {
    sessions_.remove(index);
    gateway_->send(gateway_message(GatewayMessageType::SessionDel, {{"index", index}}));
  }
}

void Dpctld::forget_capsule_stream(uint32_t index, bool cut) {
  auto it = capsule_streams_.find(index);
  if (it == capsule_streams_.end()) return;
  const CapsuleRef ref = it->second;
  capsule_streams_.erase(it);
  capsule_index_.erase({ref.conn, ref.stream});
  if (cut && masque_tcp_) masque_tcp_->cut(ref.conn, ref.stream);
}

// A capsule session whose record went another way (dpgw refused its index, ...) loses its stream too.
void Dpctld::check_capsule_streams() {
  std::vector<uint32_t> gone, orphaned;
  for (const auto& [index, ref] : capsule_streams_) {
    const SessionRecord* s = sessions_.find(index);
    if (!s || !s->masque || s->masque->request_id != ref.request_id)
      gone.push_back(index);
    else if (!masque_tcp_ || !masque_tcp_->view(ref.conn))
      orphaned.push_back(index);  // (never: a connection's end ends its tunnels) its connection is gone
  }
  for (uint32_t index : gone) forget_capsule_stream(index, true);
  for (uint32_t index : orphaned) {
    LOG_WARN("session %u: its CONNECT-UDP client's connection is gone; session removed", index);
    forget_capsule_stream(index, false);
    sessions_.remove(index);
    gateway_->send(gateway_message(GatewayMessageType::SessionDel, {{"index", index}}));
  }
}

void Dpctld::on_gateway_masque_datagrams(const json& msg) {
  MasqueDatagrams d;
  try {
    d = decode_masque_datagrams(msg);
  } catch (const std::exception& e) {
    counters_.capsule_unreadable++;
    LOG_WARN("gateway: an unreadable masque_datagrams message (%s); dropped", e.what());
    return;
  }
  auto it = capsule_streams_.find(d.index);
  if (it == capsule_streams_.end() || it->second.request_id != d.request_id) {
    counters_.capsule_unknown_session += d.datagrams.size();
    return;
  }
  const CapsuleRef ref = it->second;
  if (!masque_tcp_ || !masque_tcp_->view(ref.conn)) {
    counters_.capsule_client_gone += d.datagrams.size();
    return;
  }
  // A reply that does not fit the connection's queue is counted by its session (slow_client).
  for (const std::vector<uint8_t>& p : d.datagrams) masque_tcp_->deliver(ref.conn, ref.stream, p);
}

void Dpctld::on_masque_bad_request(QuicAgentConnection& c, int64_t stream, uint16_t status, const std::string& why) {
  count_masque_refusal(MasqueRefusal::BadRequest);
  LOG_WARN("client %s (%s): HTTP/3 request (stream %lld) refused: %u bad_request: %s", c.peer().str().c_str(),
           subject_of(c).c_str(), (long long)stream, unsigned(status), why.c_str());
}

MasqueRouteTable Dpctld::masque_route_table() const {
  std::vector<MasqueRoute> routes;
  for (const MasqueRoute* r : all_routes()) routes.push_back(*r);
  return MasqueRouteTable(std::move(routes));
}

std::vector<const IngressRuleSpec*> Dpctld::all_ingress() const {
  std::vector<const IngressRuleSpec*> out;
  for (const IngressRuleSpec& r : cfg_.ingress) out.push_back(&r);
  for (const IngressRuleSpec& r : state_.ingress) out.push_back(&r);
  return out;
}

std::vector<EntrySpec> Dpctld::all_entries() const {
  std::vector<EntrySpec> out = cfg_.entry_points;
  out.insert(out.end(), state_.entry_points.begin(), state_.entry_points.end());
  return out;
}

bool Dpctld::persist(std::string& error) { return save_state(cfg_.state_file, state_, error); }

void Dpctld::on_line(AgentLink& ch, const std::string& line) {
  // Whatever an agent sends, dpctld answers or refuses; nothing it sends may end the daemon.
  try {
    handle_agent_message(ch, line);
  } catch (const std::exception& e) {
    refuse(ch, Refusal::BadRequest, std::string("malformed message: ") + e.what());
  }
}

void Dpctld::handle_agent_message(AgentLink& ch, const std::string& line) {
  const AgentMessage m = parse_agent_message(line);
  switch (m.kind) {
    case AgentMessage::Kind::Ping:
      ch.send(JsonWriter().begin_object().field("type", name_of(AgentMessageType::Pong)).end_object().str());
      return;
    case AgentMessage::Kind::Invalid:
      refuse(ch, m.bad_version ? Refusal::Version : Refusal::BadRequest, m.error);
      return;
    case AgentMessage::Kind::Register:
      handle_register(ch, m);
      return;
    case AgentMessage::Kind::Candidates:
      handle_candidates(ch, m);
      return;
    case AgentMessage::Kind::Path:
      handle_path(ch, m);
      return;
  }
}

void Dpctld::handle_path(AgentLink& ch, const AgentMessage& m) {
  SessionRecord* s = sessions_.find_by_channel(ch.id());
  if (!s) {
    refuse(ch, Refusal::BadRequest, "path before a registration");
    return;
  }
  if (!m.error.empty()) {
    pairs_.count_rejected_path();
    LOG_DEBUG("session %u: path report ignored: %s", s->index, m.error.c_str());
    return;
  }
  if (!pairs_.on_path(s->index, m.path))
    LOG_DEBUG("session %u: path report for pair %08x, not one of its pairs: ignored", s->index, m.path.pair);
}

void Dpctld::reconcile_pairs() {
  const uint64_t t = monotonic_ns();
  if (t < next_pairing_ns_) return;
  next_pairing_ns_ = t + kNsPerSec;
  std::vector<DirectPairs::Message> out;
  try {
    out = pairs_.reconcile(sessions_.all(),
                           [this](const SessionRecord& v, std::string& why) { return visitor_target(v, why); },
                           rules_gen_);
  } catch (const std::exception& e) {  // (nothing in it throws but allocation; the daemon must not end for it)
    LOG_ERROR("direct paths: pairing failed: %s", e.what());
  }
  for (DirectPairs::Message& msg : out) {
    if (SessionRecord* s = sessions_.find(msg.session); s && s->channel)
      if (AgentLink* link = find_link(s->channel)) link->send(msg.line);
    OPENSSL_cleanse(msg.line.data(), msg.line.size());  // a peer line holds the pair secret
  }
  // dpgw relays the frames of the pairs that carry data (a sync carries them too).
  if (pairs_.generation() != pairs_pushed_) {
    pairs_pushed_ = pairs_.generation();
    gateway_->send(pair_set_message(pairs_.relay_specs()));
  }
}

// The rule dpgw would pick for a visitor's service, among its own tunnel's (hostname-routing.md "Matching"): the
// exact name, else the longest wildcard domain. A tunnel with pattern rules is left to dpgw (Hyperscan's order is
// dpgw's to apply), and so are rules that send a PROXY header first (dpgw writes it) or leave the target to the
// agent; their flows go through dpgw.
std::optional<Endpoint> Dpctld::visitor_target(const SessionRecord& v, std::string& why) const {
  if (v.service.empty()) {
    why = "the visitor named no service (dpagent visit --target, or an older dpagent)";
    return std::nullopt;
  }
  const IngressRuleSpec* exact = nullptr;
  const IngressRuleSpec* wildcard = nullptr;
  bool patterns = false;
  for (const IngressRuleSpec* r : all_ingress()) {
    if (!(r->tunnel == v.tunnel)) continue;
    const std::string& h = r->hostname;
    if (h == v.service) {
      exact = r;
    } else if (!h.empty() && h[0] == '~') {
      patterns = true;
    } else if (h.size() > 2 && h[0] == '*' && h[1] == '.') {
      const std::string_view domain = std::string_view(h).substr(2);
      const std::string_view name = v.service;
      const bool under = name == domain || (name.size() > domain.size() && name.ends_with(domain) &&
                                            name[name.size() - domain.size() - 1] == '.');
      if (under && (!wildcard || h.size() > wildcard->hostname.size())) wildcard = r;
    }
  }
  const IngressRuleSpec* rule = exact ? exact : (patterns ? nullptr : wildcard);
  if (!rule) {
    why = patterns ? "the tunnel has pattern rules: dpgw picks the rule" : "no rule of the tunnel names '" + v.service + "'";
    return std::nullopt;
  }
  if (!rule->target) {
    why = "rule " + rule->hostname + " leaves the target to the agent";
    return std::nullopt;
  }
  if (rule->proxy_protocol) {
    why = "rule " + rule->hostname + " sends a PROXY protocol header first";
    return std::nullopt;
  }
  return rule->target;
}

void Dpctld::handle_candidates(AgentLink& ch, const AgentMessage& m) {
  SessionRecord* s = sessions_.find_by_channel(ch.id());
  if (!s) {
    refuse(ch, Refusal::BadRequest, "candidates before a registration");
    return;
  }
  if (!m.error.empty()) {
    counters_.candidate_reports_rejected++;
    if (s->candidate_reports_rejected++ == 0)  // one line per session: an agent that keeps sending them is counted
      LOG_WARN("session %u (%s): candidates ignored: %s", s->index, s->certificate_subject.c_str(), m.error.c_str());
    return;
  }
  counters_.candidate_reports++;
  s->candidates_unix_ns = realtime_ns();
  if (s->candidates && *s->candidates == m.candidates) return;
  // A pair is made again (new secret, checks from the start) only when the addresses change, not the NAT's label.
  if (!s->candidates || s->candidates->candidates != m.candidates.candidates) s->candidates_gen++;
  s->candidates = m.candidates;
  LOG_INFO("session %u (%s): NAT mapping %s, candidates: %s", s->index, s->certificate_subject.c_str(),
           nat_mapping_name(m.candidates.nat), candidates_text(m.candidates.candidates).c_str());
  // (Paired at the next second's reconcile: an agent that keeps changing its report re-pairs once a second at most.)
}

void Dpctld::handle_register(AgentLink& ch, const AgentMessage& m) {
  const std::string& tunnel_ref = m.tunnel;
  const int weight = m.weight;
  const std::string& name = m.name;
  const bool visitor = m.visitor;
  if (sessions_.find_by_channel(ch.id())) {
    refuse(ch, Refusal::BadRequest, "this connection has registered already");
    return;
  }
  if (weight < 1 || weight > 255) {
    refuse(ch, Refusal::BadRequest, "weight must be 1..255");
    return;
  }
  // A visitor proves it may visit by holding the tunnel's id (a name is not enough), with any certificate of the CA.
  if (visitor && !Uuid::parse(tunnel_ref)) {
    refuse(ch, Refusal::NoTunnel, "a visitor names its tunnel by id (UUID), not by name");
    return;
  }
  const TunnelDef* tunnel = find_tunnel(tunnel_ref);
  if (!tunnel) {
    refuse(ch, Refusal::NoTunnel, "no tunnel '" + tunnel_ref + "'");
    return;
  }
  X509* cert = ch.peer_certificate();
  if (!cert) {
    refuse(ch, Refusal::NotAllowed, "no client certificate");
    return;
  }
  const std::vector<std::string> ids = certificate_identities(cert);
  const PeerCertificate desc = describe_certificate(cert);
  if (!visitor && !identity_allowed(tunnel->allow, ids)) {
    std::string checked;
    for (const std::string& id : ids) checked += (checked.empty() ? "" : ", ") + id;
    refuse(ch, Refusal::NotAllowed,
           "certificate '" + desc.subject + "' may not serve tunnel " + tunnel->name + " (" + tunnel->id.str() +
               "): its identities " + (checked.empty() ? std::string("(none)") : checked) +
               " are not in the tunnel's allow list",
           tunnel->id.str());
    return;
  }
  // A QUIC connection holds its index from its first Initial (its connection IDs carry it); a TLS one gets one now.
  std::optional<uint32_t> index;
  if (const uint32_t reserved = ch.reserved_index()) {
    if (!sessions_.reserved(reserved)) {
      refuse(ch, Refusal::Internal, "the connection's session index is not reserved");
      return;
    }
    index = reserved;
  } else {
    index = sessions_.allocate_index();
  }
  if (!index) {
    refuse(ch, Refusal::NoIndex, "no free session index");
    return;
  }
  // The QUIC framing when dpgw can take the connection over (docs/protocol.md "Key hand-over"); relay frames for
  // TLS connections and for QUIC connections it cannot take (the connection then stays with dpctld).
  std::string no_handover;
  const bool quic_framing = ch.can_hand_over(no_handover);
  if (!quic_framing && std::string(ch.transport()) == "quic")
    LOG_INFO("agent %s: relay framing: dpgw cannot take its QUIC connection over (%s)", ch.peer().str().c_str(),
             no_handover.c_str());
  const uint8_t granted = tunnel->weights.effective(weight);
  if (granted != weight)
    LOG_INFO("%s asked for weight %d on tunnel %s; its weight policy (%s) gives %u", desc.subject.c_str(), weight,
             tunnel->name.c_str(), tunnel->weights.str().c_str(), unsigned(granted));
  SessionRecord rec;
  rec.index = *index;
  rec.tunnel = tunnel->id;
  rec.weight = granted;
  rec.visitor = visitor;
  rec.service = m.service;
  rec.pair_data = m.pair_data;
  rec.agent_name = name;
  rec.certificate_subject = desc.subject;
  rec.identities = ids;
  X509_up_ref(cert);
  rec.certificate.reset(cert);
  if (STACK_OF(X509)* sent = ch.peer_chain()) rec.chain.reset(X509_chain_up_ref(sent));
  rec.control_peer = ch.peer();
  rec.control_transport = ch.transport();
  rec.registered_unix_ns = realtime_ns();
  rec.channel = ch.id();
  rec.last_live_mono_ns = monotonic_ns();
  rec.base_secret = ch.export_secret(*index);
  if (rec.base_secret.empty()) {
    refuse(ch, Refusal::Internal, "key export failed");
    return;
  }
  rec.handover_pending = quic_framing;
  const SessionRecord& added = sessions_.add(std::move(rec));
  ch.set_registered();
  // A QUIC-framed session reaches dpgw with its keys once the agent has the reply (on_quic_handover).
  if (!quic_framing)
    gateway_->send(gateway_message(GatewayMessageType::SessionAdd, encode_session(session_spec(added))));
  counters_.registrations_ok++;
  LOG_INFO("session %u: %s (%s) registered %s tunnel %s (%s), weight %u", *index, desc.subject.c_str(),
           ch.peer().str().c_str(), visitor ? "to visit" : "for", tunnel->name.c_str(), tunnel->id.str().c_str(),
           unsigned(granted));
  RegisteredReply reply;
  reply.session = *index;
  reply.tunnel = tunnel->id.str();
  reply.weight = unsigned(granted);
  reply.visitor = visitor;
  reply.gateway = cfg_.gateway_endpoint;
  reply.key_len = uint8_t(cfg_.key_len);
  reply.rekey_interval_ns = cfg_.rekey_interval_ns;
  reply.keepalive_ns = cfg_.keepalive_ns;
  reply.quic_framing = quic_framing;
  // dpgw's STUN port (0: none, or dpgw not connected yet): where, beside the tunnel port, the agent asks for its
  // server-reflexive candidate (docs/nat-traversal.md).
  reply.stun_port = gateway_ ? gateway_->gateway_stun_port() : 0;
  ch.send(registered_message(reply));
  if (quic_framing) ch.hand_over_when_acknowledged();
}

// The agent has acknowledged its registration reply: dpgw gets the session with the connection's keys and serves
// the connection from now on; dpctld keeps the record (no control channel: it expires as a TLS session whose
// connection closed does, when dpgw no longer reports it live).
bool Dpctld::on_quic_handover(AgentLink& link, QuicSessionSpec&& spec) {
  SessionRecord* s = sessions_.find_by_channel(link.id());
  if (!s || !s->handover_pending) return false;
  s->quic = std::move(spec);
  s->handover_pending = false;
  s->channel = 0;
  s->last_live_mono_ns = s->handed_over_mono_ns = monotonic_ns();
  gateway_->send(gateway_message(GatewayMessageType::SessionAdd, encode_session(session_spec(*s))));
  counters_.quic_handovers++;
  LOG_INFO("session %u: QUIC connection of %s (%s) handed over to dpgw (%s)", s->index, s->certificate_subject.c_str(),
           link.peer().str().c_str(), quic_cipher_name(s->quic->cipher));
  return true;
}

// A dpgw that is not the process that served the QUIC sessions (restarted, or controlled by another dpctld in
// between) does not know which packet numbers were used toward their agents: given the same keys again with
// first_tx_pn 2^30, it could send a number twice (one nonce, two plaintexts). Those sessions are dropped instead;
// their agents' connections go quiet and they register again.
void Dpctld::drop_quic_sessions_if_gateway_replaced() {
  if (!gateway_ || !gateway_->gateway_replaced()) return;
  std::vector<uint32_t> gone;
  for (const auto& [index, s] : sessions_.all())
    if (s.quic) gone.push_back(index);
  for (uint32_t index : gone) {
    LOG_WARN("session %u (%s): dpgw restarted (or another dpctld controlled it): the packet numbers of its QUIC "
             "connection are lost with it; session dropped, the agent registers again",
             index, sessions_.find(index)->certificate_subject.c_str());
    sessions_.remove(index);
    counters_.quic_sessions_dropped++;
  }
}

SessionSpec Dpctld::session_spec(const SessionRecord& s) {
  SessionSpec spec;
  spec.index = s.index;
  spec.tunnel = s.tunnel;
  spec.weight = s.weight;
  spec.visitor = s.visitor;
  spec.base_secret = s.base_secret;
  spec.quic = s.quic;
  spec.masque = s.masque;
  return spec;
}

json Dpctld::ingress_rules() const {
  json rules = json::array();
  for (const IngressRuleSpec* r : all_ingress())
    rules.push_back(encode_ingress_rule(*r));
  return rules;
}

void Dpctld::push_ingress() {
  rules_gen_++;  // (direct paths' pairs look their targets up again)
  gateway_->send(gateway_message(GatewayMessageType::IngressSet, {{"rules", ingress_rules()}}));
}

json Dpctld::full_state() const {
  json tunnels = json::array(), sessions = json::array(), entries = json::array();
  for (const TunnelDef* t : all_tunnels()) tunnels.push_back(encode_tunnel(TunnelSpec{t->id, t->name, false}));
  for (const auto& [index, s] : sessions_.all())
    if (!s.handover_pending) sessions.push_back(encode_session(session_spec(s)));
  for (const EntrySpec& e : all_entries()) entries.push_back(encode_entry(e));
  return gateway_message(GatewayMessageType::Sync, {{"tunnels", tunnels},
                                                   {"sessions", sessions},
                                                   {"entry_points", entries},
                                                   {"ingress", ingress_rules()},
                                                   {"pairs", encode_pairs(pairs_.relay_specs())}});
}

void Dpctld::on_gateway_status(const json& status) {
  const uint64_t now = monotonic_ns();
  std::set<uint32_t> held;
  const json* list = field(status, "sessions");
  std::set<uint32_t> listed;
  for (const auto& s : list && list->is_array() ? *list : json::array()) {
    const json* i = field(s, "index");
    auto index = i ? json_int_in(*i, 1, 65535) : std::nullopt;
    if (!index) continue;  // not a session we could have
    listed.insert(uint32_t(*index));
    SessionRecord* rec = sessions_.find(uint32_t(*index));
    if (!rec) {
      if (*index >= SessionRegistry::kFirstIndex) held.insert(uint32_t(*index));
      continue;
    }
    const json* live = field(s, "live");
    rec->live = live && live->is_boolean() && live->get<bool>();
    const json* ep = field(s, "endpoint");
    rec->data_endpoint = ep && ep->is_string() ? ep->get<std::string>() : std::string();
    const json* flows = field(s, "flows_pinned");
    rec->flows_pinned = uint64_t(flows ? json_int_in(*flows, 0, INT64_MAX).value_or(0) : 0);
    if (rec->live) rec->last_live_mono_ns = now;
  }
  sessions_.set_gateway_held(std::move(held));
  // QUIC sessions whose agent closed its connection (CONNECTION_CLOSE, dpgw's slow path ended them): dpgw tells each
  // once, in the first status after; the registration is gone at once.
  for (const auto& c : array_field(status, "quic_closed")) {
    const json* i = field(c, "index");
    auto index = i ? json_int_in(*i, 1, 65535) : std::nullopt;
    const SessionRecord* rec = index ? sessions_.find(uint32_t(*index)) : nullptr;
    if (!rec || !rec->quic || rec->handover_pending) continue;
    LOG_INFO("session %u (%s): the agent closed its QUIC connection (%s); session removed", rec->index,
             rec->certificate_subject.c_str(), string_or(c, "reason", "").c_str());
    listed.erase(rec->index);
    sessions_.remove(uint32_t(*index));
    counters_.quic_sessions_closed++;
  }
  // A handed-over QUIC session dpgw does not hold (its session_add was lost while dpgw was away, or dpgw was
  // replaced and a sync does not recreate QUIC sessions) cannot come back: its agent's connection has gone quiet.
  // Dropped, after a grace of a few status rounds (a reply may answer a request sent before the session_add).
  std::vector<uint32_t> lost;
  for (const auto& [index, s] : sessions_.all())
    if (s.quic && !listed.count(index) && now - s.handed_over_mono_ns > kQuicHandoverGraceNs) lost.push_back(index);
  for (uint32_t index : lost) {
    LOG_WARN("session %u (%s): dpgw does not hold its QUIC connection (handed to a dpgw that is gone, or while dpgw "
             "was away); session dropped, the agent registers again",
             index, sessions_.find(index)->certificate_subject.c_str());
    sessions_.remove(index);
    counters_.quic_sessions_dropped++;
  }
  if (status.contains("stats")) gateway_stats_ = status["stats"];
}

// dpgw refused a session because it still holds that index (a session of an earlier dpctld, kept while it
// carries traffic): the index is not free after all. The agent is disconnected and registers again, under
// another index.
void Dpctld::on_gateway_refused(const json& error) {
  counters_.gateway_refusals++;
  counters_.last_gateway_refusal = string_or(error, "request", "?") + ": " + string_or(error, "reason", "?");
  const json* i = field(error, "index");
  auto in_range = i ? json_int_in(*i, SessionRegistry::kFirstIndex, SessionRegistry::kLastIndex) : std::nullopt;
  // A capsule session (HTTP/2, HTTP/1.1) dpgw does not take cannot carry anything: its stream is cut at once rather
  // than left answered 200 with nowhere for its datagrams to go.
  if (in_range && string_or(error, "request", "") == name_of(GatewayMessageType::SessionAdd) &&
      capsule_streams_.count(uint32_t(*in_range))) {
    const uint32_t index = uint32_t(*in_range);
    LOG_WARN("session %u: dpgw refused the CONNECT-UDP session (%s); its stream is cut", index,
             string_or(error, "reason", "?").c_str());
    forget_capsule_stream(index, true);
    if (gateway_error_code(error) == GatewayErrorCode::IndexInUse) sessions_.add_gateway_held(index);
    sessions_.remove(index);
    return;
  }
  if (gateway_error_code(error) != GatewayErrorCode::IndexInUse || !in_range) return;
  const uint32_t index = uint32_t(*in_range);
  sessions_.add_gateway_held(index);
  SessionRecord* s = sessions_.find(index);
  if (!s) return;
  LOG_WARN("session %u: the gateway still holds this index; %s registers again", index, s->certificate_subject.c_str());
  if (s->channel)
    if (AgentLink* link = find_link(s->channel)) link->close(true);
  sessions_.remove(index);
}

std::string Dpctld::metrics_text() const {
  PromText p;
  p.family("dptun_build_info", "gauge", "The running dpctld's version (label), always 1.");
  p.sample("dptun_build_info", 1, prom_label("program", "dpctld") + "," + prom_label("version", DPTUN_RELEASE) + "," +
                                      prom_label("commit", DPTUN_COMMIT));
  p.family("dptun_agent_handshake_failures_total", "counter", "Failed agent TLS handshakes by reason.");
  for (size_t c = 0; c < size_t(HandshakeFailure::Count); ++c)
    p.sample("dptun_agent_handshake_failures_total", double(counters_.handshake_failures[c]),
             std::string("reason=\"") + handshake_failure_name(HandshakeFailure(c)) + "\"");
  p.family("dptun_agent_handshakes_total", "counter", "Completed agent TLS handshakes.");
  p.sample("dptun_agent_handshakes_total", double(counters_.handshakes_ok));
  if (quic_) {
    p.family("dptun_agent_quic_handshakes_total", "counter", "Completed agent handshakes on the QUIC port.");
    p.sample("dptun_agent_quic_handshakes_total", double(counters_.quic_handshakes_ok));
    p.family("dptun_agent_quic_connections", "gauge", "QUIC connections of agents (handshaking or established).");
    p.sample("dptun_agent_quic_connections", double(quic_->connections()));
    p.family("dptun_agent_quic_handshakes_in_progress", "gauge", "QUIC connections still handshaking.");
    p.sample("dptun_agent_quic_handshakes_in_progress", double(quic_->handshakes_in_progress()));
    p.family("dptun_agent_quic_indexes_reserved", "gauge",
             "Session indexes held by QUIC connections that have not registered (bounded by tls.max_pending).");
    p.sample("dptun_agent_quic_indexes_reserved", double(sessions_.reservations()));
    p.family("dptun_agent_quic_handovers_total", "counter",
             "QUIC connections of registered agents handed over to dpgw (the QUIC framing).");
    p.sample("dptun_agent_quic_handovers_total", double(counters_.quic_handovers));
    p.family("dptun_agent_quic_sessions_closed_total", "counter",
             "QUIC sessions removed because their agent closed its connection (CONNECTION_CLOSE; dpgw ended them).");
    p.sample("dptun_agent_quic_sessions_closed_total", double(counters_.quic_sessions_closed));
    p.family("dptun_agent_quic_sessions_dropped_total", "counter",
             "Handed-over QUIC sessions dropped: dpgw restarted (their packet numbers went with it) or does not hold them.");
    p.sample("dptun_agent_quic_sessions_dropped_total", double(counters_.quic_sessions_dropped));
    p.family("dptun_agent_quic_stateless_resets_total", "counter",
             "Stateless Resets sent for short-header packets of no connection (a QUIC session dpgw lost), and those "
             "left unsent over the rate limit.");
    p.sample("dptun_agent_quic_stateless_resets_total", double(quic_->stateless_resets()), "result=\"sent\"");
    p.sample("dptun_agent_quic_stateless_resets_total", double(quic_->stateless_resets_limited()),
             "result=\"rate_limited\"");
    p.family("dptun_agent_quic_datagrams_dropped_total", "counter",
             "Datagrams on the QUIC port that reached no connection, by reason (no failure line).");
    for (size_t d = 0; d < size_t(QuicDrop::Count); ++d)
      p.sample("dptun_agent_quic_datagrams_dropped_total", double(quic_->dropped(QuicDrop(d))),
               prom_label("reason", quic_drop_name(QuicDrop(d))));
  }
  p.family("dptun_registrations_total", "counter", "Agent registrations by result.");
  p.sample("dptun_registrations_total", double(counters_.registrations_ok), "result=\"ok\"");
  p.sample("dptun_registrations_total", double(counters_.registrations_refused), "result=\"refused\"");
  p.family("dptun_registrations_refused_total", "counter", "Refused registrations by reason.");
  for (size_t r = 0; r < size_t(Refusal::Count); ++r)
    p.sample("dptun_registrations_refused_total", double(counters_.refusals[r]), prom_label("reason", refusal_name(Refusal(r))));
  p.family("dptun_failure_log_lines_suppressed_total", "counter", "Failure log lines left out over failure_log_rate.");
  p.sample("dptun_failure_log_lines_suppressed_total", double(counters_.failure_lines_suppressed));
  p.family("dptun_agent_lines_too_long_total", "counter", "Agent connections closed for a line over 64 KiB.");
  p.sample("dptun_agent_lines_too_long_total", double(counters_.agent_lines_too_long));
  p.family("dptun_masque_routes", "gauge", "udp+https routes for CONNECT-UDP clients (config and dpctl).");
  p.sample("dptun_masque_routes", double(all_routes().size()));
  p.family("dptun_masque_requests_accepted_total", "counter", "CONNECT-UDP requests answered 2xx (docs/masque.md).");
  p.sample("dptun_masque_requests_accepted_total", double(counters_.masque_accepted));
  p.family("dptun_masque_refusals_total", "counter", "CONNECT-UDP requests refused, by reason (docs/masque.md).");
  for (size_t r = 0; r < size_t(MasqueRefusal::Count); ++r)
    p.sample("dptun_masque_refusals_total", double(counters_.masque_refusals[r]),
             prom_label("reason", masque_refusal_name(MasqueRefusal(r))));
  p.family("dptun_masque_requests_accepted_by_protocol_total", "counter",
           "CONNECT-UDP requests answered 2xx, by the client's HTTP version (h3, h2, http/1.1).");
  for (size_t f = 0; f < size_t(MasqueFront::Count); ++f)
    p.sample("dptun_masque_requests_accepted_by_protocol_total", double(counters_.masque_accepted_by[f]),
             prom_label("protocol", masque_front_name(MasqueFront(f))));
  if (masque_tcp_) {
    const MasqueTcpServer::Stats t = masque_tcp_->stats();
    p.family("dptun_masque_tcp_connections", "gauge", "Connections on the CONNECT-UDP TCP port (masque_tcp_listen).");
    p.sample("dptun_masque_tcp_connections", double(masque_tcp_->connections()));
    p.family("dptun_masque_tcp_handshakes_total", "counter", "Completed TLS handshakes on the CONNECT-UDP TCP port, by ALPN.");
    p.sample("dptun_masque_tcp_handshakes_total", double(t.connections_h2), prom_label("protocol", "h2"));
    p.sample("dptun_masque_tcp_handshakes_total", double(t.connections_h1), prom_label("protocol", "http/1.1"));
    p.family("dptun_masque_tcp_connections_closed_total", "counter",
             "CONNECT-UDP TCP connections dpctld closed: idle (no CONNECT-UDP stream for 10 s), over_limit.");
    p.sample("dptun_masque_tcp_connections_closed_total", double(t.idle_closed), prom_label("reason", "idle"));
    p.sample("dptun_masque_tcp_connections_closed_total", double(t.over_limit), prom_label("reason", "over_limit"));
    p.family("dptun_masque_capsule_datagrams_total", "counter",
             "UDP payloads in DATAGRAM capsules (HTTP/2, HTTP/1.1): from_client read, to_gateway passed to dpgw, "
             "to_client queued to clients.");
    p.sample("dptun_masque_capsule_datagrams_total", double(t.capsules.datagrams_in), prom_label("direction", "from_client"));
    p.sample("dptun_masque_capsule_datagrams_total", double(counters_.capsule_to_gateway), prom_label("direction", "to_gateway"));
    p.sample("dptun_masque_capsule_datagrams_total", double(t.capsules.datagrams_out), prom_label("direction", "to_client"));
    p.family("dptun_masque_capsule_drops_total", "counter",
             "DATAGRAM capsules and replies dropped on the CONNECT-UDP TCP port, by reason (docs/masque.md).");
    const std::pair<const char*, uint64_t> drops[] = {
        {"context", t.capsules.drop_context},         {"malformed", t.capsules.drop_malformed},
        {"too_large", t.capsules.drop_too_large},     {"slow_client", t.capsules.drop_slow_client},
        {"unknown_session", counters_.capsule_unknown_session}, {"client_gone", counters_.capsule_client_gone},
        {"gateway_away", counters_.capsule_gateway_away},       {"unreadable", counters_.capsule_unreadable}};
    for (const auto& [reason, n] : drops) p.sample("dptun_masque_capsule_drops_total", double(n), prom_label("reason", reason));
    p.family("dptun_masque_capsules_skipped_total", "counter", "Capsules of types other than DATAGRAM, skipped whole.");
    p.sample("dptun_masque_capsules_skipped_total", double(t.capsules.skipped_capsules));
    p.family("dptun_masque_h2_streams_over_limit_total", "counter",
             "HTTP/2 CONNECT-UDP requests answered 429: 16 streams open on their connection already.");
    p.sample("dptun_masque_h2_streams_over_limit_total", double(t.capsules.over_tunnel_limit));
  }
  p.family("dptun_tunnels", "gauge", "Configured tunnels.");
  p.sample("dptun_tunnels", double(all_tunnels().size()));
  p.family("dptun_sessions", "gauge", "Registered agent sessions per tunnel.");
  for (const TunnelDef* t : all_tunnels())
    p.sample("dptun_sessions", double(sessions_.count_for(t->id)),
             prom_label("tunnel", t->id.str()) + "," + prom_label("name", t->name));
  p.family("dptun_sessions_live", "gauge", "Sessions the gateway hears from, per tunnel.");
  for (const TunnelDef* t : all_tunnels()) {
    size_t live = 0;
    for (const auto& [i, s] : sessions_.all()) live += s.tunnel == t->id && s.live;
    p.sample("dptun_sessions_live", double(live), prom_label("tunnel", t->id.str()) + "," + prom_label("name", t->name));
  }
  p.family("dptun_candidate_reports_total", "counter",
           "Direct-path candidate reports from agents, by result (rejected: ignored for what they held).");
  p.sample("dptun_candidate_reports_total", double(counters_.candidate_reports), prom_label("result", "ok"));
  p.sample("dptun_candidate_reports_total", double(counters_.candidate_reports_rejected), prom_label("result", "rejected"));
  {
    size_t direct = 0;
    for (const auto& [id, pair] : pairs_.all()) direct += pair.direct();
    p.family("dptun_direct_pairs", "gauge", "Visitor-agent pairs for direct paths, by path (docs/nat-traversal.md).");
    p.sample("dptun_direct_pairs", double(direct), prom_label("path", "direct"));
    p.sample("dptun_direct_pairs", double(pairs_.all().size() - direct), prom_label("path", "relayed"));
    p.family("dptun_direct_pairs_made_total", "counter", "Pairs made (each with a fresh secret).");
    p.sample("dptun_direct_pairs_made_total", double(pairs_.stats().made));
    p.family("dptun_direct_pairs_ended_total", "counter", "Pairs ended (a session went, or its candidates changed).");
    p.sample("dptun_direct_pairs_ended_total", double(pairs_.stats().ended));
    p.family("dptun_direct_pairs_became_direct_total", "counter", "Pairs whose two ends both reported a direct path.");
    p.sample("dptun_direct_pairs_became_direct_total", double(pairs_.stats().became_direct));
    p.family("dptun_direct_pairs_fallbacks_total", "counter", "Direct pairs that an end reported relayed again.");
    p.sample("dptun_direct_pairs_fallbacks_total", double(pairs_.stats().fallbacks));
  }
  p.family("dptun_sessions_expired_total", "counter", "Sessions removed after their agent went away.");
  p.sample("dptun_sessions_expired_total", double(counters_.sessions_expired));
  p.family("dptun_sessions_revoked_total", "counter",
           "Sessions cut off after a reload (tunnel gone, no longer allowed, certificate no longer verifies).");
  p.sample("dptun_sessions_revoked_total", double(counters_.sessions_revoked));
  p.family("dptun_crl_next_update_timestamp_seconds", "gauge",
           "When each loaded CRL expires (its nextUpdate, unix time): alert well before it passes.");
  for (const CrlInfo& c : tls_.crls())
    p.sample("dptun_crl_next_update_timestamp_seconds", double(c.next_update), prom_label("issuer", c.issuer));
  p.family("dptun_crl_expired", "gauge", "1 when a loaded CRL's nextUpdate has passed (every certificate it covers is refused).");
  const int64_t now_s = int64_t(realtime_ns() / kNsPerSec);
  for (const CrlInfo& c : tls_.crls())
    p.sample("dptun_crl_expired", c.expired || (c.next_update && now_s > c.next_update) ? 1 : 0, prom_label("issuer", c.issuer));
  p.family("dptun_gateway_connected", "gauge", "1 while dpctld is connected to dpgw's control socket and controls it.");
  p.sample("dptun_gateway_connected", gateway_ && gateway_->connected() ? 1 : 0);
  p.family("dptun_gateway_controller_conflict", "gauge",
           "1 while dpgw refuses this dpctld because another one controls it (or replaced it).");
  p.sample("dptun_gateway_controller_conflict", gateway_ && !gateway_->conflict().empty() ? 1 : 0);
  p.family("dptun_gateway_controller_conflicts_total", "counter", "Times dpgw refused or fenced this dpctld.");
  p.sample("dptun_gateway_controller_conflicts_total", double(gateway_ ? gateway_->conflicts() : 0));
  // Per-tunnel traffic, as dpgw counts it.
  const char* fields[][2] = {{"to_agent_packets", "dptun_tunnel_to_agent_packets_total"},
                             {"to_agent_bytes", "dptun_tunnel_to_agent_bytes_total"},
                             {"from_agent_packets", "dptun_tunnel_from_agent_packets_total"},
                             {"from_agent_bytes", "dptun_tunnel_from_agent_bytes_total"},
                             {"flows_created", "dptun_tunnel_flows_total"},
                             {"auth_fail", "dptun_tunnel_auth_failures_total"},
                             {"replay", "dptun_tunnel_replays_total"}};
  const json* list = field(gateway_stats_, "tunnels");
  const json tunnels = list && list->is_array() ? *list : json::array();
  for (const auto& f : fields) {
    p.family(f[1], "counter", std::string("Per-tunnel ") + f[0] + " (from dpgw).");
    for (const auto& t : tunnels) {
      const json* v = field(t, f[0]);
      p.sample(f[1], v && v->is_number() ? v->get<double>() : 0.0,
               prom_label("tunnel", string_or(t, "id", "")) + "," + prom_label("name", string_or(t, "name", "")));
    }
  }
  return p.str();
}

}  // namespace dptun
