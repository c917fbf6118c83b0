// QUIC header protection masks (RFC 9001 5.4): AES-ECB of a 16-byte sample (5.4.3, AES-128 or AES-256) or
// ChaCha20 with the sample as its 4-byte little-endian block counter and 12-byte nonce (5.4.4). Of each 16-byte
// mask, bytes 0..4 are used (proto/quic_short_header.hpp applies them).
// This is the reference through OpenSSL EVP (one context, one thread: the codec, a session's RX worker, tests);
// crypto/hp_ipsec_mb.hpp computes the same masks from a key all threads share, for the gateway's sending workers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;

namespace dptun {

inline constexpr size_t kHpSampleLen = 16;  // RFC 9001 5.4.2
inline constexpr size_t kHpMaskLen = 16;    // what masks() writes per sample (5 bytes are used)

enum class HpCipher : uint8_t { Aes128, Aes256, ChaCha20 };

// One header-protection key ("quic hp", RFC 9001 5.1): 16 bytes (Aes128) or 32 (Aes256, ChaCha20). Not safe for
// concurrent use: one per thread and direction.
class HeaderProtectionKey {
 public:
  HeaderProtectionKey(HpCipher cipher, std::span<const uint8_t> key);
  ~HeaderProtectionKey();
  HeaderProtectionKey(HeaderProtectionKey&& o) noexcept;
  HeaderProtectionKey& operator=(HeaderProtectionKey&&) = delete;
  HeaderProtectionKey(const HeaderProtectionKey&) = delete;
  HeaderProtectionKey& operator=(const HeaderProtectionKey&) = delete;

  // False when the key length does not fit the cipher or OpenSSL failed.
  bool ok() const { return ctx_ != nullptr; }
  HpCipher cipher() const { return cipher_; }

  // `n` samples lying side by side (n * 16 bytes) -> n masks of 16 bytes (`masks`, n * 16 bytes). AES: one
  // EVP call for the whole burst. False on a crypto failure (masks then undefined).
  bool masks(const uint8_t* samples, size_t n, uint8_t* masks) const;
  bool mask(const uint8_t* sample, uint8_t out[kHpMaskLen]) const { return masks(sample, 1, out); }

 private:
  HpCipher cipher_;
  uint8_t chacha_key_[32] = {};  // ChaCha20: re-keyed with each sample as its IV
  EVP_CIPHER_CTX* ctx_ = nullptr;
};

}  // namespace dptun
