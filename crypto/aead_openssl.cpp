#include "crypto/aead_openssl.hpp"

#include <openssl/evp.h>

#include <vector>

#include "common/log.hpp"

namespace dptun {

namespace {

struct EvpCtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using EvpCtx = std::unique_ptr<EVP_CIPHER_CTX, EvpCtxFree>;

class OpensslAeadKey final : public AeadKey {
 public:
  OpensslAeadKey(AeadDirection dir, uint32_t aad_len) : dir_(dir), aad_len_(aad_len) {}

  bool init(std::span<const uint8_t> key, unsigned threads) {
    const EVP_CIPHER* cipher = key.size() == 16 ? EVP_aes_128_gcm() : key.size() == 32 ? EVP_aes_256_gcm() : nullptr;
    if (!cipher) return false;
    for (unsigned t = 0; t < threads; ++t) {
      EvpCtx ctx(EVP_CIPHER_CTX_new());
      if (!ctx) return false;
      int ok = dir_ == AeadDirection::Encrypt ? EVP_EncryptInit_ex(ctx.get(), cipher, nullptr, key.data(), nullptr)
                                              : EVP_DecryptInit_ex(ctx.get(), cipher, nullptr, key.data(), nullptr);
      if (ok != 1) return false;
      ctxs_.push_back(std::move(ctx));
    }
    return true;
  }

  uint32_t process(std::span<const AeadOp> ops, std::span<int32_t> status, unsigned thread) override {
    EVP_CIPHER_CTX* ctx = ctxs_[thread].get();
    uint32_t ok = 0;
    for (size_t i = 0; i < ops.size(); ++i) {
      bool good = dir_ == AeadDirection::Encrypt ? encrypt(ctx, ops[i]) : decrypt(ctx, ops[i]);
      status[i] = good ? 0 : -1;
      ok += good;
    }
    return ok;
  }

 private:
  bool encrypt(EVP_CIPHER_CTX* ctx, const AeadOp& op) {
    int outl = 0;
    if (EVP_EncryptInit_ex(ctx, nullptr, nullptr, nullptr, op.iv) != 1) return false;
    if (aad_len_ && EVP_EncryptUpdate(ctx, nullptr, &outl, op.aad, int(aad_len_)) != 1) return false;
    if (op.len && EVP_EncryptUpdate(ctx, op.data, &outl, op.data, int(op.len)) != 1) return false;
    if (EVP_EncryptFinal_ex(ctx, op.data + op.len, &outl) != 1) return false;
    return EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, int(kAeadTagLen), op.tag) == 1;
  }
  bool decrypt(EVP_CIPHER_CTX* ctx, const AeadOp& op) {
    int outl = 0;
    if (EVP_DecryptInit_ex(ctx, nullptr, nullptr, nullptr, op.iv) != 1) return false;
    if (aad_len_ && EVP_DecryptUpdate(ctx, nullptr, &outl, op.aad, int(aad_len_)) != 1) return false;
    if (op.len && EVP_DecryptUpdate(ctx, op.data, &outl, op.data, int(op.len)) != 1) return false;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, int(kAeadTagLen), op.tag) != 1) return false;
    return EVP_DecryptFinal_ex(ctx, op.data + op.len, &outl) == 1;  // constant-time tag compare in OpenSSL
  }

  AeadDirection dir_;
  uint32_t aad_len_;
  std::vector<EvpCtx> ctxs_;
};

}  // namespace

std::unique_ptr<AeadKey> OpensslAead::make_key(std::span<const uint8_t> key, AeadDirection dir, uint32_t aad_len) {
  auto k = std::make_unique<OpensslAeadKey>(dir, aad_len);
  if (!k->init(key, threads_)) {
    LOG_ERROR("openssl aead: cannot create a %zu-byte AES-GCM key", key.size());
    return nullptr;
  }
  return k;
}

}  // namespace dptun
