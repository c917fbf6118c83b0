#include "crypto/aead_cryptodev.hpp"

#include <rte_cryptodev.h>
#include <rte_mempool.h>

#include <algorithm>

#include "common/log.hpp"
#include "crypto/cryptodev_device.hpp"

namespace dptun {

namespace {

constexpr uint32_t kChunk = 64;  // ops per rte_cryptodev_sym_cpu_crypto_process call

class CryptodevAeadKey final : public AeadKey {
 public:
  CryptodevAeadKey(uint8_t dev_id, void* session) : dev_id_(dev_id), session_(session) {}
  ~CryptodevAeadKey() override { rte_cryptodev_sym_session_free(dev_id_, session_); }
  CryptodevAeadKey(const CryptodevAeadKey&) = delete;
  CryptodevAeadKey& operator=(const CryptodevAeadKey&) = delete;

  uint32_t process(std::span<const AeadOp> ops, std::span<int32_t> status, unsigned /*thread*/) override {
    uint32_t ok = 0;
    for (size_t base = 0; base < ops.size(); base += kChunk) {
      uint32_t n = uint32_t(std::min<size_t>(kChunk, ops.size() - base));
      rte_crypto_vec data[kChunk];
      rte_crypto_sgl sgl[kChunk];
      rte_crypto_va_iova_ptr iv[kChunk], aad[kChunk], digest[kChunk];
      for (uint32_t i = 0; i < n; ++i) {
        const AeadOp& op = ops[base + i];
        data[i] = rte_crypto_vec{op.data, 0, op.len, 0};
        sgl[i] = rte_crypto_sgl{&data[i], 1};
        iv[i] = rte_crypto_va_iova_ptr{const_cast<uint8_t*>(op.iv), 0};
        aad[i] = rte_crypto_va_iova_ptr{const_cast<uint8_t*>(op.aad), 0};
        digest[i] = rte_crypto_va_iova_ptr{op.tag, 0};
      }
      rte_crypto_sym_vec vec{};
      vec.num = n;
      vec.src_sgl = sgl;
      vec.iv = iv;
      vec.digest = digest;
      vec.aad = aad;
      vec.status = status.data() + base;
      rte_crypto_sym_ofs ofs;
      ofs.raw = 0;
      ok += rte_cryptodev_sym_cpu_crypto_process(dev_id_, session_, ofs, &vec);
    }
    return ok;
  }

 private:
  uint8_t dev_id_;
  void* session_;
};

bool supports_cpu_gcm(uint8_t dev_id, std::string& error) {
  rte_cryptodev_info info;
  rte_cryptodev_info_get(dev_id, &info);
  if (!(info.feature_flags & RTE_CRYPTODEV_FF_SYM_CPU_CRYPTO)) {
    error = std::string("crypto device ") + info.driver_name + " has no synchronous CPU crypto (the engine \"cryptodev-async\" drives such devices through crypto ops)";
    return false;
  }
  return cryptodev_has_gcm(dev_id, 16, error);
}

}  // namespace

std::unique_ptr<CryptodevAead> CryptodevAead::open(const std::string& device, unsigned max_keys, std::string& error) {
  auto id = cryptodev_find(device, error);
  if (!id) return nullptr;
  const uint8_t dev_id = *id;
  if (!supports_cpu_gcm(dev_id, error)) return nullptr;

  rte_cryptodev_config conf{};
  conf.socket_id = rte_cryptodev_socket_id(dev_id);
  conf.nb_queue_pairs = 1;
  if (rte_cryptodev_configure(dev_id, &conf) != 0) {
    error = "cannot configure crypto device '" + device + "'";
    return nullptr;
  }
  rte_cryptodev_qp_conf qp{};
  qp.nb_descriptors = 128;
  if (rte_cryptodev_queue_pair_setup(dev_id, 0, &qp, conf.socket_id) != 0 || rte_cryptodev_start(dev_id) != 0) {
    error = "cannot start crypto device '" + device + "'";
    return nullptr;
  }
  std::string pool_name = "aead_sess_" + std::to_string(dev_id);
  rte_mempool* pool = rte_cryptodev_sym_session_pool_create(
      pool_name.c_str(), std::max(max_keys, 64u), rte_cryptodev_sym_get_private_session_size(dev_id), 0, 0,
      conf.socket_id);
  if (!pool) {
    rte_cryptodev_stop(dev_id);
    error = "cannot allocate the crypto session pool (" + std::to_string(max_keys) + " sessions)";
    return nullptr;
  }
  return std::unique_ptr<CryptodevAead>(new CryptodevAead(dev_id, pool));
}

CryptodevAead::~CryptodevAead() {
  rte_cryptodev_stop(dev_id_);
  rte_mempool_free(pool_);
}

std::unique_ptr<AeadKey> CryptodevAead::make_key(std::span<const uint8_t> key, AeadDirection dir, uint32_t aad_len) {
  if (key.size() != 16 && key.size() != 32) return nullptr;
  void* session = cryptodev_gcm_session(dev_id_, pool_, key, dir, aad_len, 0);  // CPU crypto: IV pointers per op
  if (!session) {
    LOG_ERROR("cryptodev: cannot create an AES-GCM session (pool exhausted?)");
    return nullptr;
  }
  return std::make_unique<CryptodevAeadKey>(dev_id_, session);
}

}  // namespace dptun
