// Prometheus text exposition over a minimal HTTP/1.0 server: GET /metrics answers with render(), anything else
// with 404. One request per connection, served from the event loop.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include "common/event_loop.hpp"
#include "common/inet.hpp"

namespace dptun {

class MetricsServer {
 public:
  MetricsServer(EventLoop& loop, std::function<std::string()> render) : loop_(loop), render_(std::move(render)) {}
  ~MetricsServer();
  bool listen(Endpoint at, std::string& error);

 private:
  void accept_ready();
  void on_client(int fd);

  EventLoop& loop_;
  std::function<std::string()> render_;
  Fd listen_fd_;
  struct Client {
    Fd fd;
    std::string request;
  };
  std::unordered_map<int, std::unique_ptr<Client>> clients_;
};

// Builds Prometheus text: one HELP/TYPE header per family, then samples.
class PromText {
 public:
  void family(const std::string& name, const char* type, const std::string& help);
  void sample(const std::string& name, double value, const std::string& labels = "");
  const std::string& str() const { return out_; }

 private:
  std::string out_;
};

}  // namespace dptun
