// The QUIC short-header DATAGRAM framing (proto/quic_short_header.hpp): packet-number encoding and decoding
// against RFC 9000 Appendix A.2/A.3 and their edges (window wrap, every length, near 2^62); header protection
// against RFC 9001 Appendix A.2 and A.3 (AES, long headers) and A.5 (ChaCha20, a short header); the codec as
// the data path uses it, with real AES-128-GCM through the project's AEAD engine: seal -> protect ->
// receiver_of -> read_header -> open -> read_inner for every packet number length, with a largest accepted
// number that forces reconstruction; tampered packets fail to open; malformed ones get their FrameError; the
// frames a fast-path packet may hold; and a packet another implementation protected (Python's `cryptography`).
// dpagent's side (proto/quic_datagram_mtu.hpp): the inner plaintext it hands ngtcp2 (write_inner_plaintext), in a
// DATAGRAM frame with Length as ngtcp2 writes it, fills a UDP payload of --mtu - 28 bytes exactly at the TUN's MTU
// and is read back by dpgw's codec with its name trailer; the size arithmetic at every payload size and varint edge.
#include <array>
#include <cstring>
#include <memory>
#include <random>
#include <set>
#include <vector>

#include "crypto/aead_openssl.hpp"
#include "crypto/header_protection.hpp"
#include "proto/frame_codec.hpp"
#include "proto/quic_datagram_mtu.hpp"
#include "proto/quic_short_header.hpp"
#include "proto/quic_varint.hpp"

#include "tests/unit/cmocka.hpp"

using namespace dptun;
using namespace dptun::test;

