// Where a worker keeps the first bytes of connections it holds for delayed binding (a ClientHello, an HTTP
// request head) until it knows where they go. A fixed number of fixed-size buffers, allocated at start; a
// connection that finds none is refused (and counted), never queued.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace dptun {

class BindingBuffers {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;
  BindingBuffers(uint32_t count, uint32_t size)
      : size_(size), data_(size_t(count) * size), len_(count), owner_(count), used_(count, 0) {
    for (uint32_t i = count; i-- > 0;) free_.push_back(i);
  }
  // A buffer for the flow `owner` (its flow id), or kNone.
  uint32_t acquire(uint64_t owner) {
    if (free_.empty()) return kNone;
    const uint32_t b = free_.back();
    free_.pop_back();
    len_[b] = 0;
    owner_[b] = owner;
    used_[b] = 1;
    return b;
  }
  void release(uint32_t b) {
    if (b == kNone || b >= used_.size() || !used_[b]) return;
    used_[b] = 0;
    free_.push_back(b);
  }
  // Appends bytes; false when they do not fit (nothing is appended then).
  bool append(uint32_t b, std::span<const uint8_t> bytes) {
    if (len_[b] + bytes.size() > size_) return false;
    std::copy(bytes.begin(), bytes.end(), data_.begin() + long(size_t(b) * size_ + len_[b]));
    len_[b] += uint32_t(bytes.size());
    return true;
  }
  // Writes bytes at `offset` (out of order: the length does not change); false when they do not fit.
  bool write_at(uint32_t b, uint32_t offset, std::span<const uint8_t> bytes) {
    if (size_t(offset) + bytes.size() > size_) return false;
    std::copy(bytes.begin(), bytes.end(), data_.begin() + long(size_t(b) * size_ + offset));
    return true;
  }
  // The bytes from 0 on are now known up to `len` (written by write_at earlier).
  void extend_to(uint32_t b, uint32_t len) {
    if (len > len_[b] && len <= size_) len_[b] = len;
  }
  uint32_t size() const { return size_; }
  std::span<const uint8_t> bytes(uint32_t b) const { return {data_.data() + size_t(b) * size_, len_[b]}; }
  bool used(uint32_t b) const { return used_[b]; }
  uint64_t owner(uint32_t b) const { return owner_[b]; }
  uint32_t count() const { return uint32_t(len_.size()); }
  uint32_t in_use() const { return count() - uint32_t(free_.size()); }

 private:
  uint32_t size_;
  std::vector<uint8_t> data_;
  std::vector<uint32_t> len_;
  std::vector<uint64_t> owner_;  // flow id
  std::vector<uint8_t> used_;
  std::vector<uint32_t> free_;
};

}  // namespace dptun
