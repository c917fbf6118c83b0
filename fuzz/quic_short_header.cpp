// The QUIC short-header DATAGRAM codec's read path (proto/quic_short_header.hpp), as a dpgw worker would run it.
// The input's first byte (low bit) picks:
// - raw (0): [u64 largest accepted][packet]: receiver_of, read_header (header protection removed with the
//   connection's key, the packet number rebuilt), then, as if the AEAD had accepted the bytes as they are, the
//   frame parser and read_inner. Properties: read_header's verdict agrees with receiver_of; the AAD, the AEAD
//   op, the DATAGRAM data and the inner packet lie inside the packet; a header read back is the header written.
// - sealed (1): up to 8 packets [u8 pn length and flags][u64 packet number][u64 largest][u16 length][frames],
//   sealed and protected with real keys (AES-128-GCM through OpenSSL, AES-128 header protection), then read
//   back. Properties: inside the decoding window the packet number and the frames come back and it opens;
//   read_inner succeeds exactly when the frames are one DATAGRAM frame (with PADDING/PING/ACK) big enough.
// Both modes walk the frames as the slow path does (QuicFrameReader) and check it against the fast path's verdict.
#include <memory>
#include <vector>

#include "crypto/aead_openssl.hpp"
#include "fuzz/fuzz.hpp"
#include "proto/quic_short_header.hpp"

using namespace dptun;

