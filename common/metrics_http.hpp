// Prometheus metrics over HTTP: GET /metrics answers with the text last given to publish(), anything else 404.
// The HTTP side is libmicrohttpd on a thread of its own; the owner renders the text on its own thread (dpctld's
// event loop, dpgw's control lcore) and publishes it, so the HTTP thread never reads the owner's state. Bounded:
// 64 connections, 8 per client address, 10 s per connection.
#pragma once
#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "common/inet.hpp"

struct MHD_Daemon;

namespace dptun {

class MetricsHttp {
 public:
  MetricsHttp() = default;
  ~MetricsHttp();
  MetricsHttp(const MetricsHttp&) = delete;
  MetricsHttp& operator=(const MetricsHttp&) = delete;
  // Listens on `at`; errors say why (address in use, or not an address of this host).
  bool start(Endpoint at, std::string& error);
  bool running() const { return daemon_ != nullptr; }
  void publish(std::string text);
  uint64_t scrapes() const { return scrapes_.load(std::memory_order_relaxed); }

  // libmicrohttpd's request callback (internal).
  std::string current();
  void count_scrape() { scrapes_.fetch_add(1, std::memory_order_relaxed); }

 private:
  MHD_Daemon* daemon_ = nullptr;
  std::mutex mu_;
  std::string text_ = "# no metrics yet\n";
  std::atomic<uint64_t> scrapes_{0};
};

}  // namespace dptun