namespace {

// ---- packet numbers

void pn_decode_rfc_example(void**) {
  // RFC 9000 A.3: largest 0xa82f30ea, a 16-bit truncated 0x9b32 -> 0xa82f9b32.
  assert_int_equal(quic_decode_pn(0x9b32, 2, 0xa82f30ea), 0xa82f9b32ull);
  // RFC 9001 A.5: the 3-byte 0x00bff4 after 654360563 is 654360564.
  assert_int_equal(quic_decode_pn(0x00bff4, 3, 654360563), 654360564ull);
}

void pn_length_rfc_examples(void**) {
  // RFC 9000 A.2 (17.1's examples): 0xac5c02 with 0xabe8b3 acknowledged needs 16 bits, 0xace8fe needs 24.
  assert_int_equal(quic_pn_length(0xac5c02, 0xabe8b3), 2);
  assert_int_equal(quic_pn_length(0xace8fe, 0xabe8b3), 3);
  // k bytes while at most 2^(8k-1) packets are unacknowledged.
  assert_int_equal(quic_pn_length(1000 + 128, 1000), 1);
  assert_int_equal(quic_pn_length(1000 + 129, 1000), 2);
  assert_int_equal(quic_pn_length(1000 + 32768, 1000), 2);
  assert_int_equal(quic_pn_length(1000 + 32769, 1000), 3);
  assert_int_equal(quic_pn_length(1000 + (1u << 23), 1000), 3);
  assert_int_equal(quic_pn_length(1000 + (1u << 23) + 1, 1000), 4);
  assert_int_equal(quic_pn_length(1000 + (1ull << 31), 1000), 4);
  assert_int_equal(quic_pn_length(1000 + (1ull << 31) + 1, 1000), 0);  // must not be sent
  // Nothing acknowledged yet: pn + 1 packets count as unacknowledged.
  assert_int_equal(quic_pn_length(0, kQuicNoAck), 1);
  assert_int_equal(quic_pn_length(127, kQuicNoAck), 1);
  assert_int_equal(quic_pn_length(128, kQuicNoAck), 2);
}

uint64_t truncate(uint64_t pn, uint32_t len) { return len == 8 ? pn : pn & ((uint64_t(1) << (8 * len)) - 1); }

void pn_decode_edges(void**) {
  const uint64_t largests[] = {0,          1,          0x7f,        0x80,       0xff,       0x100,
                               0x7fff,     0xfffe,     0xffffff,    0x1000000,  0xffffffff, 0x100000000,
                               0xa82f30ea, 0x12345678abcdull, kQuicMaxPacketNumber - 0x100000000ull,
                               kQuicMaxPacketNumber - 1};
  for (uint32_t len = 1; len <= 4; ++len) {
    const uint64_t win = uint64_t(1) << (8 * len), hwin = win / 2;
    for (uint64_t largest : largests) {
      // Every packet number in the window around largest + 1 (RFC 9000 A.3: (expected - hwin, expected + hwin]),
      // at its edges and a few points inside; those below 0 or above 2^62 - 1 do not exist.
      const uint64_t expected = largest + 1;
      const int64_t offsets[] = {-int64_t(hwin) + 1, -int64_t(hwin) + 2, -2, -1, 0, 1, 2, int64_t(hwin) - 1,
                                 int64_t(hwin)};
      for (int64_t off : offsets) {
        if (off < 0 && uint64_t(-off) > expected) continue;
        const uint64_t pn = expected + uint64_t(off);
        if (pn > kQuicMaxPacketNumber) continue;
        assert_int_equal(quic_decode_pn(truncate(pn, len), len, largest), pn);
      }
    }
    // Before any packet (largest = kQuicNoAck: expected 0): 0 .. hwin decode to themselves.
    for (uint64_t pn : {uint64_t(0), uint64_t(1), hwin - 1, hwin})
      assert_int_equal(quic_decode_pn(truncate(pn, len), len, kQuicNoAck), pn);
    // The window wraps: the truncated value just past the top of a window belongs to the next one, the value
    // just below its bottom to the previous one.
    const uint64_t base = 5 * win;
    assert_int_equal(quic_decode_pn(0, len, base - 1), base);
    assert_int_equal(quic_decode_pn(1, len, base - 1), base + 1);
    assert_int_equal(quic_decode_pn(win - 1, len, base), base - 1);
    assert_int_equal(quic_decode_pn(win - 2, len, base + 1), base - 2);
    // Near 2^62: never past the largest packet number when it exists below.
    assert_int_equal(quic_decode_pn(truncate(kQuicMaxPacketNumber, len), len, kQuicMaxPacketNumber - 1),
                     kQuicMaxPacketNumber);
    assert_true(quic_decode_pn(truncate(kQuicMaxPacketNumber - 3, len), len, kQuicMaxPacketNumber - 1) <=
                kQuicMaxPacketNumber);
    // After the last number only numbers beyond 2^62 - 1 are "expected": read_header refuses them.
    assert_true(quic_decode_pn(0, len, kQuicMaxPacketNumber) > kQuicMaxPacketNumber);
  }
  // The sender's choice and the receiver's decoding agree: whatever the receiver accepted between the
  // acknowledged number and the one before, the number sent in quic_pn_length() bytes comes back.
  const uint64_t acked[] = {0, 0xabe8b3, 0xfffffff0ull, 0x3fffffff00000000ull};
  const uint64_t ahead[] = {1, 2, 100, 128, 129, 40000, 1u << 23, (1u << 23) + 1, 1ull << 31};
  for (uint64_t a : acked)
    for (uint64_t d : ahead) {
      const uint64_t pn = a + d;
      const uint32_t len = quic_pn_length(pn, a);
      assert_true(len >= 1 && len <= 4);
      for (uint64_t largest : {a, a + d / 2, pn - 1})
        assert_int_equal(quic_decode_pn(truncate(pn, len), len, largest), pn);
    }
}

// ---- header protection

void hp_rfc9001_aes(void**) {
  // A.2, the client Initial: hp key, sample, mask; header c3 .. 00000002 becomes c0 .. 7b9aec34.
  HeaderProtectionKey client(HpCipher::Aes128, from_hex("9f50449e04a0e810283a1e9933adedd2"));
  assert_true(client.ok());
  uint8_t mask[kHpMaskLen];
  assert_true(client.mask(from_hex("d1b1c98dd7689fb8ec11d242b123dc9b").data(), mask));
  assert_memory_equal(mask, from_hex("437b9aec36").data(), 5);
  uint8_t first = 0xc3;
  uint8_t pn[4] = {0, 0, 0, 2};
  quic_protect_header(first, pn, mask);
  assert_int_equal(first, 0xc0);
  assert_memory_equal(pn, from_hex("7b9aec34").data(), 4);
  assert_int_equal(quic_unprotect_header(first, pn, mask), 4);
  assert_int_equal(first, 0xc3);
  assert_memory_equal(pn, from_hex("00000002").data(), 4);

  // A.3, the server Initial: a 2-byte packet number 1; c1 .. 0001 becomes cf .. c0d9.
  HeaderProtectionKey server(HpCipher::Aes128, from_hex("c206b8d9b9f0f37644430b490eeaa314"));
  assert_true(server.mask(from_hex("2cd0991cd25b0aac406a5816b6394100").data(), mask));
  assert_memory_equal(mask, from_hex("2ec0d8356a").data(), 5);
  first = 0xc1;
  uint8_t pn2[2] = {0, 1};
  quic_protect_header(first, pn2, mask);
  assert_int_equal(first, 0xcf);
  assert_memory_equal(pn2, from_hex("c0d9").data(), 2);

  // A burst: samples side by side, one call, the same masks as one at a time.
  const auto samples = from_hex("d1b1c98dd7689fb8ec11d242b123dc9b" "2cd0991cd25b0aac406a5816b6394100"
                                "d1b1c98dd7689fb8ec11d242b123dc9b");
  uint8_t burst[3 * kHpMaskLen];
  assert_true(client.masks(samples.data(), 3, burst));
  assert_memory_equal(burst, from_hex("437b9aec36").data(), 5);
  assert_memory_equal(burst + 32, from_hex("437b9aec36").data(), 5);
  assert_true(client.mask(samples.data() + 16, mask));
  assert_memory_equal(burst + 16, mask, kHpMaskLen);

  // The key length must fit the cipher.
  assert_false(HeaderProtectionKey(HpCipher::Aes128, from_hex("0011")).ok());
  assert_false(HeaderProtectionKey(HpCipher::Aes256, std::vector<uint8_t>(16)).ok());
  assert_false(HeaderProtectionKey(HpCipher::ChaCha20, std::vector<uint8_t>(16)).ok());
  assert_true(HeaderProtectionKey(HpCipher::Aes256, std::vector<uint8_t>(32)).ok());
}

void hp_rfc9001_chacha20(void**) {
  // A.5, a short header protected with ChaCha20: 42 00bff4 becomes 4c fe4189, packet number 654360564.
  HeaderProtectionKey hp(HpCipher::ChaCha20,
                         from_hex("25a282b9e82f06f21f488917a4fc8f1b73573685608597d0efcb076b0ab7a7a4"));
  assert_true(hp.ok());
  uint8_t mask[kHpMaskLen];
  assert_true(hp.mask(from_hex("5e5cd55c41f69080575d7999c25a5bfb").data(), mask));
  assert_memory_equal(mask, from_hex("aefefe7d03").data(), 5);
  uint8_t first = 0x42;
  uint8_t pn[3] = {0x00, 0xbf, 0xf4};
  quic_protect_header(first, pn, mask);
  assert_int_equal(first, 0x4c);
  assert_memory_equal(pn, from_hex("fe4189").data(), 3);
  // ... and back, as a receiver: the length comes from the unmasked first byte.
  assert_int_equal(quic_unprotect_header(first, pn, mask), 3);
  assert_int_equal(first, 0x42);
  assert_int_equal(quic_decode_pn(uint64_t(pn[0]) << 16 | pn[1] << 8 | pn[2], 3, 654360563), 654360564ull);
  // Its nonce: the IV xor the packet number (RFC 9001 5.3).
  uint8_t nonce[kAeadIvLen];
  quic_nonce(nonce, from_hex("e0459b3474bdd0e44a41c144").data(), 654360564);
  assert_memory_equal(nonce, from_hex("e0459b3474bdd0e46d417eb0").data(), kAeadIvLen);
  // Two samples in one call (ChaCha20 re-keys per sample).
  const auto two = from_hex("5e5cd55c41f69080575d7999c25a5bfb" "5e5cd55c41f69080575d7999c25a5bfb");
  uint8_t masks[2 * kHpMaskLen];
  assert_true(hp.masks(two.data(), 2, masks));
  assert_memory_equal(masks + 16, from_hex("aefefe7d03").data(), 5);
}

// ---- the codec with real keys

const auto kKey = from_hex("00112233445566778899aabbccddeeff");  // AES-128-GCM, gateway -> agent
const auto kIv = from_hex("0a0b0c0d0e0f101112131415");
const auto kHpG2a = from_hex("f0e1d2c3b4a5968778695a4b3c2d1e0f");
const auto kHpA2g = from_hex("1f2e3d4c5b6a79889786a5b4c3d2e1f0");
constexpr std::array<uint8_t, 4> kAgentTail = {0xa1, 0xa2, 0xa3, 0xa4};  // the DCID tail the agent issued
constexpr std::array<uint8_t, 4> kGatewayTail = {0x91, 0x92, 0x93, 0x94};
constexpr uint32_t kIndex = 0x00012345;
// The connection IDs each end issued and the other writes as its DCID: index | tail, as dptun issues them.
constexpr std::array<uint8_t, 8> kAgentCid = {0x00, 0x01, 0x23, 0x45, 0xa1, 0xa2, 0xa3, 0xa4};
constexpr std::array<uint8_t, 8> kGatewayCid = {0x00, 0x01, 0x23, 0x45, 0x91, 0x92, 0x93, 0x94};

std::unique_ptr<QuicDatagramCodec> gateway_codec(uint32_t tx_pn_len) {
  QuicDatagramCodec::Config c;
  c.tx_dcid = kAgentCid;
  c.rx_cid_tails = {&kGatewayTail, 1};
  c.tx_hp = kHpG2a;
  c.rx_hp = kHpA2g;
  c.tx_pn_len = tx_pn_len;
  return std::make_unique<QuicDatagramCodec>(c);
}
std::unique_ptr<QuicDatagramCodec> agent_codec() {
  QuicDatagramCodec::Config c;
  c.tx_dcid = kGatewayCid;
  c.rx_cid_tails = {&kAgentTail, 1};
  c.tx_hp = kHpA2g;
  c.rx_hp = kHpG2a;
  return std::make_unique<QuicDatagramCodec>(c);
}

// A minimal IPv4/UDP packet (its bytes only need to survive the trip).
std::vector<uint8_t> inner_packet(size_t len) {
  std::vector<uint8_t> p(len);
  for (size_t i = 0; i < len; ++i) p[i] = uint8_t(i * 13 + 7);
  p[0] = 0x45;
  return p;
}

OpensslAead g_engine;

// The gateway's side: seals `packet` as packet number `pn`.
std::vector<uint8_t> seal(const QuicDatagramCodec& codec, uint64_t pn, const std::vector<uint8_t>& packet,
                          uint8_t flags = kQuicFlagKeyPhase, const InnerHeader& ih = {0x1122334455667788ull, 17, 1}) {
  const FrameLayout& l = codec.layout();
  std::vector<uint8_t> f(l.data_overhead() + packet.size());
  std::memcpy(f.data() + l.packet_offset(), packet.data(), packet.size());
  codec.write_inner(f.data(), ih);
  codec.write_header(f.data(), FrameMeta{FrameType::Data, flags, kIndex, pn});
  auto key = g_engine.make_key(kKey, AeadDirection::Encrypt, l.header_len);
  assert_non_null(key.get());
  uint8_t iv[kAeadIvLen];
  quic_nonce(iv, kIv.data(), pn);
  const AeadOp op = codec.seal_op(f.data(), l.encrypted_len(uint32_t(packet.size())), iv);
  int32_t status = -1;
  assert_int_equal(key->process({&op, 1}, {&status, 1}, 0), 1);
  codec.protect(f);
  return f;
}

struct Opened {
  FrameError header = FrameError::None;
  bool open = false;
  bool inner = false;
  FrameMeta meta;
  InnerHeader ih;
  std::vector<uint8_t> packet;
};

// The agent's side: every receive step, as far as they go.
Opened open(const QuicDatagramCodec& codec, std::vector<uint8_t> f, uint64_t largest) {
  Opened r;
  r.header = codec.read_header(f, largest, r.meta);
  if (r.header != FrameError::None) return r;
  // One rx key per AAD length (10..13 bytes by packet number length): engines fix it per key.
  auto key = g_engine.make_key(kKey, AeadDirection::Decrypt, QuicDatagramCodec::aad_len(f));
  uint8_t iv[kAeadIvLen];
  quic_nonce(iv, kIv.data(), r.meta.counter);
  const AeadOp op = codec.open_op(f, iv);
  int32_t status = -1;
  key->process({&op, 1}, {&status, 1}, 0);
  r.open = status == 0;
  if (!r.open) return r;
  std::span<uint8_t> pkt;
  r.inner = codec.read_inner(f, r.ih, pkt);
  if (r.inner) r.packet.assign(pkt.begin(), pkt.end());
  return r;
}

void layout(void**) {
  for (uint32_t len = 1; len <= 4; ++len) {
    auto c = gateway_codec(len);
    assert_true(c->ok());
    const FrameLayout& l = c->layout();
    assert_int_equal(l.header_len, 1 + 8 + len);
    assert_int_equal(l.prefix_len, 1);
    assert_int_equal(l.tag_len, 16);
    assert_int_equal(l.data_overhead(), 1 + 8 + len + 1 + 12 + 16);  // 4-byte packet numbers: 42
  }
  assert_false(gateway_codec(0)->ok());
  assert_false(gateway_codec(5)->ok());
  // Unprotected, the header is what docs/protocol.md draws.
  auto c = gateway_codec(4);
  uint8_t h[13];
  c->write_header(h, FrameMeta{FrameType::Data, kQuicFlagKeyPhase | kQuicFlagSpin, 0x01020304, 0xa1b2c3d4e5ull});
  // The DCID is the connection ID the peer issued, whole (meta.receiver_index is not written).
  assert_memory_equal(h, from_hex("67" "00012345" "a1a2a3a4" "b2c3d4e5").data(), 13);
  c->write_header(h, FrameMeta{FrameType::Data, 0, 0x01020304, 7});
  assert_int_equal(h[0], 0x43);
  // A peer's connection ID of its own making (ngtcp2's are random): written as it is.
  QuicDatagramCodec::Config pc;
  pc.tx_dcid = {0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10};
  pc.tx_hp = pc.rx_hp = kHpG2a;
  QuicDatagramCodec peer_cid(pc);
  peer_cid.write_header(h, FrameMeta{FrameType::Data, 0, kIndex, 0x40000000});
  assert_memory_equal(h, from_hex("43" "fedcba9876543210" "40000000").data(), 13);
}

// A connection's peer may send to any connection ID issued to it (RFC 9000 5.1.1): the receiver accepts each of
// the tails it was given (up to kQuicMaxRxCids) and refuses any other before touching the crypto.
void every_issued_cid_accepted(void**) {
  const std::array<uint8_t, 4> tails[] = {{0x91, 0x92, 0x93, 0x94}, {0x01, 0x02, 0x03, 0x04}, {0xff, 0x00, 0xff, 0x00}};
  QuicDatagramCodec::Config c;
  c.tx_dcid = kAgentCid;
  c.rx_cid_tails = tails;
  c.tx_hp = kHpG2a;
  c.rx_hp = kHpA2g;
  QuicDatagramCodec rx(c);
  assert_true(rx.ok());
  assert_int_equal(rx.rx_cid_count(), 3);
  const auto packet = inner_packet(100);
  uint64_t pn = 0;
  for (const auto& t : tails) {
    // The agent writes that connection ID as its DCID.
    QuicDatagramCodec::Config a;
    a.tx_dcid = {0x00, 0x01, 0x23, 0x45, t[0], t[1], t[2], t[3]};
    a.rx_cid_tails = {&kAgentTail, 1};
    a.tx_hp = kHpA2g;
    a.rx_hp = kHpG2a;
    QuicDatagramCodec agent(a);
    const auto f = seal(agent, pn, packet);
    assert_true(rx.accepts_cid(f));
    const Opened o = open(rx, f, pn ? pn - 1 : kQuicNoAck);
    assert_int_equal(o.header, FrameError::None);
    assert_true(o.inner);
    assert_int_equal(o.meta.counter, pn++);
    // One bit off in the tail, or the tail of another connection: refused, the header left as it was.
    for (int bit : {0, 31}) {
      auto other = f;
      other[5 + bit / 8] ^= uint8_t(0x80 >> (bit % 8));
      assert_false(rx.accepts_cid(other));
      FrameMeta m;
      assert_int_equal(rx.read_header(other, kQuicNoAck, m), FrameError::BadConnectionId);
      other[5 + bit / 8] ^= uint8_t(0x80 >> (bit % 8));
      assert_memory_equal(other.data(), f.data(), f.size());
    }
  }
  // None, or more than a receiver holds: not a usable codec.
  c.rx_cid_tails = {};
  assert_false(QuicDatagramCodec(c).ok());
  std::array<std::array<uint8_t, 4>, kQuicMaxRxCids + 1> many{};
  for (size_t i = 0; i < many.size(); ++i) many[i] = {0, 0, 0, uint8_t(i)};
  c.rx_cid_tails = many;
  assert_false(QuicDatagramCodec(c).ok());
  c.rx_cid_tails = std::span(many).first(kQuicMaxRxCids);
  assert_true(QuicDatagramCodec(c).ok());
}

void round_trip_every_pn_length(void**) {
  auto rx = agent_codec();
  const auto packet = inner_packet(100);
  for (uint32_t len = 1; len <= 4; ++len) {
    auto tx = gateway_codec(len);
    const uint64_t win = uint64_t(1) << (8 * len);
    // largest accepted -> packet number sent: the next one; a jump within half a window; one reordered
    // behind; across the window's wrap; high numbers whose upper bytes only `largest` supplies.
    const uint64_t cases[][2] = {
        {kQuicNoAck, 0},
        {0, 1},
        {win - 2, win + 3},
        {win + 3, win - 1},
        {5 * win - 1, 5 * win},
        {0x12345678abcdull, 0x12345678abcdull + win / 2},
        {0x12345678abcdull, 0x12345678abcdull - win / 2 + 2},
        {kQuicMaxPacketNumber - 1, kQuicMaxPacketNumber},
    };
    for (const auto& k : cases) {
      const uint64_t largest = k[0], pn = k[1];
      const auto f = seal(*tx, pn, packet);
      assert_int_equal(f.size(), 1 + 8 + len + 1 + 12 + packet.size() + 16);
      uint32_t index = 0;
      assert_true(rx->receiver_of(f, index));
      assert_int_equal(index, kIndex);
      const Opened o = open(*rx, f, largest);
      assert_int_equal(o.header, FrameError::None);
      assert_int_equal(o.meta.counter, pn);
      assert_int_equal(o.meta.receiver_index, kIndex);
      assert_int_equal(o.meta.flags, kQuicFlagKeyPhase);
      assert_int_equal(o.meta.type, FrameType::Data);
      assert_true(o.open);
      assert_true(o.inner);
      assert_int_equal(o.ih.flow_id, 0x1122334455667788ull);
      assert_int_equal(o.ih.proto, 17);
      assert_int_equal(o.ih.flags, 1);
      assert_true(o.packet == packet);
      // The receiver's idea of the largest number decides: one window further on, the number is another
      // one, so the nonce and AAD are wrong and the packet does not open.
      if (pn + win <= kQuicMaxPacketNumber && largest != kQuicNoAck) {
        const Opened far = open(*rx, f, largest + win);
        assert_int_equal(far.header, FrameError::None);
        assert_int_equal(far.meta.counter, pn + win);
        assert_false(far.open);
      }
    }
  }
}

void tampering_fails(void**) {
  auto tx = gateway_codec(2);
  auto rx = agent_codec();
  const auto packet = inner_packet(60);
  const uint64_t pn = 0x1234, largest = 0x1230;
  const auto good = seal(*tx, pn, packet, 0);
  assert_true(open(*rx, good, largest).inner);
  // Each bit of the protected first byte's low 5 bits (key phase, reserved, pn length), of the packet number,
  // the spin bit, a receiver index byte, a ciphertext byte, a tag byte, a sample byte: the packet never opens.
  std::vector<size_t> bytes = {0, 1, 2, 3, 4, 9, 10, 11, 12, 20, good.size() - 1, good.size() - 16};
  for (size_t at : bytes)
    for (int bit = 0; bit < 8; ++bit) {
      if (at == 0 && (bit == 7 || bit == 6)) continue;  // header form and fixed bit: refused before (below)
      auto t = good;
      t[at] ^= uint8_t(1 << bit);
      assert_false(open(*rx, t, largest).open);
    }
  // The DCID tail is checked before any crypto.
  for (size_t at = 5; at < 9; ++at) {
    auto t = good;
    t[at] ^= 0x10;
    assert_int_equal(open(*rx, t, largest).header, FrameError::BadConnectionId);
  }
  // The same packet with the reserved bits set under protection opens (they are authenticated as sent) but is
  // a protocol violation: read_inner refuses it.
  auto tx_reserved = gateway_codec(2);
  const FrameLayout& l = tx_reserved->layout();
  std::vector<uint8_t> f(l.data_overhead() + packet.size());
  std::memcpy(f.data() + l.packet_offset(), packet.data(), packet.size());
  tx_reserved->write_inner(f.data(), InnerHeader{1, 17, 0});
  tx_reserved->write_header(f.data(), FrameMeta{FrameType::Data, 0, kIndex, pn});
  f[0] |= 0x08;
  auto key = g_engine.make_key(kKey, AeadDirection::Encrypt, l.header_len);
  uint8_t iv[kAeadIvLen];
  quic_nonce(iv, kIv.data(), pn);
  const AeadOp op = tx_reserved->seal_op(f.data(), l.encrypted_len(uint32_t(packet.size())), iv);
  int32_t status = -1;
  key->process({&op, 1}, {&status, 1}, 0);
  tx_reserved->protect(f);
  const Opened o = open(*rx, f, largest);
  assert_true(o.open);
  assert_false(o.inner);
}

void malformed(void**) {
  auto tx = gateway_codec(4);
  auto rx = agent_codec();
  const auto good = seal(*tx, 77, inner_packet(40));
  FrameMeta m;
  uint32_t index = 0;
  // Too short for the header-protection sample.
  for (size_t len : {size_t(0), size_t(1), size_t(9), kQuicMinPacket - 1}) {
    std::vector<uint8_t> t(good.begin(), good.begin() + long(len));
    assert_int_equal(rx->read_header(t, 0, m), FrameError::Short);
    assert_false(rx->receiver_of(t, index));
  }
  {
    std::vector<uint8_t> t(good.begin(), good.begin() + kQuicMinPacket);
    assert_true(rx->receiver_of(t, index));
    assert_int_equal(rx->read_header(t, 0, m), FrameError::None);  // the AEAD refuses it later
  }
  auto t = good;
  t[0] |= kQuicHeaderForm;
  assert_int_equal(rx->read_header(t, 0, m), FrameError::LongHeader);
  assert_false(rx->receiver_of(t, index));
  t = good;
  t[0] &= uint8_t(~kQuicFixedBit);
  assert_int_equal(rx->read_header(t, 0, m), FrameError::BadFixedBit);
  assert_false(rx->receiver_of(t, index));
  t = good;
  t[8] ^= 1;
  assert_int_equal(rx->read_header(t, 0, m), FrameError::BadConnectionId);
  // A packet number past 2^62 - 1: a 1-byte number 0 after the last one.
  auto tx1 = gateway_codec(1);
  const auto last = seal(*tx1, 0, inner_packet(40));
  t = last;
  assert_int_equal(rx->read_header(t, kQuicMaxPacketNumber, m), FrameError::BadPacketNumber);
  // The error names (drop reasons) exist.
  for (FrameError e : {FrameError::LongHeader, FrameError::BadFixedBit, FrameError::BadConnectionId,
                       FrameError::BadPacketNumber})
    assert_string_not_equal(frame_error_name(e), "unknown");
}

// ---- frames

void put_varint(std::vector<uint8_t>& v, uint64_t x) {
  if (x < 64) {
    v.push_back(uint8_t(x));
  } else if (x < 16384) {
    v.push_back(uint8_t(0x40 | x >> 8));
    v.push_back(uint8_t(x));
  } else {
    v.push_back(uint8_t(0x80 | x >> 24));
    v.push_back(uint8_t(x >> 16));
    v.push_back(uint8_t(x >> 8));
    v.push_back(uint8_t(x));
  }
}
std::vector<uint8_t> ack(uint64_t largest, uint64_t first, uint64_t ranges = 0, bool ecn = false) {
  std::vector<uint8_t> v = {uint8_t(ecn ? 0x03 : 0x02)};
  put_varint(v, largest);
  put_varint(v, 25);  // ACK delay
  put_varint(v, ranges);
  put_varint(v, first);
  for (uint64_t i = 0; i < ranges; ++i) {
    put_varint(v, 1);
    put_varint(v, 2);
  }
  if (ecn)
    for (int i = 0; i < 3; ++i) put_varint(v, 1000 + i);
  return v;
}
std::vector<uint8_t> cat(std::initializer_list<std::vector<uint8_t>> parts) {
  std::vector<uint8_t> v;
  for (const auto& p : parts) v.insert(v.end(), p.begin(), p.end());
  return v;
}

void payload_frames(void**) {
  using K = QuicPayload::Kind;
  const std::vector<uint8_t> data(40, 0x5a), pad = {0, 0, 0}, ping = {1};
  std::vector<uint8_t> dgram_len = {0x31};
  put_varint(dgram_len, data.size());
  dgram_len.insert(dgram_len.end(), data.begin(), data.end());
  std::vector<uint8_t> dgram_end = {0x30};
  dgram_end.insert(dgram_end.end(), data.begin(), data.end());

  QuicPayload p = quic_parse_payload(dgram_end);
  assert_int_equal(p.kind, K::Datagram);
  assert_int_equal(p.datagram_offset, 1);
  assert_int_equal(p.datagram_len, 40);
  assert_true(p.ack_eliciting);
  assert_false(p.has_ack);

  const auto mixed = cat({pad, ping, ack(0x1234, 3, 2), dgram_len, pad});
  p = quic_parse_payload(mixed);
  assert_int_equal(p.kind, K::Datagram);
  assert_true(p.has_ack);
  assert_int_equal(p.largest_acked, 0x1234);
  assert_int_equal(p.datagram_len, 40);
  assert_memory_equal(mixed.data() + p.datagram_offset, data.data(), data.size());

  p = quic_parse_payload(cat({ack(100000, 0, 0, true), dgram_end}));
  assert_int_equal(p.kind, K::Datagram);
  assert_int_equal(p.largest_acked, 100000);

  p = quic_parse_payload(cat({ping, pad}));
  assert_int_equal(p.kind, K::NoDatagram);
  assert_true(p.ack_eliciting);
  p = quic_parse_payload(cat({ack(9, 9), pad}));
  assert_int_equal(p.kind, K::NoDatagram);
  assert_false(p.ack_eliciting);

  // For the slow path: other frames (STREAM, CRYPTO, CONNECTION_CLOSE, RETIRE_CONNECTION_ID), and two DATAGRAM
  // frames in one packet; the slow path's packets still tell their first DATAGRAM and their ACK.
  for (uint8_t type : {0x08, 0x06, 0x1c, 0x19})
    assert_int_equal(quic_parse_payload(cat({ping, {type, 0, 0, 0}})).kind, K::SlowPath);
  p = quic_parse_payload(cat({ack(77, 0), dgram_len, dgram_end}));
  assert_int_equal(p.kind, K::SlowPath);
  assert_int_equal(p.datagrams, 2);
  assert_int_equal(p.datagram_len, 40);
  assert_true(p.has_ack);
  assert_int_equal(p.largest_acked, 77);
  // CONNECTION_CLOSE alone asks for no ACK (RFC 9000 13.2.1); HANDSHAKE_DONE does.
  p = quic_parse_payload(std::vector<uint8_t>{0x1c, 0, 0, 0});
  assert_int_equal(p.kind, K::SlowPath);
  assert_false(p.ack_eliciting);
  assert_true(quic_parse_payload(std::vector<uint8_t>{0x1e}).ack_eliciting);
  // Malformed now that every frame is walked: a NEW_CONNECTION_ID with a 0-byte ID, a frame type in a longer
  // encoding than needed (0x40 0x00: PADDING in 2 bytes), an unknown type (0x21).
  assert_int_equal(quic_parse_payload(cat({ping, {0x18, 0, 0, 0}})).kind, K::Malformed);
  assert_int_equal(quic_parse_payload(std::vector<uint8_t>{0x40, 0x00}).kind, K::Malformed);
  assert_int_equal(quic_parse_payload(std::vector<uint8_t>{0x21}).kind, K::Malformed);

  // Malformed: no frames, a cut ACK, an ACK whose first range goes below 0, a DATAGRAM longer than the packet.
  assert_int_equal(quic_parse_payload({}).kind, K::Malformed);
  auto cut = ack(0x1234, 3, 2);
  cut.pop_back();
  assert_int_equal(quic_parse_payload(cut).kind, K::Malformed);
  assert_int_equal(quic_parse_payload(ack(3, 4)).kind, K::Malformed);
  std::vector<uint8_t> long_dgram = {0x31};
  put_varint(long_dgram, 41);
  long_dgram.insert(long_dgram.end(), data.begin(), data.end());
  assert_int_equal(quic_parse_payload(long_dgram).kind, K::Malformed);
  std::vector<uint8_t> huge_ranges = {0x02, 5, 0, 0x80, 0x10, 0, 0, 0};  // 2^20 ranges in 1 byte
  assert_int_equal(quic_parse_payload(huge_ranges).kind, K::Malformed);
}

// Every frame type of RFC 9000 19 and RFC 9221 walked in one payload, with the fields the slow path reads.
void frame_reader(void**) {
  const std::vector<uint8_t> cid = {1, 2, 3, 4, 5, 6, 7, 8}, token(16, 0xee);
  std::vector<uint8_t> ncid = {0x18, 5, 2, 8};
  ncid.insert(ncid.end(), cid.begin(), cid.end());
  ncid.insert(ncid.end(), token.begin(), token.end());
  const std::vector<uint8_t> challenge = {0x1a, 1, 2, 3, 4, 5, 6, 7, 8}, response = {0x1b, 8, 7, 6, 5, 4, 3, 2, 1};
  const std::vector<uint8_t> close_t = {0x1c, 0x0a, 0x08, 3, 'b', 'y', 'e'}, close_a = {0x1d, 0x40, 0x99, 0};
  const std::vector<uint8_t> payload = cat({
      {0x00, 0x01},                       // PADDING, PING
      ack(500, 3, 2),                     // ACK
      {0x04, 1, 2, 3, 0x05, 1, 2},        // RESET_STREAM, STOP_SENDING
      {0x06, 0, 3, 'a', 'b', 'c'},        // CRYPTO
      {0x07, 2, 9, 9},                    // NEW_TOKEN
      {0x0e, 4, 0x40, 0x10, 2, 'h', 'i'},  // STREAM with OFF and LEN
      {0x10, 1, 0x11, 4, 5, 0x12, 1, 0x13, 1, 0x14, 1, 0x15, 4, 5, 0x16, 1, 0x17, 1},  // MAX_*, *_BLOCKED
      ncid, {0x19, 3}, challenge, response, close_t, close_a, {0x1e},
      {0x31, 2, 0xaa, 0xbb},              // DATAGRAM with Length
      {0x0f, 4, 0, 2, 'x', 'y'},          // STREAM with FIN
      {0x30, 0xcc, 0xdd},                 // DATAGRAM to the end
  });
  QuicFrameReader r(payload);
  QuicFrame f;
  std::vector<uint64_t> types;
  while (r.next(f)) {
    types.push_back(f.type);
    switch (f.type) {
      case kQuicFrameAck:
        assert_int_equal(f.largest_acked, 500);
        break;
      case kQuicFrameCrypto:
        assert_int_equal(f.data.size(), 3);
        assert_int_equal(f.data[2], 'c');
        break;
      case 0x0e:
        assert_int_equal(f.data.size(), 2);
        assert_int_equal(f.data[0], 'h');
        break;
      case kQuicFrameNewConnectionId:
        assert_int_equal(f.sequence, 5);
        assert_int_equal(f.retire_prior_to, 2);
        assert_memory_equal(f.cid.data(), cid.data(), cid.size());
        assert_int_equal(f.cid.size(), 8);
        assert_int_equal(f.reset_token.size(), 16);
        break;
      case kQuicFrameRetireConnectionId:
        assert_int_equal(f.sequence, 3);
        break;
      case kQuicFramePathChallenge:
        assert_memory_equal(f.path.data(), challenge.data() + 1, 8);
        break;
      case kQuicFramePathResponse:
        assert_memory_equal(f.path.data(), response.data() + 1, 8);
        break;
      case kQuicFrameConnectionClose:
        assert_int_equal(f.error_code, 0x0a);
        assert_int_equal(f.frame_type, 0x08);
        assert_int_equal(f.reason.size(), 3);
        assert_memory_equal(f.reason.data(), "bye", 3);
        break;
      case kQuicFrameConnectionCloseApp:
        assert_int_equal(f.error_code, 0x99);
        assert_int_equal(f.reason.size(), 0);
        break;
      case kQuicFrameDatagramLen:
        assert_int_equal(f.data.size(), 2);
        assert_int_equal(f.data[0], 0xaa);
        break;
      case kQuicFrameDatagram:
        assert_int_equal(f.data.size(), 2);
        assert_int_equal(f.data[1], 0xdd);
        break;
      default:
        break;
    }
  }
  assert_false(r.malformed());
  assert_int_equal(r.offset(), payload.size());
  const std::vector<uint64_t> want = {0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x07, 0x0e, 0x10, 0x11, 0x12, 0x13, 0x14,
                                      0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x31, 0x0f, 0x30};
  assert_true(types == want);
  const QuicPayload p = quic_parse_payload(payload);
  assert_int_equal(p.kind, QuicPayload::Kind::SlowPath);
  assert_int_equal(p.datagrams, 2);
  assert_int_equal(p.datagram_len, 2);
  assert_int_equal(payload[p.datagram_offset], 0xaa);
}

// Malformed frames: each cut at every length short of whole is refused, never read past its end; so are bad
// lengths and values.
void frame_reader_malformed(void**) {
  std::vector<uint8_t> ncid = {0x18, 1, 0, 4, 1, 2, 3, 4};
  ncid.insert(ncid.end(), 16, 0);
  const std::vector<std::vector<uint8_t>> whole = {
      ack(9, 2, 1), {0x04, 1, 2, 3}, {0x06, 0, 3, 'a', 'b', 'c'}, {0x07, 1, 9}, {0x0a, 4, 2, 'h', 'i'},
      {0x0c, 4, 0x40, 0x10}, {0x11, 4, 5}, ncid, {0x19, 0x40, 3}, {0x1a, 1, 2, 3, 4, 5, 6, 7, 8},
      {0x1c, 1, 2, 3, 'b', 'y', 'e'}, {0x1d, 1, 1, 'x'}, {0x31, 2, 0xaa, 0xbb}};
  for (const auto& w : whole) {
    QuicFrameReader ok(w);
    QuicFrame f;
    assert_true(ok.next(f));
    assert_false(ok.next(f));
    assert_false(ok.malformed());
    for (size_t n = 1; n < w.size(); ++n) {
      std::vector<uint8_t> cut(w.begin(), w.begin() + long(n));  // (a vector of its own: ASan sees a read past it)
      QuicFrameReader r(cut);
      bool parsed = r.next(f);
      // A cut STREAM/DATAGRAM without Length, or a cut ACK range, may still be a shorter whole frame: then the cut
      // ends where it does, never beyond.
      if (parsed) assert_true(r.offset() <= cut.size());
      else assert_true(r.malformed());
    }
  }
  auto bad = [](std::vector<uint8_t> v) {
    QuicFrameReader r(v);
    QuicFrame f;
    while (r.next(f)) {
    }
    return r.malformed();
  };
  std::vector<uint8_t> long_cid = {0x18, 1, 0, 21};
  long_cid.insert(long_cid.end(), 21 + 16, 0);
  assert_true(bad(long_cid));                          // a connection ID of 21 bytes
  std::vector<uint8_t> retire_above = {0x18, 1, 2, 4, 1, 2, 3, 4};
  retire_above.insert(retire_above.end(), 16, 0);
  assert_true(bad(retire_above));                      // Retire Prior To above the Sequence Number
  assert_true(bad({0x07, 0}));                         // an empty NEW_TOKEN
  assert_true(bad({0x06, 0, 4, 'a', 'b', 'c'}));       // CRYPTO longer than the payload
  assert_true(bad({0x1c, 1, 2, 0x80, 0, 0, 9, 'x'}));  // a reason phrase longer than the payload
  assert_true(bad({0x1f}));                            // unknown types
  assert_true(bad({0x20}));
  assert_true(bad({0x41, 0x1a}));                      // PATH_CHALLENGE's type in 2 bytes
  assert_true(bad({0xc0}));                            // a cut varint type
  assert_false(bad({}));                               // (no frames: quic_parse_payload refuses that)
}

void path_frame_writer(void**) {
  const std::array<uint8_t, kQuicPathDataLen> d = {9, 8, 7, 6, 5, 4, 3, 2};
  uint8_t out[12];
  assert_int_equal(quic_write_path_frame(kQuicFramePathChallenge, d, {out, 8}), 0);  // too short
  assert_int_equal(quic_write_path_frame(kQuicFramePathResponse, d, out), 9);
  QuicFrameReader r({out, 9});
  QuicFrame f;
  assert_true(r.next(f));
  assert_int_equal(f.type, kQuicFramePathResponse);
  assert_true(f.path == d);
  assert_true(quic_ack_eliciting(kQuicFramePathChallenge) && quic_ack_eliciting(kQuicFramePathResponse));
  assert_false(quic_fast_path_frame(kQuicFramePathChallenge));
}

// A packet whose DATAGRAM frame comes after an ACK and PADDING (as a QUIC stack may send): read_inner finds it.
void datagram_after_other_frames(void**) {
  auto tx = gateway_codec(3);
  auto rx = agent_codec();
  const auto packet = inner_packet(64);
  std::vector<uint8_t> inner(kInnerHeaderLen);
  encode_inner_header(inner.data(), InnerHeader{42, 6, kInnerFlowNew});
  std::vector<uint8_t> dgram = {0x31};
  put_varint(dgram, kInnerHeaderLen + packet.size());
  const auto frames = cat({ack(500, 10, 1), {0, 0}, dgram, inner, packet, {0, 0, 1}});
  const uint32_t h = tx->layout().header_len;
  std::vector<uint8_t> f(h + frames.size() + kAeadTagLen);
  std::memcpy(f.data() + h, frames.data(), frames.size());
  const uint64_t pn = 0x10203;
  tx->write_header(f.data(), FrameMeta{FrameType::Data, 0, kIndex, pn});
  auto key = g_engine.make_key(kKey, AeadDirection::Encrypt, h);
  uint8_t iv[kAeadIvLen];
  quic_nonce(iv, kIv.data(), pn);
  const AeadOp op = tx->seal_op(f.data(), uint32_t(frames.size()), iv);
  int32_t status = -1;
  key->process({&op, 1}, {&status, 1}, 0);
  tx->protect(f);
  const Opened o = open(*rx, f, 0x10200);
  assert_int_equal(o.meta.counter, pn);
  assert_true(o.open);
  assert_true(o.inner);
  assert_int_equal(o.ih.flow_id, 42);
  assert_int_equal(o.ih.flags, kInnerFlowNew);
  assert_true(o.packet == packet);
  // A DATAGRAM frame too small for an inner header and an IPv4 header: refused after decryption.
  const auto small = seal(*tx, pn + 1, inner_packet(19));
  const Opened s = open(*rx, small, pn);
  assert_true(s.open);
  assert_false(s.inner);
}

// A packet made by another implementation (Python's `cryptography`: AESGCM and AES-ECB, following RFC 9001 5.3
// and 5.4 step by step) with this file's gateway -> agent keys: first byte 0x45 (key phase 1, 2-byte packet
// number), DCID 00012345 a1a2a3a4, packet number 0x1234569 sent as 0x4569 (its mask 5bb01b5a2e touches all 5
// bits of the first byte), frames ACK(largest 256, delay 3,
// first range 2) | DATAGRAM with Length (inner header flow 0x0102030405060708, UDP; a 32-byte IPv4 packet) |
// PADDING x2.
void independent_packet(void**) {
  const auto wire = from_hex(
      "5e00012345a1a2a3a4f572af768b1b502777aee12ff7797da91b2211d4449283821ec9724d93eaf6d3b88a05dc238a0ce4057d35b6"
      "34709a70954eb163bd21d9235ac72116ca8c3a6d6b2fc2d58da6bfc4");
  auto rx = agent_codec();
  uint32_t index = 0;
  assert_true(rx->receiver_of(wire, index));
  assert_int_equal(index, 0x12345);
  std::vector<uint8_t> f = wire;
  FrameMeta m;
  assert_int_equal(rx->read_header(f, 0x1234560, m), FrameError::None);
  assert_int_equal(m.counter, 0x1234569);
  assert_int_equal(m.flags, kQuicFlagKeyPhase);
  assert_int_equal(QuicDatagramCodec::aad_len(f), 11);
  assert_memory_equal(f.data(), from_hex("4500012345a1a2a3a44569").data(), 11);  // the unprotected header
  const Opened o = open(*rx, wire, 0x1234560);
  assert_true(o.open);
  assert_true(o.inner);
  assert_int_equal(o.ih.flow_id, 0x0102030405060708ull);
  assert_int_equal(o.ih.proto, 17);
  assert_true(o.packet == from_hex("4500002000004000401100000000000000000000" "13880035000c0000" "6470746e"));
  // The frames as the fast path sees them.
  auto g = wire;
  FrameMeta m2;
  rx->read_header(g, 0x1234560, m2);
  auto key = g_engine.make_key(kKey, AeadDirection::Decrypt, 11);
  uint8_t iv[kAeadIvLen];
  quic_nonce(iv, kIv.data(), m2.counter);
  const AeadOp op = rx->open_op(g, iv);
  int32_t status = -1;
  key->process({&op, 1}, {&status, 1}, 0);
  assert_int_equal(status, 0);
  const QuicPayload p = QuicDatagramCodec::payload(g);
  assert_int_equal(p.kind, QuicPayload::Kind::Datagram);
  assert_true(p.has_ack);
  assert_int_equal(p.largest_acked, 256);
  assert_int_equal(p.datagram_offset, 8);
  assert_int_equal(p.datagram_len, 12 + 32);
}


// RFC 9000 16: the varint examples of Appendix A.1 (0x25 = 37, 0x7bbd = 15293, 0x9d7f3e7d = 494878333,
// 0xc2197c5eff14e88c = 151288809941952652), read and written back in their shortest form.
void varints(void**) {
  const struct {
    const char* hex;
    uint64_t v;
  } cases[] = {{"25", 37}, {"7bbd", 15293}, {"9d7f3e7d", 494878333}, {"c2197c5eff14e88c", 151288809941952652ull}};
  for (const auto& c : cases) {
    const auto bytes = from_hex(c.hex);
    const uint8_t* p = bytes.data();
    uint64_t v = 0;
    assert_true(quic_read_varint(p, bytes.data() + bytes.size(), v));
    assert_int_equal(v, c.v);
    assert_ptr_equal(p, bytes.data() + bytes.size());
    uint8_t out[8];
    assert_int_equal(quic_write_varint(out, c.v), bytes.size());
    assert_memory_equal(out, bytes.data(), bytes.size());
  }
  const auto two_byte_37 = from_hex("4025");  // A.1: a non-minimal encoding still reads
  const uint8_t* p = two_byte_37.data();
  uint64_t v = 0;
  assert_true(quic_read_varint(p, p + 2, v));
  assert_int_equal(v, 37);
  const auto cut = from_hex("9d7f3e");
  p = cut.data();
  assert_false(quic_read_varint(p, p + cut.size(), v));
  assert_ptr_equal(p, cut.data());
}

// Reads an ACK frame the way RFC 9000 19.3 defines it (not through the code under test): the packet numbers it
// acknowledges, or false when it does not parse.
bool decode_ack(std::span<const uint8_t> f, std::set<uint64_t>& acked, uint64_t& delay) {
  const uint8_t* p = f.data();
  const uint8_t* end = p + f.size();
  if (p == end || *p++ != 0x02) return false;
  uint64_t largest, count, first;
  if (!quic_read_varint(p, end, largest) || !quic_read_varint(p, end, delay) || !quic_read_varint(p, end, count) ||
      !quic_read_varint(p, end, first) || first > largest)
    return false;
  uint64_t smallest = largest - first;
  for (uint64_t pn = smallest; pn <= largest; ++pn) acked.insert(pn);
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t gap, len;
    if (!quic_read_varint(p, end, gap) || !quic_read_varint(p, end, len) || gap + 2 > smallest) return false;
    const uint64_t hi = smallest - gap - 2;
    if (len > hi) return false;
    for (uint64_t pn = hi - len; pn <= hi; ++pn) acked.insert(pn);
    smallest = hi - len;
  }
  return p == end;
}

