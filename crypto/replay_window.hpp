// Sliding anti-replay window over 64-bit frame counters (bitmap, RFC 6479 style): each counter is accepted at
// most once, and counters more than kTracked behind the highest accepted one are refused.
// Sessions use EpochReplayWindow (below), one of these per key epoch.
#pragma once
#include <cstdint>
#include <cstring>

namespace dptun {

class ReplayWindow {
 public:
  static constexpr uint64_t kBits = 4096;
  static constexpr uint64_t kWords = kBits / 64;
  static constexpr uint64_t kTracked = kBits - 64;  // 4032 counters behind the top are always tracked

  // True when `counter` is new and inside the window. Read-only: call before spending time on decryption.
  bool check(uint64_t counter) const {
    if (!any_ || counter > top_) return true;
    if (top_ - counter >= kTracked) return false;
    return !(bitmap_[(counter >> 6) % kWords] & bit(counter));
  }

  // Records `counter` once the frame authenticated. False when it was already seen or is too old.
  bool accept(uint64_t counter) {
    if (!any_) {
      any_ = true;
      top_ = counter;
      std::memset(bitmap_, 0, sizeof bitmap_);
    } else if (counter > top_) {
      uint64_t cur = top_ >> 6, next = counter >> 6;
      uint64_t clear = next - cur < kWords ? next - cur : kWords;
      for (uint64_t i = 1; i <= clear; ++i) bitmap_[(cur + i) % kWords] = 0;
      top_ = counter;
    } else if (top_ - counter >= kTracked) {
      return false;
    }
    uint64_t& word = bitmap_[(counter >> 6) % kWords];
    if (word & bit(counter)) return false;
    word |= bit(counter);
    return true;
  }

  uint64_t top() const { return top_; }
  bool empty() const { return !any_; }
  void reset() { any_ = false; top_ = 0; }
  // Was `counter` accepted? False for counters the window no longer tracks (kTracked or more below the top).
  bool seen(uint64_t counter) const {
    if (!any_ || counter > top_ || top_ - counter >= kTracked) return false;
    return bitmap_[(counter >> 6) % kWords] & bit(counter);
  }
  // The lowest counter seen() can still answer for.
  uint64_t lowest_tracked() const { return top_ >= kTracked ? top_ - kTracked + 1 : 0; }

 private:
  static uint64_t bit(uint64_t counter) { return uint64_t(1) << (counter & 63); }
  uint64_t top_ = 0;
  bool any_ = false;
  uint64_t bitmap_[kWords] = {};
};

// Anti-replay across key epochs (epoch = counter >> 32): one window for the newest epoch and one for the epoch
// that was newest before it. A rekey moves the sender's counter forward by up to many epochs at once, which a
// single window would take as "every older frame is too old"; frames sealed just before the move and
// delivered after it are still accepted, each once. Frames of any other epoch are refused.
class EpochReplayWindow {
 public:
  bool check(uint64_t counter) const {
    const uint64_t e = counter >> 32;
    if (!any_ || e > epoch_) return true;
    if (e == epoch_) return current_.check(counter);
    return has_previous_ && e == previous_epoch_ && previous_.check(counter);
  }

  bool accept(uint64_t counter) {
    const uint64_t e = counter >> 32;
    if (!any_ || e > epoch_) {
      has_previous_ = any_;
      if (has_previous_) {
        previous_ = current_;
        previous_epoch_ = epoch_;
      }
      current_.reset();
      epoch_ = e;
      any_ = true;
      return current_.accept(counter);
    }
    if (e == epoch_) return current_.accept(counter);
    return has_previous_ && e == previous_epoch_ && previous_.accept(counter);
  }

  // Highest counter accepted so far (0 when none).
  uint64_t top() const { return any_ ? current_.top() : 0; }
  // The newest epoch's window (what a QUIC ACK frame reports: packet numbers below 2^32 are epoch 0).
  const ReplayWindow& current() const { return current_; }
  bool empty() const { return !any_; }

 private:
  uint64_t epoch_ = 0;
  uint64_t previous_epoch_ = 0;
  bool any_ = false;
  bool has_previous_ = false;
  ReplayWindow current_;
  ReplayWindow previous_;
};

}  // namespace dptun
