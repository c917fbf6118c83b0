// aead_burst (dataplane/relay/aead_burst.hpp): every op of a burst is sealed with its own cipher, whether the burst
// has one key (the single call) or several in any order (grouped calls); statuses land at the ops' own positions.
// Checked by opening every op with the matching decrypt key (OpenSSL), and failing to with the other key.
// Standard headers first: cmocka.h defines a fail() macro that breaks <ios> (pulled in by <memory> in C++20).
#include <algorithm>
#include <memory>
#include <random>
#include <vector>

#include "tests/unit/cmocka.hpp"

#include "crypto/aead_openssl.hpp"
#include "dataplane/relay/aead_burst.hpp"

using namespace dptun;

namespace {

constexpr uint32_t kAad = 16;

struct Key {
  EpochCipher enc;
  std::unique_ptr<AeadKey> dec;
};

Key make(OpensslAead& e, uint8_t fill) {
  Key k;
  const std::vector<uint8_t> bytes(16, fill);
  k.enc.aead = e.make_key(bytes, AeadDirection::Encrypt, kAad);
  k.dec = e.make_key(bytes, AeadDirection::Decrypt, kAad);
  assert_non_null(k.enc.aead.get());
  assert_non_null(k.dec.get());
  return k;
}

struct Buf {
  std::vector<uint8_t> plain, data, aad, iv, tag;
};

// Seals n ops, op i with keys[which[i]], through aead_burst; then opens each with every key.
void seal_and_check(std::vector<Key>& keys, const std::vector<int>& which) {
  const uint16_t n = uint16_t(which.size());
  std::mt19937 rng(n * 31 + (n ? which[0] : 0));
  std::vector<Buf> b(n);
  std::vector<AeadOp> ops(n);
  std::vector<EpochCipher*> cipher(n);
  std::vector<int32_t> status(n, -1);
  for (uint16_t i = 0; i < n; ++i) {
    b[i].plain.resize(1 + rng() % 1500);
    for (auto& x : b[i].plain) x = uint8_t(rng());
    b[i].data = b[i].plain;
    b[i].aad.assign(kAad, uint8_t(i));
    b[i].iv.assign(kAeadIvLen, 0);
    b[i].iv[11] = uint8_t(i);
    b[i].tag.assign(kAeadTagLen, 0);
    ops[i] = AeadOp{b[i].data.data(), uint32_t(b[i].data.size()), b[i].iv.data(), b[i].aad.data(), b[i].tag.data()};
    cipher[i] = &keys[size_t(which[i])].enc;
  }
  aead_burst(cipher.data(), ops.data(), status.data(), n, 0);
  for (uint16_t i = 0; i < n; ++i) {
    assert_int_equal(status[i], 0);
    assert_memory_not_equal(b[i].data.data(), b[i].plain.data(), std::min<size_t>(b[i].plain.size(), 16));
    for (size_t k = 0; k < keys.size(); ++k) {
      std::vector<uint8_t> copy = b[i].data, tag = b[i].tag;
      const AeadOp open{copy.data(), uint32_t(copy.size()), b[i].iv.data(), b[i].aad.data(), tag.data()};
      int32_t st = -1;
      keys[k].dec->process({&open, 1}, {&st, 1}, 0);
      if (int(k) == which[i]) {
        assert_int_equal(st, 0);
        assert_memory_equal(copy.data(), b[i].plain.data(), copy.size());
      } else {
        assert_int_not_equal(st, 0);  // sealed with another key
      }
    }
  }
}

}  // namespace

static void one_key(void**) {
  OpensslAead e;
  std::vector<Key> keys;
  keys.push_back(make(e, 1));
  keys.push_back(make(e, 2));
  for (uint16_t n : {1, 2, 32, 64}) {
    seal_and_check(keys, std::vector<int>(n, 0));
    seal_and_check(keys, std::vector<int>(n, 1));
  }
  seal_and_check(keys, {});  // nothing to do
}

static void several_keys(void**) {
  OpensslAead e;
  std::vector<Key> keys;
  for (uint8_t f = 1; f <= 3; ++f) keys.push_back(make(e, f));
  seal_and_check(keys, {0, 1});
  seal_and_check(keys, {1, 0, 0, 0});               // the first differs
  seal_and_check(keys, {0, 0, 0, 2});               // the last differs
  seal_and_check(keys, {0, 1, 2, 0, 1, 2, 2, 1, 0});  // interleaved
  std::mt19937 rng(5);
  std::vector<int> which(64);
  for (auto& w : which) w = int(rng() % 3);
  seal_and_check(keys, which);
}

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(one_key),
      cmocka_unit_test(several_keys),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
