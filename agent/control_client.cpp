#include "agent/control_client.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include "agent/agent_ssl.hpp"
#include "agent/tls_failure.hpp"
#include "common/clock.hpp"
#include "common/json_fields.hpp"
#include "common/log.hpp"
#include "common/openssl_errors.hpp"
#include "common/unix_socket.hpp"
#include "control/control_protocol.hpp"
#include "proto/control_names.hpp"

namespace dptun {

using nlohmann::json;

static std::string cert_name(X509_NAME* n) {
  char buf[512];
  X509_NAME_oneline(n, buf, sizeof buf);
  return buf;
}

ServerCertSeen describe_server_cert(X509* cert) {
  ServerCertSeen seen;
  seen.subject = cert_name(X509_get_subject_name(cert));
  seen.issuer = cert_name(X509_get_issuer_name(cert));
  if (auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr))) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      GENERAL_NAME* g = sk_GENERAL_NAME_value(sans, i);
      if (g->type == GEN_DNS) {
        seen.names.push_back("DNS:" + std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(g->d.dNSName)),
                                                  size_t(ASN1_STRING_length(g->d.dNSName))));
      } else if (g->type == GEN_IPADD && ASN1_STRING_length(g->d.iPAddress) == 4) {
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, ASN1_STRING_get0_data(g->d.iPAddress), ip, sizeof ip);
        seen.names.push_back(std::string("IP:") + ip);
      }
    }
    GENERAL_NAMES_free(sans);
  }
  if (BIO* b = BIO_new(BIO_s_mem())) {
    ASN1_TIME_print(b, X509_get0_notAfter(cert));
    char* data = nullptr;
    long n = BIO_get_mem_data(b, &data);
    seen.not_after.assign(data, size_t(n));
    BIO_free(b);
  }
  return seen;
}

void ControlClient::SslFree::operator()(SSL* s) const { SSL_free(s); }

ControlClient::ControlClient(EventLoop& loop, ControlOptions opt, Deliver deliver, Fatal fatal)
    : loop_(loop),
      opt_(std::move(opt)),
      deliver_(std::move(deliver)),
      fatal_(std::move(fatal)) {}

ControlClient::~ControlClient() { close_connection(); }

bool ControlClient::load(std::string& error) {
  if (!files_readable({&opt_.cert, &opt_.key, &opt_.ca}, error)) return false;
  if (!(ctx_ = make_agent_ssl_ctx(opt_.cert, opt_.key, opt_.ca, error))) return false;
  if (opt_.quic && !(quic_credentials_ = load_quic_credentials(opt_.cert, opt_.key, error))) return false;
  return true;
}

bool ControlClient::start(std::string& error) {
  if (!resolver_.start(loop_, error)) return false;
  attempt();
  return true;
}

void ControlClient::tls_failed(long verify_result, unsigned long ssl_error, const std::string& detail) {
  const std::string& name = opt_.server_name.empty() ? opt_.server_host : opt_.server_name;
  AgentTlsVerdict v = classify_agent_tls(verify_result, ssl_error, name, opt_.ca, seen_);
  if (v.kind == AgentTlsFailure::Transient) {
    LOG_WARN("TLS with dpctld %s:%u failed: %s", opt_.server_host.c_str(), opt_.server_port, detail.c_str());
    return;
  }
  LOG_ERROR("TLS with dpctld %s:%u failed (%s): %s", opt_.server_host.c_str(), opt_.server_port, v.reason.c_str(),
            v.advice.c_str());
  if (v.permanent && !registrations_) give_up(v.reason + ": " + v.advice);
}

void ControlClient::give_up(const std::string& reason) {
  state_ = State::GaveUp;
  if (fatal_) fatal_(reason);
}

// A name is resolved at every attempt, on the resolver thread: a slow DNS server never holds up the data path.
void ControlClient::attempt() {
  state_ = State::Resolving;
  struct Resolution {
    std::vector<sockaddr_in> addresses;
    std::string error;
  };
  auto res = std::make_shared<Resolution>();
  resolver_.submit(
      [res, host = opt_.server_host, port = opt_.server_port] {
        addrinfo hints{};
        hints.ai_family = AF_INET;
        hints.ai_socktype = SOCK_STREAM;
        addrinfo* list = nullptr;
        if (int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &list); rc != 0) {
          res->error = "cannot resolve '" + host + "': " + gai_strerror(rc);
          return;
        }
        for (addrinfo* ai = list; ai; ai = ai->ai_next)
          res->addresses.push_back(*reinterpret_cast<const sockaddr_in*>(ai->ai_addr));
        freeaddrinfo(list);
        if (res->addresses.empty()) res->error = "no IPv4 address for '" + host + "'";
      },
      [this, res] { resolved(std::move(res->addresses), res->error, monotonic_ns()); });
}

