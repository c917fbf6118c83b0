// Relay frame v1 codec: header round trips over every type, flag and counter edge, the key-phase bit derived
// from the counter's epoch, every decode error, the inner header, the codec's frame parts (a real AEAD seals and
// opens frames through it), and the nonce layout.
#include <array>
#include <cstring>

#include "crypto/aead_openssl.hpp"
#include "crypto/key_schedule.hpp"
#include "proto/frame_codec.hpp"
#include "proto/relay_frame.hpp"

#include "tests/unit/cmocka.hpp"

using namespace dptun;
using namespace dptun::test;

namespace {
constexpr RelayCodec kCodec;
constexpr size_t kHeaderLen = 16;  // the relay header as docs/protocol.md draws it
constexpr size_t kTagLen = 16;
void encode_relay_header(uint8_t* frame, const FrameMeta& m) { kCodec.write_header(frame, m); }
FrameError decode_relay_header(uint8_t* frame, size_t len, FrameMeta& m) {
  return kCodec.read_header({frame, len}, 0, m);
}
}  // namespace

// Overheads (docs/protocol.md): a data frame wraps the inner IP packet in a 16-byte cleartext header, a 12-byte
// (encrypted) inner header and a 16-byte tag = 44 bytes of outer UDP payload; with the outer IPv4 (20) and UDP
// (8) headers the underlay MTU loses 72 bytes. MSS clamping and the tunnel MTU are derived from these numbers.
static_assert(RelayCodec::kLayout.header_len == kHeaderLen && kInnerHeaderLen == 12 &&
              RelayCodec::kLayout.tag_len == kTagLen && RelayCodec::kLayout.prefix_len == 0);
static_assert(kRelayFrameOverhead == 44);
static_assert(kUnderlayOverhead == 72);

static const uint64_t kCounters[] = {0,
                                     1,
                                     0xffffffffull,         // last counter of epoch 0
                                     0x100000000ull,        // first of epoch 1
                                     0x100000001ull,
                                     0x1ffffffffull,
                                     0x200000000ull,        // epoch 2: even again
                                     0x8000000000000000ull, // 2^63
                                     0x8000000100000000ull,
                                     0xffffffffffffffffull};
static const FrameType kTypes[] = {FrameType::Data, FrameType::Keepalive, FrameType::Control};

// Smallest valid frame length for a type.
static size_t min_len(FrameType t) {
  return t == FrameType::Data ? kRelayFrameOverhead + 20 : kHeaderLen + kTagLen;
}

static void overhead_constants(void**) {
  assert_int_equal(kRelayFrameOverhead, 44);
  assert_int_equal(kUnderlayOverhead, 72);
  assert_int_equal(kHeaderLen + kInnerHeaderLen + kTagLen, 44);
}

static void header_round_trip(void**) {
  const uint8_t flag_sets[] = {0, kFlagKeepaliveReply, kFlagKeyPhase, kFlagKeyPhase | kFlagKeepaliveReply, 0xfe,
                               0xff};
  const uint32_t indexes[] = {0, 1, 0x01020304, 0xdeadbeef, 0xffffffff};
  for (FrameType type : kTypes)
    for (uint8_t flags : flag_sets)
      for (uint32_t index : indexes)
        for (uint64_t counter : kCounters) {
          FrameMeta m;
          m.type = type;
          m.flags = flags;
          m.receiver_index = index;
          m.counter = counter;
          std::vector<uint8_t> frame(min_len(type), 0xaa);
          encode_relay_header(frame.data(), m);
          // Wire layout.
          assert_int_equal(frame[0], kRelayVersion);
          assert_int_equal(frame[1], uint8_t(type));
          assert_int_equal(frame[3], 0);
          assert_int_equal(load_be32(frame.data() + 4), index);
          assert_int_equal(load_be64(frame.data() + 8), counter);
          const bool odd_epoch = (counter >> 32) & 1;
          const uint8_t want_flags = uint8_t((flags & ~kFlagKeyPhase) | (odd_epoch ? kFlagKeyPhase : 0));
          assert_int_equal(frame[2], want_flags);
          assert_int_equal(frame[16], 0xaa);  // nothing written past the header
          FrameMeta d;
          assert_int_equal(decode_relay_header(frame.data(), frame.size(), d), FrameError::None);
          assert_int_equal(d.type, type);
          assert_int_equal(d.flags, want_flags);
          assert_int_equal(d.receiver_index, index);
          assert_int_equal(d.counter, counter);
        }
}

