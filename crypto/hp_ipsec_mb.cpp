#include "crypto/hp_ipsec_mb.hpp"

#include <intel-ipsec-mb.h>
#include <openssl/crypto.h>

namespace dptun {

HpExpandedKey::~HpExpandedKey() { OPENSSL_cleanse(round_keys.data(), round_keys.size()); }

std::unique_ptr<IpsecMbHeaderProtection> IpsecMbHeaderProtection::open(unsigned threads, std::string& error) {
  std::unique_ptr<IpsecMbHeaderProtection> h(new IpsecMbHeaderProtection());
  if (!h->mgrs_.open(threads, error)) return nullptr;
  return h;
}

bool IpsecMbHeaderProtection::make_key(HpCipher cipher, std::span<const uint8_t> key, HpExpandedKey& out) const {
  alignas(16) uint8_t unused_dec[15 * 16];
  if (cipher == HpCipher::Aes128 && key.size() == 16) {
    IMB_AES_KEYEXP_128(mgrs_[0], key.data(), out.round_keys.data(), unused_dec);
  } else if (cipher == HpCipher::Aes256 && key.size() == 32) {
    IMB_AES_KEYEXP_256(mgrs_[0], key.data(), out.round_keys.data(), unused_dec);
  } else {
    return false;
  }
  OPENSSL_cleanse(unused_dec, sizeof unused_dec);
  out.key_len = uint32_t(key.size());
  return true;
}

bool IpsecMbHeaderProtection::masks(const HpExpandedKey& key, const uint8_t* samples, size_t n, uint8_t* masks,
                                    unsigned thread) const {
  if (!key.key_len || thread >= mgrs_.size()) return false;
  if (n == 0) return true;
  IMB_MGR* m = mgrs_[thread];
  IMB_JOB* job = IMB_GET_NEXT_JOB(m);
  job->cipher_mode = IMB_CIPHER_ECB;
  job->cipher_direction = IMB_DIR_ENCRYPT;
  job->chain_order = IMB_ORDER_CIPHER_HASH;
  job->hash_alg = IMB_AUTH_NULL;
  job->enc_keys = key.round_keys.data();
  job->dec_keys = key.round_keys.data();  // not used by encryption; ipsec-mb checks it is set
  job->key_len_in_bytes = key.key_len;
  job->src = samples;
  job->dst = masks;
  job->cipher_start_src_offset_in_bytes = 0;
  job->msg_len_to_cipher_in_bytes = n * kHpSampleLen;
  job->iv = nullptr;
  job->iv_len_in_bytes = 0;
  job->user_data = masks;
  // ECB is not a multi-buffer cipher: the job is done when submitted; flushing collects it if the manager held it.
  IMB_JOB* done = IMB_SUBMIT_JOB(m);
  bool ok = false, seen = false;
  while (done) {
    if (done->user_data == masks) {
      seen = true;
      ok = done->status == IMB_STATUS_COMPLETED;
    }
    done = IMB_GET_COMPLETED_JOB(m);
  }
  while (!seen && (done = IMB_FLUSH_JOB(m)) != nullptr)
    if (done->user_data == masks) {
      seen = true;
      ok = done->status == IMB_STATUS_COMPLETED;
    }
  return ok;
}

}  // namespace dptun
