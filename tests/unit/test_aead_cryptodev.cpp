// DPDK cryptodev AES-GCM engine (crypto_aesni_gcm, synchronous CPU crypto) through the AeadEngine interface:
// the published GCM vectors, single-bit tampering, per-op status in bursts (including bursts longer than the
// engine's internal chunk), and a randomized cross-check against the OpenSSL engine in both directions.
// Runs an in-process EAL without hugepages or PCI.
// Standard and DPDK headers first: cmocka.h defines a fail() macro that breaks <ios>.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <random>
#include <string>


#include "tests/support/eal_tests.hpp"
#include "tests/unit/cmocka.hpp"
#include "tests/unit/gcm_vectors.hpp"

#include "crypto/aead_cryptodev.hpp"
#include "crypto/aead_openssl.hpp"

using namespace dptun;
using namespace dptun::test;

static const char* kDevice = "crypto_aesni_gcm0";
static std::unique_ptr<CryptodevAead> g_engine;

static void engine_basics(void**) {
  assert_non_null(g_engine.get());
  assert_string_equal(g_engine->name(), "cryptodev");
  std::vector<uint8_t> k16(16, 1), k32(32, 2), k24(24, 3);
  assert_true(g_engine->make_key(k16, AeadDirection::Encrypt, 16) != nullptr);
  assert_true(g_engine->make_key(k32, AeadDirection::Decrypt, 16) != nullptr);
  assert_true(g_engine->make_key(k24, AeadDirection::Encrypt, 16) == nullptr);
  assert_true(g_engine->make_key({}, AeadDirection::Decrypt, 16) == nullptr);
  // A device whose driver does not exist fails cleanly with a message.
  std::string err;
  auto bad = CryptodevAead::open("crypto_no_such_driver0", 8, err);
  assert_true(bad == nullptr);
  assert_false(err.empty());
}

static void published_vectors(void**) { check_gcm_vectors(*g_engine); }

static void tampering_detected(void**) { check_gcm_tamper(*g_engine); }

static void burst_with_bad_ops(void**) {
  check_burst_with_bad_ops(*g_engine, 16, 8, {3}, 1);
  check_burst_with_bad_ops(*g_engine, 32, 8, {0, 7}, 2);
  check_burst_with_bad_ops(*g_engine, 16, 32, {1, 2, 3, 17, 31}, 3);
  check_burst_with_bad_ops(*g_engine, 32, 5, {0, 1, 2, 3, 4}, 4);
  // Longer than one rte_cryptodev_sym_cpu_crypto_process call (64 ops): statuses must land on the right ops.
  check_burst_with_bad_ops(*g_engine, 16, 150, {0, 62, 63, 64, 65, 127, 128, 149}, 5);
  check_burst_with_bad_ops(*g_engine, 32, 129, {}, 6);
}

static void vectors_in_long_burst(void**) {
  // tc15 (AES-256) 130 times in one burst: every op, in every chunk, gets the published output.
  GcmBytes b(gcm_vectors()[6]);
  auto enc = g_engine->make_key(b.key, AeadDirection::Encrypt, 0);
  assert_non_null(enc.get());
  std::vector<OwnedOp> ops(130, OwnedOp(b.pt, b.iv, b.aad));
  std::vector<int32_t> st;
  assert_int_equal(run_burst(*enc, ops, st), 130);
  for (size_t i = 0; i < ops.size(); ++i) {
    assert_int_equal(st[i], 0);
    if (ops[i].payload() != b.ct || ops[i].tag != b.tag) fail_msg("op %zu: wrong output", i);
    assert_true(ops[i].guard_intact());
  }
}

struct Message {
  std::vector<uint8_t> plain, iv, aad;
};

static std::vector<Message> random_messages(std::mt19937& rng, size_t n) {
  std::vector<Message> out(n);
  for (size_t i = 0; i < n; ++i) {
    size_t len = rng() % 1501;
    if (i == 0) len = 0;
    if (i == 1) len = 1;
    if (i == 2) len = 1500;
    if (i == 3) len = 16;
    if (i == 4) len = 15;
    if (i == 5) len = 17;
    out[i].plain.resize(len);
    out[i].iv.resize(kAeadIvLen);
    out[i].aad.resize(16);
    for (auto& x : out[i].plain) x = uint8_t(rng());
    for (auto& x : out[i].iv) x = uint8_t(rng());
    for (auto& x : out[i].aad) x = uint8_t(rng());
  }
  return out;
}

