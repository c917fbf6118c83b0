// A single-producer single-consumer ring of variable-length records between two of dpagent's threads, with an
// eventfd the producer writes to wake the consumer's event loop. With two data-path threads, the directions hand the
// main loop what belongs to a direct pair (agent/agent.hpp): upstream the packets the TUN gave for pair flows,
// downstream the pair frames dpgw relayed.
//
// Records are copied in (reserve + commit), read in place (front + pop) in order. No lock, no allocation after
// construction: head and tail are atomics (release on publish, acquire on read). A record that does not fit is not
// queued (reserve returns nullptr): the producer counts it as a drop. Layout in the buffer: a 4-byte length
// (host order), 4 bytes of padding, the bytes, padded to 8; a length of kWrap says "continue at offset 0".
#pragma once
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cassert>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "common/unix_socket.hpp"

namespace dptun {

class HandoffRing {
 public:
  // `capacity`: bytes, a power of two of at least 64 KiB (a record may hold 1 to capacity / 2 - 8 bytes).
  explicit HandoffRing(size_t capacity) : buf_(capacity), mask_(capacity - 1) {
    assert(capacity >= (size_t(64) << 10) && (capacity & (capacity - 1)) == 0);
  }
  HandoffRing(const HandoffRing&) = delete;
  HandoffRing& operator=(const HandoffRing&) = delete;

  // The eventfd the consumer's loop watches (EPOLLIN); false when the kernel gives none.
  bool open() {
    wake_ = Fd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    return bool(wake_);
  }
  int wake_fd() const { return wake_.get(); }

  // Producer: room for a record of `len` bytes, or nullptr when the ring lacks it (or `len` is too big).
  uint8_t* reserve(size_t len) {
    const size_t need = kHeader + round8(len);
    if (len == 0 || need > buf_.size() / 2) return nullptr;
    const uint64_t head = head_.load(std::memory_order_relaxed);
    const uint64_t tail = tail_.load(std::memory_order_acquire);
    const size_t pos = size_t(head & mask_);
    const size_t skip = pos + need > buf_.size() ? buf_.size() - pos : 0;  // the record starts over at 0
    if (head + skip + need - tail > buf_.size()) return nullptr;
    if (skip) store_len(pos, kWrap);
    pending_head_ = head + skip;
    pending_len_ = len;
    return buf_.data() + size_t(pending_head_ & mask_) + kHeader;
  }
  // Producer: publishes the record reserve() gave.
  void commit() {
    store_len(size_t(pending_head_ & mask_), uint32_t(pending_len_));
    head_.store(pending_head_ + kHeader + round8(pending_len_), std::memory_order_release);
    ++since_wake_;
  }
  // Producer: wakes the consumer if records were committed since the last call (once per batch, not per record).
  void wake() {
    if (!since_wake_) return;
    since_wake_ = 0;
    signal();
  }

  // Consumer: clears the eventfd (before draining: a record committed after this wakes it again).
  void clear_wake() {
    uint64_t n;
    while (read(wake_.get(), &n, sizeof n) > 0) {
    }
  }
  // Consumer, on its loop's wakeup: clears the eventfd, hands `handle` the records in order (each valid during the
  // call), at most `budget` of them; if records are left, wakes its own loop again (they go at the next turn, after
  // the loop's other work). Returns how many were handled.
  template <class Handle>
  unsigned drain(unsigned budget, Handle&& handle) {
    clear_wake();
    unsigned n = 0;
    for (std::span<uint8_t> r = front(); !r.empty(); r = front()) {
      if (n == budget) {
        wake_self();
        break;
      }
      handle(r);
      pop();
      ++n;
    }
    return n;
  }
  // Consumer: wakes its own loop again (it leaves records for the next turn).
  void wake_self() { signal(); }
  // Consumer: the oldest record, empty when there is none; it stays valid until pop().
  std::span<uint8_t> front() {
    uint64_t tail = tail_.load(std::memory_order_relaxed);
    if (tail == head_.load(std::memory_order_acquire)) return {};
    uint32_t len = load_len(size_t(tail & mask_));
    if (len == kWrap) {
      tail += buf_.size() - size_t(tail & mask_);
      tail_.store(tail, std::memory_order_release);
      if (tail == head_.load(std::memory_order_acquire)) return {};
      len = load_len(size_t(tail & mask_));
    }
    front_len_ = len;
    return {buf_.data() + size_t(tail & mask_) + kHeader, len};
  }
  void pop() {
    const uint64_t tail = tail_.load(std::memory_order_relaxed);
    tail_.store(tail + kHeader + round8(front_len_), std::memory_order_release);
  }

 private:
  void signal() {
    const uint64_t one = 1;
    ssize_t r = write(wake_.get(), &one, sizeof one);
    (void)r;
  }
  static constexpr size_t kHeader = 8;
  static constexpr uint32_t kWrap = 0xffffffffu;
  static size_t round8(size_t n) { return (n + 7) & ~size_t(7); }
  void store_len(size_t pos, uint32_t len) { std::memcpy(buf_.data() + pos, &len, 4); }
  uint32_t load_len(size_t pos) const {
    uint32_t len;
    std::memcpy(&len, buf_.data() + pos, 4);
    return len;
  }

  std::vector<uint8_t> buf_;
  const uint64_t mask_;
  alignas(64) std::atomic<uint64_t> head_{0};  // written by the producer
  uint64_t pending_head_ = 0;
  size_t pending_len_ = 0;
  unsigned since_wake_ = 0;
  alignas(64) std::atomic<uint64_t> tail_{0};  // written by the consumer
  size_t front_len_ = 0;
  Fd wake_;
};

}  // namespace dptun
