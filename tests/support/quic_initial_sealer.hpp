// What a QUIC client sends first, for the tests and the fuzzer: the ClientHello of OpenSSL's client, CRYPTO frames
// carrying pieces of it, and client Initial packets (RFC 9000 17.2.2) protected with the Initial keys of their
// Destination Connection ID (RFC 9001 5.2: AES-128-GCM, then header protection with AES-128-ECB, 5.4). The keys
// come from ingress/quic_initial.hpp; the sealing is OpenSSL EVP calls of this file's own. Aborts when OpenSSL
// fails (never on the caller's bytes).
#pragma once
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <span>
#include <vector>

#include "ingress/quic_initial.hpp"

namespace dptun::test {

// RFC 9001 Appendix A's Destination Connection ID.
inline const std::vector<uint8_t> kRfc9001Dcid = {0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08};

// A QUIC variable-length integer (RFC 9000 16) of up to 4 bytes.
inline void put_varint(std::vector<uint8_t>& v, uint64_t x) {
  if (x < 64) {
    v.push_back(uint8_t(x));
  } else if (x < 16384) {
    v.push_back(uint8_t(0x40 | x >> 8));
    v.push_back(uint8_t(x));
  } else {
    v.insert(v.end(), {uint8_t(0x80 | x >> 24), uint8_t(x >> 16), uint8_t(x >> 8), uint8_t(x)});
  }
}

// Appends a CRYPTO frame (RFC 9000 19.6) with bytes [off, off + len) of `data`.
inline void crypto_frame(std::vector<uint8_t>& payload, std::span<const uint8_t> data, size_t off, size_t len) {
  payload.push_back(0x06);
  put_varint(payload, off);
  put_varint(payload, len);
  payload.insert(payload.end(), data.begin() + long(off), data.begin() + long(off + len));
}

// The ClientHello handshake message (no TLS record header) of an OpenSSL client asking for `sni`.
inline std::vector<uint8_t> client_hello_message(const char* sni) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL* ssl = SSL_new(ctx);
  BIO* wbio = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl, BIO_new(BIO_s_mem()), wbio);
  SSL_set_tlsext_host_name(ssl, sni);
  SSL_connect(ssl);
  std::vector<uint8_t> rec(size_t(BIO_pending(wbio)));
  BIO_read(wbio, rec.data(), int(rec.size()));
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  return std::vector<uint8_t>(rec.begin() + 5, rec.end());
}

// One client Initial's header fields.
struct InitialSpec {
  std::vector<uint8_t> dcid = kRfc9001Dcid;
  std::vector<uint8_t> scid;   // empty: none
  std::vector<uint8_t> token;  // a token from an earlier connection (NEW_TOKEN), if any
  uint32_t version = 1;
  uint8_t type_bits = 0;       // long header packet type: 0 Initial, 2 Handshake, ...
  uint8_t pn_len = 4;          // 1..4 bytes
  uint32_t pn = 2;             // truncated to pn_len bytes (a client's first packets decode to that, RFC 9000 A.3)
  bool pad = true;             // PADDING up to a 1200-byte datagram, as a client must (RFC 9000 14.1)
  bool flip_tag = false;       // a tampered packet: one bit of the AEAD tag flipped
};

class InitialSealer {
 public:
  InitialSealer() = default;
  ~InitialSealer() {
    EVP_CIPHER_CTX_free(gcm_);
    EVP_CIPHER_CTX_free(ecb_);
  }
  InitialSealer(const InitialSealer&) = delete;
  InitialSealer& operator=(const InitialSealer&) = delete;

