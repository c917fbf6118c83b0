#include "agent/control_client.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <random>

#include "common/log.hpp"
#include "common/unix_socket.hpp"
#include "control/control_protocol.hpp"

namespace dptun {

using nlohmann::json;

namespace {

std::string ssl_errors() {
  std::string out;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out += (out.empty() ? "" : "; ") + std::string(buf);
  }
  return out.empty() ? "unknown error" : out;
}

// TCP connect with a timeout; the socket is blocking afterwards, with send/receive timeouts.
Fd connect_tcp(const std::string& host, uint16_t port, int timeout_ms, std::string& error) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &sin.sin_addr) != 1) {
    error = "dpctld address '" + host + "' is not an IPv4 address";
    return Fd();
  }
  Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0 && errno != EINPROGRESS) {
    error = std::string("connect: ") + strerror(errno);
    return Fd();
  }
  pollfd p{fd.get(), POLLOUT, 0};
  int soerr = 0;
  socklen_t len = sizeof soerr;
  if (::poll(&p, 1, timeout_ms) != 1 || getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr) {
    error = std::string("connect: ") + (soerr ? strerror(soerr) : "timed out");
    return Fd();
  }
  fcntl(fd.get(), F_SETFL, fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK);
  timeval tv{1, 0};  // short, so stop() is noticed; callers loop on timeouts
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

}  // namespace

ControlClient::~ControlClient() {
  stop();
  SSL_CTX_free(static_cast<SSL_CTX*>(ctx_));
}

bool ControlClient::start(std::string& error) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  ctx_ = ctx;
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  if (SSL_CTX_use_certificate_chain_file(ctx, opt_.cert.c_str()) != 1) {
    error = opt_.cert + ": cannot load the certificate: " + ssl_errors();
    return false;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, opt_.key.c_str(), SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    error = opt_.key + ": cannot load the private key (or it does not match the certificate): " + ssl_errors();
    return false;
  }
  if (SSL_CTX_load_verify_locations(ctx, opt_.ca.c_str(), nullptr) != 1) {
    error = opt_.ca + ": cannot load the CA bundle: " + ssl_errors();
    return false;
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  thread_ = std::thread([this] { run(); });
  return true;
}

void ControlClient::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void ControlClient::run() {
  std::mt19937 rng(std::random_device{}());
  double backoff = 0.5;
  bool ever = false;
  while (!stop_) {
    bool registered = false;
    session_once(registered);
    if (stop_) break;
    ever |= registered;
    if (registered) backoff = 0.5;  // it worked once: start over quickly
    // Exponential backoff with jitter, so a fleet of agents does not reconnect in lockstep.
    double wait = backoff * std::uniform_real_distribution<double>(0.8, 1.2)(rng);
    LOG_INFO("reconnecting to dpctld %s:%u in %.1f s", opt_.server_host.c_str(), opt_.server_port, wait);
    for (double t = 0; t < wait && !stop_; t += 0.1) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    backoff = std::min(backoff * 2, 30.0);
    (void)ever;
  }
}

