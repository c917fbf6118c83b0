// Splits a byte stream into '\n'-terminated lines, as the control connections speak them (newline-delimited
// JSON: dpctl <-> dpctld, dpctld <-> dpgw, dpagent <-> dpctld), holding at most one unfinished line of
// `max_line` bytes. A line longer than `max_line` (the '\n' not counted) is an error: append() refuses it as soon
// as the bytes held show it, complete or not, and the owner reports it and closes the connection. Lines before
// it in the stream are still taken by next(). Nothing is ever held beyond the complete lines not yet taken and
// max_line bytes of the unfinished one.
#pragma once
#include <cstddef>
#include <optional>
#include <span>
#include <string>

namespace dptun {

class LineBuffer {
 public:
  explicit LineBuffer(size_t max_line) : max_line_(max_line) {}

  // Takes bytes read from the stream. false when a line in them is longer than max_line: the stream cannot be
  // read any further (too_long() until clear()); the bytes from that line on are dropped.
  bool append(std::span<const char> bytes);
  // The next complete line, without its '\n' (an empty line is returned as ""), or nullopt when none is.
  std::optional<std::string> next();
  bool has_line() const { return complete_ > 0; }
  bool too_long() const { return too_long_; }
  bool empty() const { return start_ == held_.size(); }  // nothing held: no line begun
  size_t max_line() const { return max_line_; }
  void clear();

 private:
  size_t max_line_;
  std::string held_;     // taken lines end before start_
  size_t start_ = 0;     // where the first line not yet taken begins
  size_t complete_ = 0;  // complete lines held
  size_t partial_ = 0;   // bytes of the unfinished line at the end of held_
  bool too_long_ = false;
};

}  // namespace dptun