void ControlClient::resolved(std::vector<sockaddr_in> addresses, const std::string& error, uint64_t now_ns) {
  if (addresses.empty()) {
    LOG_WARN("dpctld %s:%u: %s", opt_.server_host.c_str(), opt_.server_port, error.c_str());
    retry(now_ns);
    return;
  }
  addresses_ = std::move(addresses);
  next_address_ = 0;
  connect_next(now_ns);
}

// Connects to the next of the name's addresses (5 s each, tick() enforces it); when none is left, says why the
// last one failed and tries again later.
void ControlClient::connect_next(uint64_t now_ns) {
  while (next_address_ < addresses_.size()) {
    const sockaddr_in& sin = addresses_[next_address_++];
    char ip[INET_ADDRSTRLEN] = "?";
    inet_ntop(AF_INET, &sin.sin_addr, ip, sizeof ip);
    peer_ = ip;
    if (opt_.quic) {  // UDP: "connecting" is the QUIC handshake (10 s, like a TLS handshake)
      Fd fd(socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      if (!fd || connect(fd.get(), reinterpret_cast<const sockaddr*>(&sin), sizeof sin) != 0 ||
          !loop_.add(fd.get(), EPOLLIN, [this](uint32_t events) { on_event(events); })) {
        connect_error_ = peer_ + ": UDP socket: " + strerror(errno);
        continue;
      }
      fd_ = std::move(fd);
      const std::string& name = opt_.server_name.empty() ? opt_.server_host : opt_.server_name;
      QuicControlConnection::Setup setup{quic_credentials_.get(), SSL_CTX_get_cert_store(ctx_.get()), name, opt_.tunnel,
                                         kMaxLine, size_t(opt_.underlay_mtu) - 28};  // less outer IPv4 and UDP
      quic_ = std::make_unique<QuicControlConnection>();
      std::string error;
      if (!quic_->open(fd_.get(), setup, now_ns, error)) {
        connect_error_ = peer_ + ": " + error;
        close_connection();
        continue;
      }
      // ngtcp2's timers (retransmissions, ACK delay, keep-alive, idle timeout) when they are due.
      if (!loop_.add(quic_->timer_fd(), EPOLLIN, [this](uint32_t) {
            if (!quic_) return;
            const uint64_t now = monotonic_ns();
            quic_progress(quic_->on_timer(now), now);
          })) {
        connect_error_ = peer_ + ": epoll: " + strerror(errno);
        close_connection();
        continue;
      }
      state_ = State::Handshaking;
      deadline_ns_ = now_ns + 10 * kNsPerSec;
      return;
    }
    Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd || (connect(fd.get(), reinterpret_cast<const sockaddr*>(&sin), sizeof sin) != 0 && errno != EINPROGRESS)) {
      connect_error_ = peer_ + ": connect: " + strerror(errno);
      continue;
    }
    if (!loop_.add(fd.get(), EPOLLOUT, [this](uint32_t events) { on_event(events); })) {
      connect_error_ = peer_ + ": epoll: " + strerror(errno);
      continue;
    }
    fd_ = std::move(fd);
    state_ = State::Connecting;
    deadline_ns_ = now_ns + 5 * kNsPerSec;
    return;
  }
  LOG_WARN("dpctld %s:%u: %s", opt_.server_host.c_str(), opt_.server_port, connect_error_.c_str());
  retry(now_ns);
}

void ControlClient::on_event(uint32_t events) {
  const uint64_t now = monotonic_ns();
  if (quic_) {
    quic_progress(quic_->on_readable(now), now);
    return;
  }
  switch (state_) {
    case State::Connecting: connect_done(now); break;
    case State::Handshaking: handshake(now); break;
    case State::Registering:
    case State::Registered:
      if (events & EPOLLOUT) send_line({}, now);
      if (fd_ && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) read_some(now);
      break;
    default: break;
  }
}

