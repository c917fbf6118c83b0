#include "ingress/quic_initial.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstring>

#include "proto/quic_varint.hpp"

namespace dptun {

namespace {

constexpr size_t kTagLen = 16;

}  // namespace

const char* quic_status_name(QuicStatus s) {
  switch (s) {
    case QuicStatus::Found: return "found";
    case QuicStatus::NoName: return "no_name";
    case QuicStatus::NeedMore: return "need_more";
    case QuicStatus::NotInitial: return "not_initial";
    case QuicStatus::Malformed: return "malformed";
    case QuicStatus::DecryptFailed: return "decrypt_failed";
  }
  return "unknown";
}

QuicInitialReader::QuicInitialReader() {
  ecb_ = EVP_CIPHER_CTX_new();
  gcm_ = EVP_CIPHER_CTX_new();
  if (ecb_ && EVP_EncryptInit_ex(ecb_, EVP_aes_128_ecb(), nullptr, nullptr, nullptr) == 1)
    EVP_CIPHER_CTX_set_padding(ecb_, 0);
  if (gcm_) EVP_DecryptInit_ex(gcm_, EVP_aes_128_gcm(), nullptr, nullptr, nullptr);
}

QuicInitialReader::~QuicInitialReader() {
  EVP_CIPHER_CTX_free(ecb_);
  EVP_CIPHER_CTX_free(gcm_);
}

bool QuicInitialReader::client_keys(std::span<const uint8_t> dcid, QuicInitialKeys& k) {
  uint8_t client[32], server[32];
  QuicPacketKeys keys;
  const bool ok = kdf_.initial_secrets(dcid, client, server) && kdf_.packet_keys(QuicCipher::Aes128Gcm, client, keys);
  OPENSSL_cleanse(client, sizeof client);
  OPENSSL_cleanse(server, sizeof server);
  if (!ok) return false;
  std::memcpy(k.key.data(), keys.key.data(), k.key.size());
  k.iv = keys.iv;
  std::memcpy(k.hp.data(), keys.hp.data(), k.hp.size());
  return true;
}

bool QuicInitialReader::header_mask(const std::array<uint8_t, 16>& hp, const uint8_t* sample, uint8_t mask[16]) {
  int outl = 0;
  return EVP_EncryptInit_ex(ecb_, nullptr, nullptr, hp.data(), nullptr) == 1 &&
         EVP_EncryptUpdate(ecb_, mask, &outl, sample, 16) == 1 && outl == 16;
}

std::span<const uint8_t> quic_initial_dcid(std::span<const uint8_t> dgram) {
  const uint8_t* p = dgram.data();
  // Long header, fixed bit, type Initial (0), version 1, in a datagram of at least 1200 bytes (RFC 9000 14.1).
  if (dgram.size() < 1200 || (p[0] & 0xc0) != 0xc0 || (p[0] & 0x30) != 0) return {};
  if (p[1] != 0 || p[2] != 0 || p[3] != 0 || p[4] != 1 || p[5] > 20) return {};
  return dgram.subspan(6, p[5]);
}

QuicResult QuicInitialReader::add(std::span<const uint8_t> dgram) {
  const QuicResult not_initial{QuicStatus::NotInitial, {}}, bad{QuicStatus::Malformed, {}};
  if (!ok()) return bad;
  const uint8_t* p = dgram.data();
  const uint8_t* end = p + dgram.size();
  if (dgram.size() < 1200 || (p[0] & 0xc0) != 0xc0 || (p[0] & 0x30) != 0) return not_initial;
  if (p[1] != 0 || p[2] != 0 || p[3] != 0 || p[4] != 1) return not_initial;
  const uint8_t* q = p + 5;
  const uint8_t dcid_len = *q++;
  if (dcid_len > 20 || end - q < dcid_len + 1) return bad;
  std::span<const uint8_t> dcid(q, dcid_len);
  // Every Initial of the connection carries the Destination Connection ID of the first (until the server
  // answers, and dpgw only reads what comes before that); its keys are derived once.
  if (dcid_len_ != 0xff && (dcid_len != dcid_len_ || std::memcmp(dcid.data(), dcid_.data(), dcid_len) != 0))
    return bad;
  if (dcid_len_ == 0xff) {
    if (!client_keys(dcid, keys_)) return bad;
    dcid_len_ = dcid_len;
    std::memcpy(dcid_.data(), dcid.data(), dcid_len);
  }
  q += dcid_len;
  const uint8_t scid_len = *q++;
  if (scid_len > 20 || end - q < scid_len) return bad;
  q += scid_len;
  uint64_t token_len, length;
  if (!quic_read_varint(q, end, token_len) || token_len > uint64_t(end - q)) return bad;
  q += token_len;
  if (!quic_read_varint(q, end, length) || length > uint64_t(end - q) || length < 4 + 16 + kTagLen) return bad;
  const size_t pn_offset = size_t(q - p);
  const size_t packet_len = pn_offset + length;
  if (packet_len > 2048 + 64) return bad;

  const QuicInitialKeys& keys = keys_;
  uint8_t mask[16];
  if (!header_mask(keys.hp, p + pn_offset + 4, mask)) return bad;
  uint8_t* header = header_.data();  // first byte .. packet number, unprotected (the AEAD's associated data)
  const uint8_t first = uint8_t(p[0] ^ (mask[0] & 0x0f));
  const size_t pn_len = (first & 0x03) + 1;
  const size_t header_len = pn_offset + pn_len;
  if (header_len > header_.size() || (first & 0x0c) != 0) return bad;  // reserved bits must be 0 (RFC 9000 17.2)
  std::memcpy(header, p, header_len);
  header[0] = first;
  uint64_t pn = 0;
  for (size_t i = 0; i < pn_len; ++i) {
    header[pn_offset + i] ^= mask[1 + i];
    pn = pn << 8 | header[pn_offset + i];
  }
  uint8_t nonce[12];
  std::memcpy(nonce, keys.iv.data(), 12);
  for (size_t i = 0; i < 8; ++i) nonce[11 - i] ^= uint8_t(pn >> (8 * i));
  const uint8_t* ct = p + header_len;
  const size_t ct_len = length - pn_len - kTagLen;
  if (ct_len > plain_.size()) return bad;
  int outl = 0, finl = 0;
  if (EVP_DecryptInit_ex(gcm_, nullptr, nullptr, keys.key.data(), nonce) != 1 ||
      EVP_DecryptUpdate(gcm_, nullptr, &outl, header, int(header_len)) != 1 ||
      EVP_DecryptUpdate(gcm_, plain_.data(), &outl, ct, int(ct_len)) != 1 ||
      EVP_CIPHER_CTX_ctrl(gcm_, EVP_CTRL_GCM_SET_TAG, int(kTagLen), const_cast<uint8_t*>(ct + ct_len)) != 1 ||
      EVP_DecryptFinal_ex(gcm_, plain_.data() + outl, &finl) != 1)
    return {QuicStatus::DecryptFailed, {}};

  // Frames: CRYPTO data goes to its offset; PADDING, PING and ACK are skipped; anything else is not what a
  // client's first flight carries. Nothing is kept unless the whole packet reads: first the frames are checked
  // and their pieces noted, then the pieces are copied (a retransmitted piece is noted once).
  struct Piece {
    uint64_t off, len;
    const uint8_t* data;
  };
  Piece found[kMaxPieces];
  size_t n = 0;
  const uint8_t* f = plain_.data();
  const uint8_t* fend = f + ct_len;
  while (f < fend) {
    uint64_t type;
    if (!quic_read_varint(f, fend, type)) return bad;
    if (type == 0x00 || type == 0x01) continue;  // PADDING, PING
    if (type == 0x02 || type == 0x03) {          // ACK: largest, delay, range count, first range, ranges
      uint64_t v, ranges;
      if (!quic_read_varint(f, fend, v) || !quic_read_varint(f, fend, v) || !quic_read_varint(f, fend, ranges) || !quic_read_varint(f, fend, v)) return bad;
      if (ranges > 256) return bad;
      for (uint64_t i = 0; i < 2 * ranges; ++i)
        if (!quic_read_varint(f, fend, v)) return bad;
      if (type == 0x03)
        for (int i = 0; i < 3; ++i)
          if (!quic_read_varint(f, fend, v)) return bad;
      continue;
    }
    if (type != 0x06) return bad;
    uint64_t off, len;
    if (!quic_read_varint(f, fend, off) || !quic_read_varint(f, fend, len) || len > uint64_t(fend - f)) return bad;
    const uint8_t* data = f;
    f += len;
    if (len == 0 || off > crypto_.size() || len > crypto_.size() - off) continue;  // beyond any ClientHello we read
    if (n == kMaxPieces) return bad;
    found[n++] = Piece{off, len, data};
  }
  for (size_t i = 0; i < n; ++i) {
    std::memcpy(crypto_.data() + found[i].off, found[i].data, found[i].len);
    bool known = false;
    for (size_t k = 0; k < pieces_ && !known; ++k)
      known = piece_start_[k] == found[i].off && piece_end_[k] == found[i].off + found[i].len;
    if (known) continue;
    if (pieces_ == kMaxPieces) return bad;
    piece_start_[pieces_] = found[i].off;
    piece_end_[pieces_++] = found[i].off + found[i].len;
  }
  return result();
}

QuicResult QuicInitialReader::result() {
  // Grow the prefix from 0 over every piece that touches it.
  size_t contiguous = 0;  // CRYPTO bytes known from offset 0 on
  for (bool grew = true; grew;) {
    grew = false;
    for (size_t i = 0; i < pieces_; ++i)
      if (piece_start_[i] <= contiguous && piece_end_[i] > contiguous) {
        contiguous = size_t(piece_end_[i]);
        grew = true;
      }
  }
  if (contiguous == 0) return {QuicStatus::NeedMore, {}};
  const SniResult r = sni_from_handshake({crypto_.data(), contiguous});
  switch (r.status) {
    case SniStatus::Found: return {QuicStatus::Found, r.name};
    case SniStatus::NoName: return {QuicStatus::NoName, {}};
    case SniStatus::NeedMore: return {QuicStatus::NeedMore, {}};
    default: return {QuicStatus::Malformed, {}};
  }
}

}  // namespace dptun
