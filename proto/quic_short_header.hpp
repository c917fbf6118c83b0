// QUIC version 1 short-header (1-RTT) packets carrying one DATAGRAM frame: dptun's second tunnel framing
// (docs/protocol.md "QUIC framing"; RFC 9000 17.3.1, RFC 9001 5.3/5.4, RFC 9221), and the frames of a 1-RTT payload
// (QuicFrameReader: every type of RFC 9000 19, read by the fast path and by dpgw's slow path; the PATH frames dpgw
// writes). Long headers belong to the handshake (ngtcp2 in dpctld and dpagent). Byte order on the wire: big-endian (the packet number, the receiver index in the DCID, varints).
//
//   0: first byte 0 1 S R R K P P (header form 0, fixed bit 1, Spin, Reserved 00, Key phase, pn length - 1)
//   1: Destination Connection ID (kQuicCidLen = 8), as its receiver issued it: dptun's own connection IDs (what
//      dpgw receives) are receiver index (4, big-endian) | the issuer's tail (4); a peer's are its own choice
//   9: truncated packet number (1..4 bytes)
//   9+pn_len: AEAD ciphertext of the frames, then the 16-byte tag; AAD = bytes 0 .. 9+pn_len (unprotected)
// Header protection (RFC 9001 5.4) masks the low 5 bits of byte 0 and the packet number bytes, from a 16-byte
// sample taken 4 bytes after the packet number's start (byte 13).
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "common/bytes.hpp"
#include "crypto/aead.hpp"
#include "crypto/header_protection.hpp"
#include "crypto/replay_window.hpp"
#include "proto/frame_codec.hpp"

