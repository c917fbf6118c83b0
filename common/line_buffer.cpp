#include "common/line_buffer.hpp"

#include <cstring>

namespace dptun {

bool LineBuffer::append(std::span<const char> bytes) {
  if (too_long_) return false;
  if (start_ > 0 && start_ >= held_.size() / 2) {  // drop taken lines before the buffer grows: amortized O(1)
    held_.erase(0, start_);
    start_ = 0;
  }
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const char* nl = static_cast<const char*>(std::memchr(p, '\n', left));
    const size_t len = nl ? size_t(nl - p) : left;  // bytes of the current line in this piece
    if (partial_ + len > max_line_) {
      too_long_ = true;
      held_.resize(held_.size() - partial_);  // the over-long line's beginning goes; the lines before it stay
      partial_ = 0;
      return false;
    }
    const size_t take = nl ? len + 1 : len;
    held_.append(p, take);
    if (nl) {
      complete_++;
      partial_ = 0;
    } else {
      partial_ += len;
    }
    p += take;
    left -= take;
  }
  return true;
}

std::optional<std::string> LineBuffer::next() {
  if (complete_ == 0) return std::nullopt;
  const size_t nl = held_.find('\n', start_);
  std::string line = held_.substr(start_, nl - start_);
  start_ = nl + 1;
  complete_--;
  if (start_ == held_.size()) {
    held_.clear();
    start_ = 0;
  }
  return line;
}

void LineBuffer::clear() {
  held_.clear();
  start_ = complete_ = partial_ = 0;
  too_long_ = false;
}

}  // namespace dptun