static void key_phase_follows_epoch(void**) {
  for (uint64_t counter : kCounters) {
    FrameMeta m;
    m.counter = counter;
    m.type = FrameType::Keepalive;
    uint8_t h[kHeaderLen + kTagLen] = {};
    encode_relay_header(h, m);
    assert_int_equal(bool(h[2] & kFlagKeyPhase), bool(epoch_of(counter) & 1));
    // The caller's key-phase flag is ignored: the counter decides.
    m.flags = kFlagKeyPhase;
    uint8_t h2[sizeof h] = {};
    encode_relay_header(h2, m);
    assert_memory_equal(h, h2, sizeof h);
    // Flipping the bit on the wire is caught.
    h[2] ^= kFlagKeyPhase;
    FrameMeta d;
    assert_int_equal(decode_relay_header(h, sizeof h, d), FrameError::BadKeyPhase);
    // So is a counter moved to a neighbouring epoch without the flag following.
    h[2] ^= kFlagKeyPhase;
    store_be64(h + 8, counter ^ 0x100000000ull);
    assert_int_equal(decode_relay_header(h, sizeof h, d), FrameError::BadKeyPhase);
    // ...but not to an epoch of the same parity.
    store_be64(h + 8, counter ^ 0x200000000ull);
    assert_int_equal(decode_relay_header(h, sizeof h, d), FrameError::None);
  }
}

static std::vector<uint8_t> valid(FrameType type, size_t len, uint64_t counter = 5) {
  FrameMeta m;
  m.type = type;
  m.counter = counter;
  m.receiver_index = 77;
  std::vector<uint8_t> f(len, 0x55);
  encode_relay_header(f.data(), m);
  return f;
}

static void short_frames(void**) {
  for (FrameType type : kTypes) {
    auto full = valid(type, 100);
    for (size_t len = 0; len < kHeaderLen + kTagLen; ++len) {
      std::vector<uint8_t> cut(full.begin(), full.begin() + long(len));  // exact size
      FrameMeta d;
      assert_int_equal(decode_relay_header(cut.data(), cut.size(), d), FrameError::Short);
    }
  }
  // Short wins over a bad version.
  std::vector<uint8_t> junk(31, 0xff);
  FrameMeta d;
  assert_int_equal(decode_relay_header(junk.data(), junk.size(), d), FrameError::Short);
}

static void bad_version(void**) {
  for (uint8_t v : {0, 2, 0x10, 0x81, 0xff}) {
    auto f = valid(FrameType::Data, 100);
    f[0] = v;
    FrameMeta d;
    assert_int_equal(decode_relay_header(f.data(), f.size(), d), FrameError::BadVersion);
  }
}

static void bad_type(void**) {
  for (uint8_t t : {0, 4, 5, 0x81, 0xff}) {
    auto f = valid(FrameType::Control, 100);
    f[1] = t;
    FrameMeta d;
    assert_int_equal(decode_relay_header(f.data(), f.size(), d), FrameError::BadType);
  }
}

static void bad_length(void**) {
  FrameMeta d;
  // Keepalive: header + tag exactly, nothing more.
  for (size_t len : {33, 34, 48, 64, 1500}) {
    auto f = valid(FrameType::Keepalive, len);
    assert_int_equal(decode_relay_header(f.data(), f.size(), d), FrameError::BadLength);
  }
  auto k = valid(FrameType::Keepalive, 32);
  assert_int_equal(decode_relay_header(k.data(), k.size(), d), FrameError::None);
  // Data: must hold the inner header and at least a minimal IPv4 header.
  for (size_t len = 32; len < kRelayFrameOverhead + 20; ++len) {
    auto f = valid(FrameType::Data, len);
    assert_int_equal(decode_relay_header(f.data(), f.size(), d), FrameError::BadLength);
  }
  for (size_t len : {64, 65, 1500, 9000}) {
    auto f = valid(FrameType::Data, len);
    assert_int_equal(decode_relay_header(f.data(), f.size(), d), FrameError::None);
  }
  // Control: any length from header + tag.
  for (size_t len : {32, 33, 100, 2000}) {
    auto f = valid(FrameType::Control, len);
    assert_int_equal(decode_relay_header(f.data(), f.size(), d), FrameError::None);
  }
}

