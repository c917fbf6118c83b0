#include "crypto/header_protection.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstring>


namespace dptun {

HeaderProtectionKey::HeaderProtectionKey(HpCipher cipher, std::span<const uint8_t> key) : cipher_(cipher) {
  const EVP_CIPHER* c = nullptr;
  switch (cipher) {
    case HpCipher::Aes128: c = key.size() == 16 ? EVP_aes_128_ecb() : nullptr; break;
    case HpCipher::Aes256: c = key.size() == 32 ? EVP_aes_256_ecb() : nullptr; break;
    case HpCipher::ChaCha20: c = key.size() == 32 ? EVP_chacha20() : nullptr; break;
  }
  if (!c) return;
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  if (!ctx) return;
  const bool chacha = cipher == HpCipher::ChaCha20;
  if (chacha) std::memcpy(chacha_key_, key.data(), 32);
  if (EVP_EncryptInit_ex(ctx, c, nullptr, chacha ? nullptr : key.data(), nullptr) != 1) {
    EVP_CIPHER_CTX_free(ctx);
    return;
  }
  if (!chacha) EVP_CIPHER_CTX_set_padding(ctx, 0);
  ctx_ = ctx;
}

HeaderProtectionKey::~HeaderProtectionKey() {
  EVP_CIPHER_CTX_free(ctx_);
  OPENSSL_cleanse(chacha_key_, sizeof chacha_key_);
}

HeaderProtectionKey::HeaderProtectionKey(HeaderProtectionKey&& o) noexcept : cipher_(o.cipher_), ctx_(o.ctx_) {
  std::memcpy(chacha_key_, o.chacha_key_, sizeof chacha_key_);
  OPENSSL_cleanse(o.chacha_key_, sizeof o.chacha_key_);
  o.ctx_ = nullptr;
}

bool HeaderProtectionKey::masks(const uint8_t* samples, size_t n, uint8_t* out) const {
  if (!ctx_) return false;
  if (n == 0) return true;
  int outl = 0;
  if (cipher_ != HpCipher::ChaCha20) {
    // ECB over the burst's samples in one call (no padding: whole blocks in, whole blocks out).
    return EVP_EncryptUpdate(ctx_, out, &outl, samples, int(n * kHpSampleLen)) == 1 &&
           size_t(outl) == n * kHpSampleLen;
  }
  // ChaCha20 (RFC 9001 5.4.4): EVP_chacha20's 16-byte IV is the 32-bit little-endian block counter followed by
  // the 96-bit nonce, which is exactly the sample's layout; the mask is the key stream over zeros.
  static constexpr uint8_t kZeros[kHpMaskLen] = {};
  for (size_t i = 0; i < n; ++i) {
    if (EVP_EncryptInit_ex(ctx_, nullptr, nullptr, chacha_key_, samples + i * kHpSampleLen) != 1 ||
        EVP_EncryptUpdate(ctx_, out + i * kHpMaskLen, &outl, kZeros, int(kHpMaskLen)) != 1 ||
        outl != int(kHpMaskLen))
      return false;
  }
  return true;
}

}  // namespace dptun
