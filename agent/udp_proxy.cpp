#include "agent/udp_proxy.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "agent/h2_masque_client.hpp"
#include "agent/tls_failure.hpp"
#include "common/clock.hpp"
#include "common/json_writer.hpp"
#include "common/log.hpp"
#include "common/udp_socket.hpp"

namespace dptun {

namespace {
constexpr double kMaxBackoffS = 30;

std::string addr_text(const sockaddr_in& a) {
  char ip[INET_ADDRSTRLEN] = "?";
  inet_ntop(AF_INET, &a.sin_addr, ip, sizeof ip);
  return std::string(ip) + ":" + std::to_string(ntohs(a.sin_port));
}

uint64_t key_of(const sockaddr_in& a) { return (uint64_t(ntohl(a.sin_addr.s_addr)) << 16) | ntohs(a.sin_port); }
}  // namespace

const char* udp_http_name(UdpHttp h) {
  switch (h) {
    case UdpHttp::Auto: return "auto";
    case UdpHttp::H3: return "3";
    case UdpHttp::H2: return "2";
  }
  return "?";
}

const char* udp_proxy_drop_name(UdpProxyDrop d) {
  switch (d) {
    case UdpProxyDrop::TooLarge: return "too_large";
    case UdpProxyDrop::Congested: return "congested";
    case UdpProxyDrop::ClientsFull: return "clients_full";
    case UdpProxyDrop::HeldFull: return "held_full";
    case UdpProxyDrop::ConnectionFailed: return "connection_failed";
    case UdpProxyDrop::LocalSend: return "local_send";
    case UdpProxyDrop::Count: break;
  }
  return "?";
}

UdpProxy::UdpProxy(EventLoop& loop, UdpProxyOptions opt, Fatal fatal)
    : loop_(loop), opt_(std::move(opt)), fatal_(std::move(fatal)), buf_(kBatch * kMaxDatagram) {
  if (opt_.server_name.empty()) opt_.server_name = opt_.via_host;
  use_h2_ = opt_.http == UdpHttp::H2;
}

UdpProxy::~UdpProxy() {
  const uint64_t now = monotonic_ns();
  if (probe_) disconnect(*probe_, now);
  for (auto& [key, c] : clients_) disconnect(*c, now);
  if (local_) loop_.remove(local_.get());
}

std::string UdpProxy::target() const { return opt_.target_host + ":" + std::to_string(opt_.target_port); }

bool UdpProxy::load(std::string& error) {
  if (!files_readable({&opt_.cert, &opt_.key, &opt_.ca}, error)) return false;
  // libssl's error strings: an alert the gateway sent is named in the advice (classify_agent_tls), as for agents.
  OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS, nullptr);
  if (opt_.http != UdpHttp::H2) {
    if (!(credentials_ = load_quic_credentials(opt_.cert, opt_.key, error))) return false;
    if (!(store_ = load_ca_store(opt_.ca, error))) return false;
  }
  if (opt_.http != UdpHttp::H3 && !(ssl_ctx_ = make_agent_ssl_ctx(opt_.cert, opt_.key, opt_.ca, error))) return false;
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  if (int rv = getaddrinfo(opt_.via_host.c_str(), nullptr, &hints, &res); rv != 0 || !res) {
    error = "--via: cannot resolve " + opt_.via_host + " to an IPv4 address: " + gai_strerror(rv);
    return false;
  }
  gateway_ = *reinterpret_cast<const sockaddr_in*>(res->ai_addr);
  gateway_.sin_port = htons(opt_.via_port);
  freeaddrinfo(res);
  local_ = Fd(socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  sockaddr_in la{};
  la.sin_family = AF_INET;
  la.sin_addr.s_addr = htonl(opt_.listen.ip.v4());
  la.sin_port = htons(opt_.listen.port);
  if (!local_ || bind(local_.get(), reinterpret_cast<sockaddr*>(&la), sizeof la) != 0) {
    error = "--listen " + opt_.listen.str() + ": " + strerror(errno);
    return false;
  }
  // Room for the bursts a local program sends while this process waits for a CPU.
  set_udp_buffers(local_.get(), 4 << 20);
  return true;
}

bool UdpProxy::start(std::string& error) {
  if (!loop_.add(local_.get(), EPOLLIN, [this](uint32_t) { on_local(monotonic_ns()); })) {
    error = std::string("epoll: ") + strerror(errno);
    return false;
  }
  const char* how = opt_.http == UdpHttp::H3   ? "HTTP/3 (UDP)"
                    : opt_.http == UdpHttp::H2 ? "HTTP/2 (TCP)"
                                               : "HTTP/3 (UDP), HTTP/2 (TCP) if UDP gets no answer";
  LOG_INFO("dpagent udp: %s -> CONNECT-UDP %s through https://%s (%s), %s; at most %u local sources, idle "
           "timeout %.0f s",
           opt_.listen.str().c_str(), target().c_str(), opt_.authority.c_str(), addr_text(gateway_).c_str(), how,
           opt_.max_clients, double(opt_.idle_ns) / 1e9);
  probe_ = std::make_unique<Client>();
  probe_->key = kProbeKey;
  probe_->first = true;
  const uint64_t now = monotonic_ns();
  probe_->last_ns = now;
  if (!connect(*probe_, now)) {
    error = std::string("cannot start a ") + (use_h2_ ? "TCP" : "QUIC") + " connection to " + addr_text(gateway_);
    return false;
  }
  return true;
}

bool UdpProxy::connect(Client& c, uint64_t now_ns) {
  c.announced = false;
  c.opened_ns = now_ns;
  ++connections_;
  Client* cp = &c;
  auto to_source = [this, cp](std::span<const uint8_t> p) { deliver(*cp, p); };
  std::string error;
  bool ok;
  if (use_h2_) {
    ++connections_h2_;
    H2MasqueConnection::Setup setup;
    setup.ctx = ssl_ctx_.get();
    setup.server_name = opt_.server_name;
    setup.authority = opt_.authority;
    setup.target_host = opt_.target_host;
    setup.target_port = opt_.target_port;
    auto conn = std::make_unique<H2MasqueConnection>(setup);
    ok = conn->open(gateway_, to_source, now_ns, error);
    c.conn = std::move(conn);
  } else {
    ++connections_h3_;
    MasqueConnection::Setup setup;
    setup.credentials = credentials_.get();
    setup.store = store_.get();
    setup.server_name = opt_.server_name;
    setup.authority = opt_.authority;
    setup.target_host = opt_.target_host;
    setup.target_port = opt_.target_port;
    setup.max_udp_payload = size_t(opt_.mtu) - 28;
    auto conn = std::make_unique<MasqueConnection>();
    ok = conn->open(gateway_, setup, to_source, now_ns, error);
    c.conn = std::move(conn);
  }
  if (!ok) {
    LOG_WARN("CONNECT-UDP to %s: cannot start a %s connection to %s: %s", target().c_str(), use_h2_ ? "TCP" : "QUIC",
             addr_text(gateway_).c_str(), error.c_str());
    c.conn.reset();
    ++failed_;
    backoff(c, now_ns);
    return false;
  }
  c.events = c.conn->events();
  loop_.add(c.conn->fd(), c.events, [this, cp](uint32_t events) {
    const uint64_t now = monotonic_ns();
    if (cp->conn) cp->conn->on_io(events, now);
    progress(cp, now);
  });
  if (c.conn->timer_fd() >= 0)
    loop_.add(c.conn->timer_fd(), EPOLLIN, [this, cp](uint32_t) {
      const uint64_t now = monotonic_ns();
      if (cp->conn) cp->conn->on_timer(now);
      progress(cp, now);
    });
  return true;
}

void UdpProxy::watch(Client& c) {
  if (!c.conn || c.conn->events() == c.events) return;
  c.events = c.conn->events();
  loop_.modify(c.conn->fd(), c.events);
}

bool UdpProxy::fall_back(Client& c, uint64_t now_ns) {
  if (opt_.http != UdpHttp::Auto || !c.conn || std::strcmp(c.conn->protocol(), "h3") != 0 ||
      c.conn->heard_from_gateway())
    return false;
  if (!c.conn->refused_by_icmp() && now_ns < c.opened_ns + kFallbackNs &&
      c.conn->over() != ConnectUdpConnection::End::Timeout)
    return false;
  if (!use_h2_) {
    use_h2_ = true;
    const std::string why = c.conn->refused_by_icmp()
                                ? std::string("answered ICMP port unreachable")
                                : "gave no answer within " + std::to_string(kFallbackNs / 1'000'000'000) + " s";
    if (fallbacks_++ == 0) {
      LOG_WARN("gateway unreachable over HTTP/3 (UDP): using HTTP/2 over TCP to %s (UDP %s %s)",
               addr_text(gateway_).c_str(), addr_text(gateway_).c_str(), why.c_str());
    } else {
      LOG_DEBUG("gateway still unreachable over HTTP/3 (UDP %s): HTTP/2 over TCP again", why.c_str());
    }
  }
  disconnect(c, now_ns);
  connect(c, now_ns);
  return true;
}

void UdpProxy::disconnect(Client& c, uint64_t now_ns) {
  if (!c.conn) return;
  loop_.remove(c.conn->fd());
  if (c.conn->timer_fd() >= 0) loop_.remove(c.conn->timer_fd());
  c.conn->close(now_ns);
  for (size_t d = 0; d < rx_drops_gone_.size(); ++d) rx_drops_gone_[d] += c.conn->drops(ConnectUdpDrop(d));
  capsules_rx_gone_ += c.conn->capsules_rx();
  capsules_skipped_gone_ += c.conn->capsules_skipped();
  waited_gone_ += c.conn->datagrams_waited();
  waiting_dropped_gone_ += c.conn->waiting_dropped();
  c.conn.reset();
}

void UdpProxy::backoff(Client& c, uint64_t now_ns) {
  c.retry_at_ns = now_ns + uint64_t(c.backoff_s * 1e9);
  c.backoff_s = std::min(kMaxBackoffS, c.backoff_s * 2);
}

void UdpProxy::give_up(const std::string& what) {
  if (gave_up_) return;
  gave_up_ = true;
  probing_ = false;
  if (fatal_) fatal_(what);
}

void UdpProxy::progress(Client* c, uint64_t now_ns) {
  if (!c->conn) return;
  if (fall_back(*c, now_ns)) {
    if (!c->conn) return;
  }
  ConnectUdpConnection& conn = *c->conn;
  const char* version = std::strcmp(conn.protocol(), "h2") == 0 ? "HTTP/2" : "HTTP/3";
  if (conn.is_open() && !c->announced) {
    c->announced = true;
    ++accepted_;
    c->backoff_s = 0.5;
    if (c->first || c->key == kProbeKey)
      LOG_INFO("gateway accepted CONNECT-UDP to %s (%s, status %u, request stream %lld, datagram room %zu "
               "bytes); listening on %s",
               target().c_str(), version, unsigned(conn.answer().status), static_cast<long long>(conn.request_stream()),
               conn.max_payload(), opt_.listen.str().c_str());
    else
      LOG_DEBUG("CONNECT-UDP to %s for %s accepted (%s, request stream %lld)", target().c_str(),
                addr_text(c->addr).c_str(), version, static_cast<long long>(conn.request_stream()));
    if (c->first) {
      probing_ = false;
      c->first = false;
    }
    if (!conn.answer().capsule_protocol)
      LOG_WARN("the gateway's 2xx lacks capsule-protocol: ?1 (RFC 9298 3.5); going on");
    c->send_from_ns = now_ns + kHandoverGraceNs;
  }
  if (c->announced && now_ns >= c->send_from_ns) {
    flushing_ = true;
    while (!c->held.empty() && c->conn) {
      std::vector<uint8_t> d = std::move(c->held.front());
      c->held.pop_front();
      send_payload(*c, d, now_ns);
    }
    flushing_ = false;
  }
  if (c->conn && c->conn->over() != ConnectUdpConnection::End::None) {
    connection_ended(c, now_ns);
    return;
  }
  if (c->conn) watch(*c);
}

void UdpProxy::connection_ended(Client* c, uint64_t now_ns) {
  ConnectUdpConnection& conn = *c->conn;
  using End = ConnectUdpConnection::End;
  const bool h2 = std::strcmp(conn.protocol(), "h2") == 0;
  const End end = conn.over();
  const bool first = probing_ && c->first;
  const std::string who = c->key == kProbeKey ? "" : " (local source " + addr_text(c->addr) + ")";
  std::string fatal;
  switch (end) {
    case End::Refused: {
      ++refused_;
      const uint16_t status = conn.answer().status;
      LOG_ERROR("gateway refused CONNECT-UDP to %s: %s (%s)%s", target().c_str(), conn.refusal_text().c_str(),
                h2 ? "HTTP/2" : "HTTP/3", who.c_str());
      std::string advice;
      if (status == 404)
        advice = "no route on the gateway serves " + target() + ": check --target against `dpctl route list` (a "
                 "route is udp+https://NAME:PORT)";
      else if (status == 403)
        advice = "the route exists but this certificate (" + opt_.cert + ") may not use it: add one of its "
                 "identities to the route's allow list (dpctl route add ... --allow) or use a certificate it allows";
      else if (status == 400)
        advice = "the gateway could not read the request: check --target (a DNS name or IPv4 address, and a port)";
      // 5xx (no live agent on the route's tunnel, a target that does not resolve) may mend: retried.
      if (status >= 500) break;
      if (advice.empty()) advice = "the gateway's log says why";
      fatal = "gateway refused CONNECT-UDP to " + target() + ": " + conn.refusal_text() + "; " + advice;
      break;
    }
    case End::NoConnectUdp:
      ++failed_;
      LOG_ERROR("gateway %s: %s%s", opt_.authority.c_str(), conn.detail().c_str(), who.c_str());
      fatal = "gateway " + opt_.authority + ": " + conn.detail() +
              (h2 ? "; point --via at a dptun gateway whose dpctld serves CONNECT-UDP over HTTP/2 on TCP "
                    "(masque_tcp_listen), or use --http 3"
                  : "; point --via at a dptun gateway whose dpctld serves HTTP/3 with CONNECT-UDP");
      break;
    case End::Tls: {
      ++failed_;
      const AgentTlsVerdict v =
          classify_agent_tls(conn.verify_result(), conn.ssl_error(), opt_.server_name, opt_.ca, conn.seen());
      if (v.kind == AgentTlsFailure::Transient) {
        LOG_WARN("TLS with the gateway %s failed: %s%s", addr_text(gateway_).c_str(), conn.detail().c_str(),
                 who.c_str());
      } else {
        LOG_ERROR("TLS with the gateway %s failed (%s): %s%s", addr_text(gateway_).c_str(), v.reason.c_str(),
                  v.advice.c_str(), who.c_str());
        if (v.permanent) fatal = "TLS with the gateway " + opt_.authority + " failed (" + v.reason + "): " + v.advice;
      }
      break;
    }
    case End::Local: break;
    default:
      ++failed_;
      LOG_WARN("CONNECT-UDP to %s through %s: %s%s", target().c_str(), addr_text(gateway_).c_str(),
               conn.detail().c_str(), who.c_str());
      break;
  }
  // --http auto: HTTP/2 got no TCP connection either (the gateway down, not UDP blocked): the next attempt tries
  // HTTP/3 again, so that a gateway that comes back is reached over HTTP/3 where it can be.
  if (opt_.http == UdpHttp::Auto && h2 && use_h2_ && !conn.heard_from_gateway() && end != End::Local) {
    use_h2_ = false;
    LOG_INFO("gateway unreachable over HTTP/2 (TCP) too: the next attempt tries HTTP/3 again");
  }
  if (!c->held.empty()) {
    count(UdpProxyDrop::ConnectionFailed, c->held.size());
    c->held.clear();
  }
  disconnect(*c, now_ns);
  if (first && !fatal.empty()) {
    give_up(fatal);
    return;
  }
  backoff(*c, now_ns);
  if (c->key == kProbeKey) {
    // The probe is retried until the first request has an outcome; after that, sources connect on demand.
    if (!probing_) probe_.reset();
    return;
  }
}

void UdpProxy::on_local(uint64_t now_ns) {
  // Up to kBatch datagrams per recvmmsg, at most 8 calls per wakeup; their packets leave per connection in batches
  // (MasqueConnection::send with `more`), sent once the datagrams read have been handled.
  batching_ = true;
  for (int round = 0; round < 8; ++round) {
    for (size_t i = 0; i < kBatch; ++i) {
      rx_iov_[i] = {buf_.data() + i * kMaxDatagram, kMaxDatagram};
      rx_msgs_[i].msg_hdr = {};
      rx_msgs_[i].msg_hdr.msg_name = &rx_from_[i];
      rx_msgs_[i].msg_hdr.msg_namelen = sizeof rx_from_[i];
      rx_msgs_[i].msg_hdr.msg_iov = &rx_iov_[i];
      rx_msgs_[i].msg_hdr.msg_iovlen = 1;
    }
    const int n = recvmmsg(local_.get(), rx_msgs_.data(), unsigned(kBatch), MSG_DONTWAIT, nullptr);
    if (n <= 0) break;
    for (int i = 0; i < n; ++i)
      from_local(rx_from_[size_t(i)], {buf_.data() + size_t(i) * kMaxDatagram, rx_msgs_[size_t(i)].msg_len}, now_ns);
    if (size_t(n) < kBatch) break;
  }
  batching_ = false;
  for (const uint64_t key : batched_)
    if (auto it = clients_.find(key); it != clients_.end() && it->second->conn) {
      it->second->conn->send_batch();
      watch(*it->second);  // HTTP/2: the socket may now wait to be writable
    }
  batched_.clear();
}

void UdpProxy::from_local(const sockaddr_in& from, std::span<const uint8_t> payload, uint64_t now_ns) {
  const uint64_t key = key_of(from);
  auto it = clients_.find(key);
  if (it == clients_.end()) {
    if (clients_.size() >= opt_.max_clients) {
      count(UdpProxyDrop::ClientsFull);
      return;
    }
    std::unique_ptr<Client> c;
    if (probe_) {
      // The first source takes the connection made at start (or, while that is between attempts, its backoff).
      c = std::move(probe_);
    } else {
      c = std::make_unique<Client>();
    }
    c->key = key;
    c->addr = from;
    it = clients_.emplace(key, std::move(c)).first;
    LOG_DEBUG("local source %s: %s", addr_text(from).c_str(),
              it->second->conn ? "takes the connection made at start" : "a new connection");
  }
  Client& c = *it->second;
  c.last_ns = now_ns;
  if (!c.conn) {
    if (now_ns < c.retry_at_ns || !connect(c, now_ns)) {
      count(UdpProxyDrop::ConnectionFailed);
      return;
    }
  }
  send_payload(c, payload, now_ns);
}

void UdpProxy::send_payload(Client& c, std::span<const uint8_t> payload, uint64_t now_ns) {
  if (!flushing_ && (!c.conn->is_open() || now_ns < c.send_from_ns || !c.held.empty())) {  // in order behind those waiting
    if (c.held.size() >= kHeld) {
      count(UdpProxyDrop::HeldFull);
      return;
    }
    c.held.emplace_back(payload.begin(), payload.end());
    return;
  }
  if (batching_ && std::find(batched_.begin(), batched_.end(), c.key) == batched_.end()) batched_.push_back(c.key);
  switch (c.conn->send(payload, now_ns, batching_)) {
    case ConnectUdpConnection::Send::Sent:
      ++datagrams_tx_;
      bytes_tx_ += payload.size();
      break;
    case ConnectUdpConnection::Send::TooBig:
      count(UdpProxyDrop::TooLarge);
      LOG_DEBUG("a %zu-byte datagram from %s does not fit the connection's datagram room (%zu bytes): dropped",
                payload.size(), addr_text(c.addr).c_str(), c.conn->max_payload());
      break;
    case ConnectUdpConnection::Send::Congested: count(UdpProxyDrop::Congested); break;
    case ConnectUdpConnection::Send::NotOpen:
    case ConnectUdpConnection::Send::Closed: count(UdpProxyDrop::ConnectionFailed); break;
  }
  if (!flushing_) watch(c);  // HTTP/2: the socket may now wait to be writable
  // A connection that ended while sending is handled by its next event (its timer fires at once).
}

void UdpProxy::deliver(Client& c, std::span<const uint8_t> payload) {
  if (c.key == kProbeKey) {  // the probe has no source yet: nobody to give it to
    count(UdpProxyDrop::LocalSend);
    return;
  }
  c.last_ns = monotonic_ns();
  if (sendto(local_.get(), payload.data(), payload.size(), MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&c.addr),
             sizeof c.addr) != ssize_t(payload.size())) {
    count(UdpProxyDrop::LocalSend);
    return;
  }
  ++datagrams_rx_;
  bytes_rx_ += payload.size();
}

void UdpProxy::tick(uint64_t now_ns) {
  if (gave_up_) return;
  // The first request is retried with backoff until it has an outcome.
  if (probe_) {
    if (probe_->conn) {
      probe_->conn->check_deadline(now_ns);
      progress(probe_.get(), now_ns);
    } else if (probing_ && now_ns >= probe_->retry_at_ns) {
      connect(*probe_, now_ns);
    }
  }
  if (gave_up_) return;
  for (auto it = clients_.begin(); it != clients_.end();) {
    Client& c = *it->second;
    if (c.conn) {
      c.conn->check_deadline(now_ns);
      progress(&c, now_ns);
    }
    if (now_ns - c.last_ns >= opt_.idle_ns) {
      LOG_DEBUG("local source %s idle for %.0f s: its connection closed", addr_text(c.addr).c_str(),
                double(opt_.idle_ns) / 1e9);
      ++idle_closed_;
      disconnect(c, now_ns);
      it = clients_.erase(it);
      continue;
    }
    ++it;
  }
}

std::string UdpProxy::stats_json() const {
  std::array<uint64_t, size_t(ConnectUdpDrop::Count)> rx = rx_drops_gone_;
  uint64_t capsules = capsules_rx_gone_, skipped = capsules_skipped_gone_, waited = waited_gone_,
           waiting_dropped = waiting_dropped_gone_, open_h3 = 0, open_h2 = 0;
  auto add = [&](const Client& c) {
    if (!c.conn) return;
    for (size_t d = 0; d < rx.size(); ++d) rx[d] += c.conn->drops(ConnectUdpDrop(d));
    capsules += c.conn->capsules_rx();
    skipped += c.conn->capsules_skipped();
    waited += c.conn->datagrams_waited();
    waiting_dropped += c.conn->waiting_dropped();
    if (c.conn->is_open()) ++(std::strcmp(c.conn->protocol(), "h2") == 0 ? open_h2 : open_h3);
  };
  if (probe_) add(*probe_);
  for (const auto& [key, c] : clients_) add(*c);
  JsonWriter j;
  j.begin_object()
      .field("mode", "udp")
      .field("target", target())
      .field("gateway", addr_text(gateway_))
      .field("http", udp_http_name(opt_.http))
      .field("protocol", use_h2_ ? "h2" : "h3")
      .field("fallbacks", fallbacks_)
      .field("sources", uint64_t(clients_.size()))
      .field("connections", connections_)
      .field("connections_h3", connections_h3_)
      .field("connections_h2", connections_h2_)
      .field("open_h3", open_h3)
      .field("open_h2", open_h2)
      .field("accepted", accepted_)
      .field("refused", refused_)
      .field("failed", failed_)
      .field("idle_closed", idle_closed_)
      .field("datagrams_tx", datagrams_tx_)
      .field("datagrams_rx", datagrams_rx_)
      .field("datagrams_waited", waited)
      .field("waiting_dropped", waiting_dropped)
      .field("bytes_tx", bytes_tx_)
      .field("bytes_rx", bytes_rx_)
      .field("capsules_rx", capsules)
      .field("capsules_skipped", skipped);
  j.key("drops").begin_object();
  for (size_t d = 0; d < drops_.size(); ++d) j.field(udp_proxy_drop_name(UdpProxyDrop(d)), drops_[d]);
  for (size_t d = 0; d < rx.size(); ++d) j.field(connect_udp_drop_name(ConnectUdpDrop(d)), rx[d]);
  j.end_object().end_object();
  return j.str();
}

}  // namespace dptun