namespace dptun {

// ---- Packet numbers (RFC 9000 12.3, 17.1, Appendix A)

inline constexpr uint64_t kQuicMaxPacketNumber = (uint64_t(1) << 62) - 1;

// Bytes (1..4) to send packet number `pn` in, when `largest_acked` is the highest packet number the peer
// acknowledged (`no_ack`: none yet): enough for twice the unacknowledged range (RFC 9000 17.1, Appendix A.2).
// 0 when even 4 bytes are not enough (more than 2^31 packets unacknowledged): the sender must not send.
inline constexpr uint64_t kQuicNoAck = ~uint64_t(0);
uint32_t quic_pn_length(uint64_t pn, uint64_t largest_acked);

// The full packet number of a `pn_len`-byte truncated one, given `largest`, the highest packet number
// accepted in the packet number space (RFC 9000 Appendix A.3: the candidate nearest largest + 1). Before any
// packet was accepted pass kQuicNoAck (expected: 0). May return more than kQuicMaxPacketNumber only when
// `largest` is near it; callers refuse that.
uint64_t quic_decode_pn(uint64_t truncated, uint32_t pn_len, uint64_t largest);

// ---- Header protection (RFC 9001 5.4.1), given the mask (crypto/header_protection.hpp computes it)

inline constexpr size_t kQuicCidLen = 8;           // the DCID length dptun issues and expects (docs/protocol.md)
// The most connection IDs of one connection a receiver accepts at once (RFC 9000 5.1.1): the issuer hands out at
// most this many (ngtcp2's pool of source connection IDs holds 8 too), each index | a tail of its own.
inline constexpr size_t kQuicMaxRxCids = 8;
// The ack_delay_exponent dptun's server side advertises (dpctld) and dpgw writes its ACK Delay fields with
// (RFC 9000 18.2, 19.3: an ACK's delay is scaled by its SENDER's exponent): 3, the default, units of 8 us.
inline constexpr uint32_t kQuicAckDelayExponent = 3;
inline constexpr size_t kQuicPnOffset = 1 + kQuicCidLen;
inline constexpr size_t kQuicSampleOffset = kQuicPnOffset + 4;               // RFC 9001 5.4.2
inline constexpr size_t kQuicMinPacket = kQuicSampleOffset + kHpSampleLen;  // 29: the sample must fit

inline constexpr uint8_t kQuicHeaderForm = 0x80;  // 1: long header
inline constexpr uint8_t kQuicFixedBit = 0x40;
inline constexpr uint8_t kQuicSpinBit = 0x20;
inline constexpr uint8_t kQuicShortReserved = 0x18;  // must be 0 after protection is removed (17.3.1)
inline constexpr uint8_t kQuicKeyPhaseBit = 0x04;
inline constexpr uint8_t kQuicPnLenBits = 0x03;

// The bits of the first byte header protection covers: 4 for long headers, 5 for short ones.
inline constexpr uint8_t quic_first_byte_mask_bits(uint8_t first) { return first & kQuicHeaderForm ? 0x0f : 0x1f; }

// Applies header protection to an unprotected header: `first` is byte 0, `pn` the pn_len packet number bytes
// (pn_len from the unprotected first byte). Sender side.
inline void quic_protect_header(uint8_t& first, uint8_t* pn, const uint8_t mask[5]) {
  const uint32_t pn_len = (first & kQuicPnLenBits) + 1u;
  first ^= uint8_t(mask[0] & quic_first_byte_mask_bits(first));
  for (uint32_t i = 0; i < pn_len; ++i) pn[i] ^= mask[1 + i];
}
// Removes it: the packet number length comes from the unmasked first byte. Returns pn_len (1..4).
inline uint32_t quic_unprotect_header(uint8_t& first, uint8_t* pn, const uint8_t mask[5]) {
  first ^= uint8_t(mask[0] & quic_first_byte_mask_bits(first));
  const uint32_t pn_len = (first & kQuicPnLenBits) + 1u;
  for (uint32_t i = 0; i < pn_len; ++i) pn[i] ^= mask[1 + i];
  return pn_len;
}

// The AEAD nonce (RFC 9001 5.3): the 12-byte IV xor the packet number, left-padded to 12 bytes.
inline void quic_nonce(uint8_t out[kAeadIvLen], const uint8_t iv[kAeadIvLen], uint64_t pn) {
  store_be32(out, load_be32(iv));  // the packet number (< 2^62) only reaches the last 8 bytes
  store_be64(out + 4, load_be64(iv + 4) ^ pn);
}

// ---- Frames inside a decrypted 1-RTT payload (RFC 9000 12.4, 19; RFC 9221 4)
// The one place that knows the frames' format: QuicFrameReader walks any payload frame by frame (the fast path's
// quic_parse_payload() and dpgw's slow path on the control lcore both use it); the quic_write_*() functions write
// the frames dpgw sends.

inline constexpr uint8_t kQuicFramePadding = 0x00;
inline constexpr uint8_t kQuicFramePing = 0x01;
inline constexpr uint8_t kQuicFrameAck = 0x02;
inline constexpr uint8_t kQuicFrameAckEcn = 0x03;
inline constexpr uint8_t kQuicFrameResetStream = 0x04;
inline constexpr uint8_t kQuicFrameStopSending = 0x05;
inline constexpr uint8_t kQuicFrameCrypto = 0x06;
inline constexpr uint8_t kQuicFrameNewToken = 0x07;
inline constexpr uint8_t kQuicFrameStream = 0x08;  // 0x08..0x0f: bits OFF 0x04, LEN 0x02, FIN 0x01
inline constexpr uint8_t kQuicFrameMaxData = 0x10;
inline constexpr uint8_t kQuicFrameMaxStreamData = 0x11;
inline constexpr uint8_t kQuicFrameMaxStreamsBidi = 0x12;
inline constexpr uint8_t kQuicFrameMaxStreamsUni = 0x13;
inline constexpr uint8_t kQuicFrameDataBlocked = 0x14;
inline constexpr uint8_t kQuicFrameStreamDataBlocked = 0x15;
inline constexpr uint8_t kQuicFrameStreamsBlockedBidi = 0x16;
inline constexpr uint8_t kQuicFrameStreamsBlockedUni = 0x17;
inline constexpr uint8_t kQuicFrameNewConnectionId = 0x18;
inline constexpr uint8_t kQuicFrameRetireConnectionId = 0x19;
inline constexpr uint8_t kQuicFramePathChallenge = 0x1a;
inline constexpr uint8_t kQuicFramePathResponse = 0x1b;
inline constexpr uint8_t kQuicFrameConnectionClose = 0x1c;     // a transport error: code, frame type, reason
inline constexpr uint8_t kQuicFrameConnectionCloseApp = 0x1d;  // an application's: code, reason
inline constexpr uint8_t kQuicFrameHandshakeDone = 0x1e;
inline constexpr uint8_t kQuicFrameDatagram = 0x30;     // no Length field: the data runs to the packet's end
inline constexpr uint8_t kQuicFrameDatagramLen = 0x31;  // Length (varint), then the data

inline constexpr size_t kQuicPathDataLen = 8;       // PATH_CHALLENGE / PATH_RESPONSE data (RFC 9000 19.17, 19.18)
inline constexpr size_t kQuicMaxCidLen = 20;        // RFC 9000 17.2
inline constexpr size_t kQuicResetTokenLen = 16;    // Stateless Reset Token (RFC 9000 10.3)
inline constexpr size_t kQuicMinPathDatagram = 1200;  // RFC 9000 8.2.1: UDP payload of a datagram that probes a path

// One frame as QuicFrameReader found it; spans point into the payload. Fields other than `type` are set only for
// the frame types that carry them.
struct QuicFrame {
  uint64_t type = 0;  // the frame type (a varint: longer encodings of the same value are allowed, RFC 9000 12.4)
  uint64_t largest_acked = 0;                     // ACK
  std::span<const uint8_t> data;                  // DATAGRAM, STREAM, CRYPTO: the data; NEW_TOKEN: the token
  std::array<uint8_t, kQuicPathDataLen> path{};   // PATH_CHALLENGE, PATH_RESPONSE
  uint64_t error_code = 0;                        // CONNECTION_CLOSE
  uint64_t frame_type = 0;                        // CONNECTION_CLOSE 0x1c: the frame that caused the error
  std::span<const uint8_t> reason;                // CONNECTION_CLOSE: Reason Phrase (UTF-8 by RFC, unchecked)
  uint64_t sequence = 0;                          // NEW_CONNECTION_ID, RETIRE_CONNECTION_ID
  uint64_t retire_prior_to = 0;                   // NEW_CONNECTION_ID
  std::span<const uint8_t> cid;                   // NEW_CONNECTION_ID: the connection ID (1..20 bytes)
  std::span<const uint8_t> reset_token;           // NEW_CONNECTION_ID: 16 bytes
};

// Walks the frames of a decrypted payload, in order. next() returns true with the next frame; false at the end or
// at a frame that does not parse (malformed() then tells which: an unknown frame type, a truncated field, a length
// beyond the payload, a NEW_CONNECTION_ID with a bad length or Retire Prior To above its Sequence Number; RFC 9000
// 12.4: FRAME_ENCODING_ERROR or PROTOCOL_VIOLATION). Reads only inside the payload.
class QuicFrameReader {
 public:
  explicit QuicFrameReader(std::span<const uint8_t> payload)
      : begin_(payload.data()), p_(payload.data()), end_(payload.data() + payload.size()) {}
  bool next(QuicFrame& f);
  bool malformed() const { return malformed_; }
  size_t offset() const { return size_t(p_ - begin_); }  // of the next frame, from the payload's start

