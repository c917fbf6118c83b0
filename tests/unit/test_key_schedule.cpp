// Epoch key schedule: HKDF-SHA256 known answers (computed independently with Python's hmac/hashlib per
// RFC 5869), key length checks, epoch arithmetic, and separation between directions, epochs and secrets.
#include <set>

#include "tests/unit/cmocka.hpp"

#include "crypto/key_schedule.hpp"

using namespace dptun;
using namespace dptun::test;

static std::vector<uint8_t> ikm_00_1f() {
  std::vector<uint8_t> v(32);
  for (size_t i = 0; i < v.size(); ++i) v[i] = uint8_t(i);
  return v;
}

// okm = HKDF-SHA256(salt = "dptun relay v1", ikm = 00..1f,
//                   info = "dptun v1 " dir || be32(session index) || be64(epoch), L = key_len + 4):
//   import hmac, hashlib
//   prk = hmac.new(b"dptun relay v1", bytes(range(32)), hashlib.sha256).digest()
//   t1 = hmac.new(prk, info + b"\x01", hashlib.sha256).digest(); t2 = hmac.new(prk, t1 + info + b"\x02", ...)
//   okm = (t1 + t2)[:L]
struct Kat {
  KeyDirection dir;
  uint32_t index;
  uint64_t epoch;
  size_t key_len;
  const char* okm;
};
static const Kat kKats[] = {
    {KeyDirection::GatewayToAgent, 1, 0, 16, "c2b4497ddbaf804af756406d92a1b3e97e2439d1"},
    {KeyDirection::GatewayToAgent, 1, 7, 16, "7ce97d9669e7dc6f32cdac593072697498746991"},
    {KeyDirection::AgentToGateway, 1, 0, 16, "53bf7d8e3d64f9483398c210eae61a36fc117d64"},
    {KeyDirection::AgentToGateway, 1, 7, 16, "8c465fcc4ff448ba66b5c4fb4e833c4fbc7ac5e4"},
    {KeyDirection::GatewayToAgent, 1, 0, 32, "c2b4497ddbaf804af756406d92a1b3e97e2439d1db4ec44b7435d361823ea11fa599e697"},
    {KeyDirection::AgentToGateway, 1, 7, 32, "8c465fcc4ff448ba66b5c4fb4e833c4fbc7ac5e45e134af2bc656cae8750fc0b6a848b34"},
    {KeyDirection::GatewayToAgent, 2, 0, 16, "3780363c84d79cd96e660f1adc2c481c5b9cbeef"},
};

static void known_answers(void**) {
  const auto ikm = ikm_00_1f();
  for (const Kat& k : kKats) {
    const auto okm = from_hex(k.okm);
    assert_int_equal(okm.size(), k.key_len + kSaltLen);
    EpochKey out;
    assert_true(derive_epoch_key(ikm, k.dir, k.index, k.epoch, k.key_len, out));
    assert_int_equal(out.epoch, k.epoch);
    assert_int_equal(out.key_len, k.key_len);
    assert_int_equal(out.key_bytes().size(), k.key_len);
    assert_ptr_equal(out.key_bytes().data(), out.key.data());
    assert_memory_equal(out.key.data(), okm.data(), k.key_len);
    assert_memory_equal(out.salt.data(), okm.data() + k.key_len, kSaltLen);
  }
}

// The direct path's keys from a pair secret (docs/nat-traversal.md), known answers from the same Python HKDF with
// salt "dptun direct v1" and info "check" / "data": distinct keys, neither equal to the secret.
static void direct_path_keys(void**) {
  const auto secret = ikm_00_1f();
  std::array<uint8_t, kDirectCheckKeyLen> check{};
  std::array<uint8_t, kBaseSecretLen> data{};
  assert_true(derive_direct_check_key(secret, check));
  assert_true(derive_direct_data_secret(secret, data));
  const auto want_check = from_hex("c4c177c17e7faef8ee4538942bc2261487458cf270d86a2f79f417729b475b19");
  const auto want_data = from_hex("6e4223b8b922809466d05ec259f384498a6f38c86ea8eecd419e6d9865d5906a");
  assert_memory_equal(check.data(), want_check.data(), check.size());
  assert_memory_equal(data.data(), want_data.data(), data.size());
}

static void deterministic_and_reusable(void**) {
  // Deriving into a used EpochKey overwrites it completely; the same inputs give the same output.
  const auto ikm = ikm_00_1f();
  EpochKey a, b;
  assert_true(derive_epoch_key(ikm, KeyDirection::AgentToGateway, 1, 7, 32, a));
  assert_true(derive_epoch_key(ikm, KeyDirection::AgentToGateway, 1, 7, 32, b));
  assert_memory_equal(a.key.data(), b.key.data(), 32);
  assert_memory_equal(a.salt.data(), b.salt.data(), kSaltLen);
  assert_true(derive_epoch_key(ikm, KeyDirection::GatewayToAgent, 1, 0, 16, b));
  assert_int_equal(b.key_len, 16);
  assert_int_equal(b.epoch, 0);
  const auto okm = from_hex(kKats[0].okm);
  assert_memory_equal(b.key.data(), okm.data(), 16);
  assert_memory_equal(b.salt.data(), okm.data() + 16, kSaltLen);
  // Copies carry the key.
  EpochKey c = a;
  assert_int_equal(c.key_len, 32);
  assert_memory_equal(c.key_bytes().data(), a.key_bytes().data(), 32);
}

