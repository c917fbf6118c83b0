// QUIC version 1 packet protection keys from TLS 1.3 secrets (RFC 9001): Initial secrets from the client's
// Destination Connection ID (5.2), a direction's AEAD key, IV and header-protection key from its traffic secret
// (5.1), and the next key phase's secret (6.1, "quic ku"). HKDF-Expand-Label is OpenSSL's TLS13-KDF (RFC 8446
// 7.1) with an empty context. The cipher suite fixes the hash (SHA-256, or SHA-384 for AES-256-GCM) and lengths.
// One place derives QUIC keys: the Initial reader (ingress/quic_initial.*), and the 1-RTT keys dpgw gets from the
// handshake. Not safe for concurrent use (one QuicKdf per thread); derivations never allocate after construction.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "crypto/header_protection.hpp"

typedef struct evp_kdf_ctx_st EVP_KDF_CTX;
typedef struct evp_mac_ctx_st EVP_MAC_CTX;

namespace dptun {

// The TLS 1.3 cipher suites QUIC v1 uses (RFC 9001 5.3; TLS_AES_128_CCM_SHA256 is not offered by dptun).
enum class QuicCipher : uint8_t {
  Aes128Gcm,         // TLS_AES_128_GCM_SHA256: 16-byte key and hp key, SHA-256
  Aes256Gcm,         // TLS_AES_256_GCM_SHA384: 32-byte key and hp key, SHA-384
  ChaCha20Poly1305,  // TLS_CHACHA20_POLY1305_SHA256: 32-byte key and hp key, SHA-256
};
const char* quic_cipher_name(QuicCipher c);
inline constexpr size_t kQuicMaxSecretLen = 48;
inline constexpr size_t kQuicIvLen = 12;
// Bytes of a traffic secret (the hash's output): 32, or 48 for Aes256Gcm.
inline constexpr size_t quic_secret_len(QuicCipher c) { return c == QuicCipher::Aes256Gcm ? 48 : 32; }
// Bytes of the AEAD key and of the header-protection key: 16 for Aes128Gcm, else 32.
inline constexpr size_t quic_key_len(QuicCipher c) { return c == QuicCipher::Aes128Gcm ? 16 : 32; }
inline constexpr HpCipher quic_hp_cipher(QuicCipher c) {
  return c == QuicCipher::Aes128Gcm ? HpCipher::Aes128 : c == QuicCipher::Aes256Gcm ? HpCipher::Aes256 : HpCipher::ChaCha20;
}

// One direction's packet protection at one key phase. Wiped on destruction.
struct QuicPacketKeys {
  QuicCipher cipher = QuicCipher::Aes128Gcm;
  std::array<uint8_t, 32> key{};   // quic_key_len(cipher) bytes used
  std::array<uint8_t, kQuicIvLen> iv{};
  std::array<uint8_t, 32> hp{};    // quic_key_len(cipher) bytes used
  QuicPacketKeys() = default;
  QuicPacketKeys(const QuicPacketKeys&) = default;
  QuicPacketKeys& operator=(const QuicPacketKeys&) = default;
  ~QuicPacketKeys();
  std::span<const uint8_t> key_bytes() const { return {key.data(), quic_key_len(cipher)}; }
  std::span<const uint8_t> hp_bytes() const { return {hp.data(), quic_key_len(cipher)}; }
};

class QuicKdf {
 public:
  QuicKdf();
  ~QuicKdf();
  QuicKdf(const QuicKdf&) = delete;
  QuicKdf& operator=(const QuicKdf&) = delete;
  bool ok() const { return kdf_ && hmac_; }

  // HKDF-Expand-Label(secret, label, "", out.size()) with the cipher's hash; out.size() <= 255 * hash length.
  bool expand_label(QuicCipher c, std::span<const uint8_t> secret, std::string_view label, std::span<uint8_t> out);
  // RFC 9001 5.2: the client's and the server's Initial secrets (32 bytes each; SHA-256) for a client's first
  // Destination Connection ID (0..20 bytes).
  bool initial_secrets(std::span<const uint8_t> dcid, std::span<uint8_t, 32> client, std::span<uint8_t, 32> server);
  // RFC 9001 5.1: "quic key", "quic iv", "quic hp" from a traffic secret of quic_secret_len(c) bytes.
  bool packet_keys(QuicCipher c, std::span<const uint8_t> secret, QuicPacketKeys& out);
  // RFC 9001 6.1: the secret of the next key phase, "quic ku" (same length as `secret`). The header-protection
  // key does not change with the key phase (6.3): only key and IV come from the new secret.
  bool next_secret(QuicCipher c, std::span<const uint8_t> secret, std::span<uint8_t> out);

 private:
  EVP_KDF_CTX* kdf_ = nullptr;   // TLS13-KDF, expand only
  EVP_MAC_CTX* hmac_ = nullptr;  // HKDF-Extract of the Initial secret (HMAC-SHA256)
};

}  // namespace dptun
