// The AES-GCM engines without DPDK (OpenSSL EVP, ipsec-mb) through the AeadEngine/AeadKey interface, each run through
// the same tests: the published GCM test vectors (McGrew & Viega test cases 1-4 and 13-16), single-bit tampering,
// per-op status in bursts, threads, bad keys; and frames sealed by one engine opened by the other.
// Standard headers first: cmocka.h defines a fail() macro that breaks <ios> (pulled in by <memory> in C++20).
#include <algorithm>
#include <memory>
#include <cstdio>
#include <random>
#include <string>

#include "tests/unit/cmocka.hpp"
#include "tests/unit/gcm_vectors.hpp"

#include "crypto/aead_ipsec_mb.hpp"
#include "crypto/aead_openssl.hpp"

using namespace dptun;
using namespace dptun::test;

namespace {
// The engine under test (main runs the group once per engine), made for `threads` thread indices.
const char* g_engine = "openssl";
std::unique_ptr<AeadEngine> make_engine(const char* name, unsigned threads = 1) {
  if (std::string(name) == "openssl") return std::make_unique<OpensslAead>(threads);
  std::string error;
  auto e = IpsecMbAead::open(threads, error);
  if (!e) fail_msg("%s", error.c_str());
  return e;
}
}  // namespace

static void engine_basics(void**) {
  auto engine = make_engine(g_engine);
  AeadEngine& e = *engine;
  assert_string_equal(e.name(), g_engine);
  std::vector<uint8_t> k16(16, 1), k32(32, 2), k24(24, 3), k0;
  assert_true(e.make_key(k16, AeadDirection::Encrypt, 16) != nullptr);
  assert_true(e.make_key(k32, AeadDirection::Decrypt, 16) != nullptr);
  assert_true(e.make_key(k24, AeadDirection::Encrypt, 16) == nullptr);  // AES-192 is not offered
  assert_true(e.make_key(k0, AeadDirection::Decrypt, 16) == nullptr);
  assert_true(e.make_key(std::vector<uint8_t>(31, 0), AeadDirection::Encrypt, 16) == nullptr);
}

static void published_vectors(void**) {
  auto engine = make_engine(g_engine);
  AeadEngine& e = *engine;
  check_gcm_vectors(e);
}

static void tampering_detected(void**) {
  auto engine = make_engine(g_engine);
  AeadEngine& e = *engine;
  check_gcm_tamper(e);
}

static void vectors_in_one_burst(void**) {
  // tc3 with a dozen copies in one burst: all ops get the same published output.
  auto engine = make_engine(g_engine);
  AeadEngine& e = *engine;
  GcmBytes b(gcm_vectors()[2]);
  auto enc = e.make_key(b.key, AeadDirection::Encrypt, 0);
  std::vector<OwnedOp> ops(12, OwnedOp(b.pt, b.iv, b.aad));
  std::vector<int32_t> st;
  assert_int_equal(run_burst(*enc, ops, st), 12);
  for (size_t i = 0; i < ops.size(); ++i) {
    assert_int_equal(st[i], 0);
    assert_true(ops[i].payload() == b.ct);
    assert_true(ops[i].tag == b.tag);
  }
}

static void burst_with_bad_ops(void**) {
  auto engine = make_engine(g_engine);
  AeadEngine& e = *engine;
  check_burst_with_bad_ops(e, 16, 8, {3}, 1);
  check_burst_with_bad_ops(e, 32, 8, {0, 7}, 2);
  check_burst_with_bad_ops(e, 16, 32, {1, 2, 3, 17, 31}, 3);
  check_burst_with_bad_ops(e, 32, 5, {0, 1, 2, 3, 4}, 4);  // all bad
  check_burst_with_bad_ops(e, 16, 100, {}, 5);             // none bad
}

static void wrong_key_aad_or_length_fails(void**) {
  auto engine = make_engine(g_engine);
  AeadEngine& e = *engine;
  GcmBytes b(gcm_vectors()[3]);  // tc4: with AAD
  auto other = b.key;
  other[0] ^= 1;
  auto dec = e.make_key(other, AeadDirection::Decrypt, uint32_t(b.aad.size()));
  OwnedOp op(b.ct, b.iv, b.aad, b.tag);
  int32_t st = 0;
  assert_int_equal(run_one(*dec, op, st), 0);
  assert_int_not_equal(st, 0);
  // An AAD length different from the sender's (here: the first 16 of the 20 bytes) fails too.
  auto short_aad = e.make_key(b.key, AeadDirection::Decrypt, 16);
  OwnedOp op2(b.ct, b.iv, b.aad, b.tag);
  assert_int_equal(run_one(*short_aad, op2, st), 0);
  assert_int_not_equal(st, 0);
  // A truncated ciphertext fails.
  auto right = e.make_key(b.key, AeadDirection::Decrypt, uint32_t(b.aad.size()));
  OwnedOp op3(std::vector<uint8_t>(b.ct.begin(), b.ct.end() - 1), b.iv, b.aad, b.tag);
  assert_int_equal(run_one(*right, op3, st), 0);
  assert_int_not_equal(st, 0);
  // ...and the same key still decrypts a good op afterwards (no state left over from the failure).
  OwnedOp op4(b.ct, b.iv, b.aad, b.tag);
  assert_int_equal(run_one(*right, op4, st), 1);
  assert_int_equal(st, 0);
  assert_true(op4.payload() == b.pt);
}