 private:
  bool refuse() {
    malformed_ = true;
    return false;
  }
  const uint8_t* begin_;
  const uint8_t* p_;
  const uint8_t* end_;
  bool malformed_ = false;
};

// Is a frame of this type ack-eliciting (RFC 9000 13.2.1: all but ACK, PADDING and CONNECTION_CLOSE)?
inline constexpr bool quic_ack_eliciting(uint64_t type) {
  return type != kQuicFramePadding && type != kQuicFrameAck && type != kQuicFrameAckEcn &&
         type != kQuicFrameConnectionClose && type != kQuicFrameConnectionCloseApp;
}
// Does the fast path take this frame type itself (DATAGRAM, ACK, PADDING, PING)?
inline constexpr bool quic_fast_path_frame(uint64_t type) {
  return type <= kQuicFrameAckEcn || type == kQuicFrameDatagram || type == kQuicFrameDatagramLen;
}

struct QuicPayload {
  enum class Kind : uint8_t {
    Datagram,    // exactly one DATAGRAM frame (with any PADDING, PING, ACK): the fast path's data packet
    NoDatagram,  // only PADDING / PING / ACK (something to acknowledge when ack_eliciting)
    SlowPath,    // another frame type, or more than one DATAGRAM frame: the slow path's (its DATAGRAMs: `datagrams`)
    Malformed,   // a frame that does not parse (FRAME_ENCODING_ERROR), or no frame at all (PROTOCOL_VIOLATION)
  };
  Kind kind = Kind::Malformed;
  bool ack_eliciting = false;  // a frame other than ACK, PADDING, CONNECTION_CLOSE (RFC 9000 13.2.1)
  // Only probing frames: PATH_CHALLENGE, PATH_RESPONSE, NEW_CONNECTION_ID, PADDING (RFC 9000 9.1). Such a packet
  // from a new address does not start a migration (9.3); the agent's probes are answered all the same.
  bool probing_only = true;
  bool has_ack = false;
  uint64_t largest_acked = 0;  // of the last ACK frame, when has_ack
  uint32_t datagrams = 0;      // DATAGRAM frames
  uint32_t datagram_offset = 0;  // the first DATAGRAM frame's data, from the payload's first byte
  uint32_t datagram_len = 0;
};
// `payload`: the decrypted frames (between header and tag). Walks every frame (QuicFrameReader): a slow-path packet
// still tells its ACK and its first DATAGRAM.
QuicPayload quic_parse_payload(std::span<const uint8_t> payload);

// PATH_CHALLENGE (kQuicFramePathChallenge) or PATH_RESPONSE (kQuicFramePathResponse) with `data`: 9 bytes at `out`;
// returns the bytes written, 0 when `out` is shorter.
size_t quic_write_path_frame(uint8_t type, const std::array<uint8_t, kQuicPathDataLen>& data, std::span<uint8_t> out);

// An ACK frame (type 0x02, RFC 9000 19.3) for the packet numbers `received` holds: its contiguous ranges from the
// highest down, at most `max_ranges` of them (>= 1), none below what the window tracks; as many as fit in `out`.
// `ack_delay` is already scaled by the ack_delay_exponent (RFC 9000 18.2; default 3: units of 8 us). Returns the
// bytes written; 0 when the window is empty or `out` cannot hold the first range.
size_t quic_write_ack(const ReplayWindow& received, uint64_t ack_delay, uint32_t max_ranges, std::span<uint8_t> out);

// ---- The peer's limits (RFC 9000 18.2 max_udp_payload_size, RFC 9221 3 max_datagram_frame_size)

// The smallest inner packet (name trailer included) a peer's transport parameters must let one DATAGRAM frame carry
// for a tunnel (RFC 791's 576 bytes, which every host takes); dptun refuses the QUIC framing to smaller limits.
inline constexpr uint32_t kQuicMinPeerPacket = 576;
// dptun's data packets as dpgw sends them: 4-byte packet numbers, the DATAGRAM type 0x30 without Length.
inline constexpr FrameLayout kQuicTxLayout{uint32_t(kQuicPnOffset + 4), 1, uint32_t(kAeadTagLen)};
// The longest inner packet (and name trailer) a packet laid out as `layout` may carry to a peer with these limits:
// the UDP payload is the whole packet, the DATAGRAM frame its type byte (the prefix), inner header and packet.
inline constexpr uint64_t quic_peer_max_packet(const FrameLayout& layout, uint64_t max_udp_payload_size,
                                               uint64_t max_datagram_frame_size) {
  const uint64_t frame_around = layout.prefix_len + kInnerHeaderLen;
  const uint64_t by_udp = max_udp_payload_size > layout.data_overhead() ? max_udp_payload_size - layout.data_overhead() : 0;
  const uint64_t by_frame = max_datagram_frame_size > frame_around ? max_datagram_frame_size - frame_around : 0;
  return by_udp < by_frame ? by_udp : by_frame;
}

// ---- The codec (proto/frame_codec.hpp)

// Meta flags of this framing (FrameMeta::flags).
inline constexpr uint8_t kQuicFlagKeyPhase = 0x01;  // the first byte's Key Phase bit
inline constexpr uint8_t kQuicFlagSpin = 0x02;      // the first byte's Spin bit

// One connection's short-header DATAGRAM framing. What it sends: 1 + 8 + tx_pn_len header bytes (the DCID: the
// peer's connection ID, Config::tx_dcid, all 8 bytes as the peer issued them), the DATAGRAM type byte 0x30 as the
// prefix, the inner header and packet, the tag. What it reads: short headers of any packet number length with its
// own DCID tail; the received DCID's first 4 bytes are FrameMeta::receiver_index.
// layout(), write_inner(), write_header() and seal_op() read only what the constructor set: any number of threads
// may call them at once (dpgw's sending workers all write a session's packets). protect(), read_header() and
// rx_masks() use the OpenSSL header-protection contexts: one thread (dpgw: none sends with protect(), it computes
// its masks with crypto/hp_ipsec_mb.hpp; the session's RX worker reads).
// Receive-side steps differ from relay frames in what they touch (docs/protocol.md "QUIC framing"):
// - receiver_of() needs only the DCID length, so any codec instance answers it for every connection;
// - read_header() removes header protection in place (with the rx key) and rebuilds the packet number from
//   `largest`; afterwards the packet's header is unprotected, and open_op()/aad_len() read its length from it;
// - open_op()'s AAD is 10..13 bytes, by packet number length: the AeadKey opening it must have been made with
//   aad_len == aad_len(frame) (DPDK and ipsec-mb sessions fix the AAD length; a connection needs up to 4 rx keys);
// - read_inner() parses the frames: it succeeds only for Kind::Datagram, with reserved bits 0.
// meta.type is Data after read_header (the frames are encrypted); keepalives (PING-only packets) and the
// key-phase bookkeeping are for the next slice. Not safe for concurrent use (the header-protection contexts).
class QuicDatagramCodec {
 public:
  struct Config {
    std::array<uint8_t, kQuicCidLen> tx_dcid{};  // the peer's connection ID: the DCID of what this codec writes
    // Ours: the tails of every connection ID the connection's peer may send to (1..kQuicMaxRxCids; more, or none,
    // and ok() is false); a packet with another tail is refused (BadConnectionId).
    std::span<const std::array<uint8_t, 4>> rx_cid_tails;
    HpCipher hp_cipher = HpCipher::Aes128;
    std::span<const uint8_t> tx_hp;  // "quic hp" of our 1-RTT secret (RFC 9001 5.1)
    std::span<const uint8_t> rx_hp;  // the peer's
    uint32_t tx_pn_len = 4;          // 1..4: the packet number length this codec sends
  };
  explicit QuicDatagramCodec(const Config& c);
  bool ok() const { return tx_hp_.ok() && rx_hp_.ok() && layout_.header_len != 0 && n_rx_tails_ != 0; }