void ControlClient::connect_done(uint64_t now_ns) {
  int soerr = 0;
  socklen_t len = sizeof soerr;
  if (getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) soerr = errno;
  if (soerr) {
    connect_error_ = peer_ + ": connect: " + strerror(soerr);
    close_connection();
    connect_next(now_ns);
    return;
  }
  int one = 1;
  setsockopt(fd_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ssl_.reset(SSL_new(ctx_.get()));
  SSL* ssl = ssl_.get();
  SSL_set_fd(ssl, fd_.get());
  SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // The tunnel goes in the SNI: dpctld can name it even when the handshake fails.
  agent_ssl_prepare(ssl, opt_.server_name.empty() ? opt_.server_host : opt_.server_name, opt_.tunnel, &seen_);
  state_ = State::Handshaking;
  deadline_ns_ = now_ns + 10 * kNsPerSec;
  handshake(now_ns);
}

void ControlClient::handshake(uint64_t now_ns) {
  ERR_clear_error();
  const int r = SSL_connect(ssl_.get());
  if (r != 1) {
    const int err = SSL_get_error(ssl_.get(), r);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      loop_.modify(fd_.get(), err == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT);
      return;
    }
    handshake_failed();
    retry(now_ns);
    return;
  }
  state_ = State::Registering;
  deadline_ns_ = now_ns + 15 * kNsPerSec;
  send_line(registration_line(), now_ns);
}

std::string ControlClient::registration_line() const {
  json reg{{"type", name_of(AgentMessageType::Register)}, {"version", kControlProtocolVersion}, {"tunnel", opt_.tunnel},
           {"weight", opt_.weight}, {"role", role_name(opt_.visitor)}};
  if (!opt_.agent_name.empty()) reg["name"] = opt_.agent_name;
  if (opt_.visitor && !opt_.service.empty()) reg["service"] = opt_.service;
  if (opt_.pair_data) reg["features"] = json::array({"pair_data"});
  return reg.dump();
}

void ControlClient::quic_progress(bool alive, uint64_t now_ns) {
  if (!alive) {
    if (state_ == State::Registered && handed_over_) {
      const bool reset = quic_->stateless_reset();
      LOG_WARN("QUIC connection %s:%u carrying the tunnel's data ended: %s; registering again%s", peer_.c_str(),
               unsigned(opt_.server_port), quic_->detail().c_str(), reset ? " now" : "");
      // A Stateless Reset says the gateway lost the connection (dpgw restarted): nothing to wait for.
      retry(now_ns, reset);
      return;
    }
    if (state_ == State::Registered) {
      LOG_WARN("dpctld: %s", quic_->detail().c_str());
      lost(now_ns);
      return;
    }
    seen_ = quic_->seen();  // for the advice
    if (quic_->verify_result() != X509_V_OK || quic_->ssl_error())
      tls_failed(quic_->verify_result(), quic_->ssl_error(), quic_->detail());
    else
      LOG_WARN("dpctld %s:%u: %s", opt_.server_host.c_str(), opt_.server_port, quic_->detail().c_str());
    retry(now_ns);
    return;
  }
  if (state_ == State::Handshaking && quic_->handshake_done()) {
    state_ = State::Registering;
    deadline_ns_ = now_ns + 15 * kNsPerSec;
    quic_->send_line(registration_line());
  }
  got_lines(quic_->take_lines(), now_ns);
  if (!quic_) return;  // a refusal or an unusable reply closed it
  if (quic_->line_too_long()) {
    LOG_ERROR("dpctld %s:%u sent a line over %zu bytes; dropping the connection", opt_.server_host.c_str(),
              opt_.server_port, kMaxLine);
    retry(now_ns);
    return;
  }
  if (!quic_->flush(now_ns)) quic_progress(false, now_ns);
}

// Lines from dpctld: the answer to the registration, then pongs (any line says dpctld is there).
void ControlClient::got_lines(std::vector<std::string> lines, uint64_t now_ns) {
  for (std::string& line : lines) {
    if (state_ == State::Registering) {
      registration_reply(line, now_ns);
      if (state_ != State::Registered) break;  // refused or unusable: the connection is gone
    } else {
      last_heard_ns_ = now_ns;  // a pong, or anything else dpctld says: it is there
      if (message_) message_(line, now_ns);
    }
  }
  for (std::string& line : lines) OPENSSL_cleanse(line.data(), line.size());
}

void ControlClient::handshake_failed() {
  const long v = SSL_get_verify_result(ssl_.get());
  const unsigned long e = ERR_peek_error();
  tls_failed(v, e,
             (v != X509_V_OK ? std::string("server certificate: ") + X509_verify_cert_error_string(v) + "; " : "") +
                 openssl_errors());
}

bool ControlClient::send_message(const std::string& line, uint64_t now_ns) {
  if (state_ != State::Registered || handed_over_) return false;
  send_line(line, now_ns);
  return true;
}

