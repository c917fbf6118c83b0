#include "proto/quic_short_header.hpp"

#include <cstring>

#include "proto/quic_varint.hpp"

namespace dptun {

uint32_t quic_pn_length(uint64_t pn, uint64_t largest_acked) {
  // RFC 9000 A.2: log2(unacked) + 1 bits, in whole bytes; k bytes hold it while unacked <= 2^(8k - 1).
  const uint64_t unacked = largest_acked == kQuicNoAck ? pn + 1 : pn - largest_acked;
  for (uint32_t k = 1; k <= 4; ++k)
    if (unacked <= uint64_t(1) << (8 * k - 1)) return k;
  return 0;
}

uint64_t quic_decode_pn(uint64_t truncated, uint32_t pn_len, uint64_t largest) {
  // RFC 9000 A.3, in unsigned arithmetic: kQuicNoAck + 1 wraps to 0, the expected number before any packet.
  const uint64_t expected = largest + 1;
  const uint64_t win = uint64_t(1) << (8 * pn_len);
  const uint64_t hwin = win / 2;
  const uint64_t candidate = (expected & ~(win - 1)) | (truncated & (win - 1));
  if (expected >= hwin && candidate <= expected - hwin && candidate < (uint64_t(1) << 62) - win)
    return candidate + win;
  if (candidate > expected + hwin && candidate >= win) return candidate - win;
  return candidate;
}

bool QuicFrameReader::next(QuicFrame& f) {
  if (p_ >= end_ || malformed_) return false;
  const uint8_t* const at = p_;
  uint64_t type;
  if (!quic_read_varint(p_, end_, type)) return refuse();
  if (size_t(p_ - at) != quic_varint_len(type)) return refuse();  // 12.4: not the shortest encoding (we refuse it)
  f = QuicFrame{};
  f.type = type;
  auto varint = [&](uint64_t& v) { return quic_read_varint(p_, end_, v); };
  auto bytes = [&](uint64_t len, std::span<const uint8_t>& out) {
    if (len > uint64_t(end_ - p_)) return false;
    out = {p_, size_t(len)};
    p_ += len;
    return true;
  };
  uint64_t a, b, c;
  switch (type) {
    case kQuicFramePadding:
    case kQuicFramePing:
    case kQuicFrameHandshakeDone:
      return true;
    case kQuicFrameAck:
    case kQuicFrameAckEcn: {  // 19.3: largest, delay, range count, first range, (gap, range)*, [ECT0 ECT1 CE]
      uint64_t largest, delay, ranges, first;
      if (!varint(largest) || !varint(delay) || !varint(ranges) || !varint(first) || first > largest ||
          ranges > uint64_t(end_ - p_) / 2)  // >= 2 bytes each
        return refuse();
      for (uint64_t i = 0; i < 2 * ranges; ++i)
        if (!varint(a)) return refuse();
      if (type == kQuicFrameAckEcn)
        for (int i = 0; i < 3; ++i)
          if (!varint(a)) return refuse();
      f.largest_acked = largest;
      return true;
    }
    case kQuicFrameResetStream:  // stream id, application error code, final size
      return (varint(a) && varint(b) && varint(c)) || refuse();
    case kQuicFrameStopSending:       // stream id, application error code
    case kQuicFrameMaxStreamData:     // stream id, maximum
    case kQuicFrameStreamDataBlocked:  // stream id, limit
      return (varint(a) && varint(b)) || refuse();
    case kQuicFrameCrypto:  // offset, length, data
      return (varint(a) && varint(b) && bytes(b, f.data)) || refuse();
    case kQuicFrameNewToken:  // length (> 0), token
      return (varint(a) && a > 0 && bytes(a, f.data)) || refuse();
    case kQuicFrameMaxData:
    case kQuicFrameMaxStreamsBidi:
    case kQuicFrameMaxStreamsUni:
    case kQuicFrameDataBlocked:
    case kQuicFrameStreamsBlockedBidi:
    case kQuicFrameStreamsBlockedUni:
      return varint(a) || refuse();
    case kQuicFrameNewConnectionId: {  // 19.15: sequence, retire prior to, length (1 byte, 1..20), cid, token (16)
      if (!varint(f.sequence) || !varint(f.retire_prior_to) || f.retire_prior_to > f.sequence || p_ >= end_)
        return refuse();
      const uint8_t len = *p_++;
      if (len < 1 || len > kQuicMaxCidLen || !bytes(len, f.cid) || !bytes(kQuicResetTokenLen, f.reset_token))
        return refuse();
      return true;
    }
    case kQuicFrameRetireConnectionId:
      return varint(f.sequence) || refuse();
    case kQuicFramePathChallenge:
    case kQuicFramePathResponse:
      if (size_t(end_ - p_) < kQuicPathDataLen) return refuse();
      std::memcpy(f.path.data(), p_, kQuicPathDataLen);
      p_ += kQuicPathDataLen;
      return true;
    case kQuicFrameConnectionClose:  // error code, frame type, reason length, reason
    case kQuicFrameConnectionCloseApp:  // error code, reason length, reason
      if (!varint(f.error_code) || (type == kQuicFrameConnectionClose && !varint(f.frame_type)) || !varint(a) ||
          !bytes(a, f.reason))
        return refuse();
      return true;
    case kQuicFrameDatagram:
      f.data = {p_, size_t(end_ - p_)};
      p_ = end_;
      return true;
    case kQuicFrameDatagramLen:
      return (varint(a) && bytes(a, f.data)) || refuse();
    default:
      if (type >= kQuicFrameStream && type <= kQuicFrameStream + 7) {  // 19.8: id, [offset], [length], data
        if (!varint(a) || ((type & 0x04) && !varint(b))) return refuse();
        uint64_t len = uint64_t(end_ - p_);
        if ((type & 0x02) && !varint(len)) return refuse();
        return bytes(len, f.data) || refuse();
      }
      return refuse();  // 12.4: an unknown frame type is a FRAME_ENCODING_ERROR
  }
}

QuicPayload quic_parse_payload(std::span<const uint8_t> payload) {
  QuicPayload r;
  if (payload.empty()) return r;  // a packet without frames (RFC 9000 12.4: PROTOCOL_VIOLATION)
  // The data packet first, without the walker: one DATAGRAM frame, to the end (0x30) or with its Length (0x31) and
  // only PADDING after it. The same verdict the walk below gives (the fuzz harness compares them); anything else is
  // walked.
  if (payload[0] == kQuicFrameDatagram || payload[0] == kQuicFrameDatagramLen) {
    const uint8_t* p = payload.data() + 1;
    const uint8_t* end = payload.data() + payload.size();
    uint64_t len = uint64_t(end - p);
    if (payload[0] == kQuicFrameDatagram || (quic_read_varint(p, end, len) && len <= uint64_t(end - p))) {
      const uint8_t* q = p + len;
      while (q < end && *q == kQuicFramePadding) ++q;
      if (q == end) {
        r.kind = QuicPayload::Kind::Datagram;
        r.ack_eliciting = true;
        r.probing_only = false;
        r.datagrams = 1;
        r.datagram_offset = uint32_t(p - payload.data());
        r.datagram_len = uint32_t(len);
        return r;
      }
    }
  }
  QuicFrameReader reader(payload);
  QuicFrame f;
  bool slow = false;
  while (reader.next(f)) {
    if (quic_ack_eliciting(f.type)) r.ack_eliciting = true;
    if (f.type != kQuicFramePadding && f.type != kQuicFramePathChallenge && f.type != kQuicFramePathResponse &&
        f.type != kQuicFrameNewConnectionId)
      r.probing_only = false;
    if (f.type == kQuicFrameAck || f.type == kQuicFrameAckEcn) {
      r.has_ack = true;
      r.largest_acked = f.largest_acked;
    } else if (f.type == kQuicFrameDatagram || f.type == kQuicFrameDatagramLen) {
      if (r.datagrams++ == 0) {
        r.datagram_offset = uint32_t(f.data.data() - payload.data());
        r.datagram_len = uint32_t(f.data.size());
      } else {
        slow = true;  // a second inner packet: the fast path hands on one per packet
      }
    } else if (!quic_fast_path_frame(f.type)) {
      slow = true;
    }
  }
  if (reader.malformed()) return QuicPayload{};
  r.kind = slow ? QuicPayload::Kind::SlowPath : r.datagrams ? QuicPayload::Kind::Datagram : QuicPayload::Kind::NoDatagram;
  return r;
}

size_t quic_write_path_frame(uint8_t type, const std::array<uint8_t, kQuicPathDataLen>& data, std::span<uint8_t> out) {
  if (out.size() < 1 + kQuicPathDataLen) return 0;
  out[0] = type;
  std::memcpy(out.data() + 1, data.data(), kQuicPathDataLen);
  return 1 + kQuicPathDataLen;
}

size_t quic_write_ack(const ReplayWindow& received, uint64_t ack_delay, uint32_t max_ranges, std::span<uint8_t> out) {
  if (received.empty() || max_ranges == 0) return 0;
  constexpr uint32_t kMaxRanges = 64;
  struct Range {
    uint64_t hi, lo;
  };
  Range ranges[kMaxRanges];
  uint32_t n = 0;
  const uint64_t floor = received.lowest_tracked();
  uint64_t pn = received.top();  // seen
  for (;;) {
    Range r{pn, pn};
    while (r.lo > floor && received.seen(r.lo - 1)) --r.lo;
    ranges[n++] = r;
    if (n == max_ranges || n == kMaxRanges || r.lo <= floor + 1) break;
    pn = r.lo - 2;  // r.lo - 1 was not seen
    while (pn > floor && !received.seen(pn)) --pn;
    if (!received.seen(pn)) break;
  }
  // The frame: type, Largest Acknowledged, ACK Delay, ACK Range Count, First ACK Range, then (Gap, ACK Range Length)
  // per further range; Gap = the previous range's smallest - this range's largest - 2 (19.3.1).
  auto size_with = [&](uint32_t k) {
    size_t len = 1 + quic_varint_len(ranges[0].hi) + quic_varint_len(ack_delay) + quic_varint_len(k - 1) +
                 quic_varint_len(ranges[0].hi - ranges[0].lo);
    for (uint32_t i = 1; i < k; ++i)
      len += quic_varint_len(ranges[i - 1].lo - ranges[i].hi - 2) + quic_varint_len(ranges[i].hi - ranges[i].lo);
    return len;
  };
  while (n > 0 && size_with(n) > out.size()) --n;
  if (n == 0 || ack_delay > kQuicVarintMax) return 0;
  uint8_t* p = out.data();
  *p++ = kQuicFrameAck;
  p += quic_write_varint(p, ranges[0].hi);
  p += quic_write_varint(p, ack_delay);
  p += quic_write_varint(p, n - 1);
  p += quic_write_varint(p, ranges[0].hi - ranges[0].lo);
  for (uint32_t i = 1; i < n; ++i) {
    p += quic_write_varint(p, ranges[i - 1].lo - ranges[i].hi - 2);
    p += quic_write_varint(p, ranges[i].hi - ranges[i].lo);
  }
  return size_t(p - out.data());
}

QuicDatagramCodec::QuicDatagramCodec(const Config& c)
    : tx_dcid_(c.tx_dcid),
      tx_pn_len_(c.tx_pn_len),
      tx_hp_(c.hp_cipher, c.tx_hp),
      rx_hp_(c.hp_cipher, c.rx_hp) {
  if (c.rx_cid_tails.size() <= kQuicMaxRxCids) {
    for (const auto& t : c.rx_cid_tails) std::memcpy(&rx_tails_[n_rx_tails_++], t.data(), 4);
  }
  if (tx_pn_len_ >= 1 && tx_pn_len_ <= 4) layout_.header_len = uint32_t(kQuicPnOffset + tx_pn_len_);
}

void QuicDatagramCodec::write_header(uint8_t* frame, const FrameMeta& m) const {
  frame[0] = uint8_t(kQuicFixedBit | (m.flags & kQuicFlagSpin ? kQuicSpinBit : 0) |
                     (m.flags & kQuicFlagKeyPhase ? kQuicKeyPhaseBit : 0) | (tx_pn_len_ - 1));
  std::memcpy(frame + 1, tx_dcid_.data(), kQuicCidLen);
  if (tx_pn_len_ == 4) {
    store_be32(frame + kQuicPnOffset, uint32_t(m.counter));  // what dpgw sends: one store
    return;
  }
  for (uint32_t i = 0; i < tx_pn_len_; ++i) frame[kQuicPnOffset + i] = uint8_t(m.counter >> (8 * (tx_pn_len_ - 1 - i)));
}

void QuicDatagramCodec::protect(std::span<uint8_t> frame) const {
  if (frame.size() < kQuicMinPacket) return;
  uint8_t mask[kHpMaskLen];
  if (!tx_hp_.mask(frame.data() + kQuicSampleOffset, mask)) {
    // Not expected once ok(); a packet left without header protection would not open at the peer, so make
    // sure it cannot pass as one: clear the fixed bit.
    frame[0] = 0;
    return;
  }
  quic_protect_header(frame[0], frame.data() + kQuicPnOffset, mask);
}

bool QuicDatagramCodec::sample_of(std::span<const uint8_t> frame, uint8_t sample[kHpSampleLen]) {
  if (frame.size() < kQuicMinPacket) return false;
  std::memcpy(sample, frame.data() + kQuicSampleOffset, kHpSampleLen);
  return true;
}

FrameError QuicDatagramCodec::read_header(std::span<uint8_t> frame, uint64_t largest, FrameMeta& m) const {
  if (frame.size() < kQuicMinPacket) return FrameError::Short;
  if (frame[0] & kQuicHeaderForm) return FrameError::LongHeader;
  if (!(frame[0] & kQuicFixedBit)) return FrameError::BadFixedBit;
  if (!accepts_cid(frame)) return FrameError::BadConnectionId;  // before AES
  uint8_t mask[kHpMaskLen];
  if (!rx_hp_.mask(frame.data() + kQuicSampleOffset, mask)) return FrameError::BadConnectionId;  // not ok(): no key
  return read_header_masked(frame, mask, largest, m);
}

FrameError QuicDatagramCodec::read_header_masked(std::span<uint8_t> frame, const uint8_t mask[5], uint64_t largest,
                                                 FrameMeta& m) const {
  if (frame.size() < kQuicMinPacket) return FrameError::Short;
  if (frame[0] & kQuicHeaderForm) return FrameError::LongHeader;
  if (!(frame[0] & kQuicFixedBit)) return FrameError::BadFixedBit;
  if (!accepts_cid(frame)) return FrameError::BadConnectionId;
  const uint32_t pn_len = quic_unprotect_header(frame[0], frame.data() + kQuicPnOffset, mask);
  uint64_t truncated = 0;
  for (uint32_t i = 0; i < pn_len; ++i) truncated = truncated << 8 | frame[kQuicPnOffset + i];
  const uint64_t pn = quic_decode_pn(truncated, pn_len, largest);
  if (pn > kQuicMaxPacketNumber) return FrameError::BadPacketNumber;
  m.type = FrameType::Data;
  m.flags = uint8_t((frame[0] & kQuicKeyPhaseBit ? kQuicFlagKeyPhase : 0) | (frame[0] & kQuicSpinBit ? kQuicFlagSpin : 0));
  m.receiver_index = load_be32(frame.data() + 1);
  m.counter = pn;
  return FrameError::None;
}

bool QuicDatagramCodec::read_inner(std::span<uint8_t> frame, InnerHeader& ih, std::span<uint8_t>& packet) const {
  if (frame.size() < kQuicMinPacket || (frame[0] & kQuicShortReserved)) return false;  // 17.3.1: PROTOCOL_VIOLATION
  const QuicPayload p = payload(frame);
  if (p.kind != QuicPayload::Kind::Datagram) return false;
  return read_inner_plaintext(frame.subspan(aad_len(frame) + p.datagram_offset, p.datagram_len), ih, packet);
}

bool QuicDatagramCodec::read_datagram(std::span<uint8_t> frame, const QuicPayload& p, InnerHeader& ih,
                                      std::span<uint8_t>& packet) {
  std::span<uint8_t> data;
  return datagram_data(frame, p, data) && read_inner_plaintext(data, ih, packet);
}

bool QuicDatagramCodec::datagram_data(std::span<uint8_t> frame, const QuicPayload& p, std::span<uint8_t>& data) {
  if (frame.size() < kQuicMinPacket || (frame[0] & kQuicShortReserved) || !p.datagrams ||
      (p.kind != QuicPayload::Kind::Datagram && p.kind != QuicPayload::Kind::SlowPath))
    return false;
  data = frame.subspan(aad_len(frame) + p.datagram_offset, p.datagram_len);
  return true;
}

}  // namespace dptun
