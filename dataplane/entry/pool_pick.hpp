// Which session of a tunnel's pool takes a new (or re-pinned) flow: among live sessions, by weight, and only
// among weight-255 ("preferred") sessions while any of them is live; a pick whose session turns out unusable is
// retried on up to 3 other sessions. Pure: the live/usable checks are passed in.
#pragma once
#include <cstdint>
#include <span>

namespace dptun {

inline constexpr uint8_t kPreferredWeight = 255;
inline constexpr unsigned kPickRetries = 3;

// Session: anything with a `weight` member; Live/Usable: bool(const Session&).
template <typename Session, typename Live, typename Usable>
Session* pick_from_pool(std::span<Session* const> pool, uint32_t hash, Live live, Usable usable) {
  bool preferred = false;
  for (Session* s : pool) preferred |= s->weight == kPreferredWeight && live(*s);
  auto eligible = [&](const Session& s) { return live(s) && (!preferred || s.weight == kPreferredWeight); };
  uint32_t total = 0, count = 0;
  for (Session* s : pool)
    if (eligible(*s)) {
      total += s->weight;
      ++count;
    }
  if (!total) return nullptr;
  // The weighted pick...
  uint32_t pick = hash % total;
  size_t first = 0;
  for (size_t i = 0; i < pool.size(); ++i) {
    if (!eligible(*pool[i])) continue;
    if (pick < pool[i]->weight) {
      first = i;
      break;
    }
    pick -= pool[i]->weight;
  }
  // ... and, if that session cannot be used, up to kPickRetries other eligible sessions after it.
  for (uint32_t tries = 0, i = uint32_t(first); tries <= kPickRetries && tries < count; i = (i + 1) % pool.size()) {
    if (!eligible(*pool[i])) continue;
    if (usable(*pool[i])) return pool[i];
    ++tries;
  }
  return nullptr;
}

}  // namespace dptun