// Queues `line` (none: only what waits) and writes what the socket takes.
void ControlClient::send_line(const std::string& line, uint64_t now_ns) {
  if (quic_) {
    if (!line.empty()) quic_->send_line(line);
    if (!quic_->flush(now_ns)) quic_progress(false, now_ns);
    return;
  }
  if (!line.empty()) out_ += line + "\n";
  while (!out_.empty()) {
    ERR_clear_error();
    const int n = SSL_write(ssl_.get(), out_.data(), int(out_.size()));
    if (n > 0) {
      out_.erase(0, size_t(n));
      continue;
    }
    const int err = SSL_get_error(ssl_.get(), n);
    if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
      loop_.modify(fd_.get(), EPOLLIN | EPOLLOUT);
      return;
    }
    if (state_ == State::Registering) {
      LOG_WARN("dpctld: cannot send the registration: %s", openssl_errors().c_str());
      retry(now_ns);
    } else {
      lost(now_ns);
    }
    return;
  }
  loop_.modify(fd_.get(), EPOLLIN);
}

void ControlClient::read_some(uint64_t now_ns) {
  char buf[4096];
  for (;;) {
    ERR_clear_error();
    const int n = SSL_read(ssl_.get(), buf, sizeof buf);
    if (n > 0) {
      const bool fits = in_.append({buf, size_t(n)});
      std::vector<std::string> lines;
      while (in_.has_line()) lines.push_back(*in_.next());
      got_lines(std::move(lines), now_ns);
      if (state_ != State::Registered && state_ != State::Registering) return;  // refused: the connection is gone
      if (!fits) {
        LOG_ERROR("dpctld %s:%u sent a line over %zu bytes; dropping the connection", opt_.server_host.c_str(),
                  opt_.server_port, kMaxLine);
        retry(now_ns);
        return;
      }
      continue;
    }
    const int err = SSL_get_error(ssl_.get(), n);
    if (err == SSL_ERROR_WANT_READ) return;
    if (err == SSL_ERROR_WANT_WRITE) {
      loop_.modify(fd_.get(), EPOLLIN | EPOLLOUT);
      return;
    }
    // Closed by dpctld, or an error.
    if (state_ == State::Registered) {
      lost(now_ns);
      return;
    }
    // In TLS 1.3 a client hears that dpctld refused its certificate only now, from the alert.
    if (const unsigned long e = ERR_peek_error()) tls_failed(X509_V_OK, e, openssl_errors());
    else LOG_WARN("dpctld: no answer to the registration");
    retry(now_ns);
    return;
  }
}

void ControlClient::registration_reply(const std::string& reply, uint64_t now_ns) {
  json msg = json::parse(reply, nullptr, false);
  if (msg.is_discarded() || parse_name<AgentMessageType>(string_or(msg, "type", "")) != AgentMessageType::Registered) {
    const std::string reason = string_or(msg, "reason", reply);
    LOG_ERROR("dpctld refused the registration for tunnel %s: %s", opt_.tunnel.c_str(), reason.c_str());
    if (!registrations_) give_up("dpctld refused the registration: " + reason);
    retry(now_ns);
    return;
  }
  // A reply this dpagent cannot use is logged and the registration tried again (nothing throws out of the loop).
  const RegisteredReply r = parse_registered_reply(msg, opt_.weight);
  if (!r.error.empty()) {
    LOG_ERROR("dpctld: unusable registration reply: %s (%.200s)", r.error.c_str(), reply.c_str());
    retry(now_ns);
    return;
  }
  SessionGrant g;
  g.index = r.session;
  g.gateway = r.gateway;
  g.key_len = r.key_len;
  g.rekey_interval_ns = r.rekey_interval_ns;
  g.keepalive_ns = r.keepalive_ns;
  g.stun_port = r.stun_port;
  const unsigned weight = r.weight;
  g.secret = quic_ ? quic_->export_secret(g.index) : export_session_secret(ssl_.get(), g.index);
  if (g.secret.empty()) {
    LOG_ERROR("dpctld: no session key from the TLS exporter for session %u", g.index);
    retry(now_ns);
    return;
  }
  // dpctld hands this QUIC connection over to dpgw: the data follows on it as DATAGRAM frames. A dpctld that does not
  // say so keeps relay frames (the connection stays dpctld's control connection).
  handed_over_ = quic_ && r.quic_framing;
  if (handed_over_) g.quic = quic_.get();
  handed_over_ns_ = now_ns;
  keepalive_ns_ = g.keepalive_ns;
  LOG_INFO("registered with dpctld: session %u for tunnel %s, gateway %s, weight %u%s; data as %s", g.index,
           opt_.tunnel.c_str(), g.gateway.str().c_str(), weight,
           weight != unsigned(opt_.weight) ? " (the tunnel's weight policy)" : "",
           handed_over_ ? "QUIC DATAGRAM frames on this connection (dpgw takes it over)"
           : quic_      ? "relay frames (dpctld does not hand the QUIC connection over)"
                        : "relay frames");
  state_ = State::Registered;
  registrations_++;
  backoff_s_ = 0.5;  // it worked: after a loss, start over quickly
  last_heard_ns_ = last_ping_ns_ = now_ns;
  deliver_(std::move(g));
}

