// The direct-path pairs whose pair frames dpgw relays (PairSpec, proto/gateway_specs.hpp; dataplane/relay/pair_relay.hpp):
// pair id -> the two session indexes. Built by the control lcore from a pair_set, immutable once published
// (Dataplane::pairs, RCU: a new table replaces the old one, which is freed after every worker passed a quiescent state).
// Open addressing with linear probing, at most half full (a lookup ends at the first empty slot, a few slots away):
// one or two cache lines per lookup, no allocation after construction. Pair id 0 marks an empty slot (no pair has it).
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "proto/gateway_specs.hpp"

namespace dptun {

class PairTable {
 public:
  // `pairs`: at most kMaxPairs, no id twice (decode_pairs refuses both); a pair with id 0 is left out, and of an id
  // listed twice the last one counts.
  explicit PairTable(std::span<const PairSpec> pairs) {
    size_t cap = kMinSlots;
    while (cap < 2 * pairs.size()) cap *= 2;
    slots_.assign(cap, PairSpec{});
    mask_ = uint32_t(cap - 1);
    shift_ = 32;
    for (size_t c = cap; c > 1; c >>= 1) --shift_;
    for (const PairSpec& p : pairs) {
      if (!p.pair) continue;
      uint32_t i = slot_of(p.pair);
      while (slots_[i].pair && slots_[i].pair != p.pair) i = (i + 1) & mask_;
      if (!slots_[i].pair) ++size_;
      slots_[i] = p;
    }
  }

  // The pair `pair`, or nullptr (0 is never one).
  const PairSpec* find(uint32_t pair) const {
    if (!pair) return nullptr;
    for (uint32_t i = slot_of(pair);; i = (i + 1) & mask_) {
      const PairSpec& s = slots_[i];
      if (s.pair == pair) return &s;
      if (!s.pair) return nullptr;
    }
  }
  size_t size() const { return size_; }

 private:
  static constexpr size_t kMinSlots = 16;
  // Fibonacci hashing: the top bits of id * 2^32/phi (dpctld draws ids at random, but nothing here relies on it).
  uint32_t slot_of(uint32_t pair) const { return uint32_t(pair * 0x9e3779b9u) >> shift_; }

  std::vector<PairSpec> slots_;
  uint32_t mask_ = 0;
  uint32_t shift_ = 32;
  size_t size_ = 0;
};

}  // namespace dptun
