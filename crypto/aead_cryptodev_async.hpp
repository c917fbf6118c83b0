// AES-GCM through DPDK's cryptodev operation API (rte_crypto_op bursts: rte_cryptodev_enqueue_burst, then
// rte_cryptodev_dequeue_burst until every op is back): the engine for look-aside hardware such as Intel QAT
// (crypto_qat), tested on crypto_aesni_gcm. Needs an initialised EAL.
//
// Each `thread` value of AeadKey::process has its own queue pair, crypto ops and mbufs, made up front, so a
// burst allocates nothing. The op API wants an mbuf (m_src): the caller's buffer is attached to a pooled mbuf
// as an external buffer (rte_pktmbuf_attach_extbuf), processed in place and detached again. The IV, the AAD
// (padded to 16 bytes, as GCM asks) and the tag travel in the op's private area, which is DPDK memory with a
// known IOVA whatever memory the caller keeps them in; the tag is copied in (decrypt) or out (encrypt).
// Contract on a hardware device (RTE_CRYPTODEV_FF_HW_ACCELERATED): AeadOp::data must lie in DPDK memory
// (mbufs, rte_malloc; dpgw's frames do) and be IOVA-contiguous; an op whose buffer is not fails with a non-zero
// status. A CPU device reads virtual addresses and takes any memory. AeadOp::len is at most 65535.
#pragma once
#include <memory>
#include <string>

#include "crypto/aead.hpp"

struct rte_mempool;

namespace dptun {

class CryptodevAsyncAead final : public AeadEngine {
 public:
  // The largest AAD a key may take (bytes; the op's private area holds it padded to 16).
  static constexpr uint32_t kMaxAad = 64;
  // Ops in flight per queue pair: a longer burst goes in chunks of this many.
  static constexpr uint32_t kDepth = 64;

  // `device`: a cryptodev name ("crypto_aesni_gcm0", "0000:3d:01.0_qat_sym"), a vdev to create
  // ("crypto_aesni_gcm1,max_nb_queue_pairs=4"), or a PCI address whose symmetric crypto device to use. Checks
  // AES-GCM (128- and 256-bit keys, 16-byte tag, 12-byte IV), configures `threads` queue pairs (one per
  // process() thread) and starts the device. `max_keys`: size of the session pool. nullptr and `error` set on
  // failure (the message names the device and what it lacks).
  static std::unique_ptr<CryptodevAsyncAead> open(const std::string& device, unsigned threads, unsigned max_keys,
                                                  std::string& error);
  ~CryptodevAsyncAead() override;
  CryptodevAsyncAead(const CryptodevAsyncAead&) = delete;
  CryptodevAsyncAead& operator=(const CryptodevAsyncAead&) = delete;

  const char* name() const override { return "cryptodev-async"; }
  // Keys must be destroyed before the engine. aad_len <= kMaxAad and within the device's AAD range.
  std::unique_ptr<AeadKey> make_key(std::span<const uint8_t> key, AeadDirection dir, uint32_t aad_len) override;
  uint8_t device_id() const { return dev_id_; }
  const std::string& driver() const { return driver_; }

  struct Lane;  // one queue pair's ops and mbufs (crypto/aead_cryptodev_async.cpp)

 private:
  CryptodevAsyncAead() = default;
  bool start(unsigned threads, unsigned max_keys, std::string& error);

  uint8_t dev_id_ = 0;
  std::string driver_;
  bool started_ = false;
  bool hardware_ = false;  // the device DMAs: buffers must be DPDK memory
  rte_mempool* session_pool_ = nullptr;
  rte_mempool* op_pool_ = nullptr;
  rte_mempool* mbuf_pool_ = nullptr;
  std::unique_ptr<Lane[]> lanes_;  // one per thread
  unsigned n_lanes_ = 0;
};

}  // namespace dptun