static void cross_check_with_openssl(void**) {
  OpensslAead ossl;
  std::mt19937 rng(42);
  for (int round = 0; round < 24; ++round) {
    const size_t key_len = round % 2 ? 32 : 16;
    std::vector<uint8_t> key(key_len);
    for (auto& x : key) x = uint8_t(rng());
    auto cd_enc = g_engine->make_key(key, AeadDirection::Encrypt, 16);
    auto cd_dec = g_engine->make_key(key, AeadDirection::Decrypt, 16);
    auto os_enc = ossl.make_key(key, AeadDirection::Encrypt, 16);
    auto os_dec = ossl.make_key(key, AeadDirection::Decrypt, 16);
    assert_true(cd_enc && cd_dec && os_enc && os_dec);
    auto msgs = random_messages(rng, 32);

    // Encrypt the same burst with both engines: byte-identical ciphertexts and tags.
    std::vector<OwnedOp> by_cd, by_os;
    for (auto& m : msgs) by_cd.emplace_back(m.plain, m.iv, m.aad), by_os.emplace_back(m.plain, m.iv, m.aad);
    std::vector<int32_t> st;
    assert_int_equal(run_burst(*cd_enc, by_cd, st), 32);
    for (int32_t s : st) assert_int_equal(s, 0);
    assert_int_equal(run_burst(*os_enc, by_os, st), 32);
    for (int32_t s : st) assert_int_equal(s, 0);
    for (size_t i = 0; i < msgs.size(); ++i) {
      if (by_cd[i].payload() != by_os[i].payload())
        fail_msg("round %d op %zu (len %zu): ciphertexts differ", round, i, msgs[i].plain.size());
      if (by_cd[i].tag != by_os[i].tag) fail_msg("round %d op %zu (len %zu): tags differ", round, i,
                                                 msgs[i].plain.size());
      assert_true(by_cd[i].guard_intact());
      if (msgs[i].plain.size() >= 16) assert_true(by_cd[i].payload() != msgs[i].plain);
    }

    // Cryptodev output decrypted by OpenSSL and OpenSSL output decrypted by cryptodev, with a few ops
    // tampered in each burst.
    std::vector<size_t> bad = {size_t(rng() % 32), size_t(rng() % 32)};
    if (bad[0] == bad[1]) bad.pop_back();
    auto tamper = [&](std::vector<OwnedOp>& ops) {
      for (size_t k = 0; k < bad.size(); ++k) {
        OwnedOp& o = ops[bad[k]];
        if (k == 0 && o.len) {
          o.data[rng() % o.len] ^= 1;
        } else {
          o.tag[rng() % kAeadTagLen] ^= 0x40;
        }
      }
    };
    tamper(by_cd);
    tamper(by_os);
    assert_int_equal(run_burst(*os_dec, by_cd, st), 32 - bad.size());
    for (size_t i = 0; i < 32; ++i) {
      bool is_bad = std::find(bad.begin(), bad.end(), i) != bad.end();
      assert_int_equal(st[i] != 0, is_bad);
      if (!is_bad) assert_true(by_cd[i].payload() == msgs[i].plain);
    }
    assert_int_equal(run_burst(*cd_dec, by_os, st), 32 - bad.size());
    for (size_t i = 0; i < 32; ++i) {
      bool is_bad = std::find(bad.begin(), bad.end(), i) != bad.end();
      if ((st[i] != 0) != is_bad) fail_msg("round %d op %zu: status %d, tampered %d", round, i, st[i], is_bad);
      if (!is_bad && by_os[i].payload() != msgs[i].plain) fail_msg("round %d op %zu: wrong plaintext", round, i);
      assert_true(by_os[i].guard_intact());
    }
  }
}

static void keys_are_independent(void**) {
  // Many live sessions at once (the gateway holds one per direction and epoch per peer): each keeps its own key.
  std::mt19937 rng(77);
  std::vector<std::vector<uint8_t>> keys;
  std::vector<std::unique_ptr<AeadKey>> enc;
  for (int i = 0; i < 20; ++i) {
    std::vector<uint8_t> k(i % 2 ? 32 : 16);
    for (auto& x : k) x = uint8_t(rng());
    keys.push_back(k);
    enc.push_back(g_engine->make_key(k, AeadDirection::Encrypt, 16));
    assert_non_null(enc.back().get());
  }
  OpensslAead ossl;
  std::vector<uint8_t> iv(12, 3), aad(16, 4), p(100, 5);
  for (size_t i = 0; i < keys.size(); ++i) {
    OwnedOp a(p, iv, aad), b(p, iv, aad);
    int32_t st = 1;
    assert_int_equal(run_one(*enc[i], a, st), 1);
    auto ref = ossl.make_key(keys[i], AeadDirection::Encrypt, 16);
    assert_int_equal(run_one(*ref, b, st), 1);
    assert_true(a.payload() == b.payload());
    assert_true(a.tag == b.tag);
  }
}

static void session_pool_limit_and_reopen(void**) {
  // The engine was opened with max_keys 64: the 65th live key fails, freeing one makes room again.
  std::vector<std::unique_ptr<AeadKey>> keys;
  std::vector<uint8_t> k(16, 7);
  for (int i = 0; i < 64; ++i) {
    keys.push_back(g_engine->make_key(k, AeadDirection::Encrypt, 16));
    if (!keys.back()) fail_msg("key %d of 64 could not be created", i);
  }
  assert_true(g_engine->make_key(k, AeadDirection::Encrypt, 16) == nullptr);
  keys.pop_back();
  assert_true(g_engine->make_key(k, AeadDirection::Encrypt, 16) != nullptr);
  keys.clear();
  // Close and open the device again (the gateway does on reconfiguration): the new engine works.
  g_engine.reset();
  std::string err;
  g_engine = CryptodevAead::open(kDevice, 64, err);
  if (!g_engine) fail_msg("reopen failed: %s", err.c_str());
  check_gcm_vectors(*g_engine);
}

// The engine all tests share, opened once the EAL runs.
static int open_engine(void**) {
  std::string err;
  g_engine = CryptodevAead::open(kDevice, 64, err);
  if (!g_engine) fprintf(stderr, "cannot open %s: %s\n", kDevice, err.c_str());
  return g_engine ? 0 : -1;
}

static int close_engine(void**) {
  g_engine.reset();
  return 0;
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(engine_basics),
      cmocka_unit_test(published_vectors),
      cmocka_unit_test(tampering_detected),
      cmocka_unit_test(burst_with_bad_ops),
      cmocka_unit_test(vectors_in_long_burst),
      cmocka_unit_test(cross_check_with_openssl),
      cmocka_unit_test(keys_are_independent),
      cmocka_unit_test(session_pool_limit_and_reopen),
  };
  return dptun::test::run_eal_tests("test_aead_cryptodev", tests, sizeof tests / sizeof tests[0], open_engine,
                                    close_engine);
}
