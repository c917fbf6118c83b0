#include "agent/agent_session.hpp"

#include <openssl/crypto.h>

#include <algorithm>

#include "common/clock.hpp"

namespace dptun {

namespace {
constexpr uint64_t kNone = ~uint64_t(0);
constexpr size_t kMaxRxKeys = 8;
}  // namespace

AgentSession::AgentSession(uint32_t index, std::vector<uint8_t> base_secret, uint8_t key_len,
                           uint64_t rekey_interval_ns, AeadEngine& engine, CounterMode mode, End end)
    : index_(index),
      base_secret_(std::move(base_secret)),
      key_len_(key_len),
      rekey_interval_ns_(rekey_interval_ns),
      engine_(engine),
      mode_(mode),
      tx_dir_(end == End::Agent ? KeyDirection::AgentToGateway : KeyDirection::GatewayToAgent),
      rx_dir_(end == End::Agent ? KeyDirection::GatewayToAgent : KeyDirection::AgentToGateway),
      realtime_(realtime_ns),
      // Static keys outlive restarts: start one epoch ahead of the wall clock so a restarted agent never reuses
      // a nonce (crypto/key_schedule.hpp).
      tx_counter_(mode == CounterMode::WallClock ? realtime_ns() + kClockLeadNs : 0) {}

AgentSession::~AgentSession() { OPENSSL_cleanse(base_secret_.data(), base_secret_.size()); }

AgentSession::Key* AgentSession::make_key(KeyDirection dir, uint64_t epoch) {
  EpochKey ek;
  if (!derive_epoch_key(base_secret_, dir, index_, epoch, key_len_, ek)) return nullptr;
  auto k = std::make_unique<Key>();
  k->salt = ek.salt;
  k->aead = engine_.make_key(ek.key_bytes(),
                             dir == tx_dir_ ? AeadDirection::Encrypt : AeadDirection::Decrypt,
                             codec_.layout().header_len);  // the frame header is the AAD
  return k->aead ? k.release() : nullptr;
}

void AgentSession::anchor_to_clock() {
  if (mode_ != CounterMode::WallClock) return;
  const uint64_t real = realtime_();
  if (tx_counter_ < real) {
    tx_counter_ = real;
    ++rekeys_;
  }
}

bool AgentSession::seal(FrameType type, uint8_t flags, uint8_t* frame, size_t encrypted_len, uint64_t now_ns) {
  if (!seal_later(type, flags, frame, encrypted_len, now_ns)) return false;
  // Frames kept before this one are sealed too.
  bool failed = false;
  seal_pending(frame, &failed);
  return !failed;
}

bool AgentSession::seal_later(FrameType type, uint8_t flags, uint8_t* frame, size_t encrypted_len, uint64_t now_ns) {
  if (mode_ == CounterMode::WallClock) {
    const uint64_t real = realtime_();
    if (tx_counter_ + kClockAnchorLagNs < real) {  // keep within the receiver's freshness limit
      tx_counter_ = real;
      ++rekeys_;
    }
  }
  uint64_t e = epoch_of(tx_counter_);
  if (e == tx_epoch_ && now_ns - tx_epoch_since_ns_ >= rekey_interval_ns_) {
    // Timed rekey: on to the next epoch's key. Static keys: at least to the wall clock's epoch, but never more
    // than one epoch ahead of the wall clock (else the rekey waits for the clock).
    if (mode_ == CounterMode::FromZero) {
      tx_counter_ = first_counter_of(e + 1);
      ++rekeys_;
    } else {
      const uint64_t real = realtime_();
      const uint64_t next = std::max(first_counter_of(e + 1), real);
      if (next <= real + kClockLeadNs) {
        tx_counter_ = next;
        ++rekeys_;
      }
    }
    e = epoch_of(tx_counter_);
  }
  if (e != tx_epoch_ || !tx_key_) {
    seal_pending();  // what was kept goes under the key it was counted for
    tx_key_.reset(make_key(tx_dir_, e));
    if (!tx_key_) return false;
    tx_epoch_ = e;
    tx_epoch_since_ns_ = now_ns;
  }
  if (pending_ == kMaxPending) seal_pending();
  const uint64_t counter = tx_counter_++;
  codec_.write_header(frame, FrameMeta{type, flags, index_, counter});
  make_nonce(pending_ivs_[pending_].data(), tx_key_->salt, counter);
  pending_ops_[pending_] = codec_.seal_op(frame, uint32_t(encrypted_len), pending_ivs_[pending_].data());
  pending_len_[pending_] = codec_.layout().frame_len(uint32_t(encrypted_len));
  // seal_op names the frame's encrypted part; the frame itself starts at `frame` (kept for protect and wiping).
  pending_frames_[pending_++] = frame;
  return true;
}

size_t AgentSession::seal_pending(const uint8_t* watch, bool* watch_failed) {
  if (!pending_) return 0;
  int32_t status[kMaxPending];
  tx_key_->aead->process({pending_ops_.data(), pending_}, {status, pending_}, tx_thread_);
  size_t failed = 0;
  for (size_t i = 0; i < pending_; ++i) {
    if (status[i]) {
      OPENSSL_cleanse(pending_frames_[i], pending_len_[i]);  // never in clear on the wire
      if (pending_frames_[i] == watch && watch_failed) *watch_failed = true;
      ++failed;
      continue;
    }
    codec_.protect({pending_frames_[i], pending_len_[i]});
  }
  pending_ = 0;
  return failed;
}

// Epochs a legitimate gateway is expected to use next: around the newest authenticated one, and (static keys)
// around the wall clock's. Keys for these are derived whenever needed; any other epoch costs from a budget.
bool AgentSession::expected_epoch(uint64_t epoch, uint64_t real_ns) const {
  if (rx_epoch_ != kNone && epoch + 1 >= rx_epoch_ && epoch <= rx_epoch_ + 1) return true;
  if (mode_ == CounterMode::WallClock) {
    const uint64_t now_epoch = epoch_of(real_ns);
    return epoch + 1 >= now_epoch && epoch <= now_epoch + 1;
  }
  return false;
}

AgentSession::Key* AgentSession::rx_key(uint64_t epoch, uint64_t now_ns, uint64_t real_ns) {
  if (auto it = rx_keys_.find(epoch); it != rx_keys_.end()) return it->second.get();
  if (mode_ == CounterMode::WallClock && epoch > epoch_of(real_ns + kClockSkewNs) + 1) return nullptr;  // future
  if (!expected_epoch(epoch, real_ns)) {
    // Unauthenticated frames choose the epoch: derive at most 20 unexpected keys per second.
    if (now_ns - derive_refill_ns_ >= kNsPerSec) {
      derive_tokens_ = 20;
      derive_refill_ns_ = now_ns;
    }
    if (!derive_tokens_) return nullptr;
    --derive_tokens_;
  }
  Key* k = make_key(rx_dir_, epoch);
  if (!k) return nullptr;
  // Bounded cache: drop keys of epochs no longer expected, oldest first.
  while (rx_keys_.size() >= kMaxRxKeys) {
    auto victim = rx_keys_.begin();
    for (auto it = rx_keys_.begin(); it != rx_keys_.end(); ++it)
      if (!expected_epoch(it->first, real_ns)) {
        victim = it;
        break;
      }
    rx_keys_.erase(victim);
  }
  rx_keys_[epoch].reset(k);
  return k;
}

AgentSession::OpenResult AgentSession::open(std::span<uint8_t> frame, FrameMeta& meta, uint64_t now_ns) {
  Received r{frame, this, {}, OpenResult::Malformed};
  open_burst({&r, 1}, now_ns);
  meta = r.meta;
  return r.result;
}

void AgentSession::open_burst(std::span<Received> batch, uint64_t now_ns) {
  constexpr size_t kRun = 64;
  AeadOp ops[kRun];
  int32_t status[kRun];
  uint8_t ivs[kRun][kAeadIvLen];
  Received* pending[kRun];
  size_t run = 0;
  Key* key = nullptr;
  uint64_t run_epoch = kNone;
  const uint64_t real = mode_ == CounterMode::WallClock ? realtime_() : 0;
  // The frames of one key in one call; then, in frame order, the replay window decides.
  auto finish = [&] {
    if (!run) return;
    key->aead->process({ops, run}, {status, run}, rx_thread_);
    for (size_t j = 0; j < run; ++j) {
      Received& r = *pending[j];
      if (status[j]) {
        r.result = OpenResult::AuthFail;
      } else if (!replay_.accept(r.meta.counter)) {
        r.result = OpenResult::Replay;
      } else {
        r.result = OpenResult::Ok;
        const uint64_t epoch = epoch_of(r.meta.counter);
        if (rx_epoch_ == kNone || epoch > rx_epoch_) rx_epoch_ = epoch;
      }
    }
    run = 0;
  };
  for (Received& r : batch) {
    if (r.session != this) continue;
    if (codec_.read_header(r.frame, replay_.top(), r.meta) != FrameError::None) {
      r.result = OpenResult::Malformed;
      continue;
    }
    if (r.meta.receiver_index != index_) {
      r.result = OpenResult::WrongSession;
      continue;
    }
    if (!replay_.check(r.meta.counter)) {
      r.result = OpenResult::Replay;
      continue;
    }
    if (mode_ == CounterMode::WallClock && r.meta.counter + kClockFreshnessNs < real) {
      r.result = OpenResult::Stale;
      continue;
    }
    const uint64_t epoch = epoch_of(r.meta.counter);
    // Another epoch's key may have to be derived, which may drop a cached one: the run under the current key is
    // finished first.
    if (run && (epoch != run_epoch || run == kRun)) finish();
    if (!run) {
      key = rx_key(epoch, now_ns, real);
      if (!key) {
        r.result = OpenResult::NoKey;
        continue;
      }
      run_epoch = epoch;
    }
    make_nonce(ivs[run], key->salt, r.meta.counter);
    ops[run] = codec_.open_op(r.frame, ivs[run]);
    pending[run++] = &r;
  }
  finish();
}

}  // namespace dptun
