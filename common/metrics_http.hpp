// Prometheus metrics over HTTP: GET /metrics, anything else 404. The HTTP side is libmicrohttpd on a thread of
// its own, which never reads the owner's state: a scrape raises wanted(), the owner (dpctld's event loop, dpgw's
// control lcore, which check it every tick) renders the text on its own thread and publish()es it, and the
// scrape gets that fresh text -- or, when the owner does not answer within a second, the last one. Bounded: 64
// connections, 8 per client address, 10 s per connection.
#pragma once
#include <atomic>
#include <condition_variable>
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
  // True (once) when a scrape waits for fresh text: render and publish() it.
  bool wanted() { return wanted_.exchange(false, std::memory_order_acq_rel); }
  uint64_t scrapes() const { return scrapes_.load(std::memory_order_relaxed); }

  // libmicrohttpd's request callback (internal): asks the owner for fresh text and waits for it (1 s at most).
  std::string fresh();

 private:
  MHD_Daemon* daemon_ = nullptr;
  std::mutex mu_;
  std::condition_variable published_;
  uint64_t generation_ = 0;
  std::string text_ = "# no metrics yet\n";
  std::atomic<bool> wanted_{false};
  std::atomic<uint64_t> scrapes_{0};
};

}  // namespace dptun