  // The protected packet carrying `frames` (padded with zero bytes, PADDING frames, to at least 4 bytes for the
  // header-protection sample); empty when its Length field would not fit 2 bytes.
  std::vector<uint8_t> seal(const InitialSpec& spec, std::span<const uint8_t> frames) {
    const QuicInitialKeys& k = keys_for(spec.dcid);
    const size_t pn_len = spec.pn_len;
    uint32_t pn = spec.pn;
    if (pn_len < 4) pn &= (uint32_t(1) << (8 * pn_len)) - 1;
    std::vector<uint8_t> h = {uint8_t(0xc0 | spec.type_bits << 4 | (pn_len - 1)), uint8_t(spec.version >> 24),
                              uint8_t(spec.version >> 16), uint8_t(spec.version >> 8), uint8_t(spec.version),
                              uint8_t(spec.dcid.size())};
    h.insert(h.end(), spec.dcid.begin(), spec.dcid.end());
    h.push_back(uint8_t(spec.scid.size()));
    h.insert(h.end(), spec.scid.begin(), spec.scid.end());
    put_varint(h, spec.token.size());
    h.insert(h.end(), spec.token.begin(), spec.token.end());
    std::vector<uint8_t> payload(frames.begin(), frames.end());
    if (payload.size() < 4) payload.resize(4, 0);
    const size_t fixed = h.size() + 2 + pn_len + 16;  // the Length field (2 bytes), packet number, tag
    if (spec.pad && payload.size() + fixed < 1200) payload.resize(1200 - fixed, 0);
    const size_t length = pn_len + payload.size() + 16;
    if (length >= 16384) return {};
    h.push_back(uint8_t(0x40 | length >> 8));
    h.push_back(uint8_t(length));
    const size_t pn_offset = h.size();
    for (size_t i = pn_len; i-- > 0;) h.push_back(uint8_t(pn >> (8 * i)));
    uint8_t nonce[12];
    std::memcpy(nonce, k.iv.data(), 12);
    for (size_t i = 0; i < 4; ++i) nonce[11 - i] ^= uint8_t(pn >> (8 * i));
    std::vector<uint8_t> pkt = h;
    pkt.resize(h.size() + payload.size() + 16);
    uint8_t* ct = pkt.data() + h.size();
    int n = 0;
    if (EVP_EncryptInit_ex(gcm_, EVP_aes_128_gcm(), nullptr, k.key.data(), nonce) != 1 ||
        EVP_EncryptUpdate(gcm_, nullptr, &n, h.data(), int(h.size())) != 1 ||
        EVP_EncryptUpdate(gcm_, ct, &n, payload.data(), int(payload.size())) != 1 ||
        EVP_EncryptFinal_ex(gcm_, ct + payload.size(), &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(gcm_, EVP_CTRL_GCM_GET_TAG, 16, ct + payload.size()) != 1)
      std::abort();
    if (spec.flip_tag) pkt.back() ^= 1;
    // Header protection: a mask from AES-ECB over the 16 bytes sampled 4 bytes after the packet number's start.
    uint8_t mask[16];
    if (EVP_EncryptInit_ex(ecb_, EVP_aes_128_ecb(), nullptr, k.hp.data(), nullptr) != 1 ||
        EVP_CIPHER_CTX_set_padding(ecb_, 0) != 1 ||
        EVP_EncryptUpdate(ecb_, mask, &n, pkt.data() + pn_offset + 4, 16) != 1)
      std::abort();
    pkt[0] ^= mask[0] & 0x0f;
    for (size_t i = 0; i < pn_len; ++i) pkt[pn_offset + i] ^= mask[1 + i];
    return pkt;
  }

 private:
  const QuicInitialKeys& keys_for(const std::vector<uint8_t>& dcid) {
    auto it = keys_.find(dcid);
    if (it == keys_.end()) {
      QuicInitialKeys k;
      if (!reader_.client_keys(dcid, k)) std::abort();
      it = keys_.emplace(dcid, k).first;
    }
    return it->second;
  }

  QuicInitialReader reader_;
  std::map<std::vector<uint8_t>, QuicInitialKeys> keys_;
  EVP_CIPHER_CTX* gcm_ = EVP_CIPHER_CTX_new();
  EVP_CIPHER_CTX* ecb_ = EVP_CIPHER_CTX_new();
};

}  // namespace dptun::test