// ACK frames from the receive window: every packet number a frame acknowledges was received, and it acknowledges
// every received one down to its lowest range (all of them when neither the range limit nor the space cuts it);
// random windows, a window beyond kTracked, ranges and space limits; the fast path's parser reads it.
void ack_frames(void**) {
  std::mt19937_64 rng(11);
  for (int round = 0; round < 400; ++round) {
    ReplayWindow w;
    std::set<uint64_t> got;
    const uint64_t base = round % 3 == 0 ? 0 : rng() % (uint64_t(1) << 40);
    const int n = 1 + int(rng() % 300);
    const uint64_t spread = round % 4 == 0 ? 6000 : 1 + rng() % 400;
    for (int i = 0; i < n; ++i) {
      const uint64_t pn = base + rng() % spread;
      if (w.check(pn) && w.accept(pn)) got.insert(pn);
    }
    const uint32_t max_ranges = round % 5 == 0 ? 1 + uint32_t(rng() % 4) : 64;
    uint8_t out[1500];
    const size_t room = round % 7 == 0 ? 8 + rng() % 40 : sizeof out;
    const uint64_t delay_in = rng() % 100000;
    const size_t len = quic_write_ack(w, delay_in, max_ranges, {out, room});
    std::set<uint64_t> acked;
    uint64_t delay = 0;
    if (len == 0) {  // only when even the first range cannot fit
      assert_true(room < 1 + 8 + 8 + 1 + 8);
      continue;
    }
    assert_true(len <= room);
    assert_true(decode_ack({out, len}, acked, delay));
    assert_int_equal(delay, delay_in);
    assert_int_equal(*acked.rbegin(), w.top());
    const uint64_t lowest = *acked.begin();
    for (uint64_t pn : acked) assert_true(w.seen(pn));
    size_t runs = 0;
    for (uint64_t pn = w.lowest_tracked(); pn <= w.top(); ++pn) {
      if (pn >= lowest && w.seen(pn)) assert_true(acked.count(pn));
      if (w.seen(pn) && (pn == w.lowest_tracked() || !w.seen(pn - 1))) ++runs;
    }
    if (max_ranges >= 64 && room == sizeof out && runs <= 64)
      for (uint64_t pn = w.lowest_tracked(); pn <= w.top(); ++pn) assert_int_equal(w.seen(pn), acked.count(pn));
    const QuicPayload pl = quic_parse_payload({out, len});
    assert_int_equal(pl.kind, QuicPayload::Kind::NoDatagram);
    assert_true(pl.has_ack);
    assert_false(pl.ack_eliciting);
    assert_int_equal(pl.largest_acked, w.top());
  }
  ReplayWindow empty;
  uint8_t out[64];
  assert_int_equal(quic_write_ack(empty, 0, 8, out), 0);
  // One packet, number 0: largest 0, first range 0.
  ReplayWindow one;
  assert_true(one.accept(0));
  assert_int_equal(quic_write_ack(one, 0, 8, out), 5);
  assert_memory_equal(out, from_hex("0200000000").data(), 5);
  // 10, 9, 8 and 5: largest 10, two ranges, gap 8 - 5 - 2 = 1, second range length 0.
  ReplayWindow two;
  for (uint64_t pn : {5, 8, 9, 10}) assert_true(two.accept(pn));
  assert_int_equal(quic_write_ack(two, 3, 8, out), 7);
  assert_memory_equal(out, from_hex("020a0301020100").data(), 7);
}