static void error_names(void**) {
  const FrameError all[] = {FrameError::None,    FrameError::Short,       FrameError::BadVersion,
                            FrameError::BadType, FrameError::BadKeyPhase, FrameError::BadLength};
  for (size_t i = 0; i < std::size(all); ++i) {
    const char* a = frame_error_name(all[i]);
    assert_non_null(a);
    assert_true(std::strcmp(a, "unknown") != 0);
    for (size_t j = 0; j < i; ++j) assert_string_not_equal(a, frame_error_name(all[j]));
  }
  assert_string_equal(frame_error_name(FrameError::BadKeyPhase), "bad_key_phase");
  assert_string_equal(frame_error_name(FrameError(200)), "unknown");
}

static void inner_header_round_trip(void**) {
  const uint64_t flows[] = {0, 1, 0x0102030405060708ull, 0xffffffffffffffffull};
  for (uint64_t flow : flows)
    for (uint8_t proto : {0, 6, 17, 255})
      for (uint8_t flags : {0, int(kInnerFlowNew), int(kInnerFlowClose), 0xff}) {
        InnerHeader h{flow, proto, flags};
        uint8_t b[kInnerHeaderLen + 1];
        std::memset(b, 0xcc, sizeof b);
        encode_inner_header(b, h);
        assert_int_equal(b[kInnerHeaderLen], 0xcc);
        assert_int_equal(load_be64(b), flow);
        assert_int_equal(b[8], proto);
        assert_int_equal(b[9], flags);
        assert_int_equal(load_be16(b + 10), 0);  // reserved: sent as 0
        InnerHeader d = decode_inner_header(b);
        assert_int_equal(d.flow_id, flow);
        assert_int_equal(d.proto, proto);
        assert_int_equal(d.flags, flags);
        b[10] = 0xab;  // ... and ignored on receipt
        b[11] = 0xcd;
        d = decode_inner_header(b);
        assert_int_equal(d.flow_id, flow);
        assert_int_equal(d.flags, flags);
      }
  // Fixed byte layout.
  uint8_t b[kInnerHeaderLen];
  encode_inner_header(b, InnerHeader{0x0102030405060708ull, 6, kInnerFlowNew});
  const uint8_t expect[] = {1, 2, 3, 4, 5, 6, 7, 8, 6, 1, 0, 0};
  assert_memory_equal(b, expect, sizeof expect);
}

