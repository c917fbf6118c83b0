// DPDK cryptodev op-API AES-GCM engine (rte_crypto_op bursts on crypto_aesni_gcm) through the AeadEngine
// interface: the published GCM vectors (AES-128 and AES-256), single-bit tampering, every burst size from 1 to 64
// (and longer than one chunk) encrypted here and decrypted by OpenSSL and the other way round, tampered ops
// that fail alone in their burst, one queue pair per thread (two threads at once), and devices that do not
// exist or lack AES-GCM. Runs an in-process EAL without hugepages or PCI.
// Standard and DPDK headers first: cmocka.h defines a fail() macro that breaks <ios>.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include <rte_eal.h>
#include <rte_malloc.h>

#include "tests/support/eal_tests.hpp"
#include "tests/unit/cmocka.hpp"
#include "tests/unit/gcm_vectors.hpp"

#include "crypto/aead_cryptodev_async.hpp"
#include "crypto/aead_openssl.hpp"

using namespace dptun;
using namespace dptun::test;

static const char* kDevice = "crypto_aesni_gcm0";
static constexpr unsigned kThreads = 2;
static std::unique_ptr<CryptodevAsyncAead> g_engine;

static void engine_basics(void**) {
  assert_non_null(g_engine.get());
  assert_string_equal(g_engine->name(), "cryptodev-async");
  std::vector<uint8_t> k16(16, 1), k32(32, 2), k24(24, 3);
  assert_true(g_engine->make_key(k16, AeadDirection::Encrypt, 16) != nullptr);
  assert_true(g_engine->make_key(k32, AeadDirection::Decrypt, 16) != nullptr);
  assert_true(g_engine->make_key(k24, AeadDirection::Encrypt, 16) == nullptr);
  assert_true(g_engine->make_key({}, AeadDirection::Decrypt, 16) == nullptr);
  assert_true(g_engine->make_key(k16, AeadDirection::Encrypt, CryptodevAsyncAead::kMaxAad + 1) == nullptr);
}

static void missing_devices(void**) {
  // No driver by that name: the message names it and lists the crypto devices there are.
  std::string err;
  assert_true(CryptodevAsyncAead::open("crypto_no_such_driver0", 1, 8, err) == nullptr);
  if (err.find("crypto_no_such_driver0") == std::string::npos || err.find(kDevice) == std::string::npos)
    fail_msg("unexpected message: %s", err.c_str());
  // A PCI address without a probed device (the EAL runs with --no-pci).
  err.clear();
  assert_true(CryptodevAsyncAead::open("0000:3d:01.0", 1, 8, err) == nullptr);
  if (err.find("0000:3d:01.0") == std::string::npos) fail_msg("unexpected message: %s", err.c_str());
  err.clear();
  assert_true(CryptodevAsyncAead::open("3d:01.0_qat_sym", 1, 8, err) == nullptr);
  if (err.find("3d:01.0_qat_sym") == std::string::npos) fail_msg("unexpected message: %s", err.c_str());
  // A crypto device without AES-GCM (DPDK's null PMD).
  err.clear();
  assert_true(CryptodevAsyncAead::open("crypto_null0", 1, 8, err) == nullptr);
  if (err.find("lacks AES-GCM") == std::string::npos) fail_msg("unexpected message: %s", err.c_str());
  // More threads than the device has queue pairs.
  err.clear();
  assert_true(CryptodevAsyncAead::open("crypto_aesni_gcm7,max_nb_queue_pairs=2", 3, 8, err) == nullptr);
  if (err.find("queue pairs") == std::string::npos) fail_msg("unexpected message: %s", err.c_str());
}

static void published_vectors(void**) { check_gcm_vectors(*g_engine); }

static void tampering_detected(void**) { check_gcm_tamper(*g_engine); }

static void burst_with_bad_ops(void**) {
  check_burst_with_bad_ops(*g_engine, 16, 8, {3}, 1);
  check_burst_with_bad_ops(*g_engine, 32, 8, {0, 7}, 2);
  check_burst_with_bad_ops(*g_engine, 16, 32, {1, 2, 3, 17, 31}, 3);
  check_burst_with_bad_ops(*g_engine, 32, 64, {0, 63}, 4);
  check_burst_with_bad_ops(*g_engine, 16, 1, {0}, 5);
  // Longer than one chunk of ops in flight (64): statuses must land on the right ops.
  check_burst_with_bad_ops(*g_engine, 16, 150, {0, 62, 63, 64, 65, 127, 128, 149}, 6);
  check_burst_with_bad_ops(*g_engine, 32, 129, {}, 7);
}

struct Message {
  std::vector<uint8_t> plain, iv, aad;
};

