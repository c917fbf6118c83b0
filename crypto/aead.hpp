// AES-GCM behind one burst interface: an engine makes per-direction keys, a key processes a burst in place.
// Implementations: OpenSSL EVP (reference, agent) and DPDK cryptodev CPU crypto (gateway fast path).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

namespace dptun {

inline constexpr size_t kAeadIvLen = 12;
inline constexpr size_t kAeadTagLen = 16;

// One AEAD operation over a contiguous buffer, processed in place. Plain data (no default member values), so
// burst arrays of it are not zeroed on every call; build it with aggregate initialisation.
struct AeadOp {
  uint8_t* data;       // plaintext in/ciphertext out (encrypt) or the reverse (decrypt)
  uint32_t len;
  const uint8_t* iv;   // kAeadIvLen bytes
  const uint8_t* aad;  // the key's aad_len bytes
  uint8_t* tag;        // kAeadTagLen bytes: written by encrypt, verified (constant time) by decrypt
};

enum class AeadDirection : uint8_t { Encrypt, Decrypt };

// A key bound to one direction. process() may be called concurrently only with distinct `thread` values.
class AeadKey {
 public:
  virtual ~AeadKey() = default;
  // status[i] = 0 when op i succeeded; non-zero when its tag did not verify or the engine failed.
  // Returns the number of ops that succeeded.
  virtual uint32_t process(std::span<const AeadOp> ops, std::span<int32_t> status, unsigned thread) = 0;
};

class AeadEngine {
 public:
  virtual ~AeadEngine() = default;
  virtual const char* name() const = 0;
  // key: 16 bytes (AES-128-GCM) or 32 bytes (AES-256-GCM). Returns nullptr (and logs) on failure.
  // Slow path: creating keys may allocate and take locks.
  virtual std::unique_ptr<AeadKey> make_key(std::span<const uint8_t> key, AeadDirection dir, uint32_t aad_len) = 0;
};

}  // namespace dptun