// ---- dpagent's DATAGRAM frames (proto/quic_datagram_mtu.hpp)

// The arithmetic at every UDP payload size a --mtu allows, and across the Length varint's edges: the data fits with
// the packet around it, one byte more does not.
void datagram_size_arithmetic(void**) {
  for (size_t payload = 40; payload <= 20000; ++payload) {
    const size_t d = quic_max_datagram_data(payload);
    if (!d) {
      assert_true(payload <= quic_datagram_packet_overhead(1));
      continue;
    }
    assert_true(d + quic_datagram_packet_overhead(d) <= payload);
    assert_true(d + 1 + quic_datagram_packet_overhead(d + 1) > payload);
  }
  // A 1-byte Length up to 63 bytes of data, 2 bytes up to 16383, 4 beyond: 63 + 31 = 94, 64 + 32 = 96.
  assert_int_equal(quic_datagram_packet_overhead(63), 31);
  assert_int_equal(quic_datagram_packet_overhead(64), 32);
  assert_int_equal(quic_max_datagram_data(94), 63);
  assert_int_equal(quic_max_datagram_data(95), 63);  // the 64th byte would lengthen the Length field
  assert_int_equal(quic_max_datagram_data(96), 64);
  assert_int_equal(quic_datagram_packet_overhead(16383), 32);
  assert_int_equal(quic_datagram_packet_overhead(16384), 34);
  assert_int_equal(quic_max_datagram_data(16383 + 32), 16383);
  assert_int_equal(quic_max_datagram_data(16384 + 33), 16383);
  assert_int_equal(quic_max_datagram_data(16384 + 34), 16384);
  // Every underlay MTU QUIC allows (1228: 1200-byte UDP payloads) up to 9000 loses 72 bytes, as with relay frames,
  // so the TUN's MTU is the same in both framings.
  for (size_t mtu = 1228; mtu <= 9000; ++mtu) assert_int_equal(quic_underlay_overhead(mtu), 72);
  assert_int_equal(kQuicUnderlayOverhead, 72);
  // 1500: 1472 bytes of UDP payload = 1 + 8 + 4 + 1 + 2 + 16 around 1440 bytes of data = 12 + a 1428-byte packet.
  assert_int_equal(quic_max_datagram_data(1472), 1440);
}