static std::vector<Message> random_messages(std::mt19937& rng, size_t n) {
  std::vector<Message> out(n);
  for (size_t i = 0; i < n; ++i) {
    size_t len = rng() % 1501;
    if (i % 7 == 0) len = i % 3;  // empty and tiny messages among the others
    out[i].plain.resize(len);
    out[i].iv.resize(kAeadIvLen);
    out[i].aad.resize(16);
    for (auto& x : out[i].plain) x = uint8_t(rng());
    for (auto& x : out[i].iv) x = uint8_t(rng());
    for (auto& x : out[i].aad) x = uint8_t(rng());
  }
  return out;
}

// A burst of `n` messages sealed by `seal` must open with `open`, except the ops tampered with, which alone
// fail. `thread` picks the async engine's queue pair.
static void round_trip(AeadKey& seal, AeadKey& open, std::mt19937& rng, size_t n, unsigned thread, const char* what,
                       size_t key_len) {
  auto msgs = random_messages(rng, n);
  std::vector<OwnedOp> ops;
  for (auto& m : msgs) ops.emplace_back(m.plain, m.iv, m.aad);
  std::vector<int32_t> st;
  if (run_burst(seal, ops, st, thread) != n) fail_msg("%s: burst of %zu (AES-%zu) did not seal", what, n, key_len * 8);
  for (size_t i = 0; i < n; ++i) assert_int_equal(st[i], 0);
  std::vector<size_t> bad;
  if (n > 1) bad.push_back(rng() % n);
  for (size_t i : bad) ops[i].tag[rng() % kAeadTagLen] ^= 0x10;
  const uint32_t good = run_burst(open, ops, st, thread);
  if (good != n - bad.size()) fail_msg("%s: burst of %zu (AES-%zu): %u opened", what, n, key_len * 8, good);
  for (size_t i = 0; i < n; ++i) {
    const bool is_bad = std::find(bad.begin(), bad.end(), i) != bad.end();
    if ((st[i] != 0) != is_bad) fail_msg("%s: burst of %zu op %zu: status %d, tampered %d", what, n, i, st[i], is_bad);
    if (!is_bad && ops[i].payload() != msgs[i].plain) fail_msg("%s: burst of %zu op %zu: wrong plaintext", what, n, i);
    assert_true(ops[i].guard_intact());
  }
}

static void bursts_against_openssl(void**) {
  // Every burst size 1..64, AES-128 and AES-256: sealed by this engine and opened by OpenSSL, and the reverse.
  OpensslAead ossl(kThreads);
  std::mt19937 rng(2024);
  for (size_t key_len : {size_t(16), size_t(32)}) {
    for (size_t n = 1; n <= 64; ++n) {
      std::vector<uint8_t> key(key_len);
      for (auto& x : key) x = uint8_t(rng());
      auto as_enc = g_engine->make_key(key, AeadDirection::Encrypt, 16);
      auto as_dec = g_engine->make_key(key, AeadDirection::Decrypt, 16);
      auto os_enc = ossl.make_key(key, AeadDirection::Encrypt, 16);
      auto os_dec = ossl.make_key(key, AeadDirection::Decrypt, 16);
      assert_true(as_enc && as_dec && os_enc && os_dec);
      round_trip(*as_enc, *os_dec, rng, n, unsigned(n % kThreads), "async -> openssl", key_len);
      round_trip(*os_enc, *as_dec, rng, n, unsigned(n % kThreads), "openssl -> async", key_len);
    }
  }
}

static void same_bytes_as_openssl(void**) {
  // The same messages sealed by both engines: byte-identical ciphertexts and tags.
  OpensslAead ossl;
  std::mt19937 rng(7);
  for (size_t key_len : {size_t(16), size_t(32)}) {
    std::vector<uint8_t> key(key_len);
    for (auto& x : key) x = uint8_t(rng());
    auto as_enc = g_engine->make_key(key, AeadDirection::Encrypt, 16);
    auto os_enc = ossl.make_key(key, AeadDirection::Encrypt, 16);
    auto msgs = random_messages(rng, 40);
    std::vector<OwnedOp> a, b;
    for (auto& m : msgs) a.emplace_back(m.plain, m.iv, m.aad), b.emplace_back(m.plain, m.iv, m.aad);
    std::vector<int32_t> st;
    assert_int_equal(run_burst(*as_enc, a, st), 40);
    assert_int_equal(run_burst(*os_enc, b, st), 40);
    for (size_t i = 0; i < msgs.size(); ++i) {
      if (a[i].payload() != b[i].payload() || a[i].tag != b[i].tag)
        fail_msg("AES-%zu op %zu (len %zu): output differs from OpenSSL's", key_len * 8, i, msgs[i].plain.size());
      if (msgs[i].plain.size() >= 16) assert_true(a[i].payload() != msgs[i].plain);
    }
  }
}

