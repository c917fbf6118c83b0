// Runs a burst of AEAD ops that may use different keys: one engine call per distinct key (usually one).
#pragma once
#include <cstdint>

#include "dataplane/tables/session.hpp"

namespace dptun {

// ops[i] is processed with cipher[i]; status[i] = 0 on success. n <= 64.
inline void aead_burst(EpochCipher* const* cipher, const AeadOp* ops, int32_t* status, uint16_t n, unsigned thread) {
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
    EpochCipher* c = cipher[first];
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
