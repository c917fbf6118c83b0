#include "dataplane/tables/session.hpp"

#include "dataplane/tables/quic_session.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <initializer_list>

#include "common/clock.hpp"
#include "common/log.hpp"
#include "proto/relay_frame.hpp"

namespace dptun {

TunnelSession::TunnelSession() = default;

TunnelSession::~TunnelSession() {
  if (!base_secret.empty()) OPENSSL_cleanse(base_secret.data(), base_secret.size());
}

bool SessionKeyManager::ensure(TunnelSession& s, KeySlots& slots, KeyDirection dir, AeadDirection use,
                               const EpochSet& want) {
  for (int w = 0; w < want.n; ++w) {
    const uint64_t epoch = want.v[w];
    if (slots.find(epoch)) continue;
    // A slot that is empty or holds an epoch nobody wants any more; |want| <= kSlots, so one exists.
    int victim = -1;
    for (int i = 0; i < KeySlots::kSlots && victim < 0; ++i) {
      EpochCipher* c = slots.slot[i].load(std::memory_order_relaxed);
      if (!c || !want.has(c->epoch)) victim = i;
    }
    if (victim < 0) return false;
    EpochKey key;
    if (!derive_epoch_key(s.base_secret, dir, s.index, epoch, key_len_, key)) {
      LOG_ERROR("session %u: key derivation failed", s.index);
      return false;
    }
    auto cipher = std::make_unique<EpochCipher>();
    cipher->epoch = epoch;
    cipher->salt = key.salt;
    cipher->aead = engine_.make_key(key.key_bytes(), use, RelayCodec::kLayout.header_len);  // the header is the AAD
    if (!cipher->aead) return false;
    reclaimer_.retire(slots.slot[victim].exchange(cipher.release(), std::memory_order_acq_rel));
  }
  return true;
}

bool SessionKeyManager::maintain(TunnelSession& s, uint64_t now_ns, uint64_t real_ns) {
  // A QUIC session's keys and packet numbers are its QuicSessionState's (the connection's 1-RTT keys, numbers from
  // first_tx_pn on): no relay epochs, and its counter never follows the wall clock (the peer rebuilds packet
  // numbers from 1..4 bytes: a jump of 2^31 or more would be misread).
  // A MASQUE client whose capsules dpctld carries takes no frame from the network and is sent none: no keys either.
  if (s.quic || (s.masque && s.masque->request_id)) return true;
  bool ok = true;
  const uint64_t now_epoch = epoch_of(real_ns);

  // Transmit.
  uint64_t counter = s.tx_counter.load(std::memory_order_relaxed);
  const uint64_t cur = epoch_of(counter);
  if (cur != s.ctl_tx_epoch) {
    s.ctl_tx_epoch = cur;
    s.ctl_tx_epoch_since_ns = now_ns;
  }
  uint64_t target = 0;  // counter to jump to; 0: none
  if (counter + kClockAnchorLagNs < real_ns) target = real_ns;  // little traffic: keep up with the wall clock
  if (now_ns - s.ctl_tx_epoch_since_ns >= rekey_interval_ns_) {
    // Timed rekey, but never further ahead of the wall clock than one epoch (restart safety): if it would be,
    // it waits until the clock has caught up.
    uint64_t next = std::max(first_counter_of(cur + 1), real_ns);
    if (next <= real_ns + kClockLeadNs) target = std::max(target, next);
  }
  EpochSet tx;
  tx.add(cur);
  tx.add(cur + 1);
  if (target) {
    tx.add(epoch_of(target));
    tx.add(epoch_of(target) + 1);
  }
  tx.add(now_epoch);
  tx.add(now_epoch + 1);
  // Which way our frames go: gateway to agent, unless this end is the session's agent (the edge role).
  const KeyDirection tx_dir = s.agent_side ? KeyDirection::AgentToGateway : KeyDirection::GatewayToAgent;
  const KeyDirection rx_dir = s.agent_side ? KeyDirection::GatewayToAgent : KeyDirection::AgentToGateway;
  ok &= ensure(s, s.tx_keys, tx_dir, AeadDirection::Encrypt, tx);
  if (ok && target) {
    while (counter < target && !s.tx_counter.compare_exchange_weak(counter, target, std::memory_order_relaxed)) {
    }
    ++rekeys_;
    LOG_DEBUG("session %u: transmit side moved to epoch %llu", s.index, (unsigned long long)epoch_of(target));
  }

  // Receive.
  const uint64_t seen = s.rx_epoch.load(std::memory_order_acquire);
  uint64_t wanted = s.wanted_epoch.exchange(kNoEpoch, std::memory_order_acq_rel);
  if (wanted != kNoEpoch && now_ns - s.ctl_probe_ns >= 50'000'000ull) {
    // Unauthenticated hint: only epochs a legitimate peer could be in, and not too often.
    bool plausible = s.peer_clock_counters
                         ? wanted >= epoch_of(real_ns - kClockFreshnessNs) &&
                               wanted <= epoch_of(real_ns + kClockSkewNs) + 1
                         : seen == kNoEpoch || wanted > seen + 1;
    if (plausible) {
      s.ctl_probe_epoch = wanted;
      s.ctl_probe_ns = now_ns;
    }
  }
  EpochSet rx;
  if (seen != kNoEpoch) {
    rx.add(seen);
    rx.add(seen + 1);
    if (seen) rx.add(seen - 1);
  }
  if (s.peer_clock_counters) {
    rx.add(now_epoch);
    rx.add(now_epoch + 1);
    rx.add(now_epoch - 1);
  } else if (seen == kNoEpoch) {
    rx.add(0);  // a fresh session's agent counts from 0
    rx.add(1);
  }
  if (s.ctl_probe_epoch != kNoEpoch) rx.add(s.ctl_probe_epoch);
  ok &= ensure(s, s.rx_keys, rx_dir, AeadDirection::Decrypt, rx);
  return ok;
}

}  // namespace dptun
