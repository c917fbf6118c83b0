#include "common/background.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace dptun {

Background::~Background() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (loop_ && wake_) loop_->remove(wake_.get());
}

bool Background::start(EventLoop& loop, std::string& error) {
  wake_ = Fd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_) {
    error = std::string("eventfd: ") + strerror(errno);
    return false;
  }
  loop_ = &loop;
  loop.add(wake_.get(), EPOLLIN, [this](uint32_t) { drain_done(); });
  thread_ = std::thread([this] { run(); });
  return true;
}

void Background::submit(std::function<void()> work, std::function<void()> done) {
  ++in_flight_;
  {
    std::lock_guard<std::mutex> lock(mu_);
    todo_.emplace_back(std::move(work), std::move(done));
  }
  cv_.notify_one();
}

void Background::run() {
  for (;;) {
    std::pair<std::function<void()>, std::function<void()>> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !todo_.empty(); });
      if (todo_.empty()) return;  // stopping, nothing left
      job = std::move(todo_.front());
      todo_.pop_front();
    }
    if (job.first) job.first();
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_.push_back(std::move(job.second));
    }
    const uint64_t one = 1;
    ssize_t w = write(wake_.get(), &one, sizeof one);
    (void)w;
  }
}

void Background::drain_done() {
  uint64_t v;
  while (read(wake_.get(), &v, sizeof v) > 0) {
  }
  std::deque<std::function<void()>> ready;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ready.swap(done_);
  }
  for (auto& d : ready) {
    --in_flight_;
    if (d) d();
  }
}

}  // namespace dptun
