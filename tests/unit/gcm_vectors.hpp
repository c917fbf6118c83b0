// Published AES-GCM test vectors: McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)", appendix B,
// test cases 1-4 (AES-128) and 13-16 (AES-256), the ones with 96-bit IVs. Shared by the OpenSSL and the
// cryptodev engine tests.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tests/unit/cmocka.hpp"

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

}  // namespace dptun::test