// What dpagent sends at the TUN's MTU with a name trailer: the plaintext from write_inner_plaintext in a DATAGRAM
// frame with Length (0x31, as ngtcp2 writes it) behind a 4-byte packet number fills the UDP payload exactly, and
// dpgw's codec reads header, packet and trailer back.
void agent_datagram_at_mtu(void**) {
  auto tx = agent_codec();  // writes the short header toward dpgw with 4-byte packet numbers
  auto rx = gateway_codec(4);
  for (const size_t mtu : {1228, 1280, 1500, 9000}) {
    const std::string name = "svc.example";
    const size_t trailer = name.size() + 1;
    const size_t packet_len = mtu - quic_underlay_overhead(mtu) - trailer;  // the visitor's TUN MTU
    const auto packet = inner_packet(packet_len);
    std::vector<uint8_t> plain(packet_len + 512);
    std::memcpy(inner_packet_at(plain.data()), packet.data(), packet.size());
    const InnerHeader ih{0xabcdef, 17, kInnerHasName | kInnerFlowNew};
    const size_t plain_len = write_inner_plaintext(plain.data(), ih, packet.size(), name);
    assert_int_equal(plain_len, inner_plaintext_overhead() + packet_len + trailer);
    assert_int_equal(plain_len, quic_max_datagram_data(mtu - kIpv4UdpHeaders));
    std::vector<uint8_t> dgram = {0x31};
    put_varint(dgram, plain_len);
    dgram.insert(dgram.end(), plain.begin(), plain.begin() + long(plain_len));
    const uint32_t h = tx->layout().header_len;
    std::vector<uint8_t> f(h + dgram.size() + kAeadTagLen);
    assert_int_equal(f.size(), mtu - kIpv4UdpHeaders);  // exactly the UDP payload --mtu leaves
    std::memcpy(f.data() + h, dgram.data(), dgram.size());
    const uint64_t pn = (uint64_t(1) << 30) + 5;
    tx->write_header(f.data(), FrameMeta{FrameType::Data, 0, kIndex, pn});
    auto key = g_engine.make_key(kKey, AeadDirection::Encrypt, h);
    uint8_t iv[kAeadIvLen];
    quic_nonce(iv, kIv.data(), pn);
    const AeadOp op = tx->seal_op(f.data(), uint32_t(dgram.size()), iv);
    int32_t status = -1;
    key->process({&op, 1}, {&status, 1}, 0);
    assert_int_equal(status, 0);
    tx->protect(f);
    const Opened o = open(*rx, f, pn - 1);
    assert_true(o.open);
    assert_true(o.inner);
    assert_int_equal(o.ih.flow_id, 0xabcdef);
    assert_int_equal(o.ih.proto, 17);
    assert_int_equal(o.ih.flags, kInnerHasName | kInnerFlowNew);
    std::vector<uint8_t> got = o.packet;
    std::string_view n;
    size_t rest = 0;
    assert_true(read_name_trailer(got, n, rest));
    assert_true(n == name);
    assert_int_equal(rest, packet_len);
    assert_memory_equal(got.data(), packet.data(), packet_len);
  }
}

