// Header-protection masks through ipsec-mb's AES-ECB (crypto/hp_ipsec_mb.hpp): RFC 9001 Appendix A.2 and A.3's
// samples and masks; random bursts of 1 to 64 samples with AES-128 and AES-256 keys give the same masks as the
// OpenSSL reference (crypto/header_protection.hpp); one key shared by two threads, each with its manager;
// ChaCha20 and wrong key lengths are refused.
#include <random>
#include <thread>
#include <vector>

#include "crypto/header_protection.hpp"
#include "crypto/hp_ipsec_mb.hpp"

#include "tests/unit/cmocka.hpp"

using namespace dptun;
using namespace dptun::test;

namespace {

void rfc9001_samples(void**) {
  std::string error;
  auto hp = IpsecMbHeaderProtection::open(1, error);
  assert_non_null(hp.get());
  const struct {
    const char *key, *sample, *mask;
  } cases[] = {
      {"9f50449e04a0e810283a1e9933adedd2", "d1b1c98dd7689fb8ec11d242b123dc9b", "437b9aec36"},  // A.2, client
      {"c206b8d9b9f0f37644430b490eeaa314", "2cd0991cd25b0aac406a5816b6394100", "2ec0d8356a"},  // A.3, server
  };
  for (const auto& c : cases) {
    HpExpandedKey k;
    assert_true(hp->make_key(HpCipher::Aes128, from_hex(c.key), k));
    uint8_t mask[kHpMaskLen];
    assert_true(hp->masks(k, from_hex(c.sample).data(), 1, mask, 0));
    assert_memory_equal(mask, from_hex(c.mask).data(), 5);
  }
}

void same_as_openssl(void**) {
  std::string error;
  auto hp = IpsecMbHeaderProtection::open(1, error);
  assert_non_null(hp.get());
  std::mt19937 rng(5);
  for (HpCipher cipher : {HpCipher::Aes128, HpCipher::Aes256}) {
    for (int round = 0; round < 50; ++round) {
      std::vector<uint8_t> key(cipher == HpCipher::Aes128 ? 16 : 32);
      for (auto& b : key) b = uint8_t(rng());
      const size_t n = 1 + rng() % 64;
      std::vector<uint8_t> samples(n * kHpSampleLen), got(n * kHpMaskLen), want(n * kHpMaskLen);
      for (auto& b : samples) b = uint8_t(rng());
      HpExpandedKey k;
      assert_true(hp->make_key(cipher, key, k));
      assert_true(hp->masks(k, samples.data(), n, got.data(), 0));
      HeaderProtectionKey ref(cipher, key);
      assert_true(ref.masks(samples.data(), n, want.data()));
      assert_memory_equal(got.data(), want.data(), got.size());
    }
  }
}

void shared_by_two_threads(void**) {
  std::string error;
  auto hp = IpsecMbHeaderProtection::open(2, error);
  assert_non_null(hp.get());
  const auto key = from_hex("9f50449e04a0e810283a1e9933adedd2");
  HpExpandedKey k;
  assert_true(hp->make_key(HpCipher::Aes128, key, k));
  HeaderProtectionKey ref(HpCipher::Aes128, key);
  std::vector<uint8_t> samples(32 * kHpSampleLen), want(32 * kHpMaskLen);
  for (size_t i = 0; i < samples.size(); ++i) samples[i] = uint8_t(i * 13);
  assert_true(ref.masks(samples.data(), 32, want.data()));
  int bad[2] = {0, 0};
  auto run = [&](unsigned t) {
    std::vector<uint8_t> got(want.size());
    for (int i = 0; i < 2000; ++i)
      if (!hp->masks(k, samples.data(), 32, got.data(), t) || got != want) ++bad[t];
  };
  std::thread a(run, 0u), b(run, 1u);
  a.join();
  b.join();
  assert_int_equal(bad[0] + bad[1], 0);
}

void refused(void**) {
  std::string error;
  auto hp = IpsecMbHeaderProtection::open(1, error);
  assert_non_null(hp.get());
  HpExpandedKey k;
  assert_false(hp->make_key(HpCipher::ChaCha20, std::vector<uint8_t>(32, 1), k));
  assert_false(hp->make_key(HpCipher::Aes128, std::vector<uint8_t>(32, 1), k));
  assert_false(hp->make_key(HpCipher::Aes256, std::vector<uint8_t>(16, 1), k));
  uint8_t sample[kHpSampleLen] = {}, mask[kHpMaskLen];
  assert_false(hp->masks(k, sample, 1, mask, 0));  // never made
  assert_true(hp->make_key(HpCipher::Aes128, std::vector<uint8_t>(16, 1), k));
  assert_false(hp->masks(k, sample, 1, mask, 1));  // no manager for thread 1
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(rfc9001_samples),
      cmocka_unit_test(same_as_openssl),
      cmocka_unit_test(shared_by_two_threads),
      cmocka_unit_test(refused),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
