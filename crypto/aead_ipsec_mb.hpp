// AES-GCM through Intel's ipsec-mb library (its direct GCM API: one call per operation, keys expanded once, no
// provider dispatch per call): dpgw's default engine (crypto.engine "ipsec-mb") and dpagent's where the library
// finds AES-NI, OpenSSL EVP otherwise. The same library does the work behind DPDK's crypto_aesni_gcm. Tags are
// compared in constant time.
#pragma once
#include <memory>
#include <string>

#include "crypto/aead.hpp"
#include "crypto/ipsec_mb_managers.hpp"

namespace dptun {

class IpsecMbAead final : public AeadEngine {
 public:
  // One ipsec-mb manager per `thread` value process() will see. nullptr and `error` set when the library cannot run
  // here (no AES-NI, out of memory).
  static std::unique_ptr<IpsecMbAead> open(unsigned threads, std::string& error);
  ~IpsecMbAead() override;
  IpsecMbAead(const IpsecMbAead&) = delete;
  IpsecMbAead& operator=(const IpsecMbAead&) = delete;

  const char* name() const override { return "ipsec-mb"; }
  std::unique_ptr<AeadKey> make_key(std::span<const uint8_t> key, AeadDirection dir, uint32_t aad_len) override;
  // The instruction set the library chose (sse, avx, avx2, avx512).
  const char* arch() const { return mgrs_.arch(); }

 private:
  IpsecMbAead() = default;
  IpsecMbManagers mgrs_;
};

}  // namespace dptun
