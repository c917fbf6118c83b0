#include "crypto/key_schedule.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include <cstring>
#include <memory>
#include <string_view>

namespace dptun {

EpochKey::~EpochKey() { OPENSSL_cleanse(key.data(), key.size()); }

namespace {

// HKDF-SHA256 (RFC 5869) of `ikm` into `out`.
bool hkdf_sha256(std::span<const uint8_t> ikm, std::string_view salt, std::span<const uint8_t> info,
                 std::span<uint8_t> out) {
  std::unique_ptr<EVP_KDF, decltype(&EVP_KDF_free)> kdf(EVP_KDF_fetch(nullptr, "HKDF", nullptr), EVP_KDF_free);
  if (!kdf) return false;
  std::unique_ptr<EVP_KDF_CTX, decltype(&EVP_KDF_CTX_free)> ctx(EVP_KDF_CTX_new(kdf.get()), EVP_KDF_CTX_free);
  if (!ctx) return false;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, const_cast<char*>("SHA256"), 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<uint8_t*>(ikm.data()), ikm.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, const_cast<char*>(salt.data()), salt.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<uint8_t*>(info.data()), info.size()),
      OSSL_PARAM_construct_end(),
  };
  return EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) == 1;
}

}  // namespace

bool derive_direct_check_key(std::span<const uint8_t> pair_secret, std::array<uint8_t, kDirectCheckKeyLen>& out) {
  static const uint8_t kInfo[] = {'c', 'h', 'e', 'c', 'k'};
  return hkdf_sha256(pair_secret, "dptun direct v1", kInfo, out);
}

bool derive_direct_data_secret(std::span<const uint8_t> pair_secret, std::array<uint8_t, kBaseSecretLen>& out) {
  static const uint8_t kInfo[] = {'d', 'a', 't', 'a'};
  return hkdf_sha256(pair_secret, "dptun direct v1", kInfo, out);
}

bool derive_epoch_key(std::span<const uint8_t> base_secret, KeyDirection dir, uint32_t session_index, uint64_t epoch,
                      size_t key_len, EpochKey& out) {
  if (key_len != 16 && key_len != 32) return false;
  uint8_t info[24];
  std::memcpy(info, dir == KeyDirection::GatewayToAgent ? "dptun v1 g2a" : "dptun v1 a2g", 12);
  for (int i = 0; i < 4; ++i) info[12 + i] = uint8_t(session_index >> (24 - 8 * i));
  for (int i = 0; i < 8; ++i) info[16 + i] = uint8_t(epoch >> (56 - 8 * i));
  uint8_t okm[32 + kSaltLen];
  if (!hkdf_sha256(base_secret, "dptun relay v1", info, {okm, key_len + kSaltLen})) return false;
  out.epoch = epoch;
  out.key_len = uint8_t(key_len);
  std::memcpy(out.key.data(), okm, key_len);
  std::memcpy(out.salt.data(), okm + key_len, kSaltLen);
  OPENSSL_cleanse(okm, sizeof okm);
  return true;
}

}  // namespace dptun