  const FrameLayout& layout() const { return layout_; }

  void write_inner(uint8_t* frame, const InnerHeader& ih) const {
    frame[layout_.header_len] = kQuicFrameDatagram;
    encode_inner_header(frame + layout_.inner_offset(), ih);
  }
  // A DATAGRAM frame whose data is the application's own bytes, not an inner header and packet (a MASQUE client's
  // HTTP Datagram, docs/masque.md): the frame type in front of data that lies at layout().inner_offset(), to the
  // packet's end; such a packet's encrypted length is app_encrypted_len(data bytes).
  void write_app_datagram(uint8_t* frame) const { frame[layout_.header_len] = kQuicFrameDatagram; }
  uint32_t app_encrypted_len(uint32_t data_len) const { return layout_.prefix_len + data_len; }
  // The application's data that fits where an inner header and `packet_len` bytes of inner packet (a frame budget)
  // would.
  static constexpr uint32_t app_data_len(uint32_t packet_len) { return uint32_t(kInnerHeaderLen) + packet_len; }
  // A short header: Config::tx_dcid (meta.receiver_index is not written: the peer chose its connection ID), the
  // low tx_pn_len bytes of meta.counter (the full packet number: the caller chose tx_pn_len big enough,
  // quic_pn_length()), key phase and spin from meta.flags. Unprotected until protect().
  void write_header(uint8_t* frame, const FrameMeta& m) const;
  AeadOp seal_op(uint8_t* frame, uint32_t encrypted_len, const uint8_t* iv) const {
    const uint32_t h = layout_.header_len;
    return AeadOp{frame + h, encrypted_len, iv, frame, frame + h + encrypted_len};
  }
  // Header protection, after encryption; `frame` is the whole packet (at least kQuicMinPacket bytes, which
  // every data frame is). Does nothing to shorter spans.
  void protect(std::span<uint8_t> frame) const;

