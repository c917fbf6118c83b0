// The far end of a QUIC session in the pipeline tests (test_quic_tx, test_masque): packets sealed as a peer's QUIC
// stack seals them, and what dpgw sends opened by a decoder of the tests' own, not the codec's read path: header
// protection removed with the OpenSSL reference (crypto/header_protection.hpp), the payload opened with OpenSSL's
// EVP AES-128-GCM.
#pragma once
#include <openssl/evp.h>

#include <array>
#include <cstring>
#include <vector>

#include "crypto/aead_openssl.hpp"
#include "crypto/header_protection.hpp"
#include "crypto/quic_keys.hpp"
#include "packet/parser.hpp"
#include "proto/quic_short_header.hpp"
#include "tests/unit/cmocka.hpp"

namespace dptun::test {

bool read_varint(const uint8_t*& p, const uint8_t* end, uint64_t& v) {  // RFC 9000 16
  if (p >= end) return false;
  const size_t len = size_t(1) << (*p >> 6);
  if (size_t(end - p) < len) return false;
  v = *p++ & 0x3f;
  for (size_t i = 1; i < len; ++i) v = v << 8 | *p++;
  return true;
}

struct QuicPacket {
  uint32_t dst_ip = 0;
  uint16_t src_port = 0, dst_port = 0;
  uint8_t first = 0;  // unprotected
  std::array<uint8_t, 8> dcid{};
  uint32_t pn_len = 0;
  uint64_t pn = 0;
  std::vector<uint8_t> payload;  // the decrypted frames
};

// Opens an Ethernet frame dpgw sent as a QUIC 1-RTT packet with `keys` (8-byte DCID): false when it does not open.
bool quic_open(const std::vector<uint8_t>& frame, const QuicPacketKeys& keys, QuicPacket& out) {
  PacketInfo pi;
  if (parse_ethernet(frame, pi) != ParseStatus::Ok || pi.l4_proto != kIpProtoUdp) return false;
  out.dst_ip = pi.dst_ip;
  out.src_port = pi.src_port;
  out.dst_port = pi.dst_port;
  std::vector<uint8_t> q(frame.begin() + pi.l4_offset + 8, frame.begin() + pi.l4_offset + pi.l4_len);
  if (q.size() < 1 + 8 + 4 + 16 || (q[0] & 0xc0) != 0x40) return false;  // the sample fits; short header, fixed bit
  // RFC 9001 5.4: the sample starts 4 bytes after the packet number's first byte (byte 9 with an 8-byte DCID).
  HeaderProtectionKey hp(HpCipher::Aes128, keys.hp_bytes());
  uint8_t mask[kHpMaskLen];
  if (!hp.ok() || !hp.mask(q.data() + 9 + 4, mask)) return false;
  q[0] ^= mask[0] & 0x1f;
  out.first = q[0];
  out.pn_len = (q[0] & 3) + 1u;
  out.pn = 0;
  for (uint32_t i = 0; i < out.pn_len; ++i) {
    q[9 + i] ^= mask[1 + i];
    out.pn = out.pn << 8 | q[9 + i];
  }
  // (dpgw's numbers are 2^30 and up, below 2^32: the 4 bytes are the whole number; checked by the callers.)
  std::copy(q.begin() + 1, q.begin() + 9, out.dcid.begin());
  const size_t header = 9 + out.pn_len;
  if (q.size() < header + 16) return false;
  uint8_t nonce[12];
  std::memcpy(nonce, keys.iv.data(), 12);
  for (int i = 0; i < 8; ++i) nonce[11 - i] ^= uint8_t(out.pn >> (8 * i));
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  const size_t ct_len = q.size() - header - 16;
  out.payload.assign(ct_len, 0);
  int len = 0;
  bool ok = EVP_DecryptInit_ex(ctx, EVP_aes_128_gcm(), nullptr, nullptr, nullptr) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, 12, nullptr) == 1 &&
            EVP_DecryptInit_ex(ctx, nullptr, nullptr, keys.key.data(), nonce) == 1 &&
            EVP_DecryptUpdate(ctx, nullptr, &len, q.data(), int(header)) == 1 &&  // AAD: the unprotected header
            EVP_DecryptUpdate(ctx, out.payload.data(), &len, q.data() + header, int(ct_len)) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, q.data() + q.size() - 16) == 1 &&
            EVP_DecryptFinal_ex(ctx, out.payload.data() + ct_len, &len) == 1;
  EVP_CIPHER_CTX_free(ctx);
  return ok;
}

// A peer's packet to dpgw's connection ID (`index` | `tail`) holding `frames`, sealed with `keys` as its QUIC stack
// would (padded to the header-protection sample, 2-byte packet number `pn`, key phase `key_phase`); `first_byte_bits`
// ORed into the first byte before protection (the reserved bits, to test their check).
inline std::vector<uint8_t> quic_seal(std::vector<uint8_t> frames, const QuicPacketKeys& keys, uint32_t index,
                                      const std::array<uint8_t, 4>& tail, uint64_t pn, bool key_phase,
                                      OpensslAead& eng, uint8_t first_byte_bits = 0) {
  QuicDatagramCodec::Config c;
  c.tx_dcid = {uint8_t(index >> 24), uint8_t(index >> 16), uint8_t(index >> 8), uint8_t(index),
               tail[0], tail[1], tail[2], tail[3]};
  c.tx_hp = c.rx_hp = keys.hp_bytes();
  c.tx_pn_len = 2;
  QuicDatagramCodec codec(c);
  const uint32_t h = codec.layout().header_len;
  if (h + frames.size() + 16 < kQuicMinPacket) frames.resize(kQuicMinPacket - h - 16, 0);
  std::vector<uint8_t> f(h + frames.size() + 16);
  std::memcpy(f.data() + h, frames.data(), frames.size());
  codec.write_header(f.data(), FrameMeta{FrameType::Data, uint8_t(key_phase ? kQuicFlagKeyPhase : 0), 0, pn});
  f[0] |= first_byte_bits;
  auto key = eng.make_key(keys.key_bytes(), AeadDirection::Encrypt, h);
  uint8_t iv[kAeadIvLen];
  quic_nonce(iv, keys.iv.data(), pn);
  const AeadOp op = codec.seal_op(f.data(), uint32_t(frames.size()), iv);
  int32_t status = -1;
  key->process({&op, 1}, {&status, 1}, 0);
  assert_int_equal(status, 0);
  codec.protect(f);
  return f;
}

}  // namespace dptun::test
