#include "dataplane/tables/flow_table.hpp"

#include <bit>
#include <random>
#include <cstring>
#include <stdexcept>

namespace dptun {

FlowTable::FlowTable(uint32_t capacity, uint8_t worker) : worker_(worker) {
  if (capacity == 0 || capacity > (1u << kSlotBits)) throw std::invalid_argument("flow table capacity");
  flows_.resize(capacity);
  free_ring_.resize(capacity);
  for (uint32_t i = 0; i < capacity; ++i) free_ring_[i] = i;
  free_count_ = capacity;
  std::random_device rd;
  const uint32_t base = rd();
  for (uint32_t i = 0; i < capacity; ++i) flows_[i].generation = base + i * 0x9e3779b9u;
  uint32_t index_size = std::bit_ceil(capacity * 2u);
  index_.assign(index_size, IndexEntry{0, 0});
  index_mask_ = index_size - 1;
}

uint32_t FlowTable::hash(const FlowKey& k) {
  // Two 64-bit words through a multiply-xorshift mix: cheap and good enough for a table we size at 2x.
  // The addresses' four words in one, without a branch on the family: an IPv4-mapped address has a constant first
  // word and its IPv4 address in the high half of the second, so (client, local) -> a stays one-to-one for IPv4.
  uint64_t c[2], l[2];
  std::memcpy(c, k.client.bytes.data(), 16);
  std::memcpy(l, k.local.bytes.data(), 16);
  const uint64_t a = (c[1] ^ (l[1] >> 32 | l[1] << 32)) + (c[0] ^ l[0] * 0xff51afd7ed558ccdull);
  uint64_t b = uint64_t(k.scope) << 48 | uint64_t(k.client_port) << 32 | uint64_t(k.local_port) << 16 | k.proto;
  uint64_t h = a * 0x9e3779b97f4a7c15ull ^ (b + 0x632be59bd9b4e019ull) * 0xc2b2ae3d27d4eb4full;
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 32;
  return uint32_t(h);
}

Flow* FlowTable::find(const FlowKey& k, uint32_t h) {
  for (uint32_t i = h & index_mask_;; i = (i + 1) & index_mask_) {
    const IndexEntry& e = index_[i];
    if (!e.slot_plus1) return nullptr;
    if (e.hash == h) {
      Flow& f = flows_[e.slot_plus1 - 1];
      if (f.key == k) return &f;
    }
  }
}

Flow* FlowTable::insert(const FlowKey& k, uint32_t h, uint64_t now_ns, bool& evicted) {
  evicted = false;
  if (free_count_ == 0) {
    // Sample a few slots and evict the least recently used one if it is idle enough.
    Flow* victim = nullptr;
    for (int i = 0; i < 8; ++i) {
      sample_ = sample_ * 1103515245u + 12345u;
      Flow& f = flows_[(sample_ >> 4) % flows_.size()];
      if (f.in_use && (!victim || f.last_seen_ns < victim->last_seen_ns)) victim = &f;
    }
    if (!victim || now_ns - victim->last_seen_ns < kIdleBeforeEviction) return nullptr;
    erase(*victim);
    evicted = true;
  }
  uint32_t slot = free_ring_[free_head_];
  free_head_ = free_head_ + 1 == free_ring_.size() ? 0 : free_head_ + 1;
  --free_count_;
  Flow& f = flows_[slot];
  uint32_t gen = f.generation + 1;
  f = Flow{};
  f.key = k;
  f.in_use = true;
  f.generation = gen;
  f.hash = h;
  f.last_seen_ns = now_ns;
  uint32_t i = h & index_mask_;
  while (index_[i].slot_plus1) i = (i + 1) & index_mask_;
  index_[i] = IndexEntry{h, slot + 1};
  size_.store(size_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  return &f;
}

Flow* FlowTable::find_by_id(uint64_t flow_id) {
  uint32_t slot = uint32_t(flow_id) & ((1u << kSlotBits) - 1);
  if (worker_of(flow_id) != worker_ || slot >= flows_.size()) return nullptr;
  Flow& f = flows_[slot];
  return f.in_use && f.generation == uint32_t(flow_id >> 32) ? &f : nullptr;
}

Flow* FlowTable::find_by_tag(uint32_t tag) {
  uint32_t slot = tag & ((1u << kSlotBits) - 1);
  if (uint8_t(tag >> kSlotBits) != worker_ || slot >= flows_.size()) return nullptr;
  Flow& f = flows_[slot];
  return f.in_use ? &f : nullptr;
}

uint32_t FlowTable::index_find(const Flow& f) const {
  uint32_t slot_plus1 = uint32_t(&f - flows_.data()) + 1;
  for (uint32_t i = f.hash & index_mask_;; i = (i + 1) & index_mask_)
    if (index_[i].slot_plus1 == slot_plus1) return i;
}

// Backward-shift deletion keeps linear probing free of tombstones.
void FlowTable::index_erase(uint32_t hole) {
  uint32_t j = hole;
  for (;;) {
    j = (j + 1) & index_mask_;
    if (!index_[j].slot_plus1) break;
    uint32_t home = index_[j].hash & index_mask_;
    bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
    if (stays) continue;
    index_[hole] = index_[j];
    hole = j;
  }
  index_[hole] = IndexEntry{0, 0};
}

void FlowTable::erase(Flow& f) {
  if (!f.in_use) return;
  if (release_hook_) release_hook_(release_ctx_, f);
  index_erase(index_find(f));
  f.in_use = false;
  free_ring_[(free_head_ + free_count_) % free_ring_.size()] = uint32_t(&f - flows_.data());
  ++free_count_;
  size_.store(size_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
}

}  // namespace dptun
