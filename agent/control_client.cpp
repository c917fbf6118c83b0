#include "agent/control_client.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
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

#include "agent/tls_failure.hpp"
#include "common/json_fields.hpp"
#include "common/log.hpp"
#include "common/unix_socket.hpp"
#include "control/control_protocol.hpp"
#include "proto/control_names.hpp"

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

// TCP connect with a timeout to `host` (an IPv4 address, or a name resolved now: every address is tried in
// turn); the socket is blocking afterwards, with send/receive timeouts.
Fd connect_tcp(const std::string& host, uint16_t port, int timeout_ms, std::string& error) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res); rc != 0) {
    error = "cannot resolve '" + host + "': " + gai_strerror(rc);
    return Fd();
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(res, freeaddrinfo);
  error = "no IPv4 address for '" + host + "'";
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    char ip[INET_ADDRSTRLEN] = "?";
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(ai->ai_addr)->sin_addr, ip, sizeof ip);
    Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
      error = std::string(ip) + ": connect: " + strerror(errno);
      continue;
    }
    pollfd p{fd.get(), POLLOUT, 0};
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (::poll(&p, 1, timeout_ms) != 1 || getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr) {
      error = std::string(ip) + ": connect: " + (soerr ? strerror(soerr) : "timed out");
      continue;
    }
    fcntl(fd.get(), F_SETFL, fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK);
    timeval tv{1, 0};  // short, so stop() is noticed; callers loop on timeouts
    setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
  }
  return Fd();
}

int g_seen_index = -1;  // SSL ex_data: the ServerCertSeen of a connection

std::string name_of(X509_NAME* n) {
  char buf[512];
  X509_NAME_oneline(n, buf, sizeof buf);
  return buf;
}

// Records what dpctld's certificate shows, for advice when verification fails; never changes the verdict.
int remember_server_cert(int preverify_ok, X509_STORE_CTX* store) {
  SSL* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  auto* seen = ssl ? static_cast<ServerCertSeen*>(SSL_get_ex_data(ssl, g_seen_index)) : nullptr;
  X509* cert = X509_STORE_CTX_get0_cert(store);  // the leaf, whatever depth is being checked
  if (!seen || !cert || !seen->subject.empty()) return preverify_ok;
  seen->subject = name_of(X509_get_subject_name(cert));
  seen->issuer = name_of(X509_get_issuer_name(cert));
  if (auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr))) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      GENERAL_NAME* g = sk_GENERAL_NAME_value(sans, i);
      if (g->type == GEN_DNS) {
        seen->names.push_back("DNS:" + std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(g->d.dNSName)),
                                                   size_t(ASN1_STRING_length(g->d.dNSName))));
      } else if (g->type == GEN_IPADD && ASN1_STRING_length(g->d.iPAddress) == 4) {
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, ASN1_STRING_get0_data(g->d.iPAddress), ip, sizeof ip);
        seen->names.push_back(std::string("IP:") + ip);
      }
    }
    GENERAL_NAMES_free(sans);
  }
  if (BIO* b = BIO_new(BIO_s_mem())) {
    ASN1_TIME_print(b, X509_get0_notAfter(cert));
    char* data = nullptr;
    long n = BIO_get_mem_data(b, &data);
    seen->not_after.assign(data, size_t(n));
    BIO_free(b);
  }
  return preverify_ok;
}

}  // namespace

ControlClient::~ControlClient() {
  stop();
  SSL_CTX_free(static_cast<SSL_CTX*>(ctx_));
}

bool ControlClient::load(std::string& error) {
  for (const std::string* f : {&opt_.cert, &opt_.key, &opt_.ca}) {
    FILE* probe = fopen(f->c_str(), "r");
    if (!probe) {
      error = "cannot read " + *f + ": " + strerror(errno);
      return false;
    }
    fclose(probe);
  }
  if (g_seen_index < 0) g_seen_index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
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
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, remember_server_cert);
  return true;
}

void ControlClient::start() { thread_ = std::thread([this] { run(); }); }

void ControlClient::tls_failed(long verify_result, unsigned long ssl_error, const std::string& detail) {
  ServerCertSeen none;
  const ServerCertSeen& seen = seen_ ? *seen_ : none;
  const std::string& name = opt_.server_name.empty() ? opt_.server_host : opt_.server_name;
  AgentTlsVerdict v = classify_agent_tls(verify_result, ssl_error, name, opt_.ca, seen);
  if (v.kind == AgentTlsFailure::Transient) {
    LOG_WARN("TLS with dpctld %s:%u failed: %s", opt_.server_host.c_str(), opt_.server_port, detail.c_str());
    return;
  }
  LOG_ERROR("TLS with dpctld %s:%u failed (%s): %s", opt_.server_host.c_str(), opt_.server_port, v.reason.c_str(),
            v.advice.c_str());
  if (v.permanent && !registrations_.load() && fatal_) fatal_(v.reason + ": " + v.advice);
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
  ServerCertSeen seen;
  SSL_set_ex_data(ssl, g_seen_index, &seen);
  seen_ = &seen;
  struct Forget {
    const ServerCertSeen*& p;
    ~Forget() { p = nullptr; }
  } forget{seen_};
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
    const long v = SSL_get_verify_result(ssl);
    const unsigned long e = ERR_peek_error();
    tls_failed(v, e, (v != X509_V_OK ? std::string("server certificate: ") + X509_verify_cert_error_string(v) + "; " : "") +
                         ssl_errors());
    return;
  }
  json reg{{"type", name_of(AgentMessageType::Register)}, {"version", kControlProtocolVersion}, {"tunnel", opt_.tunnel},
           {"weight", opt_.weight}, {"role", role_name(opt_.visitor)}};
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
  ERR_clear_error();
  if (!read_line(15, reply)) {
    // In TLS 1.3 a client hears that dpctld refused its certificate only now, from the alert.
    const unsigned long e = ERR_peek_error();
    if (e) tls_failed(X509_V_OK, e, ssl_errors());
    else LOG_WARN("dpctld: no answer to the registration");
    return;
  }
  json msg = json::parse(reply, nullptr, false);
  if (msg.is_discarded() || parse_name<AgentMessageType>(string_or(msg, "type", "")) != AgentMessageType::Registered) {
    const std::string reason = string_or(msg, "reason", reply);
    LOG_ERROR("dpctld refused the registration for tunnel %s: %s", opt_.tunnel.c_str(), reason.c_str());
    if (!registrations_.load() && fatal_) fatal_("dpctld refused the registration: " + reason);
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
  const std::string ping = json{{"type", name_of(AgentMessageType::Ping)}}.dump() + "\n";
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
