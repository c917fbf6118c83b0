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
  if (!(credentials_ = load_quic_credentials(opt_.cert, opt_.key, error))) return false;
  if (!(store_ = load_ca_store(opt_.ca, error))) return false;
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
  LOG_INFO("dpagent udp: %s -> CONNECT-UDP %s through https://%s (%s), HTTP/3; at most %u local sources, idle "
           "timeout %.0f s",
           opt_.listen.str().c_str(), target().c_str(), opt_.authority.c_str(), addr_text(gateway_).c_str(),
           opt_.max_clients, double(opt_.idle_ns) / 1e9);
  probe_ = std::make_unique<Client>();
  probe_->key = kProbeKey;
  probe_->first = true;
  const uint64_t now = monotonic_ns();
  probe_->last_ns = now;
  if (!connect(*probe_, now)) {
    error = "cannot start a QUIC connection to " + addr_text(gateway_);
    return false;
  }
  return true;
}

bool UdpProxy::connect(Client& c, uint64_t now_ns) {
  MasqueConnection::Setup setup;
  setup.credentials = credentials_.get();
  setup.store = store_.get();
  setup.server_name = opt_.server_name;
  setup.authority = opt_.authority;
  setup.target_host = opt_.target_host;
  setup.target_port = opt_.target_port;
  setup.max_udp_payload = size_t(opt_.mtu) - 28;
  c.conn = std::make_unique<MasqueConnection>();
  c.announced = false;
  ++connections_;
  Client* cp = &c;
  std::string error;
  if (!c.conn->open(gateway_, setup, [this, cp](std::span<const uint8_t> p) { deliver(*cp, p); }, now_ns, error)) {
    LOG_WARN("CONNECT-UDP to %s: cannot start a QUIC connection to %s: %s", target().c_str(),
             addr_text(gateway_).c_str(), error.c_str());
    c.conn.reset();
    ++failed_;
    backoff(c, now_ns);
    return false;
  }
  loop_.add(c.conn->fd(), EPOLLIN, [this, cp](uint32_t) {
    const uint64_t now = monotonic_ns();
    if (cp->conn) cp->conn->on_readable(now);
    progress(cp, now);
  });
  loop_.add(c.conn->timer_fd(), EPOLLIN, [this, cp](uint32_t) {
    const uint64_t now = monotonic_ns();
    if (cp->conn) cp->conn->on_timer(now);
    progress(cp, now);
  });
  return true;
}

void UdpProxy::disconnect(Client& c, uint64_t now_ns) {
  if (!c.conn) return;
  loop_.remove(c.conn->fd());
  loop_.remove(c.conn->timer_fd());
  c.conn->close(now_ns);
  for (size_t d = 0; d < h3_drops_gone_.size(); ++d)
    h3_drops_gone_[d] += c.conn->h3().drops(H3ConnectUdpClient::Drop(d));
  capsules_rx_gone_ += c.conn->stats().capsules_rx;
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
  MasqueConnection& conn = *c->conn;
  if (conn.is_open() && !c->announced) {
    c->announced = true;
    ++accepted_;
    c->backoff_s = 0.5;
    if (c->first || c->key == kProbeKey)
      LOG_INFO("gateway accepted CONNECT-UDP to %s (HTTP/3, status %u, request stream %lld, datagram room %zu "
               "bytes); listening on %s",
               target().c_str(), unsigned(conn.h3().answer().status), static_cast<long long>(conn.h3().request_stream()),
               conn.max_payload(), opt_.listen.str().c_str());
    else
      LOG_DEBUG("CONNECT-UDP to %s for %s accepted (request stream %lld)", target().c_str(),
                addr_text(c->addr).c_str(), static_cast<long long>(conn.h3().request_stream()));
    if (c->first) {
      probing_ = false;
      c->first = false;
    }
    if (!conn.h3().answer().capsule_protocol)
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
  if (c->conn && c->conn->over() != MasqueConnection::End::None) connection_ended(c, now_ns);
}

void UdpProxy::connection_ended(Client* c, uint64_t now_ns) {
  MasqueConnection& conn = *c->conn;
  using End = MasqueConnection::End;
  const End end = conn.over();
  const bool first = probing_ && c->first;
  const std::string who = c->key == kProbeKey ? "" : " (local source " + addr_text(c->addr) + ")";
  std::string fatal;
  switch (end) {
    case End::Refused: {
      ++refused_;
      const uint16_t status = conn.h3().answer().status;
      LOG_ERROR("gateway refused CONNECT-UDP to %s: %s%s", target().c_str(), conn.h3().refusal_text().c_str(),
                who.c_str());
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
      fatal = "gateway refused CONNECT-UDP to " + target() + ": " + conn.h3().refusal_text() + "; " + advice;
      break;
    }
    case End::NoConnectUdp:
      ++failed_;
      LOG_ERROR("gateway %s: %s%s", opt_.authority.c_str(), conn.detail().c_str(), who.c_str());
      fatal = "gateway " + opt_.authority + ": " + conn.detail() +
              "; point --via at a dptun gateway whose dpctld serves HTTP/3 with CONNECT-UDP";
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
    if (auto it = clients_.find(key); it != clients_.end() && it->second->conn) it->second->conn->send_batch();
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
    case MasqueConnection::Send::Sent:
      ++datagrams_tx_;
      bytes_tx_ += payload.size();
      break;
    case MasqueConnection::Send::TooBig:
      count(UdpProxyDrop::TooLarge);
      LOG_DEBUG("a %zu-byte datagram from %s does not fit the connection's datagram room (%zu bytes): dropped",
                payload.size(), addr_text(c.addr).c_str(), c.conn->max_payload());
      break;
    case MasqueConnection::Send::Congested: count(UdpProxyDrop::Congested); break;
    case MasqueConnection::Send::NotOpen:
    case MasqueConnection::Send::Closed: count(UdpProxyDrop::ConnectionFailed); break;
  }
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
  std::array<uint64_t, size_t(H3ConnectUdpClient::Drop::Count)> h3 = h3_drops_gone_;
  uint64_t capsules = capsules_rx_gone_;
  auto add = [&](const Client& c) {
    if (!c.conn) return;
    for (size_t d = 0; d < h3.size(); ++d) h3[d] += c.conn->h3().drops(H3ConnectUdpClient::Drop(d));
    capsules += c.conn->stats().capsules_rx;
  };
  if (probe_) add(*probe_);
  for (const auto& [key, c] : clients_) add(*c);
  JsonWriter j;
  j.begin_object()
      .field("mode", "udp")
      .field("target", target())
      .field("gateway", addr_text(gateway_))
      .field("sources", uint64_t(clients_.size()))
      .field("connections", connections_)
      .field("accepted", accepted_)
      .field("refused", refused_)
      .field("failed", failed_)
      .field("idle_closed", idle_closed_)
      .field("datagrams_tx", datagrams_tx_)
      .field("datagrams_rx", datagrams_rx_)
      .field("bytes_tx", bytes_tx_)
      .field("bytes_rx", bytes_rx_)
      .field("capsules_rx", capsules);
  j.key("drops").begin_object();
  for (size_t d = 0; d < drops_.size(); ++d) j.field(udp_proxy_drop_name(UdpProxyDrop(d)), drops_[d]);
  for (size_t d = 0; d < h3.size(); ++d) j.field(H3ConnectUdpClient::drop_name(H3ConnectUdpClient::Drop(d)), h3[d]);
  j.end_object().end_object();
  return j.str();
}

}  // namespace dptun
