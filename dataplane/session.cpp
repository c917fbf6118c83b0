#include "dataplane/session.hpp"

#include <openssl/crypto.h>
#include <rte_rcu_qsbr.h>

#include <algorithm>

#include "common/clock.hpp"
#include "common/log.hpp"

namespace dptun {

TunnelSession::~TunnelSession() {
  if (!base_secret.empty()) OPENSSL_cleanse(base_secret.data(), base_secret.size());
}

TunnelSession& SessionTable::add(std::unique_ptr<TunnelSession> s) {
  TunnelSession& ref = *s;
  by_index_[ref.index] = &ref;
  owned_.push_back(std::move(s));
  return ref;
}

SessionKeyManager::~SessionKeyManager() {
  for (auto& r : retired_) delete r.cipher;
}

void SessionKeyManager::retire(EpochCipher* c) {
  if (!c) return;
  if (!rcu_) {
    delete c;
    return;
  }
  retired_.push_back({c, rte_rcu_qsbr_start(rcu_)});
}

void SessionKeyManager::reclaim() {
  auto done = std::partition(retired_.begin(), retired_.end(),
                             [&](const Retired& r) { return rte_rcu_qsbr_check(rcu_, r.token, false) != 1; });
  for (auto it = done; it != retired_.end(); ++it) delete it->cipher;
  retired_.erase(done, retired_.end());
}

bool SessionKeyManager::ensure(TunnelSession& s, KeySlots& slots, KeyDirection dir, uint64_t epoch,
                               std::initializer_list<uint64_t> keep) {
  if (slots.find(epoch)) return true;
  // Pick a slot that is empty or holds an epoch we no longer need.
  int victim = -1;
  for (int i = 0; i < KeySlots::kSlots && victim < 0; ++i) {
    EpochCipher* c = slots.slot[i].load(std::memory_order_relaxed);
    if (!c || std::find(keep.begin(), keep.end(), c->epoch) == keep.end()) victim = i;
  }
  if (victim < 0) return false;
  EpochKey key;
  if (!derive_epoch_key(s.base_secret, dir, epoch, key_len_, key)) {
    LOG_ERROR("session %u: key derivation failed", s.index);
    return false;
  }
  auto cipher = std::make_unique<EpochCipher>();
  cipher->epoch = epoch;
  cipher->salt = key.salt;
  cipher->aead = engine_.make_key(key.key_bytes(),
                                  dir == KeyDirection::GatewayToAgent ? AeadDirection::Encrypt : AeadDirection::Decrypt,
                                  16);
  if (!cipher->aead) return false;
  EpochCipher* old = slots.slot[victim].exchange(cipher.release(), std::memory_order_acq_rel);
  retire(old);
  return true;
}

bool SessionKeyManager::maintain(TunnelSession& s, uint64_t now_ns) {
  bool ok = true;
  // Transmit: current and next epoch, and a timed rekey by jumping the counter to the next epoch.
  uint64_t counter = s.tx_counter.load(std::memory_order_relaxed);
  uint64_t e = epoch_of(counter);
  if (e != s.ctl_tx_epoch) {
    s.ctl_tx_epoch = e;
    s.ctl_tx_epoch_since_ns = now_ns;
  }
  ok &= ensure(s, s.tx_keys, KeyDirection::GatewayToAgent, e, {e, e + 1});
  ok &= ensure(s, s.tx_keys, KeyDirection::GatewayToAgent, e + 1, {e, e + 1});
  if (ok && now_ns - s.ctl_tx_epoch_since_ns >= rekey_interval_ns_) {
    uint64_t next = first_counter_of(e + 1);
    while (counter < next && !s.tx_counter.compare_exchange_weak(counter, next, std::memory_order_relaxed)) {
    }
    ++rekeys_;
    LOG_DEBUG("session %u: rekeyed transmit side to epoch %llu", s.index, (unsigned long long)(e + 1));
  }

  // Receive: around the highest authenticated epoch, plus the epoch a newer frame asked for.
  uint64_t seen = s.rx_epoch.load(std::memory_order_acquire);
  uint64_t wanted = s.wanted_epoch.load(std::memory_order_acquire);
  if (seen != kNoEpoch) {
    uint64_t lo = seen ? seen - 1 : seen;
    for (uint64_t ep : {seen, seen + 1, lo}) ok &= ensure(s, s.rx_keys, KeyDirection::AgentToGateway, ep,
                                                          {lo, seen, seen + 1, wanted});
  }
  if (seen == kNoEpoch && s.clock_counters) {
    // A static agent starts counting at its wall clock: have that epoch's key ready before its first frame.
    uint64_t e_now = epoch_of(realtime_ns());
    for (uint64_t ep : {e_now, e_now + 1})
      ok &= ensure(s, s.rx_keys, KeyDirection::AgentToGateway, ep, {e_now, e_now + 1, wanted});
  }
  if (wanted != kNoEpoch) {
    bool useful = seen == kNoEpoch || wanted > seen + 1;
    if (useful) {
      uint64_t lo = seen == kNoEpoch ? wanted : (seen ? seen - 1 : seen);
      uint64_t cur = seen == kNoEpoch ? wanted : seen;
      ok &= ensure(s, s.rx_keys, KeyDirection::AgentToGateway, wanted, {lo, cur, cur + 1, wanted});
    }
    s.wanted_epoch.compare_exchange_strong(wanted, kNoEpoch, std::memory_order_acq_rel);
  }
  return ok;
}

void SessionKeyManager::release(TunnelSession& s) {
  for (KeySlots* slots : {&s.tx_keys, &s.rx_keys})
    for (auto& slot : slots->slot) delete slot.exchange(nullptr);
}

}  // namespace dptun
