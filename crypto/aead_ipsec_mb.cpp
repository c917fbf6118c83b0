#include "crypto/aead_ipsec_mb.hpp"

#include <intel-ipsec-mb.h>
#include <openssl/crypto.h>

#include <cstdlib>
#include <cstring>

namespace dptun {

namespace {

class IpsecMbKey final : public AeadKey {
 public:
  IpsecMbKey(IMB_MGR** mgrs, AeadDirection dir, uint32_t aad_len, bool aes256)
      : mgrs_(mgrs), dir_(dir), aad_len_(aad_len), aes256_(aes256) {}
  ~IpsecMbKey() override { OPENSSL_cleanse(&key_, sizeof key_); }

  // Runs on the thread making the key (dpgw: the main lcore) with manager 0, which worker 0 may be using: the key
  // expansion only reads the manager's function table and writes `key_`, not yet visible to any worker.
  void expand(std::span<const uint8_t> key) {
    if (aes256_)
      IMB_AES256_GCM_PRE(mgrs_[0], key.data(), &key_);
    else
      IMB_AES128_GCM_PRE(mgrs_[0], key.data(), &key_);
  }

  uint32_t process(std::span<const AeadOp> ops, std::span<int32_t> status, unsigned thread) override {
    IMB_MGR* m = mgrs_[thread];
    gcm_context_data ctx;
    uint32_t ok = 0;
    for (size_t i = 0; i < ops.size(); ++i) {
      const AeadOp& op = ops[i];
      if (dir_ == AeadDirection::Encrypt) {
        if (aes256_)
          IMB_AES256_GCM_ENC(m, &key_, &ctx, op.data, op.data, op.len, op.iv, op.aad, aad_len_, op.tag, kAeadTagLen);
        else
          IMB_AES128_GCM_ENC(m, &key_, &ctx, op.data, op.data, op.len, op.iv, op.aad, aad_len_, op.tag, kAeadTagLen);
        status[i] = 0;
      } else {
        uint8_t tag[kAeadTagLen];
        if (aes256_)
          IMB_AES256_GCM_DEC(m, &key_, &ctx, op.data, op.data, op.len, op.iv, op.aad, aad_len_, tag, kAeadTagLen);
        else
          IMB_AES128_GCM_DEC(m, &key_, &ctx, op.data, op.data, op.len, op.iv, op.aad, aad_len_, tag, kAeadTagLen);
        status[i] = CRYPTO_memcmp(tag, op.tag, kAeadTagLen) == 0 ? 0 : -1;
      }
      ok += status[i] == 0;
    }
    OPENSSL_cleanse(&ctx, sizeof ctx);
    return ok;
  }

 private:
  IMB_MGR** mgrs_;
  AeadDirection dir_;
  uint32_t aad_len_;
  bool aes256_;
  alignas(64) gcm_key_data key_;
};

}  // namespace

std::unique_ptr<IpsecMbAead> IpsecMbAead::open(unsigned threads, std::string& error) {
  std::unique_ptr<IpsecMbAead> e(new IpsecMbAead());
  if (!e->mgrs_.open(threads, error)) return nullptr;
  return e;
}

IpsecMbAead::~IpsecMbAead() = default;

std::unique_ptr<AeadKey> IpsecMbAead::make_key(std::span<const uint8_t> key, AeadDirection dir, uint32_t aad_len) {
  if (key.size() != 16 && key.size() != 32) return nullptr;
  auto k = std::make_unique<IpsecMbKey>(mgrs_.data(), dir, aad_len, key.size() == 32);
  k->expand(key);
  return k;
}

}  // namespace dptun
