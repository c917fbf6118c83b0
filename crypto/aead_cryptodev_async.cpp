#include "crypto/aead_cryptodev_async.hpp"

#include <rte_cryptodev.h>
#include <rte_eal.h>
#include <rte_mbuf.h>
#include <rte_memory.h>
#include <rte_mempool.h>
#include <rte_pause.h>

#include <algorithm>
#include <cstring>

#include "common/log.hpp"
#include "crypto/cryptodev_device.hpp"

namespace dptun {

namespace {

// The op's private area, after the symmetric op: where the PMD reads the IV (xform iv.offset), and the AAD and
// tag it is pointed at. GCM wants at least 16 bytes for the IV and the AAD padded to 16 bytes.
struct OpPrivate {
  alignas(16) uint8_t iv[16];
  alignas(16) uint8_t aad[CryptodevAsyncAead::kMaxAad];
  alignas(16) uint8_t digest[kAeadTagLen];
  uint16_t slot;  // the op's place in its chunk
};
// From the op's start, rounded up to OpPrivate's alignment (the op pool's objects are cache-line aligned); the pool's
// private size covers the gap.
constexpr uint16_t kOpsEnd = sizeof(rte_crypto_op) + sizeof(rte_crypto_sym_op);
constexpr uint16_t kPrivateOffset = uint16_t((kOpsEnd + alignof(OpPrivate) - 1) & ~(alignof(OpPrivate) - 1));
constexpr uint16_t kPrivateSize = uint16_t(kPrivateOffset - kOpsEnd + sizeof(OpPrivate));
constexpr uint16_t kQueueDescriptors = 256;  // per queue pair; more than kDepth ops are never in flight

OpPrivate* priv_of(rte_crypto_op* op) { return rte_crypto_op_ctod_offset(op, OpPrivate*, kPrivateOffset); }
rte_iova_t priv_iova(rte_crypto_op* op, size_t field) { return rte_crypto_op_ctophys_offset(op, kPrivateOffset + field); }

// The caller's buffers are not ours to free: detaching one only drops the shared info's count.
void keep_buffer(void*, void*) {}

}  // namespace

struct alignas(64) CryptodevAsyncAead::Lane {
  uint16_t qp = 0;
  rte_crypto_op* ops[kDepth] = {};
  rte_mbuf* mbufs[kDepth] = {};
  rte_mbuf_ext_shared_info shinfo[kDepth] = {};
};

namespace {

class CryptodevAsyncKey final : public AeadKey {
 public:
  CryptodevAsyncKey(uint8_t dev_id, void* session, AeadDirection dir, uint32_t aad_len, bool hardware,
                    CryptodevAsyncAead::Lane* lanes, unsigned n_lanes)
      : dev_id_(dev_id), session_(session), dir_(dir), aad_len_(aad_len), hardware_(hardware),
        va_mode_(rte_eal_iova_mode() == RTE_IOVA_VA), lanes_(lanes), n_lanes_(n_lanes) {}
  ~CryptodevAsyncKey() override { rte_cryptodev_sym_session_free(dev_id_, session_); }
  CryptodevAsyncKey(const CryptodevAsyncKey&) = delete;
  CryptodevAsyncKey& operator=(const CryptodevAsyncKey&) = delete;

  uint32_t process(std::span<const AeadOp> ops, std::span<int32_t> status, unsigned thread) override {
    if (thread >= n_lanes_) {
      std::fill(status.begin(), status.begin() + ops.size(), -1);
      return 0;
    }
    CryptodevAsyncAead::Lane& lane = lanes_[thread];
    uint32_t ok = 0;
    for (size_t base = 0; base < ops.size(); base += CryptodevAsyncAead::kDepth) {
      const uint16_t n = uint16_t(std::min<size_t>(CryptodevAsyncAead::kDepth, ops.size() - base));
      ok += chunk(lane, ops.data() + base, status.data() + base, n);
    }
    return ok;
  }

 private:
  // The IOVA of a caller's buffer, or RTE_BAD_IOVA when a DMA device could not reach all of it.
  rte_iova_t iova_of(uint8_t* p, uint32_t len) const {
    if (!hardware_) return va_mode_ ? rte_iova_t(uintptr_t(p)) : rte_mem_virt2iova(p);  // never read by a CPU PMD
    if (!rte_mem_virt2memseg(p, nullptr)) return RTE_BAD_IOVA;
    if (va_mode_) return rte_iova_t(uintptr_t(p));
    const rte_iova_t first = rte_mem_virt2iova(p);
    if (len > 1 && rte_mem_virt2iova(p + len - 1) != first + len - 1) return RTE_BAD_IOVA;  // not contiguous
    return first;
  }