static void invalid_key_len_rejected(void**) {
  const auto ikm = ikm_00_1f();
  for (size_t len : {0, 1, 8, 15, 17, 20, 24, 31, 33, 64, 1000}) {
    EpochKey out;
    assert_false(derive_epoch_key(ikm, KeyDirection::GatewayToAgent, 1, 0, len, out));
  }
}

static void epoch_arithmetic(void**) {
  assert_int_equal(kEpochShift, 32);
  assert_int_equal(epoch_of(0), 0);
  assert_int_equal(epoch_of(0xffffffffull), 0);
  assert_int_equal(epoch_of(0x100000000ull), 1);
  assert_int_equal(epoch_of(0x7ffffffffull), 7);
  assert_int_equal(epoch_of(0xffffffffffffffffull), 0xffffffffull);
  assert_int_equal(first_counter_of(0), 0);
  assert_int_equal(first_counter_of(1), 0x100000000ull);
  assert_int_equal(first_counter_of(7), 0x700000000ull);
  assert_int_equal(first_counter_of(0xffffffffull), 0xffffffff00000000ull);
  for (uint64_t e : {uint64_t(0), uint64_t(1), uint64_t(2), uint64_t(7), uint64_t(12345), uint64_t(0xfffffffe)}) {
    assert_int_equal(epoch_of(first_counter_of(e)), e);
    assert_int_equal(epoch_of(first_counter_of(e + 1) - 1), e);  // last counter of epoch e
    assert_int_equal(first_counter_of(e + 1) - first_counter_of(e), uint64_t(1) << 32);
  }
}

static void keys_are_separated(void**) {
  // Every (secret, direction, epoch, length) gives a distinct key and a distinct key||salt.
  auto secret_a = ikm_00_1f();
  auto secret_b = secret_a;
  secret_b[31] ^= 1;
  const uint64_t epochs[] = {0, 1, 2, 7, 0x100, 0xffffffff, 0x100000000ull, uint64_t(1) << 63};
  std::set<std::vector<uint8_t>> keys, okms, salts;
  size_t n = 0;
  for (const auto* secret : {&secret_a, &secret_b})
    for (KeyDirection dir : {KeyDirection::GatewayToAgent, KeyDirection::AgentToGateway})
      for (uint64_t epoch : epochs)
        for (size_t len : {16, 32}) {
          EpochKey k;
          assert_true(derive_epoch_key(*secret, dir, 1, epoch, len, k));
          std::vector<uint8_t> key(k.key.begin(), k.key.begin() + long(len));
          std::vector<uint8_t> okm = key;
          okm.insert(okm.end(), k.salt.begin(), k.salt.end());
          keys.insert(std::vector<uint8_t>(key.begin(), key.begin() + 16));  // 128-bit prefixes
          okms.insert(okm);
          if (len == 16) salts.insert(std::vector<uint8_t>(k.salt.begin(), k.salt.end()));
          ++n;
        }
  // A 16-byte key is the prefix of the 32-byte key for the same inputs (one HKDF stream), so 16-byte
  // prefixes collide exactly in pairs; everything else is distinct.
  assert_int_equal(keys.size(), n / 2);
  assert_int_equal(okms.size(), n);
  assert_int_equal(salts.size(), n / 2);
  // The two directions of one epoch never share a key or a nonce salt.
  const auto ikm = ikm_00_1f();
  for (uint64_t epoch : epochs) {
    EpochKey g2a, a2g;
    assert_true(derive_epoch_key(ikm, KeyDirection::GatewayToAgent, 1, epoch, 32, g2a));
    assert_true(derive_epoch_key(ikm, KeyDirection::AgentToGateway, 1, epoch, 32, a2g));
    assert_memory_not_equal(g2a.key.data(), a2g.key.data(), 32);
    assert_memory_not_equal(g2a.salt.data(), a2g.salt.data(), kSaltLen);
  }
}

static void any_secret_length(void**) {
  // HKDF accepts any IKM length; a different secret gives a different key.
  std::vector<uint8_t> s1(kBaseSecretLen, 0x42), s2(64, 0x42);
  EpochKey a, b;
  assert_true(derive_epoch_key(s1, KeyDirection::GatewayToAgent, 1, 3, 16, a));
  assert_true(derive_epoch_key(s2, KeyDirection::GatewayToAgent, 1, 3, 16, b));
  assert_memory_not_equal(a.key.data(), b.key.data(), 16);
}

// Two sessions given the same secret (a configuration mistake) still get different keys and salts, so their
// counters can never produce the same (key, nonce) pair.
static void session_index_separates_keys(void**) {
  const auto ikm = ikm_00_1f();
  EpochKey a, b;
  for (KeyDirection dir : {KeyDirection::GatewayToAgent, KeyDirection::AgentToGateway}) {
    assert_true(derive_epoch_key(ikm, dir, 1, 42, 16, a));
    assert_true(derive_epoch_key(ikm, dir, 2, 42, 16, b));
    assert_memory_not_equal(a.key.data(), b.key.data(), 16);
    assert_memory_not_equal(a.salt.data(), b.salt.data(), kSaltLen);
  }
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(session_index_separates_keys),
      cmocka_unit_test(known_answers),
      cmocka_unit_test(direct_path_keys),
      cmocka_unit_test(deterministic_and_reusable),
      cmocka_unit_test(invalid_key_len_rejected),
      cmocka_unit_test(epoch_arithmetic),
      cmocka_unit_test(keys_are_separated),
      cmocka_unit_test(any_secret_length),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
