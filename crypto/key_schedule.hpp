// Per-direction, per-epoch AEAD keys from a session's base secret (HKDF-SHA256).
// A frame's epoch is its counter >> 32, so a key never protects more than 2^32 frames; a sender rekeys early
// (time limit) by jumping its counter to the next epoch. See docs/protocol.md "Keys".
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace dptun {

enum class KeyDirection : uint8_t { GatewayToAgent = 0, AgentToGateway = 1 };

inline constexpr size_t kBaseSecretLen = 32;
inline constexpr size_t kSaltLen = 4;
inline constexpr unsigned kEpochShift = 32;

inline uint64_t epoch_of(uint64_t counter) { return counter >> kEpochShift; }
inline uint64_t first_counter_of(uint64_t epoch) { return epoch << kEpochShift; }

// Senders whose keys can outlive their process (static peers; dpgw, to which dpctld re-sends a session after a
// restart) use counters that follow the wall clock in nanoseconds: they start one epoch (kClockLeadNs) ahead of
// CLOCK_REALTIME, never run further ahead than that (a rekey that would is postponed), and never fall more than
// kClockAnchorLagNs behind (they jump forward, to a new epoch, instead). Sending less than one frame per ns, a
// counter is therefore always below wall clock + kClockLeadNs, which a restarted sender starts above: no nonce is
// ever reused. Receivers of static peers refuse counters older than kClockFreshnessNs, so frames recorded long
// ago cannot be replayed to a restarted receiver. Peers' clocks must agree within kClockSkewNs. docs/protocol.md.
inline constexpr uint64_t kClockLeadNs = uint64_t(1) << kEpochShift;
inline constexpr uint64_t kClockAnchorLagNs = 30'000'000'000ull;
inline constexpr uint64_t kClockFreshnessNs = 120'000'000'000ull;
// How far apart the peers' clocks may be; also how far ahead of our clock a peer's counter may run.
inline constexpr uint64_t kClockSkewNs = kClockFreshnessNs - kClockAnchorLagNs;

struct EpochKey {
  uint64_t epoch = 0;
  uint8_t key_len = 0;  // 16 or 32
  std::array<uint8_t, 32> key{};
  std::array<uint8_t, kSaltLen> salt{};
  EpochKey() = default;
  EpochKey(const EpochKey&) = default;
  EpochKey& operator=(const EpochKey&) = default;
  ~EpochKey();  // wipes the key bytes
  std::span<const uint8_t> key_bytes() const { return {key.data(), key_len}; }
};

// HKDF-SHA256(salt = "dptun relay v1", ikm = base_secret,
//             info = "dptun v1 g2a|a2g" || be32(session index) || be64(epoch)),
// expanded to key_len + 4 bytes: the AEAD key, then the nonce salt. The session index makes keys of two
// sessions differ even if they were (wrongly) given the same secret. Returns false if OpenSSL fails.
bool derive_epoch_key(std::span<const uint8_t> base_secret, KeyDirection dir, uint32_t session_index, uint64_t epoch,
                      size_t key_len, EpochKey& out);

// The key of a direct path's connectivity checks (docs/nat-traversal.md): HKDF-SHA256(salt = "dptun direct v1",
// ikm = the pair secret dpctld gave both ends, info = "check"), 32 bytes. A pair secret is fresh for every pairing
// (dpctld draws it), so no key of a relayed session, and no earlier pair's, is ever used again. False if OpenSSL
// fails.
inline constexpr size_t kDirectCheckKeyLen = 32;
bool derive_direct_check_key(std::span<const uint8_t> pair_secret, std::array<uint8_t, kDirectCheckKeyLen>& out);
// The base secret of a pair's data (pair frames, docs/nat-traversal.md "The pair's data"): HKDF-SHA256(salt =
// "dptun direct v1", ikm = the pair secret, info = "data"), 32 bytes, then used as a session's base secret with
// derive_epoch_key (session index = the pair id; the visitor sends GatewayToAgent keys, the agent AgentToGateway
// ones; counters from 0). False if OpenSSL fails.
bool derive_direct_data_secret(std::span<const uint8_t> pair_secret, std::array<uint8_t, kBaseSecretLen>& out);

// Nonce = salt (4 bytes) || counter (8 bytes, big endian): unique per key because counters never repeat.
inline void make_nonce(uint8_t out[12], const std::array<uint8_t, kSaltLen>& salt, uint64_t counter) {
  __builtin_memcpy(out, salt.data(), kSaltLen);
  const uint64_t be = __builtin_bswap64(counter);
  __builtin_memcpy(out + kSaltLen, &be, 8);
}

}  // namespace dptun