  uint32_t chunk(CryptodevAsyncAead::Lane& lane, const AeadOp* ops, int32_t* status, uint16_t n) {
    rte_crypto_op* burst[CryptodevAsyncAead::kDepth];
    uint16_t ready = 0;
    for (uint16_t i = 0; i < n; ++i) {
      const AeadOp& a = ops[i];
      const rte_iova_t iova = a.len <= UINT16_MAX ? iova_of(a.data, a.len) : RTE_BAD_IOVA;
      if (a.len > UINT16_MAX || (iova == RTE_BAD_IOVA && hardware_)) {
        status[i] = -1;
        continue;
      }
      rte_crypto_op* op = lane.ops[i];
      rte_mbuf* m = lane.mbufs[i];
      rte_mbuf_ext_refcnt_set(&lane.shinfo[i], 1);
      rte_pktmbuf_attach_extbuf(m, a.data, iova, uint16_t(a.len), &lane.shinfo[i]);
      m->data_len = uint16_t(a.len);
      m->pkt_len = a.len;

      OpPrivate* pv = priv_of(op);
      pv->slot = i;
      std::memcpy(pv->iv, a.iv, kAeadIvLen);
      if (aad_len_) std::memcpy(pv->aad, a.aad, aad_len_);
      if (dir_ == AeadDirection::Decrypt) std::memcpy(pv->digest, a.tag, kAeadTagLen);

      op->status = RTE_CRYPTO_OP_STATUS_NOT_PROCESSED;
      rte_crypto_op_attach_sym_session(op, session_);
      rte_crypto_sym_op* sym = op->sym;
      sym->m_src = m;
      sym->m_dst = nullptr;  // in place
      sym->aead.data.offset = 0;
      sym->aead.data.length = a.len;
      sym->aead.digest.data = pv->digest;
      sym->aead.digest.phys_addr = priv_iova(op, offsetof(OpPrivate, digest));
      sym->aead.aad.data = pv->aad;
      sym->aead.aad.phys_addr = priv_iova(op, offsetof(OpPrivate, aad));
      burst[ready++] = op;
    }

    // Enqueue what the queue pair takes, collect what it has finished, until every op is back.
    uint32_t ok = 0;
    uint16_t enqueued = 0, dequeued = 0;
    while (dequeued < ready) {
      if (enqueued < ready)
        enqueued += rte_cryptodev_enqueue_burst(dev_id_, lane.qp, burst + enqueued, uint16_t(ready - enqueued));
      rte_crypto_op* done[CryptodevAsyncAead::kDepth];
      const uint16_t got = rte_cryptodev_dequeue_burst(dev_id_, lane.qp, done, uint16_t(enqueued - dequeued));
      for (uint16_t k = 0; k < got; ++k) {
        rte_crypto_op* op = done[k];
        OpPrivate* pv = priv_of(op);
        const uint16_t i = pv->slot;
        const bool good = op->status == RTE_CRYPTO_OP_STATUS_SUCCESS;
        if (good && dir_ == AeadDirection::Encrypt) std::memcpy(ops[i].tag, pv->digest, kAeadTagLen);
        // RTE_CRYPTO_OP_STATUS_AUTH_FAILED (tag did not verify) and every other failure are non-zero.
        status[i] = good ? 0 : int32_t(op->status);
        ok += good;
        rte_pktmbuf_detach(lane.mbufs[i]);
      }
      dequeued = uint16_t(dequeued + got);
      if (!got) rte_pause();
    }
    return ok;
  }

