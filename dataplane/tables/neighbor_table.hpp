// IPv4 neighbour (ARP) cache: written only by the control lcore, read lock-free by workers.
// Entries are never removed, only updated, so a reader always sees either the old or the new MAC.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>

namespace dptun {

using MacAddr = std::array<uint8_t, 6>;

class NeighborTable {
 public:
  static constexpr uint32_t kCapacity = 4096;

  NeighborTable() : slots_(new Slot[kCapacity]) {}

  // Workers: the MAC for (port, ip), or false when unresolved.
  bool lookup(uint8_t port, uint32_t ip, MacAddr& mac) const {
    uint64_t key = make_key(port, ip);
    for (uint32_t i = 0, pos = hash(key); i < kCapacity; ++i, pos = (pos + 1) % kCapacity) {
      uint64_t k = slots_[pos].key.load(std::memory_order_acquire);
      if (k == 0) return false;
      if (k == key) {
        uint64_t v = slots_[pos].mac.load(std::memory_order_acquire);
        if (!(v >> 63)) return false;
        for (int b = 0; b < 6; ++b) mac[b] = uint8_t(v >> (40 - 8 * b));
        return true;
      }
    }
    return false;
  }

  // Control lcore only. Returns false when the table is full.
  bool update(uint8_t port, uint32_t ip, const MacAddr& mac) {
    uint64_t key = make_key(port, ip);
    uint64_t v = uint64_t(1) << 63;
    for (int b = 0; b < 6; ++b) v |= uint64_t(mac[b]) << (40 - 8 * b);
    for (uint32_t i = 0, pos = hash(key); i < kCapacity; ++i, pos = (pos + 1) % kCapacity) {
      uint64_t k = slots_[pos].key.load(std::memory_order_relaxed);
      if (k == key || k == 0) {
        slots_[pos].mac.store(v, std::memory_order_release);
        if (k == 0) {
          slots_[pos].key.store(key, std::memory_order_release);
          ++size_;
        }
        return true;
      }
    }
    return false;
  }

  uint32_t size() const { return size_; }

  // Visits every resolved entry (control lcore only).
  template <typename F>
  void for_each(F&& fn) const {
    for (uint32_t i = 0; i < kCapacity; ++i) {
      uint64_t k = slots_[i].key.load(std::memory_order_acquire);
      uint64_t v = slots_[i].mac.load(std::memory_order_acquire);
      if (!k || !(v >> 63)) continue;
      MacAddr mac;
      for (int b = 0; b < 6; ++b) mac[b] = uint8_t(v >> (40 - 8 * b));
      fn(uint8_t((k >> 32) - 1), uint32_t(k), mac);
    }
  }

 private:
  struct Slot {
    std::atomic<uint64_t> key{0};  // (port + 1) << 32 | ip; 0 = empty
    std::atomic<uint64_t> mac{0};  // bit 63: valid, bits 47..0: MAC
  };
  static uint64_t make_key(uint8_t port, uint32_t ip) { return uint64_t(port + 1) << 32 | ip; }
  static uint32_t hash(uint64_t key) { return uint32_t((key * 0x9e3779b97f4a7c15ull) >> 52) % kCapacity; }

  std::unique_ptr<Slot[]> slots_;
  uint32_t size_ = 0;
};

}  // namespace dptun
