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

// The first bytes of TCP connections held for delayed binding (tcp_binding.cpp), in two tiers: every
// connection starts in a small buffer; one whose bytes outgrow it (a request head with big cookies, a large
// ClientHello) moves to a large one, its bytes copied once. Most heads are small, so the large tier can be few:
// memory is small_count x small_size + large_count x large_size, all allocated at start.
// A handle names a buffer of either tier (kLarge set for the large one). Each buffer carries the `Meta` of the
// connection that holds it (what only such a connection needs, kept out of the flow table).
template <typename Meta>
class HeadBuffers {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;
  static constexpr uint32_t kLarge = 0x80000000u;
  HeadBuffers(uint32_t small_count, uint32_t small_size, uint32_t large_count, uint32_t large_size)
      : small_(small_count, small_size), large_(large_count, large_size), small_meta_(small_count),
        large_meta_(large_count) {}

  // A small buffer for flow `owner`, its Meta reset; kNone when none is free.
  uint32_t acquire(uint64_t owner) {
    const uint32_t b = small_.acquire(owner);
    if (b != kNone) small_meta_[b] = Meta{};
    return b;
  }
  // Moves the connection in small buffer `h` to a large one (bytes, length, owner and Meta go along; the small one
  // is freed): the new handle, or kNone when no large buffer is free (then `h` stays as it was).
  uint32_t grow(uint32_t h) {
    if (h == kNone || (h & kLarge) || !small_.used(h)) return kNone;
    const uint32_t b = large_.acquire(small_.owner(h));
    if (b == BindingBuffers::kNone) return kNone;
    // Everything up to the buffer's end: bytes waiting beyond a gap are kept too.
    const std::span<const uint8_t> all{small_.bytes(h).data(), small_.size()};
    large_.write_at(b, 0, all);
    large_.extend_to(b, uint32_t(small_.bytes(h).size()));
    large_meta_[b] = small_meta_[h];
    small_.release(h);
    return b | kLarge;
  }
  void release(uint32_t h) {
    if (h != kNone) tier(h).release(h & ~kLarge);
  }
  bool write_at(uint32_t h, uint32_t offset, std::span<const uint8_t> bytes) {
    return tier(h).write_at(h & ~kLarge, offset, bytes);
  }
  void extend_to(uint32_t h, uint32_t len) { tier(h).extend_to(h & ~kLarge, len); }
  std::span<const uint8_t> bytes(uint32_t h) const { return tier(h).bytes(h & ~kLarge); }
  uint32_t capacity(uint32_t h) const { return tier(h).size(); }
  bool used(uint32_t h) const {
    return h != kNone && (h & ~kLarge) < tier(h).count() && tier(h).used(h & ~kLarge);
  }
  uint64_t owner(uint32_t h) const { return tier(h).owner(h & ~kLarge); }
  Meta& meta(uint32_t h) { return (h & kLarge) ? large_meta_[h & ~kLarge] : small_meta_[h]; }
  const Meta& meta(uint32_t h) const { return (h & kLarge) ? large_meta_[h & ~kLarge] : small_meta_[h]; }

  uint32_t small_size() const { return small_.size(); }
  uint32_t large_size() const { return large_.size(); }
  // Every handle, small ones first: handle_at(0 .. count()-1).
  uint32_t count() const { return small_.count() + large_.count(); }
  uint32_t handle_at(uint32_t i) const { return i < small_.count() ? i : (i - small_.count()) | kLarge; }
  uint32_t small_in_use() const { return small_.in_use(); }
  uint32_t large_in_use() const { return large_.in_use(); }
  uint32_t large_free() const { return large_.count() - large_.in_use(); }

 private:
  BindingBuffers& tier(uint32_t h) { return (h & kLarge) ? large_ : small_; }
  const BindingBuffers& tier(uint32_t h) const { return (h & kLarge) ? large_ : small_; }
  BindingBuffers small_, large_;
  std::vector<Meta> small_meta_, large_meta_;
};

// Gives back, of `budget` buffers of `pool` from `cursor` on, those whose flow (found in `flows` by the buffer's
// owner id) is gone, past its deadline, or no longer holds it (`held(flow, buffer)` false). Moves `cursor`.
template <class Flows, class Held>
void release_unheld(BindingBuffers& pool, uint32_t& cursor, uint32_t budget, Flows& flows, uint64_t now_ns,
                    Held held) {
  const uint32_t n = pool.count();
  for (uint32_t i = 0; i < budget && i < n; ++i) {
    const uint32_t b = cursor;
    cursor = cursor + 1 == n ? 0 : cursor + 1;
    if (!pool.used(b)) continue;
    const auto* f = flows.find_by_id(pool.owner(b));
    if (!f || f->deadline_ns <= now_ns || !held(*f, b)) pool.release(b);
  }
}

}  // namespace dptun