  // False for what cannot be a short-header packet of dptun's: shorter than kQuicMinPacket, a long header, or
  // the fixed bit clear. Reads the receiver index from the DCID; decrypts nothing.
  bool receiver_of(std::span<const uint8_t> frame, uint32_t& index) const {
    if (frame.size() < kQuicMinPacket || (frame[0] & (kQuicHeaderForm | kQuicFixedBit)) != kQuicFixedBit)
      return false;
    index = load_be32(frame.data() + 1);
    return true;
  }
  // Whether a packet's DCID (bytes 1..8; `frame` is at least kQuicMinPacket bytes) ends in one of the tails the
  // connection accepts: at most kQuicMaxRxCids 4-byte compares, before any AES.
  bool accepts_cid(std::span<const uint8_t> frame) const {
    uint32_t tail;
    std::memcpy(&tail, frame.data() + 5, 4);
    for (uint32_t i = 0; i < n_rx_tails_; ++i)
      if (rx_tails_[i] == tail) return true;
    return false;
  }
  uint32_t rx_cid_count() const { return n_rx_tails_; }
  // Short, LongHeader, BadFixedBit, BadConnectionId (a DCID tail not accepted), BadPacketNumber (beyond 2^62 - 1);
  // None: header protection is removed in place and `m` holds the receiver index, the full packet number
  // (counter), key phase and spin (flags); type Data.
  FrameError read_header(std::span<uint8_t> frame, uint64_t largest, FrameMeta& m) const;
  // The header protection mask of a received packet (for callers that compute masks in bursts, then call
  // read_header_masked()): copies its sample; false when the packet is too short.
  static bool sample_of(std::span<const uint8_t> frame, uint8_t sample[kHpSampleLen]);
  // The receive side's masks of `n` samples laid side by side (n * kHpSampleLen bytes -> n * kHpMaskLen), in one
  // call: a burst's, for read_header_masked(). False on a crypto failure.
  bool rx_masks(const uint8_t* samples, size_t n, uint8_t* masks) const { return rx_hp_.masks(samples, n, masks); }
  FrameError read_header_masked(std::span<uint8_t> frame, const uint8_t mask[5], uint64_t largest,
                                FrameMeta& m) const;
  // After read_header: the header's length, which is the AAD's.
  static uint32_t aad_len(std::span<const uint8_t> frame) {
    return uint32_t(kQuicPnOffset + (frame[0] & kQuicPnLenBits) + 1);
  }
  // `frame` passed read_header.
  AeadOp open_op(std::span<uint8_t> frame, const uint8_t* iv) const {
    const uint32_t h = aad_len(frame), len = uint32_t(frame.size());
    return AeadOp{frame.data() + h, len - h - uint32_t(kAeadTagLen), iv, frame.data(),
                  frame.data() + len - kAeadTagLen};
  }
  // `frame` passed read_header and open: the frames parse to Kind::Datagram, the reserved bits are 0 and the
  // DATAGRAM frame holds an inner header and at least an IPv4 header. False otherwise (payload() tells why).
  bool read_inner(std::span<uint8_t> frame, InnerHeader& ih, std::span<uint8_t>& packet) const;
  // The same for a packet whose frames parsed to `p` (payload() of `frame`) of any kind with a DATAGRAM: its first
  // DATAGRAM frame's inner packet (a slow-path packet's, which the fast path still delivers).
  static bool read_datagram(std::span<uint8_t> frame, const QuicPayload& p, InnerHeader& ih, std::span<uint8_t>& packet);
  // The same packet's first DATAGRAM frame's data as it is (the application's bytes: a MASQUE client's HTTP
  // Datagram). False when the packet has no DATAGRAM or its reserved bits are set.
  static bool datagram_data(std::span<uint8_t> frame, const QuicPayload& p, std::span<uint8_t>& data);
  // The decrypted frames of a packet that passed read_header and open.
  static QuicPayload payload(std::span<const uint8_t> frame) {
    const uint32_t h = aad_len(frame);
    return quic_parse_payload(frame.subspan(h, frame.size() - h - kAeadTagLen));
  }

 private:
  FrameLayout layout_{0, 1, uint32_t(kAeadTagLen)};
  std::array<uint8_t, kQuicCidLen> tx_dcid_;
  std::array<uint32_t, kQuicMaxRxCids> rx_tails_{};  // as the 4 bytes lie in memory
  uint32_t n_rx_tails_ = 0;
  uint32_t tx_pn_len_;
  HeaderProtectionKey tx_hp_, rx_hp_;
};
static_assert(FrameCodec<QuicDatagramCodec>);

}  // namespace dptun