// The plaintext reader the agent applies to a DATAGRAM frame's data: the inner header and the rest; too short for an
// inner header and an IPv4 header: refused.
void inner_plaintext_reader(void**) {
  std::vector<uint8_t> plain(kMinInnerPlaintext + 9);
  const auto packet = inner_packet(29);
  std::memcpy(inner_packet_at(plain.data()), packet.data(), packet.size());
  assert_int_equal(write_inner_plaintext(plain.data(), InnerHeader{7, 6, 0}, packet.size(), {}), plain.size());
  assert_memory_equal(plain.data(), from_hex("0000000000000007" "06" "00" "0000").data(), 12);
  InnerHeader ih;
  std::span<uint8_t> rest;
  assert_true(read_inner_plaintext(plain, ih, rest));
  assert_int_equal(ih.flow_id, 7);
  assert_int_equal(ih.proto, 6);
  assert_int_equal(rest.size(), packet.size());
  assert_ptr_equal(rest.data(), inner_packet_at(plain.data()));
  assert_true(read_inner_plaintext(std::span(plain).first(kMinInnerPlaintext), ih, rest));
  assert_false(read_inner_plaintext(std::span(plain).first(kMinInnerPlaintext - 1), ih, rest));
  assert_false(read_inner_plaintext({}, ih, rest));
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(pn_decode_rfc_example), cmocka_unit_test(pn_length_rfc_examples),
      cmocka_unit_test(varints),               cmocka_unit_test(ack_frames),
      cmocka_unit_test(pn_decode_edges),       cmocka_unit_test(hp_rfc9001_aes),
      cmocka_unit_test(hp_rfc9001_chacha20),   cmocka_unit_test(layout),
      cmocka_unit_test(round_trip_every_pn_length), cmocka_unit_test(tampering_fails),
      cmocka_unit_test(malformed),             cmocka_unit_test(payload_frames), cmocka_unit_test(frame_reader),
      cmocka_unit_test(frame_reader_malformed), cmocka_unit_test(path_frame_writer),
      cmocka_unit_test(datagram_after_other_frames), cmocka_unit_test(independent_packet),
      cmocka_unit_test(datagram_size_arithmetic), cmocka_unit_test(agent_datagram_at_mtu),
      cmocka_unit_test(inner_plaintext_reader), cmocka_unit_test(every_issued_cid_accepted),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
