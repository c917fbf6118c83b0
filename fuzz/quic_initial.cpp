// The QUIC Initial reader (ingress/quic_initial.hpp). Random bytes never get past the AEAD, so the input picks
// one of two modes (its first byte, low bit):
// - raw (0): up to 8 datagrams, each [u16 length][bytes], added to one connection as they are: the header
//   checks, the DCID rule and decryption failures;
// - sealed (1): up to 4 Initials built here around fuzzed plaintext (CRYPTO, ACK, PADDING frames and whatever
//   else the fuzzer writes), protected with the client Initial keys as RFC 9001 5 says, each
//   [u8 flags][u32 packet number][u8 token length][u16 payload length][payload]: the frame parser, the CRYPTO
//   stream's reassembly and the ClientHello inside.
// Properties: a name found is plausible_hostname(); quic_initial_dcid() of a datagram agrees with the reader.
#include <openssl/evp.h>

#include <array>
#include <vector>

#include "fuzz/fuzz.hpp"
#include "ingress/client_hello.hpp"
#include "ingress/quic_initial.hpp"

using namespace dptun;

namespace {

QuicInitialReader g_reader;

void check(const QuicResult& r) {
  FUZZ_CHECK(quic_status_name(r.status) != nullptr);
  if (r.status == QuicStatus::Found)
    FUZZ_CHECK(plausible_hostname(r.name));
  else
    FUZZ_CHECK(r.name.empty());
}

void put_varint(std::vector<uint8_t>& v, uint64_t x) {
  if (x < 64) {
    v.push_back(uint8_t(x));
  } else if (x < 16384) {
    v.push_back(uint8_t(0x40 | x >> 8));
    v.push_back(uint8_t(x));
  } else {
    v.insert(v.end(), {uint8_t(0x80 | x >> 24), uint8_t(x >> 16), uint8_t(x >> 8), uint8_t(x)});
  }
}

// The Destination Connection IDs a sealed Initial may carry (flags bits 3-4): RFC 9001 Appendix A's, another
// one, an empty one and the longest (20 bytes).
const std::vector<uint8_t> kDcids[4] = {
    {0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08},
    {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08},
    {},
    std::vector<uint8_t>(20, 0xa5),
};

struct Sealer {
  std::array<QuicInitialKeys, 4> keys;
  EVP_CIPHER_CTX* gcm = EVP_CIPHER_CTX_new();
  EVP_CIPHER_CTX* ecb = EVP_CIPHER_CTX_new();
  Sealer() {
    QuicInitialReader r;
    for (size_t i = 0; i < 4; ++i)
      if (!r.client_keys(kDcids[i], keys[i])) std::abort();
  }
  ~Sealer() {
    EVP_CIPHER_CTX_free(gcm);
    EVP_CIPHER_CTX_free(ecb);
  }

  // flags: bits 0-1 packet number length - 1, bits 3-4 DCID, bit 5 no padding to 1200 bytes, bit 6 a flipped
  // tag bit, bit 7 an 8-byte Source Connection ID.
  std::vector<uint8_t> seal(uint8_t flags, uint32_t pn, std::span<const uint8_t> token,
                            std::span<const uint8_t> frames) {
    const size_t pn_len = (flags & 3) + 1;
    // A client's first packets decode to the truncated number itself (RFC 9000 A.3, nothing received before).
    if (pn_len < 4) pn &= (uint32_t(1) << (8 * pn_len)) - 1;
    const std::vector<uint8_t>& dcid = kDcids[(flags >> 3) & 3];
    const QuicInitialKeys& k = keys[(flags >> 3) & 3];
    std::vector<uint8_t> h = {uint8_t(0xc0 | (pn_len - 1)), 0, 0, 0, 1, uint8_t(dcid.size())};
    h.insert(h.end(), dcid.begin(), dcid.end());
    if (flags & 0x80) {
      h.push_back(8);
      h.insert(h.end(), 8, 0x5c);
    } else {
      h.push_back(0);
    }
    put_varint(h, token.size());
    h.insert(h.end(), token.begin(), token.end());
    std::vector<uint8_t> payload(frames.begin(), frames.end());
    if (payload.size() < 4) payload.resize(4, 0);  // room for the header-protection sample
    const size_t fixed = h.size() + 2 + pn_len + 16;
    if (!(flags & 0x20) && payload.size() + fixed < 1200) payload.resize(1200 - fixed, 0);  // PADDING frames
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
    int n = 0;
    if (EVP_EncryptInit_ex(gcm, EVP_aes_128_gcm(), nullptr, k.key.data(), nonce) != 1 ||
        EVP_EncryptUpdate(gcm, nullptr, &n, h.data(), int(h.size())) != 1 ||
        EVP_EncryptUpdate(gcm, pkt.data() + h.size(), &n, payload.data(), int(payload.size())) != 1 ||
        EVP_EncryptFinal_ex(gcm, pkt.data() + h.size() + payload.size(), &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(gcm, EVP_CTRL_GCM_GET_TAG, 16, pkt.data() + h.size() + payload.size()) != 1)
      std::abort();
    if (flags & 0x40) pkt.back() ^= 1;
    uint8_t mask[16];
    if (EVP_EncryptInit_ex(ecb, EVP_aes_128_ecb(), nullptr, k.hp.data(), nullptr) != 1 ||
        EVP_CIPHER_CTX_set_padding(ecb, 0) != 1 ||
        EVP_EncryptUpdate(ecb, mask, &n, pkt.data() + pn_offset + 4, 16) != 1)
      std::abort();
    pkt[0] ^= mask[0] & 0x0f;
    for (size_t i = 0; i < pn_len; ++i) pkt[pn_offset + i] ^= mask[1 + i];
    return pkt;
  }
};

void add(std::span<const uint8_t> dgram) {
  const std::span<const uint8_t> dcid = quic_initial_dcid(dgram);
  FUZZ_CHECK(dcid.size() <= 20);
  if (!dcid.empty()) FUZZ_CHECK(dcid.data() == dgram.data() + 6 && dgram.size() >= 1200);
  const QuicResult r = g_reader.add(dgram);
  check(r);
  FUZZ_LOG("datagram of %zu bytes: %s %.*s\n", dgram.size(), quic_status_name(r.status), int(r.name.size()),
           r.name.data());
  // A datagram quic_initial_dcid() refuses is not an Initial for the reader either.
  if (dgram.size() < 1200 || (dgram[0] & 0xf0) != 0xc0) FUZZ_CHECK(r.status == QuicStatus::NotInitial);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Sealer sealer;
  FUZZ_CHECK(g_reader.ok());
  fuzz::Input in({data, size});
  const uint8_t mode = in.u8();
  g_reader.begin();
  if (!(mode & 1)) {
    for (int i = 0; i < 8 && in.left(); ++i) add(in.bytes(in.u16()));
  } else {
    for (int i = 0; i < 4 && in.left(); ++i) {
      const uint8_t flags = in.u8();
      const uint32_t pn = in.u32();
      const auto token = in.bytes(in.u8());
      const auto frames = in.bytes(in.u16() % 2100);
      const std::vector<uint8_t> dgram = sealer.seal(flags, pn, token, frames);
      add(dgram);
    }
  }
  check(g_reader.result());
  return 0;
}
