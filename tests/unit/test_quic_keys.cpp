// QUIC packet protection keys (crypto/quic_keys.hpp) against RFC 9001: the Initial secrets and keys of Appendix
// A.1, the ChaCha20-Poly1305 secret, keys and key update of Appendix A.5; TLS_AES_256_GCM_SHA384 (no RFC vector)
// against Python's cryptography (HKDFExpand with the TLS 1.3 label, computed once and written here); a key update
// keeps the header-protection key; wrong lengths are refused.
#include <cstring>
#include <string>
#include <vector>

#include "crypto/quic_keys.hpp"

#include "tests/unit/cmocka.hpp"

using namespace dptun;
using namespace dptun::test;

namespace {

void expect(std::span<const uint8_t> got, const std::string& hex) {
  const std::vector<uint8_t> want = from_hex(hex);
  assert_int_equal(got.size(), want.size());
  assert_memory_equal(got.data(), want.data(), want.size());
}

void initial_rfc9001_a1(void**) {
  QuicKdf kdf;
  assert_true(kdf.ok());
  uint8_t client[32], server[32];
  assert_true(kdf.initial_secrets(from_hex("8394c8f03e515708"), client, server));
  expect(client, "c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea");
  expect(server, "3c199828fd139efd216c155ad844cc81fb82fa8d7446fa7d78be803acdda951b");
  QuicPacketKeys k;
  assert_true(kdf.packet_keys(QuicCipher::Aes128Gcm, client, k));
  expect(k.key_bytes(), "1f369613dd76d5467730efcbe3b1a22d");
  expect(k.iv, "fa044b2f42a3fd3b46fb255c");
  expect(k.hp_bytes(), "9f50449e04a0e810283a1e9933adedd2");
  assert_true(kdf.packet_keys(QuicCipher::Aes128Gcm, server, k));
  expect(k.key_bytes(), "cf3a5331653c364c88f0f379b6067e37");
  expect(k.iv, "0ac1493ca1905853b0bba03e");
  expect(k.hp_bytes(), "c206b8d9b9f0f37644430b490eeaa314");
  // A DCID of 0 and of 20 bytes are allowed; 21 is not (RFC 9000 17.2).
  assert_true(kdf.initial_secrets({}, client, server));
  assert_true(kdf.initial_secrets(std::vector<uint8_t>(20, 7), client, server));
  assert_false(kdf.initial_secrets(std::vector<uint8_t>(21, 7), client, server));
}

void chacha20_rfc9001_a5(void**) {
  QuicKdf kdf;
  const auto secret = from_hex("9ac312a7f877468ebe69422748ad00a15443f18203a07d6060f688f30f21632b");
  QuicPacketKeys k;
  assert_true(kdf.packet_keys(QuicCipher::ChaCha20Poly1305, secret, k));
  expect(k.key_bytes(), "c6d98ff3441c3fe1b2182094f69caa2ed4b716b65488960a7a984979fb23e1c8");
  expect(k.iv, "e0459b3474bdd0e44a41c144");
  expect(k.hp_bytes(), "25a282b9e82f06f21f488917a4fc8f1b73573685608597d0efcb076b0ab7a7a4");
  uint8_t next[32];
  assert_true(kdf.next_secret(QuicCipher::ChaCha20Poly1305, secret, next));
  expect(next, "1223504755036d556342ee9361d253421a826c9ecdf3c7148684b36b714881f9");
  // The next phase's packet keys differ in key and IV; header protection keeps the first phase's key (RFC 9001
  // 6.3), which is why packet_keys() of the next secret is only used for key and IV.
  QuicPacketKeys n;
  assert_true(kdf.packet_keys(QuicCipher::ChaCha20Poly1305, next, n));
  assert_memory_not_equal(n.key.data(), k.key.data(), 32);
  assert_memory_not_equal(n.iv.data(), k.iv.data(), 12);
}

void aes256_sha384(void**) {
  QuicKdf kdf;
  std::vector<uint8_t> secret(48);
  for (size_t i = 0; i < secret.size(); ++i) secret[i] = uint8_t(i);
  QuicPacketKeys k;
  assert_true(kdf.packet_keys(QuicCipher::Aes256Gcm, secret, k));
  expect(k.key_bytes(), "95c517eea81b6469ff8f27a065fd04c1a27b3023591b93e273a9df5f921d1f68");
  expect(k.iv, "a8d8316bf5bb0bbfa74cbf17");
  expect(k.hp_bytes(), "307135de335efef95873468a03d3dfa1e38050df7cc6ab7f22fd7aced73b66e5");
  uint8_t next[48];
  assert_true(kdf.next_secret(QuicCipher::Aes256Gcm, secret, next));
  expect(next, "d21f524277390ba96b86484d9c687f850f1e4d1f997033bba06051129179a762a94067d065f3f715e83d65a7bf8c79b9");
  assert_int_equal(quic_hp_cipher(QuicCipher::Aes256Gcm), HpCipher::Aes256);
}

void wrong_lengths(void**) {
  QuicKdf kdf;
  QuicPacketKeys k;
  std::vector<uint8_t> s32(32, 1), s48(48, 1);
  assert_false(kdf.packet_keys(QuicCipher::Aes256Gcm, s32, k));  // SHA-384 secrets are 48 bytes
  assert_false(kdf.packet_keys(QuicCipher::Aes128Gcm, s48, k));
  uint8_t out48[48];
  assert_false(kdf.next_secret(QuicCipher::Aes128Gcm, s32, out48));  // the next secret has the same length
  assert_false(kdf.expand_label(QuicCipher::Aes128Gcm, s32, "quic key", {}));
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(initial_rfc9001_a1),
      cmocka_unit_test(chacha20_rfc9001_a5),
      cmocka_unit_test(aes256_sha384),
      cmocka_unit_test(wrong_lengths),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