static void buffers_in_dpdk_memory(void**) {
  // dpgw's frames live in mbufs: the same ops over rte_malloc'ed memory (a real IOVA) give the published output.
  GcmBytes b(gcm_vectors()[7]);  // tc16: AES-256 with AAD
  auto enc = g_engine->make_key(b.key, AeadDirection::Encrypt, uint32_t(b.aad.size()));
  auto dec = g_engine->make_key(b.key, AeadDirection::Decrypt, uint32_t(b.aad.size()));
  assert_true(enc && dec);
  auto* buf = static_cast<uint8_t*>(rte_malloc("gcm", b.pt.size() + kAeadTagLen, 0));
  assert_non_null(buf);
  std::copy(b.pt.begin(), b.pt.end(), buf);
  uint8_t* tag = buf + b.pt.size();
  AeadOp op{buf, uint32_t(b.pt.size()), b.iv.data(), b.aad.data(), tag};
  int32_t st = 5;
  assert_int_equal(enc->process({&op, 1}, {&st, 1}, 1), 1);
  assert_int_equal(st, 0);
  assert_true(std::equal(b.ct.begin(), b.ct.end(), buf));
  assert_true(std::equal(b.tag.begin(), b.tag.end(), tag));
  assert_int_equal(dec->process({&op, 1}, {&st, 1}, 1), 1);
  assert_true(std::equal(b.pt.begin(), b.pt.end(), buf));
  tag[0] ^= 1;
  assert_int_equal(dec->process({&op, 1}, {&st, 1}, 1), 0);
  assert_int_not_equal(st, 0);
  rte_free(buf);
}

static void queue_pair_per_thread(void**) {
  // Two threads, one queue pair each, with the same keys at once: every burst comes back whole and right.
  std::vector<uint8_t> key(32, 0x5c);
  auto enc = g_engine->make_key(key, AeadDirection::Encrypt, 16);
  auto dec = g_engine->make_key(key, AeadDirection::Decrypt, 16);
  OpensslAead ossl(kThreads);
  auto ref = ossl.make_key(key, AeadDirection::Encrypt, 16);
  assert_true(enc && dec && ref);
  std::atomic<int> failures{0};
  auto work = [&](unsigned thread) {
    std::mt19937 rng(100 + thread);
    for (int round = 0; round < 200; ++round) {
      auto msgs = random_messages(rng, 1 + rng() % 64);
      std::vector<OwnedOp> mine, theirs;
      for (auto& m : msgs) mine.emplace_back(m.plain, m.iv, m.aad), theirs.emplace_back(m.plain, m.iv, m.aad);
      std::vector<int32_t> st;
      if (run_burst(*enc, mine, st, thread) != msgs.size()) ++failures;
      if (run_burst(*ref, theirs, st, thread) != msgs.size()) ++failures;
      for (size_t i = 0; i < msgs.size(); ++i)
        if (mine[i].payload() != theirs[i].payload() || mine[i].tag != theirs[i].tag) ++failures;
      if (run_burst(*dec, mine, st, thread) != msgs.size()) ++failures;
      for (size_t i = 0; i < msgs.size(); ++i)
        if (mine[i].payload() != msgs[i].plain) ++failures;
    }
  };
  std::thread other(work, 1u);
  work(0);
  other.join();
  assert_int_equal(failures.load(), 0);
  // A thread number without a queue pair fails every op instead of touching another thread's.
  OwnedOp one(std::vector<uint8_t>(10, 1), std::vector<uint8_t>(12, 2), std::vector<uint8_t>(16, 3));
  int32_t st = 0;
  assert_int_equal(run_one(*enc, one, st, kThreads), 0);
  assert_int_not_equal(st, 0);
}

static void reopen(void**) {
  // Close and open the device again (dpgw does on restart within a process, as the bench does per engine).
  g_engine.reset();
  std::string err;
  g_engine = CryptodevAsyncAead::open(kDevice, kThreads, 64, err);
  if (!g_engine) fail_msg("reopen failed: %s", err.c_str());
  check_gcm_vectors(*g_engine);
}

// The engine all tests share, opened once the EAL runs.
static int open_engine(void**) {
  std::string err;
  g_engine = CryptodevAsyncAead::open(kDevice, kThreads, 256, err);
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
      cmocka_unit_test(missing_devices),
      cmocka_unit_test(published_vectors),
      cmocka_unit_test(tampering_detected),
      cmocka_unit_test(burst_with_bad_ops),
      cmocka_unit_test(bursts_against_openssl),
      cmocka_unit_test(same_bytes_as_openssl),
      cmocka_unit_test(buffers_in_dpdk_memory),
      cmocka_unit_test(queue_pair_per_thread),
      cmocka_unit_test(reopen),
  };
  return dptun::test::run_eal_tests("test_aead_cryptodev_async", tests, sizeof tests / sizeof tests[0], open_engine,
                                    close_engine);
}