void ControlClient::tick(uint64_t now_ns) {
  if (quic_) {  // (QUIC's own timers run from its timerfd)
    if (quic_->closed()) {  // ended while the data path sent on it
      quic_progress(false, now_ns);
      return;
    }
    if (state_ == State::Handshaking && now_ns >= deadline_ns_) {
      LOG_WARN("dpctld %s:%u: no QUIC handshake within 10 s", opt_.server_host.c_str(), opt_.server_port);
      retry(now_ns);
      return;
    }
  }
  switch (state_) {
    case State::Waiting:
      if (now_ns >= next_attempt_ns_) attempt();
      break;
    case State::Connecting:
      if (now_ns >= deadline_ns_) {
        connect_error_ = peer_ + ": connect: timed out";
        close_connection();
        connect_next(now_ns);
      }
      break;
    case State::Handshaking:
      if (now_ns >= deadline_ns_) {
        ERR_clear_error();  // what the data path's OpenSSL calls on this thread left is not the handshake's
        handshake_failed();
        retry(now_ns);
      }
      break;
    case State::Registering:
      if (now_ns >= deadline_ns_) {
        LOG_WARN("dpctld: no answer to the registration");
        retry(now_ns);
      }
      break;
    case State::Registered:
      if (handed_over_) {
        // dpgw's connection now. PINGs go after every keepalive interval without traffic and dpgw acknowledges
        // them: four intervals of silence mean it no longer knows the connection (a restart loses its keys).
        const uint64_t heard = std::max(quic_->last_rx_ns(), handed_over_ns_);
        const uint64_t limit = std::max<uint64_t>(4 * keepalive_ns_, kNsPerSec);
        if (now_ns - std::min(heard, now_ns) > limit) {
          LOG_WARN("QUIC connection %s:%u carrying the tunnel's data: nothing heard for %.1f s (4 keepalive "
                   "intervals); registering again",
                   peer_.c_str(), unsigned(opt_.server_port), double(now_ns - heard) / 1e9);
          retry(now_ns);
        }
        break;
      }
      // Keep the control connection: ping every 10 s, and give up when dpctld stays silent for 30 s.
      if (now_ns - last_heard_ns_ >= 30 * kNsPerSec) {
        lost(now_ns);
      } else if (now_ns - last_ping_ns_ >= 10 * kNsPerSec) {
        last_ping_ns_ = now_ns;
        send_line(json{{"type", name_of(AgentMessageType::Ping)}}.dump(), now_ns);
      }
      break;
    default: break;
  }
}

void ControlClient::lost(uint64_t now_ns) {
  LOG_WARN("control connection to dpctld %s:%u lost", opt_.server_host.c_str(), opt_.server_port);
  retry(now_ns);
}

void ControlClient::retry(uint64_t now_ns, bool at_once) {
  close_connection();
  if (state_ == State::GaveUp) return;
  const double wait = at_once ? 0.0 : backoff_s_ * std::uniform_real_distribution<double>(0.8, 1.2)(rng_);
  LOG_INFO("reconnecting to dpctld %s:%u in %.1f s", opt_.server_host.c_str(), opt_.server_port, wait);
  next_attempt_ns_ = now_ns + uint64_t(wait * 1e9);
  backoff_s_ = std::min(backoff_s_ * 2, 30.0);
  state_ = State::Waiting;
}

void ControlClient::close_connection() {
  if (quic_) {
    if (handed_over_ && withdraw_) withdraw_();  // the data path lets go of it first
    handed_over_ = false;
    loop_.remove(quic_->timer_fd());
    quic_->close(monotonic_ns());
    quic_.reset();
  }
  ssl_.reset();
  if (fd_) {
    loop_.remove(fd_.get());
    fd_.reset();
  }
  in_.clear();
  out_.clear();
}

}  // namespace dptun