  uint8_t dev_id_;
  void* session_;
  AeadDirection dir_;
  uint32_t aad_len_;
  bool hardware_;
  bool va_mode_;
  CryptodevAsyncAead::Lane* lanes_;
  unsigned n_lanes_;
};

}  // namespace

std::unique_ptr<CryptodevAsyncAead> CryptodevAsyncAead::open(const std::string& device, unsigned threads,
                                                             unsigned max_keys, std::string& error) {
  auto id = cryptodev_find(device, error);
  if (!id) return nullptr;
  std::unique_ptr<CryptodevAsyncAead> engine(new CryptodevAsyncAead());
  engine->dev_id_ = *id;
  if (!engine->start(std::max(threads, 1u), max_keys, error)) return nullptr;
  return engine;
}

bool CryptodevAsyncAead::start(unsigned threads, unsigned max_keys, std::string& error) {
  const uint8_t dev = dev_id_;
  rte_cryptodev_info info;
  rte_cryptodev_info_get(dev, &info);
  driver_ = info.driver_name;
  const std::string who = std::string("crypto device ") + rte_cryptodev_name_get(dev) + " (" + driver_ + ")";
  if (!cryptodev_has_gcm(dev, 16, error)) return false;
  if (!(info.feature_flags & RTE_CRYPTODEV_FF_SYMMETRIC_CRYPTO)) {
    error = who + " does no symmetric crypto";
    return false;
  }
  if (info.min_mbuf_headroom_req || info.min_mbuf_tailroom_req) {
    error = who + " wants mbuf headroom/tailroom (" + std::to_string(info.min_mbuf_headroom_req) + "/" +
            std::to_string(info.min_mbuf_tailroom_req) + " bytes) that buffers wrapped in place do not have";
    return false;
  }
  if (info.max_nb_queue_pairs < threads) {
    error = who + " has " + std::to_string(info.max_nb_queue_pairs) + " queue pairs; " + std::to_string(threads) +
            " worker(s) need one each";
    return false;
  }
  hardware_ = (info.feature_flags & RTE_CRYPTODEV_FF_HW_ACCELERATED) != 0;
  const int socket = rte_cryptodev_socket_id(dev) < 0 ? SOCKET_ID_ANY : rte_cryptodev_socket_id(dev);

  const std::string tag = std::to_string(dev);
  session_pool_ = rte_cryptodev_sym_session_pool_create(("aead_async_sess_" + tag).c_str(), std::max(max_keys, 64u),
                                                        rte_cryptodev_sym_get_private_session_size(dev), 0, 0, socket);
  op_pool_ = rte_crypto_op_pool_create(("aead_async_ops_" + tag).c_str(), RTE_CRYPTO_OP_TYPE_SYMMETRIC,
                                       threads * kDepth, 0, kPrivateSize, socket);
  // No data room: every mbuf carries a caller's buffer, attached for the length of one op.
  mbuf_pool_ = rte_pktmbuf_pool_create(("aead_async_mbuf_" + tag).c_str(), threads * kDepth, 0, 0, 0, socket);
  if (!session_pool_ || !op_pool_ || !mbuf_pool_) {
    error = "cannot allocate the pools of " + who + " (" + std::to_string(max_keys) + " sessions, " +
            std::to_string(threads * kDepth) + " ops; raise dpgw.eal.memory_mb)";
    return false;
  }

  rte_cryptodev_config conf{};
  conf.socket_id = socket;
  conf.nb_queue_pairs = uint16_t(threads);
  conf.ff_disable = RTE_CRYPTODEV_FF_ASYMMETRIC_CRYPTO | RTE_CRYPTODEV_FF_SECURITY;
  if (rte_cryptodev_configure(dev, &conf) != 0) {
    error = "cannot configure " + who + " with " + std::to_string(threads) + " queue pair(s) (is it in use?)";
    return false;
  }
  lanes_ = std::make_unique<Lane[]>(threads);
  n_lanes_ = threads;
  for (unsigned t = 0; t < threads; ++t) {
    rte_cryptodev_qp_conf qp{};
    qp.nb_descriptors = kQueueDescriptors;
    qp.mp_session = session_pool_;
    if (rte_cryptodev_queue_pair_setup(dev, uint16_t(t), &qp, socket) != 0) {
      error = "cannot set up queue pair " + std::to_string(t) + " of " + who;
      return false;
    }
    Lane& lane = lanes_[t];
    lane.qp = uint16_t(t);
    // Failures leave null pointers: the destructor returns what was allocated.
    if (rte_crypto_op_bulk_alloc(op_pool_, RTE_CRYPTO_OP_TYPE_SYMMETRIC, lane.ops, kDepth) != kDepth ||
        rte_pktmbuf_alloc_bulk(mbuf_pool_, lane.mbufs, kDepth) != 0) {
      error = "cannot allocate the crypto ops of " + who;
      return false;
    }
    for (auto& s : lane.shinfo) s.free_cb = keep_buffer;
  }
  if (rte_cryptodev_start(dev) != 0) {
    error = "cannot start " + who;
    return false;
  }
  started_ = true;
  LOG_INFO("cryptodev-async: %s, %u queue pair(s) of %u descriptors, %s", who.c_str(), threads,
           unsigned(kQueueDescriptors), hardware_ ? "hardware (buffers must be DPDK memory)" : "CPU");
  return true;
}

CryptodevAsyncAead::~CryptodevAsyncAead() {
  if (started_) rte_cryptodev_stop(dev_id_);
  for (unsigned t = 0; t < n_lanes_; ++t) {
    for (rte_crypto_op* op : lanes_[t].ops)
      if (op) rte_crypto_op_free(op);
    for (rte_mbuf* m : lanes_[t].mbufs)
      if (m) rte_pktmbuf_free(m);
  }
  lanes_.reset();
  rte_mempool_free(op_pool_);
  rte_mempool_free(mbuf_pool_);
  rte_mempool_free(session_pool_);
}

std::unique_ptr<AeadKey> CryptodevAsyncAead::make_key(std::span<const uint8_t> key, AeadDirection dir,
                                                      uint32_t aad_len) {
  if (key.size() != 16 && key.size() != 32) return nullptr;
  if (aad_len > kMaxAad) {
    LOG_ERROR("cryptodev-async: %u bytes of AAD (at most %u)", aad_len, kMaxAad);
    return nullptr;
  }
  void* session = cryptodev_gcm_session(dev_id_, session_pool_, key, dir, aad_len,
                                        uint16_t(kPrivateOffset + offsetof(OpPrivate, iv)));
  if (!session) {
    LOG_ERROR("cryptodev-async: cannot create an AES-GCM session (pool exhausted, or %u bytes of AAD unsupported?)",
              aad_len);
    return nullptr;
  }
  return std::make_unique<CryptodevAsyncKey>(dev_id_, session, dir, aad_len, hardware_, lanes_.get(), n_lanes_);
}

}  // namespace dptun
