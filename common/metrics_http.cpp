#include "common/metrics_http.hpp"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstring>

namespace dptun {

namespace {

MHD_Result answer(void* cls, MHD_Connection* conn, const char* url, const char* method, const char*, const char*,
                  size_t*, void** state) {
  auto* self = static_cast<MetricsHttp*>(cls);
  if (!*state) {  // the first call is for the headers; answer on the next
    *state = self;
    return MHD_YES;
  }
  const bool ok = std::strcmp(method, "GET") == 0 && std::strcmp(url, "/metrics") == 0;
  std::string body = ok ? self->fresh() : "not found: GET /metrics\n";
  MHD_Response* r = MHD_create_response_from_buffer(body.size(), body.data(), MHD_RESPMEM_MUST_COPY);
  if (!r) return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ok ? "text/plain; version=0.0.4" : "text/plain");
  MHD_Result q = MHD_queue_response(conn, ok ? MHD_HTTP_OK : MHD_HTTP_NOT_FOUND, r);
  MHD_destroy_response(r);
  return q;
}

}  // namespace

MetricsHttp::~MetricsHttp() {
  if (daemon_) MHD_stop_daemon(daemon_);
}

bool MetricsHttp::start(Endpoint at, std::string& error) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(at.port);
  sin.sin_addr.s_addr = htonl(at.ip.v4());
  errno = 0;
  daemon_ = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL_LINUX_ONLY, at.port, nullptr, nullptr,
                             &answer, this, MHD_OPTION_SOCK_ADDR, reinterpret_cast<sockaddr*>(&sin),
                             MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_PER_IP_CONNECTION_LIMIT, 8u,
                             MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
  if (!daemon_) {
    error = "metrics: cannot listen on " + at.str() + (errno ? std::string(": ") + strerror(errno) : std::string());
    return false;
  }
  return true;
}

void MetricsHttp::publish(std::string text) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    text_ = std::move(text);
    ++generation_;
  }
  published_.notify_all();
}

std::string MetricsHttp::fresh() {
  scrapes_.fetch_add(1, std::memory_order_relaxed);
  std::unique_lock<std::mutex> lock(mu_);
  const uint64_t before = generation_;
  wanted_.store(true, std::memory_order_release);
  published_.wait_for(lock, std::chrono::seconds(1), [&] { return generation_ != before; });
  return text_;
}

}  // namespace dptun
