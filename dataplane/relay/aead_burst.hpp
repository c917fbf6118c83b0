// Runs a burst of AEAD ops that may use different keys: one engine call per distinct key (usually one); the same
// grouping for QUIC header-protection masks; transmit counters reserved with one atomic add per session.
#pragma once
#include <cstdint>
#include <cstring>

#include "crypto/header_protection.hpp"
#include "dataplane/tables/session.hpp"

namespace dptun {

// ops[i] is processed with cipher[i]; status[i] = 0 on success. n <= 64.
inline void aead_burst(const EpochCipher* const* cipher, const AeadOp* ops, int32_t* status, uint16_t n, unsigned thread) {
  if (!n) return;
  uint16_t same = 1;
  while (same < n && cipher[same] == cipher[0]) ++same;
  if (same == n) {  // one key for the whole burst (the usual case): no grouping, no copies
    cipher[0]->aead->process({ops, n}, {status, n}, thread);
    return;
  }
  uint64_t pending = n == 64 ? ~uint64_t(0) : (uint64_t(1) << n) - 1;
  AeadOp group[64];
  int32_t group_status[64];
  uint16_t index[64];
  while (pending) {
    uint16_t first = uint16_t(__builtin_ctzll(pending));
    const EpochCipher* c = cipher[first];
    uint16_t g = 0;
    for (uint64_t rest = pending; rest; rest &= rest - 1) {
      uint16_t i = uint16_t(__builtin_ctzll(rest));
      if (cipher[i] != c) continue;
      group[g] = ops[i];
      index[g++] = i;
      pending &= ~(uint64_t(1) << i);
    }
    c->aead->process({group, g}, {group_status, g}, thread);
    for (uint16_t k = 0; k < g; ++k) status[index[k]] = group_status[k];
  }
}

// Header-protection masks (RFC 9001 5.4) of `n` <= 64 packets whose samples lie side by side (n * kHpSampleLen bytes
// -> n * kHpMaskLen): one call of masks_of(i, samples, g, out) per distinct key_of(i) (a pointer; usually one for
// the whole burst), where `i` is a packet of the group and samples/out hold the group's g samples and masks; the
// samples of a key are gathered (copied) only when the burst mixes keys. False when a call failed.
template <typename KeyOf, typename MasksOf>
inline bool hp_masks_burst(uint16_t n, KeyOf key_of, MasksOf masks_of, const uint8_t* samples, uint8_t* masks) {
  if (!n) return true;
  uint16_t same = 1;
  while (same < n && key_of(same) == key_of(0)) ++same;
  if (same == n) return masks_of(uint16_t(0), samples, n, masks);
  uint64_t pending = n == 64 ? ~uint64_t(0) : (uint64_t(1) << n) - 1;
  alignas(16) uint8_t group_samples[64 * kHpSampleLen];
  alignas(16) uint8_t group_masks[64 * kHpMaskLen];
  uint16_t index[64];
  while (pending) {
    const uint16_t first = uint16_t(__builtin_ctzll(pending));
    const auto key = key_of(first);
    uint16_t g = 0;
    for (uint64_t rest = pending; rest; rest &= rest - 1) {
      const uint16_t i = uint16_t(__builtin_ctzll(rest));
      if (key_of(i) != key) continue;
      std::memcpy(group_samples + g * kHpSampleLen, samples + i * kHpSampleLen, kHpSampleLen);
      index[g++] = i;
      pending &= ~(uint64_t(1) << i);
    }
    if (!masks_of(first, group_samples, g, group_masks)) return false;
    for (uint16_t k = 0; k < g; ++k) std::memcpy(masks + index[k] * kHpMaskLen, group_masks + k * kHpMaskLen, kHpMaskLen);
  }
  return true;
}

// Reserves consecutive transmit counters: one atomic add per session present in the burst.
template <typename SessionOf>
inline void reserve_counters(uint16_t n, SessionOf session_of, uint64_t* counters) {
  uint64_t pending = n == 64 ? ~uint64_t(0) : (uint64_t(1) << n) - 1;
  while (pending) {
    uint16_t first = uint16_t(__builtin_ctzll(pending));
    TunnelSession* s = session_of(first);
    uint64_t members = 0;
    for (uint64_t rest = pending; rest; rest &= rest - 1) {
      uint16_t i = uint16_t(__builtin_ctzll(rest));
      if (session_of(i) == s) members |= uint64_t(1) << i;
    }
    uint64_t next = s->tx_counter.fetch_add(uint64_t(__builtin_popcountll(members)), std::memory_order_relaxed);
    for (uint64_t rest = members; rest; rest &= rest - 1) counters[__builtin_ctzll(rest)] = next++;
    pending &= ~members;
  }
}

}  // namespace dptun
