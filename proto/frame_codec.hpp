// The seam between tunnel framings (docs/protocol.md): relay frame v1 (proto/relay_frame.hpp), and the QUIC
// short-header DATAGRAM framing (proto/quic_short_header.hpp: dpgw sends and receives it). dpgw and
// dpagent write and read tunnel frames only through a codec that satisfies `FrameCodec`; no other code knows
// where a header ends or how long a tag is.
//
// Whatever the framing, a data frame is, from its first byte:
//   [header: cleartext, the AEAD's AAD][prefix | inner header | inner IP packet [| name trailer]: encrypted][tag]
// The prefix is what a framing carries in front of the inner header (QUIC: the DATAGRAM frame's type byte); the
// inner header and the name trailer below are the same in every framing. Multi-byte fields are big-endian.
#pragma once
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include "common/bytes.hpp"
#include "crypto/aead.hpp"

namespace dptun {

enum class FrameType : uint8_t { Data = 1, Keepalive = 2, Control = 3 };

// What a framing carries in cleartext, whatever its wire layout.
struct FrameMeta {
  FrameType type = FrameType::Data;
  uint8_t flags = 0;
  uint32_t receiver_index = 0;  // selects the receiver's session (a QUIC framing reads it from the DCID; it writes the
                                //   DCID the peer issued instead)
  uint64_t counter = 0;         // the AEAD nonce counter (a QUIC framing: the full packet number)
};

enum class FrameError : uint8_t {
  None = 0,
  Short,        // shorter than header + tag
  BadVersion,
  BadType,
  BadKeyPhase,  // key-phase flag disagrees with the counter's epoch
  BadLength,    // length impossible for the frame type
  // QUIC framing (proto/quic_short_header.hpp):
  LongHeader,       // a long-header packet (handshake, 0-RTT, version negotiation): the slow path's
  BadFixedBit,      // the fixed bit is 0 (RFC 9000 17.3.1: not QUIC v1)
  BadConnectionId,  // a DCID that is not the connection's
  BadPacketNumber,  // the rebuilt packet number is beyond 2^62 - 1
};

const char* frame_error_name(FrameError e);

// The inner header: the first encrypted bytes after the prefix, 12 bytes.
//   0: flow id (8)   8: IP protocol of the inner packet (1)   9: flags (1)   10: reserved, sent as 0, ignored (2)
inline constexpr size_t kInnerHeaderLen = 12;
inline constexpr uint8_t kInnerFlowNew = 0x01;    // first packet of a flow
inline constexpr uint8_t kInnerFlowClose = 0x02;  // the sender removed the flow
inline constexpr uint8_t kInnerHasName = 0x04;    // the plaintext ends with a name trailer: [hostname][length byte]
inline constexpr uint8_t kInnerDirect = 0x08;     // a visitor's flow to the inner destination itself (direct mode)
inline constexpr size_t kMaxNameTrailer = 254;    // 253-byte name + its length

struct InnerHeader {
  uint64_t flow_id = 0;  // chosen by the gateway; the agent echoes it on return traffic
  uint8_t proto = 0;     // IP protocol of the inner packet (6 TCP, 17 UDP, 1 ICMP errors)
  uint8_t flags = 0;     // kInner*
};

inline void encode_inner_header(uint8_t* out, const InnerHeader& h) {
  store_be64(out, h.flow_id);
  out[8] = h.proto;
  out[9] = h.flags;
  out[10] = 0;
  out[11] = 0;
}
inline InnerHeader decode_inner_header(const uint8_t* in) { return InnerHeader{load_be64(in), in[8], in[9]}; }

// The name trailer (kInnerHasName): the hostname a flow was routed by, after the inner IP packet, for the far end
// to choose its target by (agent-side routing) or a rule by (visitors). Writes it at `out`; returns its length.
inline size_t write_name_trailer(uint8_t* out, std::string_view name) {
  const size_t n = name.size() > 253 ? 253 : name.size();
  std::memcpy(out, name.data(), n);
  out[n] = uint8_t(n);
  return n + 1;
}
// Reads a name trailer off the end of `bytes` (the inner packet and its trailer); `rest` becomes what is left (the
// IP packet). False when the trailer does not fit.
inline bool read_name_trailer(std::span<const uint8_t> bytes, std::string_view& name, size_t& rest) {
  if (bytes.empty()) return false;
  const size_t n = bytes.back();
  if (n == 0 || n > 253 || n + 1 > bytes.size()) return false;  // a DNS name is at most 253 bytes
  rest = bytes.size() - n - 1;
  name = std::string_view(reinterpret_cast<const char*>(bytes.data() + rest), n);
  return true;
}

// A name trailer copied off its packet (whose bytes are about to move or be freed): the name, in storage of its own.
struct NameCopy {
  char bytes[kMaxNameTrailer];
  std::string_view name;
};
// read_name_trailer into `out`. (Not copyable: `name` points into `bytes`.)
inline bool copy_name_trailer(std::span<const uint8_t> packet, NameCopy& out, size_t& rest) {
  std::string_view n;
  if (!read_name_trailer(packet, n, rest)) return false;
  std::memcpy(out.bytes, n.data(), n.size());
  out.name = std::string_view(out.bytes, n.size());
  return true;
}

// The plaintext of a data frame, the same in every framing: what a relay frame encrypts behind its header, and
// exactly the data of a QUIC DATAGRAM frame (RFC 9221 section 4; dpagent hands it to ngtcp2 as it is):
//   inner header (12) | inner IP packet | name trailer (with kInnerHasName)
// The one place that lays it out; codecs and dpagent's QUIC path build and read it only through these.
inline constexpr size_t kMinInnerPlaintext = kInnerHeaderLen + 20;  // an inner header and a minimal IPv4 header
// Where the inner packet goes in a plaintext starting at `plaintext`.
inline uint8_t* inner_packet_at(uint8_t* plaintext) { return plaintext + kInnerHeaderLen; }
// The bytes a plaintext adds to its inner packet and trailer (its inner header).
inline constexpr size_t inner_plaintext_overhead() { return kInnerHeaderLen; }
// Completes a plaintext whose `packet_len` bytes of inner packet already lie at inner_packet_at(plaintext): writes
// the inner header in front and, when `name` is not empty, the name trailer behind (the caller sets kInnerHasName in
// ih.flags). Returns the plaintext's length.
inline size_t write_inner_plaintext(uint8_t* plaintext, const InnerHeader& ih, size_t packet_len,
                                    std::string_view name) {
  encode_inner_header(plaintext, ih);
  size_t len = kInnerHeaderLen + packet_len;
  if (!name.empty()) len += write_name_trailer(plaintext + len, name);
  return len;
}
// Reads a plaintext: the inner header, and `packet` = the inner packet with its trailer (read_name_trailer splits
// them). False when it is shorter than kMinInnerPlaintext.
inline bool read_inner_plaintext(std::span<uint8_t> plaintext, InnerHeader& ih, std::span<uint8_t>& packet) {
  if (plaintext.size() < kMinInnerPlaintext) return false;
  ih = decode_inner_header(plaintext.data());
  packet = plaintext.subspan(kInnerHeaderLen);
  return true;
}

// Where the parts of the frames a codec sends lie. Per codec (the QUIC framing: per connection, by the packet
// number length it sends; what it receives varies per packet and only its read_* steps know).
struct FrameLayout {
  uint32_t header_len;  // cleartext bytes in front, authenticated as AAD
  uint32_t prefix_len;  // encrypted bytes in front of the inner header
  uint32_t tag_len;     // AEAD tag behind
  constexpr uint32_t inner_offset() const { return header_len + prefix_len; }          // the inner header
  constexpr uint32_t packet_offset() const { return inner_offset() + uint32_t(kInnerHeaderLen); }  // the packet
  // Bytes a data frame adds around its inner packet (and name trailer).
  constexpr uint32_t data_overhead() const { return packet_offset() + tag_len; }
  // The encrypted bytes of a data frame carrying `packet_len` bytes of inner packet (and name trailer).
  constexpr uint32_t encrypted_len(uint32_t packet_len) const {
    return prefix_len + uint32_t(kInnerHeaderLen) + packet_len;
  }
  // The whole frame around `encrypted` bytes (a keepalive: 0).
  constexpr uint32_t frame_len(uint32_t encrypted) const { return header_len + encrypted + tag_len; }
};

// A tunnel framing. Sending a frame:
//   write_inner(frame, ih)               the prefix and inner header, in front of a packet at packet_offset()
//   write_header(frame, meta)            the cleartext header, once the counter is reserved
//   seal_op(frame, encrypted_len, iv)    the AEAD op that encrypts in place and writes the tag (run in a burst)
//   protect(frame)                       after encryption (a QUIC framing applies header protection here)
// Receiving one:
//   receiver_of(frame, index)            the receiver's session, read before anything is decrypted
//   read_header(frame, largest, meta)    validates and decodes the header; `largest` is the highest counter the
//                                        session accepted (a QUIC framing removes header protection and rebuilds
//                                        the packet number from it)
//   open_op(frame, iv)                   the AEAD op that authenticates and decrypts in place
//   read_inner(frame, ih, packet)        after decryption: the inner header and the packet with its trailer
template <class C>
concept FrameCodec = requires(const C c, uint8_t* p, std::span<uint8_t> frame, std::span<const uint8_t> cframe,
                              const FrameMeta& meta, FrameMeta& meta_out, const InnerHeader& ih, InnerHeader& ih_out,
                              std::span<uint8_t>& packet, uint32_t& index, uint32_t n, uint64_t largest,
                              const uint8_t* iv) {
  { c.layout() } -> std::convertible_to<FrameLayout>;
  c.write_inner(p, ih);
  c.write_header(p, meta);
  { c.seal_op(p, n, iv) } -> std::same_as<AeadOp>;
  c.protect(frame);
  { c.receiver_of(cframe, index) } -> std::same_as<bool>;
  { c.read_header(frame, largest, meta_out) } -> std::same_as<FrameError>;
  { c.open_op(frame, iv) } -> std::same_as<AeadOp>;
  { c.read_inner(frame, ih_out, packet) } -> std::same_as<bool>;
};

}  // namespace dptun
