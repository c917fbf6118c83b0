// AES-GCM through DPDK cryptodev synchronous CPU crypto (rte_cryptodev_sym_cpu_crypto_process), one call per
// burst; the gateway's fast path on crypto_aesni_gcm. Keys are DPDK sessions and may be shared by all lcores.
// Needs an initialised EAL.
#pragma once
#include <memory>
#include <string>

#include "crypto/aead.hpp"

struct rte_mempool;

namespace dptun {

class CryptodevAead final : public AeadEngine {
 public:
  // Probes (rte_vdev_init) the device if it does not exist yet, checks it supports CPU crypto AES-GCM,
  // configures and starts it. `max_keys`: size of the session pool. nullptr and `error` set on failure.
  static std::unique_ptr<CryptodevAead> open(const std::string& device, unsigned max_keys, std::string& error);
  ~CryptodevAead() override;
  CryptodevAead(const CryptodevAead&) = delete;
  CryptodevAead& operator=(const CryptodevAead&) = delete;

  const char* name() const override { return "cryptodev"; }
  std::unique_ptr<AeadKey> make_key(std::span<const uint8_t> key, AeadDirection dir, uint32_t aad_len) override;
  uint8_t device_id() const { return dev_id_; }

 private:
  CryptodevAead(uint8_t dev_id, rte_mempool* pool) : dev_id_(dev_id), pool_(pool) {}
  uint8_t dev_id_;
  rte_mempool* pool_;
};

}  // namespace dptun