static void random_round_trips(void**) {
  // Lengths 0..1500 with both key sizes, encrypt with one key object and decrypt with another.
  auto engine = make_engine(g_engine);
  AeadEngine& e = *engine;
  std::mt19937 rng(11);
  for (size_t key_len : {16, 32}) {
    std::vector<uint8_t> key(key_len);
    for (auto& x : key) x = uint8_t(rng());
    auto enc = e.make_key(key, AeadDirection::Encrypt, 16);
    auto dec = e.make_key(key, AeadDirection::Decrypt, 16);
    for (uint32_t len = 0; len <= 1500; len += (len < 70 ? 1 : 37)) {
      std::vector<uint8_t> p(len), iv(12), aad(16);
      for (auto& x : p) x = uint8_t(rng());
      for (auto& x : iv) x = uint8_t(rng());
      for (auto& x : aad) x = uint8_t(rng());
      OwnedOp op(p, iv, aad);
      int32_t st = 1;
      assert_int_equal(run_one(*enc, op, st), 1);
      assert_int_equal(st, 0);
      if (len >= 16) assert_true(op.payload() != p);  // actually encrypted
      assert_int_equal(run_one(*dec, op, st), 1);
      assert_int_equal(st, 0);
      assert_true(op.payload() == p);
      assert_true(op.guard_intact());
    }
  }
}

static void per_thread_contexts(void**) {
  // Each `thread` index has its own context; all give the published result.
  auto engine = make_engine(g_engine, 3);
  AeadEngine& e = *engine;
  GcmBytes b(gcm_vectors()[7]);  // tc16
  auto enc = e.make_key(b.key, AeadDirection::Encrypt, uint32_t(b.aad.size()));
  auto dec = e.make_key(b.key, AeadDirection::Decrypt, uint32_t(b.aad.size()));
  for (unsigned t = 0; t < 3; ++t) {
    OwnedOp op(b.pt, b.iv, b.aad);
    int32_t st = 1;
    assert_int_equal(run_one(*enc, op, st, t), 1);
    assert_true(op.payload() == b.ct);
    assert_true(op.tag == b.tag);
    assert_int_equal(run_one(*dec, op, st, t), 1);
    assert_true(op.payload() == b.pt);
  }
}

static void empty_burst(void**) {
  auto engine = make_engine(g_engine);
  AeadEngine& e = *engine;
  auto k = e.make_key(std::vector<uint8_t>(16, 9), AeadDirection::Decrypt, 16);
  assert_int_equal(k->process({}, {}, 0), 0);
}

static void engines_agree(void**) {
  // Sealed by one engine, opened by the other, both ways, over many lengths.
  auto a = make_engine("openssl");
  auto b = make_engine("ipsec-mb");
  std::mt19937 rng(5);
  for (size_t key_len : {16, 32}) {
    std::vector<uint8_t> key(key_len);
    for (auto& x : key) x = uint8_t(rng());
    for (auto [from, to] : {std::pair{a.get(), b.get()}, std::pair{b.get(), a.get()}}) {
      auto enc = from->make_key(key, AeadDirection::Encrypt, 16);
      auto dec = to->make_key(key, AeadDirection::Decrypt, 16);
      for (uint32_t len = 0; len <= 1500; len += 61) {
        std::vector<uint8_t> p(len), iv(12), aad(16);
        for (auto& x : p) x = uint8_t(rng());
        for (auto& x : iv) x = uint8_t(rng());
        for (auto& x : aad) x = uint8_t(rng());
        OwnedOp op(p, iv, aad);
        int32_t st = 1;
        assert_int_equal(run_one(*enc, op, st), 1);
        assert_int_equal(run_one(*dec, op, st), 1);
        assert_int_equal(st, 0);
        assert_true(op.payload() == p);
      }
    }
  }
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(engine_basics),
      cmocka_unit_test(published_vectors),
      cmocka_unit_test(tampering_detected),
      cmocka_unit_test(vectors_in_one_burst),
      cmocka_unit_test(burst_with_bad_ops),
      cmocka_unit_test(wrong_key_aad_or_length_fails),
      cmocka_unit_test(random_round_trips),
      cmocka_unit_test(per_thread_contexts),
      cmocka_unit_test(empty_burst),
  };
  int failed = 0;
  for (const char* engine : {"openssl", "ipsec-mb"}) {
    g_engine = engine;
    printf("engine %s\n", engine);
    failed += cmocka_run_group_tests(tests, nullptr, nullptr);
  }
  const CMUnitTest both[] = {cmocka_unit_test(engines_agree)};
  return failed + cmocka_run_group_tests(both, nullptr, nullptr);
}
