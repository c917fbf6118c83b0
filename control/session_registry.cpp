#include "control/session_registry.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>

namespace dptun {

SessionRegistry::SessionRegistry() {
  uint32_t r = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&r), sizeof r) != 1) r = 0;
  next_ = kFirstIndex + r % (kLastIndex - kFirstIndex + 1);
}

SessionRegistry::~SessionRegistry() {
  for (auto& [i, s] : sessions_) OPENSSL_cleanse(s.base_secret.data(), s.base_secret.size());
}

std::optional<uint32_t> SessionRegistry::allocate_index() {
  // Round robin over the range, so a just-freed index is not handed out again at once.
  for (uint32_t tries = 0; tries <= kLastIndex - kFirstIndex; ++tries) {
    uint32_t i = next_;
    next_ = next_ == kLastIndex ? kFirstIndex : next_ + 1;
    if (!sessions_.count(i) && !gateway_held_.count(i)) return i;
  }
  return std::nullopt;
}

SessionRecord& SessionRegistry::add(SessionRecord rec) {
  uint32_t i = rec.index;
  return sessions_[i] = std::move(rec);
}

void SessionRegistry::remove(uint32_t index) {
  auto it = sessions_.find(index);
  if (it == sessions_.end()) return;
  OPENSSL_cleanse(it->second.base_secret.data(), it->second.base_secret.size());
  sessions_.erase(it);
}

SessionRecord* SessionRegistry::find(uint32_t index) {
  auto it = sessions_.find(index);
  return it == sessions_.end() ? nullptr : &it->second;
}

SessionRecord* SessionRegistry::find_by_channel(uint64_t channel) {
  for (auto& [i, s] : sessions_)
    if (s.channel == channel) return &s;
  return nullptr;
}

size_t SessionRegistry::count_for(const Uuid& tunnel) const {
  size_t n = 0;
  for (const auto& [i, s] : sessions_) n += s.tunnel == tunnel;
  return n;
}

}  // namespace dptun