namespace {

const uint8_t kHpTx[16] = {0x10, 0x21, 0x32, 0x43, 0x54, 0x65, 0x76, 0x87,
                           0x98, 0xa9, 0xba, 0xcb, 0xdc, 0xed, 0xfe, 0x0f};
const uint8_t kHpRx[16] = {0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78,
                           0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2, 0xe1, 0xf0};
const uint8_t kKey[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
const uint8_t kIv[12] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab};
constexpr std::array<uint8_t, 4> kTail = {0xd0, 0x0d, 0xfe, 0xed};
constexpr std::array<uint8_t, 8> kDcid = {0, 0, 0, 7, 0xd0, 0x0d, 0xfe, 0xed};  // index 7 | kTail

// Our end's codec for packet number length `pn_len` (1..4), and its peer's (the keys swapped).
QuicDatagramCodec& codec(uint32_t pn_len, bool peer) {
  static std::unique_ptr<QuicDatagramCodec> made[2][5];
  auto& c = made[peer][pn_len];
  if (!c) {
    QuicDatagramCodec::Config cfg;
    cfg.tx_dcid = kDcid;
    cfg.rx_cid_tails = {&kTail, 1};
    cfg.tx_hp = {peer ? kHpRx : kHpTx, 16};
    cfg.rx_hp = {peer ? kHpTx : kHpRx, 16};
    cfg.tx_pn_len = pn_len;
    c = std::make_unique<QuicDatagramCodec>(cfg);
    FUZZ_CHECK(c->ok());
  }
  return *c;
}

OpensslAead g_engine;
AeadKey& aead(AeadDirection dir, uint32_t aad_len) {
  static std::unique_ptr<AeadKey> keys[2][14];
  auto& k = keys[dir == AeadDirection::Decrypt][aad_len];
  if (!k) k = g_engine.make_key({kKey, 16}, dir, aad_len);
  FUZZ_CHECK(k != nullptr);
  return *k;
}

// What a worker does with a packet that passed read_header, as if it had opened.
void read_frames(std::span<uint8_t> f, const FrameMeta& m) {
  const QuicDatagramCodec& rx = codec(4, false);
  const uint32_t aad = QuicDatagramCodec::aad_len(f);
  FUZZ_CHECK(aad >= 10 && aad <= 13 && f.size() >= kQuicMinPacket);
  const AeadOp op = rx.open_op(f, nullptr);
  FUZZ_CHECK(op.aad == f.data() && op.data == f.data() + aad && fuzz::within({op.data, op.len}, f));
  FUZZ_CHECK(op.tag + kAeadTagLen == f.data() + f.size());
  // The header written back from what was read is the header read (reserved bits aside).
  std::vector<uint8_t> h(aad);
  codec(aad - 9, false).write_header(h.data(), m);
  FUZZ_CHECK((h[0] | kQuicShortReserved) == (f[0] | kQuicShortReserved));
  FUZZ_CHECK(std::memcmp(h.data() + 1, kDcid.data(), 8) == 0);  // what it writes: the peer's connection ID
  FUZZ_CHECK(load_be32(f.data() + 1) == m.receiver_index && std::memcmp(f.data() + 5, kTail.data(), 4) == 0);
  for (uint32_t i = 0; i < aad - 9; ++i) FUZZ_CHECK(h[9 + i] == uint8_t(m.counter >> (8 * (aad - 10 - i))));

  const QuicPayload p = QuicDatagramCodec::payload(f);
  // The frame walker the slow path reads with (QuicFrameReader): every field inside the payload, frames in order,
  // the whole payload walked unless malformed, and agreeing with the fast path's verdict.
  const std::span<const uint8_t> payload{f.data() + aad, f.size() - aad - kAeadTagLen};
  QuicFrameReader r(payload);
  QuicFrame fr;
  size_t at = 0, frames = 0, datagrams = 0;
  bool slow = false;
  while (r.next(fr)) {
    FUZZ_CHECK(r.offset() > at && r.offset() <= payload.size());
    at = r.offset();
    ++frames;
    for (auto s : {fr.data, fr.reason, fr.cid, fr.reset_token})
      FUZZ_CHECK(s.empty() || fuzz::within({const_cast<uint8_t*>(s.data()), s.size()}, f));
    if (fr.type == kQuicFrameDatagram || fr.type == kQuicFrameDatagramLen) ++datagrams;
    else if (!quic_fast_path_frame(fr.type)) slow = true;
    if (fr.type == kQuicFrameNewConnectionId)
      FUZZ_CHECK(fr.cid.size() >= 1 && fr.cid.size() <= kQuicMaxCidLen && fr.reset_token.size() == kQuicResetTokenLen &&
                 fr.retire_prior_to <= fr.sequence);
    if (fr.type == kQuicFramePathChallenge || fr.type == kQuicFramePathResponse) {
      uint8_t back[9];
      FUZZ_CHECK(quic_write_path_frame(uint8_t(fr.type), fr.path, back) == 9);
      FUZZ_CHECK(std::memcmp(back, payload.data() + at - 9, 9) == 0);  // written back as it was read
    }
  }
  FUZZ_CHECK(r.malformed() || at == payload.size());
  const bool whole = !r.malformed() && frames > 0;
  FUZZ_CHECK(whole == (p.kind != QuicPayload::Kind::Malformed));
  if (whole) {
    FUZZ_CHECK(p.datagrams == datagrams);
    FUZZ_CHECK((p.kind == QuicPayload::Kind::SlowPath) == (slow || datagrams > 1));
  }
  InnerHeader ih;
  std::span<uint8_t> pkt;
  const bool inner = rx.read_inner(f, ih, pkt);
  FUZZ_LOG("pn %llu, frames kind %d, inner %d\n", (unsigned long long)m.counter, int(p.kind), inner);
  if (p.kind == QuicPayload::Kind::Datagram) {
    FUZZ_CHECK(size_t(aad) + p.datagram_offset + p.datagram_len <= f.size() - kAeadTagLen);
    FUZZ_CHECK(p.datagram_offset >= 1 && p.ack_eliciting);
  }
  FUZZ_CHECK(inner == (p.kind == QuicPayload::Kind::Datagram && !(f[0] & kQuicShortReserved) &&
                       p.datagram_len >= kInnerHeaderLen + 20));
  std::span<uint8_t> first;
  InnerHeader ih2;
  if (QuicDatagramCodec::read_datagram(f, p, ih2, first)) {  // the slow path's packets deliver their first DATAGRAM
    FUZZ_CHECK(p.datagrams >= 1 && fuzz::within(first, f));
    FUZZ_CHECK(!inner || first.data() == pkt.data());
  } else {
    FUZZ_CHECK(!inner);
  }
  if (!inner) return;
  FUZZ_CHECK(fuzz::within(pkt, f) && pkt.size() == p.datagram_len - kInnerHeaderLen);
  FUZZ_CHECK(pkt.data() == f.data() + aad + p.datagram_offset + kInnerHeaderLen);
}

void raw(fuzz::Input& in) {
  const uint64_t largest = in.u64();
  const auto bytes = in.rest();
  std::vector<uint8_t> f(bytes.begin(), bytes.end());
  const QuicDatagramCodec& rx = codec(4, false);
  uint32_t index = 0;
  const bool known = rx.receiver_of(f, index);
  FrameMeta m;
  const FrameError e = rx.read_header(f, largest, m);
  FUZZ_CHECK(frame_error_name(e) != nullptr);
  FUZZ_LOG("raw packet of %zu bytes: %s\n", f.size(), frame_error_name(e));
  if (e == FrameError::Short || e == FrameError::LongHeader || e == FrameError::BadFixedBit) FUZZ_CHECK(!known);
  if (e != FrameError::None) return;
  FUZZ_CHECK(known && index == m.receiver_index && m.counter <= kQuicMaxPacketNumber);
  read_frames(f, m);
}

void sealed(fuzz::Input& in) {
  for (int i = 0; i < 8 && in.left(); ++i) {
    const uint8_t lf = in.u8();
    const uint32_t pn_len = (lf & 3) + 1;
    const uint8_t flags = uint8_t(lf >> 2 & 3);
    const uint64_t pn = in.u64() & kQuicMaxPacketNumber;
    const uint64_t largest = in.u64();
    auto frames = in.bytes(in.u16() % 1600);
    const QuicDatagramCodec& tx = codec(pn_len, true);
    const uint32_t h = tx.layout().header_len;
    // Short payloads are padded (PADDING frames) up to the header-protection sample, as a sender must.
    const size_t payload_len = std::max(frames.size(), kQuicMinPacket - h - kAeadTagLen);
    std::vector<uint8_t> f(h + payload_len + kAeadTagLen, 0);
    if (!frames.empty()) std::memcpy(f.data() + h, frames.data(), frames.size());
    tx.write_header(f.data(), FrameMeta{FrameType::Data, flags, 7, pn});
    uint8_t iv[kAeadIvLen];
    quic_nonce(iv, kIv, pn);
    const AeadOp op = tx.seal_op(f.data(), uint32_t(payload_len), iv);
    int32_t status = -1;
    aead(AeadDirection::Encrypt, h).process({&op, 1}, {&status, 1}, 0);
    FUZZ_CHECK(status == 0);
    tx.protect(f);

    const QuicDatagramCodec& rx = codec(4, false);
    uint32_t index = 0;
    FUZZ_CHECK(rx.receiver_of(f, index) && index == 7);
    FrameMeta m;
    const FrameError e = rx.read_header(f, largest, m);
    const uint64_t expected = largest + 1, hwin = uint64_t(1) << (8 * pn_len - 1);
    // RFC 9000 A.3's window, (expected - hwin, expected + hwin], where `largest` is a packet number or none.
    const bool in_window = (largest <= kQuicMaxPacketNumber || largest == kQuicNoAck) && pn + hwin > expected &&
                           pn <= expected + hwin;
    FUZZ_LOG("sealed pn %llu (%u bytes), largest %llu: %s\n", (unsigned long long)pn, pn_len,
             (unsigned long long)largest, frame_error_name(e));
    if (in_window) FUZZ_CHECK(e == FrameError::None && m.counter == pn && m.flags == flags);
    if (e != FrameError::None) continue;
    quic_nonce(iv, kIv, m.counter);
    const AeadOp op2 = rx.open_op(f, iv);
    aead(AeadDirection::Decrypt, QuicDatagramCodec::aad_len(f)).process({&op2, 1}, {&status, 1}, 0);
    FUZZ_CHECK((status == 0) == (m.counter == pn));  // a wrong number never opens
    if (status != 0) continue;
    FUZZ_CHECK(frames.empty() || std::memcmp(f.data() + h, frames.data(), frames.size()) == 0);
    read_frames(f, m);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in({data, size});
  if (in.u8() & 1)
    sealed(in);
  else
    raw(in);
  return 0;
}