void ControlClient::session_once(bool& registered) {
  std::string error;
  Fd fd = connect_tcp(opt_.server_host, opt_.server_port, 5000, error);
  if (!fd) {
    LOG_WARN("dpctld %s:%u: %s", opt_.server_host.c_str(), opt_.server_port, error.c_str());
    return;
  }
  SSL* ssl = SSL_new(static_cast<SSL_CTX*>(ctx_));
  std::unique_ptr<SSL, decltype(&SSL_free)> guard(ssl, SSL_free);
  SSL_set_fd(ssl, fd.get());
  // The tunnel goes in the SNI: dpctld can name it even when the handshake fails.
  SSL_set_tlsext_host_name(ssl, opt_.tunnel.c_str());
  const std::string& name = opt_.server_name.empty() ? opt_.server_host : opt_.server_name;
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  in_addr tmp;
  if (inet_pton(AF_INET, name.c_str(), &tmp) == 1)
    X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str());
  else
    X509_VERIFY_PARAM_set1_host(param, name.c_str(), 0);
  ERR_clear_error();
  int r;
  int waited = 0;
  while ((r = SSL_connect(ssl)) != 1) {
    int err = SSL_get_error(ssl, r);
    if ((err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) && !stop_ && ++waited < 10) continue;
    long v = SSL_get_verify_result(ssl);
    LOG_ERROR("TLS with dpctld %s:%u failed: %s%s", opt_.server_host.c_str(), opt_.server_port,
              v != X509_V_OK ? (std::string("server certificate: ") + X509_verify_cert_error_string(v) + "; ").c_str() : "",
              ssl_errors().c_str());
    return;
  }
  json reg{{"type", "register"}, {"version", kControlProtocolVersion}, {"tunnel", opt_.tunnel}, {"weight", opt_.weight},
           {"role", opt_.visitor ? "visitor" : "agent"}};
  if (!opt_.agent_name.empty()) reg["name"] = opt_.agent_name;
  std::string line = reg.dump() + "\n";
  if (SSL_write(ssl, line.data(), int(line.size())) <= 0) {
    LOG_WARN("dpctld: cannot send the registration: %s", ssl_errors().c_str());
    return;
  }
  std::string in;
  auto read_line = [&](int timeout_s, std::string& out) -> bool {
    for (int t = 0; t < timeout_s && !stop_;) {
      size_t nl = in.find('\n');
      if (nl != std::string::npos) {
        out = in.substr(0, nl);
        in.erase(0, nl + 1);
        return true;
      }
      char buf[4096];
      int n = SSL_read(ssl, buf, sizeof buf);
      if (n > 0) {
        in.append(buf, size_t(n));
        continue;
      }
      int err = SSL_get_error(ssl, n);
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE || (err == SSL_ERROR_SYSCALL && errno == EAGAIN)) {
        ++t;  // a 1 s receive timeout passed
        continue;
      }
      return false;
    }
    return false;
  };
  std::string reply;
  if (!read_line(15, reply)) {
    LOG_WARN("dpctld: no answer to the registration (%s)", ssl_errors().c_str());
    return;
  }
  json msg = json::parse(reply, nullptr, false);
  if (msg.is_discarded() || msg.value("type", std::string()) != "registered") {
    std::string reason = msg.is_discarded() ? reply : msg.value("reason", reply);
    LOG_ERROR("dpctld refused the registration for tunnel %s: %s", opt_.tunnel.c_str(), reason.c_str());
    if (!registrations_.load() && fatal_) fatal_(reason);
    return;
  }
  SessionGrant g;
  g.index = msg.value("session", 0u);
  auto gw = Endpoint::parse(msg.value("gateway", std::string()));
  g.secret = export_session_secret(ssl, g.index);
  if (!gw || !g.index || g.secret.empty()) {
    LOG_ERROR("dpctld: unusable registration reply: %s", reply.c_str());
    return;
  }
  g.gateway = *gw;
  g.key_len = msg.value("cipher", std::string("aes-128-gcm")) == "aes-256-gcm" ? 32 : 16;
  g.rekey_interval_ns = uint64_t(msg.value("rekey_interval", 120.0) * 1e9);
  g.keepalive_ns = uint64_t(msg.value("keepalive", 2.0) * 1e9);
  const unsigned weight = msg.value("weight", unsigned(opt_.weight));
  LOG_INFO("registered with dpctld: session %u for tunnel %s, gateway %s, weight %u%s", g.index, opt_.tunnel.c_str(),
           g.gateway.str().c_str(), weight, weight != unsigned(opt_.weight) ? " (the tunnel's weight policy)" : "");
  registered = true;
  registrations_++;
  deliver_(std::move(g));

  // Keep the control connection: ping every 10 s, and give up when dpctld stays silent for 30 s.
  const std::string ping = "{\"type\":\"ping\"}\n";
  auto last_heard = std::chrono::steady_clock::now();
  auto last_ping = last_heard;
  while (!stop_) {
    auto now = std::chrono::steady_clock::now();
    if (now - last_ping >= std::chrono::seconds(10)) {
      if (SSL_write(ssl, ping.data(), int(ping.size())) <= 0) break;
      last_ping = now;
    }
    std::string l;
    if (read_line(1, l)) {
      last_heard = std::chrono::steady_clock::now();
      continue;
    }
    if (!SSL_get_shutdown(ssl) && std::chrono::steady_clock::now() - last_heard < std::chrono::seconds(30)) {
      // timeout only: keep going unless the connection ended
      int err = SSL_get_error(ssl, 0);
      (void)err;
      pollfd p{fd.get(), POLLIN, 0};
      if (::poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR))) break;
      char b;
      if (recv(fd.get(), &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0) break;  // closed by dpctld
      continue;
    }
    break;
  }
  if (!stop_) LOG_WARN("control connection to dpctld %s:%u lost", opt_.server_host.c_str(), opt_.server_port);
}

}  // namespace dptun
