#include "crypto/quic_keys.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

namespace dptun {

namespace {

// RFC 9001 5.2: the QUIC v1 Initial salt.
constexpr uint8_t kInitialSalt[20] = {0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17,
                                      0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a};

const char* digest_of(QuicCipher c) { return c == QuicCipher::Aes256Gcm ? "SHA384" : "SHA256"; }

}  // namespace

const char* quic_cipher_name(QuicCipher c) {
  switch (c) {
    case QuicCipher::Aes128Gcm: return "TLS_AES_128_GCM_SHA256";
    case QuicCipher::Aes256Gcm: return "TLS_AES_256_GCM_SHA384";
    case QuicCipher::ChaCha20Poly1305: return "TLS_CHACHA20_POLY1305_SHA256";
  }
  return "unknown";
}

QuicPacketKeys::~QuicPacketKeys() {
  OPENSSL_cleanse(key.data(), key.size());
  OPENSSL_cleanse(iv.data(), iv.size());
  OPENSSL_cleanse(hp.data(), hp.size());
}

QuicKdf::QuicKdf() {
  if (EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "TLS13-KDF", nullptr)) {
    kdf_ = EVP_KDF_CTX_new(kdf);
    EVP_KDF_free(kdf);  // the context keeps its own reference
  }
  if (EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr)) {
    hmac_ = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);
  }
}

QuicKdf::~QuicKdf() {
  EVP_KDF_CTX_free(kdf_);
  EVP_MAC_CTX_free(hmac_);
}

bool QuicKdf::expand_label(QuicCipher c, std::span<const uint8_t> secret, std::string_view label,
                           std::span<uint8_t> out) {
  if (!ok() || out.empty()) return false;
  char mode[] = "EXPAND_ONLY";
  char prefix[] = "tls13 ";
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MODE, mode, 0),
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, const_cast<char*>(digest_of(c)), 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<uint8_t*>(secret.data()), secret.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PREFIX, prefix, 6),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_LABEL, const_cast<char*>(label.data()), label.size()),
      OSSL_PARAM_construct_end()};
  return EVP_KDF_derive(kdf_, out.data(), out.size(), params) == 1;
}

bool QuicKdf::initial_secrets(std::span<const uint8_t> dcid, std::span<uint8_t, 32> client,
                              std::span<uint8_t, 32> server) {
  if (!ok() || dcid.size() > 20) return false;
  char digest[] = "SHA256";
  const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                               OSSL_PARAM_construct_end()};
  uint8_t initial[32];
  size_t len = 0;
  // HKDF-Extract(salt, IKM = the DCID) is HMAC-Hash(key = salt, data = IKM).
  const bool ok = EVP_MAC_init(hmac_, kInitialSalt, sizeof kInitialSalt, params) == 1 &&
                  EVP_MAC_update(hmac_, dcid.data(), dcid.size()) == 1 &&
                  EVP_MAC_final(hmac_, initial, &len, sizeof initial) == 1 && len == sizeof initial &&
                  expand_label(QuicCipher::Aes128Gcm, initial, "client in", client) &&
                  expand_label(QuicCipher::Aes128Gcm, initial, "server in", server);
  OPENSSL_cleanse(initial, sizeof initial);
  return ok;
}

bool QuicKdf::packet_keys(QuicCipher c, std::span<const uint8_t> secret, QuicPacketKeys& out) {
  if (secret.size() != quic_secret_len(c)) return false;
  out.cipher = c;
  const size_t n = quic_key_len(c);
  return expand_label(c, secret, "quic key", {out.key.data(), n}) && expand_label(c, secret, "quic iv", out.iv) &&
         expand_label(c, secret, "quic hp", {out.hp.data(), n});
}

bool QuicKdf::next_secret(QuicCipher c, std::span<const uint8_t> secret, std::span<uint8_t> out) {
  if (secret.size() != quic_secret_len(c) || out.size() != secret.size()) return false;
  return expand_label(c, secret, "quic ku", out);
}

}  // namespace dptun