// The codec's parts of a frame, at the offsets docs/protocol.md gives: what a sender writes and seals, what a
// receiver reads and opens. A real AEAD seals a data frame and a keepalive through it and opens them again.
static void codec_frame_parts(void**) {
  const FrameLayout& l = kCodec.layout();
  assert_int_equal(l.inner_offset(), 16);
  assert_int_equal(l.packet_offset(), 28);
  assert_int_equal(l.data_overhead(), 44);
  assert_int_equal(l.encrypted_len(100), 112);
  assert_int_equal(l.frame_len(0), 32);
  assert_int_equal(l.frame_len(l.encrypted_len(100)), 100 + 44);

  OpensslAead engine;
  const std::array<uint8_t, 16> key{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  auto enc = engine.make_key(key, AeadDirection::Encrypt, l.header_len);
  auto dec = engine.make_key(key, AeadDirection::Decrypt, l.header_len);
  const std::array<uint8_t, kSaltLen> salt{9, 8, 7, 6};
  const uint64_t counter = 0x100000007ull;  // epoch 1: the key-phase bit is set
  uint8_t iv[kAeadIvLen];
  make_nonce(iv, salt, counter);

  // A data frame: 40 bytes of packet and a name trailer.
  std::vector<uint8_t> packet(40);
  for (size_t i = 0; i < packet.size(); ++i) packet[i] = uint8_t(0x45 + i);
  const uint32_t packet_len = uint32_t(packet.size() + 1 + 9);
  std::vector<uint8_t> f(l.frame_len(l.encrypted_len(packet_len)), 0xee);
  std::memcpy(f.data() + l.packet_offset(), packet.data(), packet.size());
  write_name_trailer(f.data() + l.packet_offset() + packet.size(), "a.example");
  kCodec.write_inner(f.data(), InnerHeader{0x1122334455667788ull, 17, kInnerHasName});
  kCodec.write_header(f.data(), FrameMeta{FrameType::Data, 0, 0xc0ffee, counter});
  const AeadOp seal = kCodec.seal_op(f.data(), l.encrypted_len(packet_len), iv);
  assert_ptr_equal(seal.aad, f.data());
  assert_ptr_equal(seal.data, f.data() + 16);
  assert_int_equal(seal.len, 12 + packet_len);
  assert_ptr_equal(seal.tag, f.data() + f.size() - 16);
  int32_t st = -1;
  enc->process({&seal, 1}, {&st, 1}, 0);
  assert_int_equal(st, 0);
  kCodec.protect(f);
  // On the wire: the header in clear, the inner header and packet not.
  assert_int_equal(f[0], kRelayVersion);
  assert_int_equal(load_be32(f.data() + 4), 0xc0ffee);
  assert_int_equal(load_be64(f.data() + 8), counter);
  assert_true(std::memcmp(f.data() + l.packet_offset(), packet.data(), packet.size()) != 0);

  uint32_t receiver = 0;
  assert_true(kCodec.receiver_of(f, receiver));
  assert_int_equal(receiver, 0xc0ffee);
  assert_false(kCodec.receiver_of(std::span<const uint8_t>(f.data(), 15), receiver));
  FrameMeta m;
  assert_int_equal(kCodec.read_header(f, counter - 1, m), FrameError::None);
  assert_int_equal(m.type, FrameType::Data);
  assert_int_equal(m.counter, counter);
  assert_int_equal(m.flags & kFlagKeyPhase, kFlagKeyPhase);
  const AeadOp open = kCodec.open_op(f, iv);
  assert_ptr_equal(open.data, seal.data);
  assert_int_equal(open.len, seal.len);
  assert_ptr_equal(open.tag, seal.tag);
  st = -1;
  dec->process({&open, 1}, {&st, 1}, 0);
  assert_int_equal(st, 0);
  InnerHeader ih;
  std::span<uint8_t> inner;
  assert_true(kCodec.read_inner(f, ih, inner));
  assert_int_equal(ih.flow_id, 0x1122334455667788ull);
  assert_int_equal(ih.proto, 17);
  assert_int_equal(ih.flags, kInnerHasName);
  assert_int_equal(inner.size(), packet_len);
  std::string_view name;
  size_t rest = 0;
  assert_true(read_name_trailer(inner, name, rest));
  assert_int_equal(rest, packet.size());
  assert_true(name == "a.example");
  assert_memory_equal(inner.data(), packet.data(), packet.size());

  // A flipped header bit fails authentication: the header is the AAD.
  enc->process({&seal, 1}, {&st, 1}, 0);  // seal again (the frame holds plaintext now)
  f[3] ^= 1;
  dec->process({&open, 1}, {&st, 1}, 0);
  assert_int_not_equal(st, 0);

  // A keepalive: header and tag only.
  std::vector<uint8_t> k(l.frame_len(0));
  kCodec.write_header(k.data(), FrameMeta{FrameType::Keepalive, kFlagKeepaliveReply, 7, counter});
  const AeadOp kseal = kCodec.seal_op(k.data(), 0, iv);
  enc->process({&kseal, 1}, {&st, 1}, 0);
  assert_int_equal(st, 0);
  assert_int_equal(kCodec.read_header(k, 0, m), FrameError::None);
  assert_int_equal(m.type, FrameType::Keepalive);
  const AeadOp kopen = kCodec.open_op(k, iv);
  assert_int_equal(kopen.len, 0);
  dec->process({&kopen, 1}, {&st, 1}, 0);
  assert_int_equal(st, 0);
}

static void nonce_layout(void**) {
  const std::array<uint8_t, kSaltLen> salt{0xa1, 0xb2, 0xc3, 0xd4};
  uint8_t n[12];
  make_nonce(n, salt, 0x0102030405060708ull);
  const uint8_t want[12] = {0xa1, 0xb2, 0xc3, 0xd4, 1, 2, 3, 4, 5, 6, 7, 8};
  assert_memory_equal(n, want, 12);
  make_nonce(n, salt, 0);
  const uint8_t want0[12] = {0xa1, 0xb2, 0xc3, 0xd4, 0, 0, 0, 0, 0, 0, 0, 0};
  assert_memory_equal(n, want0, 12);
  make_nonce(n, salt, 0xffffffffffffffffull);
  for (int i = 4; i < 12; ++i) assert_int_equal(n[i], 0xff);
  for (uint64_t counter : kCounters) {
    make_nonce(n, salt, counter);
    assert_memory_equal(n, salt.data(), 4);
    assert_int_equal(load_be64(n + 4), counter);
    // The counter in the nonce is the counter in the cleartext header.
    FrameMeta m;
    m.counter = counter;
    uint8_t h[kHeaderLen];
    encode_relay_header(h, m);
    assert_memory_equal(n + 4, h + 8, 8);
  }
}

// The plaintext as dpagent builds it for either framing (write_inner_plaintext at the frame's inner offset), sealed
// and opened as a relay frame: read_inner gives back the inner header and the packet with its trailer.
static void plaintext_in_a_relay_frame(void**) {
  const FrameLayout& l = kCodec.layout();
  const std::vector<uint8_t> packet = [] {
    std::vector<uint8_t> p(40);
    for (size_t i = 0; i < p.size(); ++i) p[i] = uint8_t(0x45 + i);
    return p;
  }();
  std::vector<uint8_t> f(l.data_overhead() + packet.size() + 16);
  uint8_t* plain = f.data() + l.inner_offset();
  assert_ptr_equal(inner_packet_at(plain), f.data() + l.packet_offset());
  std::memcpy(inner_packet_at(plain), packet.data(), packet.size());
  const size_t plain_len =
      write_inner_plaintext(plain, InnerHeader{0x11223344, 17, kInnerHasName}, packet.size(), "host.test");
  assert_int_equal(plain_len, 12 + packet.size() + 10);
  const uint32_t encrypted = l.prefix_len + uint32_t(plain_len);
  f.resize(l.frame_len(encrypted));
  kCodec.write_header(f.data(), FrameMeta{FrameType::Data, 0, 9, 77});
  const std::array<uint8_t, 16> key{1, 2, 3};
  OpensslAead engine(1);
  auto enc = engine.make_key(key, AeadDirection::Encrypt, kHeaderLen);
  auto dec = engine.make_key(key, AeadDirection::Decrypt, kHeaderLen);
  uint8_t iv[12] = {9};
  int32_t st = -1;
  const AeadOp seal = kCodec.seal_op(f.data(), encrypted, iv);
  enc->process({&seal, 1}, {&st, 1}, 0);
  assert_int_equal(st, 0);
  FrameMeta m;
  assert_int_equal(kCodec.read_header(f, 0, m), FrameError::None);
  const AeadOp open = kCodec.open_op(f, iv);
  dec->process({&open, 1}, {&st, 1}, 0);
  assert_int_equal(st, 0);
  InnerHeader ih;
  std::span<uint8_t> inner;
  assert_true(kCodec.read_inner(f, ih, inner));
  assert_int_equal(ih.flow_id, 0x11223344);
  assert_int_equal(ih.flags, kInnerHasName);
  std::string_view name;
  size_t rest = 0;
  assert_true(read_name_trailer(inner, name, rest));
  assert_true(name == "host.test");
  assert_int_equal(rest, packet.size());
  assert_memory_equal(inner.data(), packet.data(), packet.size());
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(overhead_constants),
      cmocka_unit_test(header_round_trip),
      cmocka_unit_test(key_phase_follows_epoch),
      cmocka_unit_test(short_frames),
      cmocka_unit_test(bad_version),
      cmocka_unit_test(bad_type),
      cmocka_unit_test(bad_length),
      cmocka_unit_test(error_names),
      cmocka_unit_test(inner_header_round_trip),
      cmocka_unit_test(codec_frame_parts),
      cmocka_unit_test(nonce_layout),
      cmocka_unit_test(plaintext_in_a_relay_frame),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
