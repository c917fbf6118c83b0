// AES-GCM through OpenSSL EVP: the reference implementation and the fallback engine.
#pragma once
#include "crypto/aead.hpp"

namespace dptun {

class OpensslAead final : public AeadEngine {
 public:
  // `threads`: how many distinct `thread` values process() will see (one EVP context each, made up front).
  explicit OpensslAead(unsigned threads = 1) : threads_(threads) {}
  const char* name() const override { return "openssl"; }
  std::unique_ptr<AeadKey> make_key(std::span<const uint8_t> key, AeadDirection dir, uint32_t aad_len) override;

 private:
  unsigned threads_;
};

}  // namespace dptun
