// dpagent's sessions: the current one (sends and receives) and the previous one, which keeps receiving for a
// grace time after a new registration so frames already on their way are not lost. A frame's receiver index
// selects the session. A new session under the index of one kept here replaces it at once: frames could not
// tell the two apart, and keys of an earlier registration must never be selected again.
// Sessions leaving the slots go to `retired` when given (another thread may still be using them: the caller frees
// them once it no longer can), else they are destroyed at once.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "agent/agent_session.hpp"

namespace dptun {

class SessionSlots {
 public:
  static constexpr uint64_t kGraceNs = 60'000'000'000ull;  // the previous session receives this long at most

  // The new session becomes current; returns true when it replaced one with the same index outright.
  using Retired = std::vector<std::unique_ptr<AgentSession>>;
  bool adopt(std::unique_ptr<AgentSession> s, uint64_t now_ns, Retired* retired = nullptr) {
    bool same_index = false;
    if (previous_ && previous_->index() == s->index()) {
      retire(std::move(previous_), retired);
      same_index = true;
    }
    if (current_ && current_->index() == s->index()) {
      retire(std::move(current_), retired);
      same_index = true;
    }
    if (current_) {
      retire(std::move(previous_), retired);
      previous_ = std::move(current_);
      previous_until_ns_ = now_ns + kGraceNs;
    }
    current_ = std::move(s);
    return same_index;
  }
  AgentSession* current() const { return current_.get(); }
  AgentSession* previous() const { return previous_.get(); }
  // The session a frame for receiver index `index` is opened with (nullptr when there is none).
  AgentSession* for_index(uint32_t index) const {
    if (previous_ && previous_->index() == index) return previous_.get();
    return current_.get();
  }
  // The previous session is still in use: it keeps receiving at least a few seconds longer.
  void previous_heard(uint64_t now_ns) {
    if (previous_until_ns_ < now_ns + 5'000'000'000ull) previous_until_ns_ = now_ns + 5'000'000'000ull;
  }
  // True when the previous session went.
  bool expire(uint64_t now_ns, Retired* retired = nullptr) {
    if (!previous_ || now_ns <= previous_until_ns_) return false;
    retire(std::move(previous_), retired);
    return true;
  }

 private:
  static void retire(std::unique_ptr<AgentSession> s, Retired* retired) {
    if (s && retired) retired->push_back(std::move(s));
  }
  std::unique_ptr<AgentSession> current_;
  std::unique_ptr<AgentSession> previous_;
  uint64_t previous_until_ns_ = 0;
};

}  // namespace dptun
