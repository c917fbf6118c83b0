#include "control/session_registry.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>

namespace dptun {

SessionRegistry::SessionRegistry() {
  uint32_t r = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&r), sizeof r) != 1) r = 0;
  next_ = kFirstIndex + r % (kLastIndex - kFirstIndex + 1);
}

namespace {
void wipe(SessionRecord& s) {
  OPENSSL_cleanse(s.base_secret.data(), s.base_secret.size());
  if (s.quic) {
    OPENSSL_cleanse(s.quic->rx_secret.data(), s.quic->rx_secret.size());
    OPENSSL_cleanse(s.quic->tx_secret.data(), s.quic->tx_secret.size());
  }
}
}  // namespace

SessionRegistry::~SessionRegistry() {
  for (auto& [i, s] : sessions_) wipe(s);
}

std::optional<uint32_t> SessionRegistry::allocate_index() {
  // Round robin over the range, so a just-freed index is not handed out again at once.
  for (uint32_t tries = 0; tries <= kLastIndex - kFirstIndex; ++tries) {
    uint32_t i = next_;
    next_ = next_ == kLastIndex ? kFirstIndex : next_ + 1;
    if (!sessions_.count(i) && !gateway_held_.count(i) && !reserved_.count(i)) return i;
  }
  return std::nullopt;
}

std::optional<uint32_t> SessionRegistry::reserve_index() {
  std::optional<uint32_t> i = allocate_index();
  if (i) reserved_.insert(*i);
  return i;
}

SessionRecord& SessionRegistry::add(SessionRecord rec) {
  uint32_t i = rec.index;
  reserved_.erase(i);
  if (auto it = sessions_.find(i); it != sessions_.end()) wipe(it->second);
  return sessions_[i] = std::move(rec);
}

void SessionRegistry::remove(uint32_t index) {
  auto it = sessions_.find(index);
  if (it == sessions_.end()) return;
  wipe(it->second);
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
