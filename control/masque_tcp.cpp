#include "control/masque_tcp.hpp"

#include <openssl/err.h>
#include <sys/epoll.h>

#include <cstring>

#include "common/clock.hpp"
#include "common/log.hpp"

namespace dptun {

namespace {
constexpr size_t kOutChunk = 64 * 1024;      // protocol output pulled from a session at a time
constexpr size_t kReadPerEvent = 256 * 1024;  // bytes read per wakeup before others get their turn
}  // namespace

MasqueTcpServer::MasqueTcpServer(EventLoop& loop, const TlsServer& tls, AgentListener::Limits limits, Callbacks cb)
    : loop_(loop),
      cb_(std::move(cb)),
      listener_(
          loop, tls, limits,
          [this](Fd fd, SslPtr ssl, const HandshakeEvidence& ev) { on_established(std::move(fd), std::move(ssl), ev); },
          [this](const HandshakeEvidence& ev, HandshakeFailure c) {
            if (cb_.failed) cb_.failed(ev, c);
          }) {}

MasqueTcpServer::~MasqueTcpServer() {
  for (auto& [id, c] : conns_)
    if (c->fd) loop_.remove(c->fd.get());
}

MasqueTcpServer::Conn* MasqueTcpServer::find(uint64_t id) {
  auto it = conns_.find(id);
  return it == conns_.end() || it->second->dead ? nullptr : it->second.get();
}

MasqueClientView MasqueTcpServer::view_of(const Conn& c) const {
  MasqueClientView v;
  v.id = c.id;
  v.peer = c.evidence.client;
  v.certificate = SSL_get0_peer_certificate(c.ssl.get());
  v.chain = SSL_get_peer_cert_chain(c.ssl.get());
  v.subject = c.evidence.certificate ? c.evidence.certificate->subject : std::string("?");
  v.protocol = c.session ? c.session->protocol() : "http/1.1";
  return v;
}

std::optional<MasqueClientView> MasqueTcpServer::view(uint64_t conn) const {
  auto it = conns_.find(conn);
  if (it == conns_.end() || it->second->dead) return std::nullopt;
  return view_of(*it->second);
}

bool MasqueTcpServer::waiting(uint64_t conn, int32_t stream) const {
  auto it = conns_.find(conn);
  return it != conns_.end() && !it->second->dead && it->second->session->waiting(stream);
}

void MasqueTcpServer::on_established(Fd fd, SslPtr ssl, const HandshakeEvidence& ev) {
  if (cb_.established) cb_.established(ev);
  size_t from_source = 0;
  for (const auto& [id, c] : conns_) from_source += !c->dead && c->evidence.client.ip == ev.client.ip;
  if (conns_.size() >= kMaxConnections || from_source >= kMaxPerSource) {
    closed_.over_limit++;
    LOG_WARN("CONNECT-UDP client %s: over the connection limit (%zu in all, %zu from one address); closed",
             ev.client.str().c_str(), kMaxConnections, kMaxPerSource);
    return;  // fd and ssl close here
  }
  auto c = std::make_unique<Conn>();
  c->id = cb_.next_id ? cb_.next_id() : conns_.size() + 1;
  c->fd = std::move(fd);
  c->ssl = std::move(ssl);
  c->evidence = ev;
  c->idle_since_ns = monotonic_ns();
  SSL_set_mode(c->ssl.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  const unsigned char* alpn = nullptr;
  unsigned alpn_len = 0;
  SSL_get0_alpn_selected(c->ssl.get(), &alpn, &alpn_len);
  const bool h2 = alpn_len == 2 && memcmp(alpn, "h2", 2) == 0;
  const uint64_t id = c->id;
  MasqueTcpSession::Callbacks scb;
  scb.connect_udp = [this, id](int32_t stream, const ConnectUdpRequest& req) {
    Conn* cc = find(id);
    if (!cc || !cb_.connect_udp) return ConnectUdpAnswer{500, "proxy_internal_error", {}};
    return cb_.connect_udp(view_of(*cc), stream, req);
  };
  scb.bad_request = [this, id](int32_t stream, uint16_t status, const std::string& why) {
    if (Conn* cc = find(id); cc && cb_.bad_request) cb_.bad_request(view_of(*cc), stream, status, why);
  };
  scb.datagram = [this, id](int32_t stream, std::span<const uint8_t> payload) {
    Conn* cc = find(id);
    if (!cc) return;
    auto& list = cc->batch[stream];
    list.emplace_back(payload.begin(), payload.end());
    if (list.size() >= kMaxBatch) flush_batch(*cc);
  };
  scb.tunnel_ended = [this, id](int32_t stream, const std::string& why) {
    Conn* cc = find(id);
    if (!cc) return;
    flush_batch(*cc);  // what it sent before it ended goes first
    if (cb_.tunnel_ended) cb_.tunnel_ended(view_of(*cc), stream, why);
  };
  c->session = h2 ? make_h2_session(std::move(scb)) : make_h1_session(std::move(scb));
  if (!c->session) {
    LOG_ERROR("CONNECT-UDP client %s: cannot make an HTTP/2 session (out of memory?); closed", ev.client.str().c_str());
    return;
  }
  (h2 ? closed_.connections_h2 : closed_.connections_h1)++;
  const int raw = c->fd.get();
  Conn& ref = *c;
  conns_[id] = std::move(c);
  loop_.add(raw, EPOLLIN, [this, id](uint32_t events) { on_event(id, events); });
  // HTTP/2: our SETTINGS go first (RFC 9113 3.4); whatever the client sent with its Finished is read too.
  write_some(ref);
  read_some(ref);
  reap();
}

void MasqueTcpServer::on_event(uint64_t id, uint32_t events) {
  Conn* c = find(id);
  if (!c) return;
  if (events & EPOLLOUT) write_some(*c);
  if (!c->dead && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) read_some(*c);
  reap();
}

void MasqueTcpServer::read_some(Conn& c) {
  uint8_t buf[16384];
  size_t total = 0;
  bool eof = false, error = false;
  while (!c.dead && total < kReadPerEvent && !c.session->closing()) {
    ERR_clear_error();
    const int n = SSL_read(c.ssl.get(), buf, sizeof buf);
    if (n > 0) {
      total += size_t(n);
      c.session->feed({buf, size_t(n)});
      continue;
    }
    const int err = SSL_get_error(c.ssl.get(), n);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) break;
    if (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) eof = true;
    else error = true;
    break;
  }
  ERR_clear_error();
  if (c.dead) return;
  flush_batch(c);
  if (eof || error) {
    c.session->peer_closed();
    close(c);
    return;
  }
  write_some(c);
  after_activity(c);
  // More to read than one wakeup takes: the next loop iteration comes back (level-triggered epoll; data
  // OpenSSL holds decrypted already is read on the next event or tick).
  if (!c.dead && SSL_pending(c.ssl.get()) > 0 && !c.session->closing()) read_some(c);
}

void MasqueTcpServer::flush_batch(Conn& c) {
  if (c.batch.empty()) return;
  auto batch = std::move(c.batch);
  c.batch.clear();
  const MasqueClientView v = view_of(c);
  for (auto& [stream, payloads] : batch) {
    for (size_t i = 0; i < payloads.size(); i += kMaxBatch) {
      std::vector<std::vector<uint8_t>> part;
      for (size_t k = i; k < payloads.size() && k < i + kMaxBatch; ++k) part.push_back(std::move(payloads[k]));
      if (cb_.datagrams) cb_.datagrams(v, stream, std::move(part));
    }
  }
}

void MasqueTcpServer::write_some(Conn& c) {
  for (;;) {
    if (c.out_off == c.out.size()) {
      c.out.clear();
      c.out_off = 0;
      c.session->take_output(c.out, kOutChunk);
      if (c.out.empty()) break;
    }
    ERR_clear_error();
    const int n = SSL_write(c.ssl.get(), c.out.data() + c.out_off, int(c.out.size() - c.out_off));
    if (n > 0) {
      c.out_off += size_t(n);
      continue;
    }
    const int err = SSL_get_error(c.ssl.get(), n);
    ERR_clear_error();
    if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
      if (!c.want_write) loop_.modify(c.fd.get(), EPOLLIN | EPOLLOUT);
      c.want_write = true;
      return;
    }
    c.session->peer_closed();
    close(c);
    return;
  }
  if (c.want_write) loop_.modify(c.fd.get(), EPOLLIN);
  c.want_write = false;
  if (c.session->closing()) close(c);  // everything it had to say is sent
}

