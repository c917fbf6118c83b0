// Published AES-GCM test vectors: McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)", appendix B,
// test cases 1-4 (AES-128) and 13-16 (AES-256), the ones with 96-bit IVs. Shared by the OpenSSL and the
// cryptodev engine tests. Include the standard headers a test needs before cmocka.hpp (cmocka.h defines a
// fail() macro that breaks <ios>, which <memory> pulls in under C++20).
#pragma once
#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tests/unit/cmocka.hpp"

#include "crypto/aead.hpp"

namespace dptun::test {

struct GcmVector {
  const char* name;
  const char* key;
  const char* iv;
  const char* plaintext;
  const char* aad;
  const char* ciphertext;
  const char* tag;
};

#define DPTUN_GCM_P3                                                                                           \
  "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de65" \
  "7ba637b391aafd255"
#define DPTUN_GCM_P4                                                                                           \
  "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de65" \
  "7ba637b39"
#define DPTUN_GCM_K "feffe9928665731c6d6a8f9467308308"
#define DPTUN_GCM_IV "cafebabefacedbaddecaf888"
#define DPTUN_GCM_AAD "feedfacedeadbeeffeedfacedeadbeefabaddad2"

inline const std::vector<GcmVector>& gcm_vectors() {
  static const std::vector<GcmVector> v = {
      {"tc1", "00000000000000000000000000000000", "000000000000000000000000", "", "", "",
       "58e2fccefa7e3061367f1d57a4e7455a"},
      {"tc2", "00000000000000000000000000000000", "000000000000000000000000", "00000000000000000000000000000000", "",
       "0388dace60b6a392f328c2b971b2fe78", "ab6e47d42cec13bdf53a67b21257bddf"},
      {"tc3", DPTUN_GCM_K, DPTUN_GCM_IV, DPTUN_GCM_P3, "",
       "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac97"
       "3d58e091473f5985",
       "4d5c2af327cd64a62cf35abd2ba6fab4"},
      {"tc4", DPTUN_GCM_K, DPTUN_GCM_IV, DPTUN_GCM_P4, DPTUN_GCM_AAD,
       "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac97"
       "3d58e091",
       "5bc94fbc3221a5db94fae95ae7121a47"},
      {"tc13", "0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000", "", "",
       "", "530f8afbc74536b9a963b4f1c4cb738b"},
      {"tc14", "0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000",
       "00000000000000000000000000000000", "", "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919"},
      {"tc15", DPTUN_GCM_K DPTUN_GCM_K, DPTUN_GCM_IV, DPTUN_GCM_P3, "",
       "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0a"
       "bcc9f662898015ad",
       "b094dac5d93471bdec1a502270e3cc6c"},
      {"tc16", DPTUN_GCM_K DPTUN_GCM_K, DPTUN_GCM_IV, DPTUN_GCM_P4, DPTUN_GCM_AAD,
       "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0a"
       "bcc9f662",
       "76fc6ece0f4e1768cddf8853bb2d551b"},
  };
  return v;
}

#undef DPTUN_GCM_P3
#undef DPTUN_GCM_P4
#undef DPTUN_GCM_K
#undef DPTUN_GCM_IV
#undef DPTUN_GCM_AAD

// A vector's fields as bytes.
struct GcmBytes {
  std::vector<uint8_t> key, iv, pt, aad, ct, tag;
  explicit GcmBytes(const GcmVector& v)
      : key(from_hex(v.key)), iv(from_hex(v.iv)), pt(from_hex(v.plaintext)), aad(from_hex(v.aad)),
        ct(from_hex(v.ciphertext)), tag(from_hex(v.tag)) {}
};

// One AEAD operation over buffers it owns. The data buffer always has at least one byte so that an empty
// message still has a valid (non-null) pointer.
struct OwnedOp {
  std::vector<uint8_t> data, iv, aad, tag;
  uint32_t len = 0;
  OwnedOp() = default;
  OwnedOp(std::vector<uint8_t> payload, std::vector<uint8_t> iv_, std::vector<uint8_t> aad_,
          std::vector<uint8_t> tag_ = std::vector<uint8_t>(kAeadTagLen, 0))
      : data(std::move(payload)), iv(std::move(iv_)), aad(std::move(aad_)), tag(std::move(tag_)) {
    len = uint32_t(data.size());
    data.push_back(0xee);  // guard byte: must never be written
    aad.push_back(0xee);   // (and gives an empty AAD a valid pointer)
  }
  AeadOp op() { return AeadOp{data.data(), len, iv.data(), aad.data(), tag.data()}; }
  std::vector<uint8_t> payload() const { return {data.begin(), data.begin() + len}; }
  bool guard_intact() const { return data[len] == 0xee; }
};

// Runs a burst; returns the success count and fills `status` (initialised to a sentinel first).
inline uint32_t run_burst(AeadKey& key, std::vector<OwnedOp>& ops, std::vector<int32_t>& status, unsigned thread = 0) {
  std::vector<AeadOp> v;
  for (auto& o : ops) v.push_back(o.op());
  status.assign(ops.size(), 0x5a5a5a5a);
  return key.process(v, status, thread);
}

inline uint32_t run_one(AeadKey& key, OwnedOp& op, int32_t& status, unsigned thread = 0) {
  std::vector<OwnedOp> one{op};
  std::vector<int32_t> st;
  uint32_t n = run_burst(key, one, st, thread);
  op = one[0];
  status = st[0];
  return n;
}

// Every published vector encrypts to its ciphertext and tag and decrypts back to its plaintext.
inline void check_gcm_vectors(AeadEngine& engine) {
  for (const GcmVector& v : gcm_vectors()) {
    GcmBytes b(v);
    assert_int_equal(b.pt.size(), b.ct.size());
    assert_int_equal(b.iv.size(), kAeadIvLen);
    assert_int_equal(b.tag.size(), kAeadTagLen);
    auto enc = engine.make_key(b.key, AeadDirection::Encrypt, uint32_t(b.aad.size()));
    auto dec = engine.make_key(b.key, AeadDirection::Decrypt, uint32_t(b.aad.size()));
    assert_non_null(enc.get());
    assert_non_null(dec.get());
    OwnedOp op(b.pt, b.iv, b.aad);
    int32_t st = -7;
    assert_int_equal(run_one(*enc, op, st), 1);
    assert_int_equal(st, 0);
    if (op.payload() != b.ct) fail_msg("%s: wrong ciphertext", v.name);
    if (op.tag != b.tag) fail_msg("%s: wrong tag", v.name);
    assert_true(op.guard_intact());
    OwnedOp back(b.ct, b.iv, b.aad, b.tag);
    st = -7;
    assert_int_equal(run_one(*dec, back, st), 1);
    assert_int_equal(st, 0);
    if (back.payload() != b.pt) fail_msg("%s: decrypt did not give the plaintext back", v.name);
    assert_true(back.guard_intact());
  }
}

// Flipping any single bit of ciphertext, tag, AAD or IV makes decryption of a vector fail.
inline void check_gcm_tamper(AeadEngine& engine) {
  for (const GcmVector& v : gcm_vectors()) {
    GcmBytes b(v);
    auto dec = engine.make_key(b.key, AeadDirection::Decrypt, uint32_t(b.aad.size()));
    assert_non_null(dec.get());
    auto try_decrypt = [&](std::vector<uint8_t> ct, std::vector<uint8_t> iv, std::vector<uint8_t> aad,
                           std::vector<uint8_t> tag) {
      OwnedOp op(std::move(ct), std::move(iv), std::move(aad), std::move(tag));
      int32_t st = 0;
      uint32_t n = run_one(*dec, op, st);
      return std::make_pair(n, st);
    };
    auto good = try_decrypt(b.ct, b.iv, b.aad, b.tag);
    assert_int_equal(good.first, 1);
    assert_int_equal(good.second, 0);
    std::vector<std::vector<uint8_t>*> fields{&b.ct, &b.tag, &b.aad, &b.iv};
    for (size_t f = 0; f < fields.size(); ++f) {
      std::vector<uint8_t>& field = *fields[f];
      for (size_t bit = 0; bit < field.size() * 8; ++bit) {
        field[bit / 8] ^= uint8_t(1u << (bit % 8));
        auto r = try_decrypt(b.ct, b.iv, b.aad, b.tag);
        field[bit / 8] ^= uint8_t(1u << (bit % 8));
        if (r.first != 0 || r.second == 0)
          fail_msg("%s: flipped bit %zu of field %zu still decrypts (n=%u status=%d)", v.name, bit, f, r.first,
                   r.second);
      }
    }
  }
}

// A burst of `n` random messages (16-byte AAD) where the ops in `bad` are tampered (ciphertext, tag or AAD in
// turn): exactly those report a non-zero status, the others decrypt correctly.
inline void check_burst_with_bad_ops(AeadEngine& engine, size_t key_len, size_t n, const std::vector<size_t>& bad,
                                     uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> key(key_len);
  for (auto& x : key) x = uint8_t(rng());
  auto enc = engine.make_key(key, AeadDirection::Encrypt, 16);
  auto dec = engine.make_key(key, AeadDirection::Decrypt, 16);
  assert_non_null(enc.get());
  assert_non_null(dec.get());
  std::vector<OwnedOp> ops;
  std::vector<std::vector<uint8_t>> plain;
  for (size_t i = 0; i < n; ++i) {
    std::vector<uint8_t> p(rng() % 300 + (i % 3 == 0 ? 1 : 0)), iv(kAeadIvLen), aad(16);
    for (auto& x : p) x = uint8_t(rng());
    for (auto& x : iv) x = uint8_t(rng());
    for (auto& x : aad) x = uint8_t(rng());
    plain.push_back(p);
    ops.emplace_back(p, iv, aad);
  }
  std::vector<int32_t> st;
  assert_int_equal(run_burst(*enc, ops, st), n);
  for (size_t i = 0; i < n; ++i) assert_int_equal(st[i], 0);
  size_t k = 0;
  for (size_t i : bad) {
    OwnedOp& o = ops[i];
    switch (k++ % 3) {
      case 0:
        if (o.len) {
          o.data[rng() % o.len] ^= 0x20;
          break;
        }
        [[fallthrough]];
      case 1: o.tag[rng() % kAeadTagLen] ^= 0x01; break;
      default: o.aad[rng() % 16] ^= 0x80; break;
    }
  }
  assert_int_equal(run_burst(*dec, ops, st), n - bad.size());
  for (size_t i = 0; i < n; ++i) {
    bool is_bad = std::find(bad.begin(), bad.end(), i) != bad.end();
    if (is_bad != (st[i] != 0)) fail_msg("op %zu of %zu: status %d, tampered %d", i, n, st[i], is_bad);
    if (!is_bad && ops[i].payload() != plain[i]) fail_msg("op %zu of %zu: wrong plaintext", i, n);
    assert_true(ops[i].guard_intact());
  }
}

}  // namespace dptun::test
