// QUIC header-protection masks (RFC 9001 5.4.3: AES-ECB of each 16-byte sample; AES-128 and AES-256 only) through
// ipsec-mb's AES-ECB: a key is expanded once and then shared read-only by every thread, each thread has its own
// ipsec-mb manager, and a burst of samples laid side by side is one job. This is what the gateway's workers need:
// every worker sends to every session, and OpenSSL's HeaderProtectionKey (crypto/header_protection.hpp, the
// reference) holds a context that cannot be shared. The masks are the same bytes as the reference's.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "crypto/header_protection.hpp"
#include "crypto/ipsec_mb_managers.hpp"

namespace dptun {

// An expanded AES encryption key: immutable once made, safe to read from any thread. Wiped on destruction.
struct HpExpandedKey {
  alignas(16) std::array<uint8_t, 15 * 16> round_keys{};  // AES-256 has 15 round keys
  uint32_t key_len = 0;  // 16 or 32; 0: not made
  HpExpandedKey() = default;
  HpExpandedKey(const HpExpandedKey&) = default;
  HpExpandedKey& operator=(const HpExpandedKey&) = default;
  ~HpExpandedKey();
};

class IpsecMbHeaderProtection {
 public:
  // One ipsec-mb manager per `thread` value masks() will see; nullptr and `error` when the library cannot run here.
  static std::unique_ptr<IpsecMbHeaderProtection> open(unsigned threads, std::string& error);
  IpsecMbHeaderProtection(const IpsecMbHeaderProtection&) = delete;
  IpsecMbHeaderProtection& operator=(const IpsecMbHeaderProtection&) = delete;

  // False for ChaCha20 or a key of the wrong length (Aes128: 16 bytes, Aes256: 32).
  bool make_key(HpCipher cipher, std::span<const uint8_t> key, HpExpandedKey& out) const;
  // `n` samples side by side (n * kHpSampleLen bytes) -> n masks (n * kHpMaskLen bytes), in one job. Concurrent
  // calls only with distinct `thread` values. False when the key is not made or the job failed.
  bool masks(const HpExpandedKey& key, const uint8_t* samples, size_t n, uint8_t* masks, unsigned thread) const;

 private:
  IpsecMbHeaderProtection() = default;
  IpsecMbManagers mgrs_;
};

}  // namespace dptun