void MasqueTcpServer::after_activity(Conn& c) {
  if (c.dead) return;
  if (c.session->tunnels() + c.session->waiting() > 0)
    c.idle_since_ns = 0;
  else if (!c.idle_since_ns)
    c.idle_since_ns = monotonic_ns();
}

void MasqueTcpServer::close(Conn& c) {
  if (c.dead) return;
  // Every tunnel still open ends with the connection (its session removed), whichever way it closes: nghttp2's GOAWAY
  // after a connection error, a failed read, the idle timer. (peer_closed() ends each tunnel once.)
  c.session->peer_closed();
  c.dead = true;
  loop_.remove(c.fd.get());
  SSL_shutdown(c.ssl.get());  // close_notify, best effort (non-blocking)
  ERR_clear_error();
}

void MasqueTcpServer::reap() {
  for (auto it = conns_.begin(); it != conns_.end();) {
    if (!it->second->dead) {
      ++it;
      continue;
    }
    closed_.capsules += it->second->session->stats();
    it = conns_.erase(it);
  }
}

void MasqueTcpServer::tick(uint64_t now_ns) {
  listener_.tick(now_ns);
  for (auto& [id, c] : conns_) {
    if (c->dead) continue;
    after_activity(*c);
    if (c->idle_since_ns && now_ns - c->idle_since_ns > kIdleNs) {
      LOG_INFO("CONNECT-UDP client %s (%s): no CONNECT-UDP stream for %.0f s; closed", c->evidence.client.str().c_str(),
               c->session->protocol(), double(kIdleNs) / 1e9);
      closed_.idle_closed++;
      c->session->peer_closed();
      close(*c);
    }
  }
  reap();
}

bool MasqueTcpServer::deliver(uint64_t conn, int32_t stream, std::span<const uint8_t> payload) {
  Conn* c = find(conn);
  if (!c || !c->session->send_datagram(stream, payload)) return false;
  if (!c->want_write) write_some(*c);
  reap();
  return true;
}

void MasqueTcpServer::cut(uint64_t conn, int32_t stream) {
  Conn* c = find(conn);
  if (!c) return;
  flush_batch(*c);  // what the client sent before its session was revoked goes first
  c->session->cut(stream);
  write_some(*c);
  if (c) after_activity(*c);
  reap();
}

void MasqueTcpServer::complete(uint64_t conn, int32_t stream, const ConnectUdpAnswer& a) {
  Conn* c = find(conn);
  if (!c) return;
  c->session->complete(stream, a);
  flush_batch(*c);  // capsules that came with an HTTP/1.1 request are read on its 2xx: they go now
  write_some(*c);
  after_activity(*c);
  reap();
}

MasqueTcpServer::Stats MasqueTcpServer::stats() const {
  Stats s = closed_;
  for (const auto& [id, c] : conns_) s.capsules += c->session->stats();
  return s;
}

}  // namespace dptun
