// Relay frame v1 (docs/protocol.md): 16-byte cleartext header (version, type, flags, receiver index,
// counter), then AES-GCM ciphertext of [12-byte inner header | inner IP packet], then the 16-byte tag.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include "common/bytes.hpp"
#include "crypto/key_schedule.hpp"
#include "proto/frame_codec.hpp"

namespace dptun {

inline constexpr uint8_t kRelayVersion = 1;
inline constexpr size_t kRelayHeaderLen = 16;
inline constexpr size_t kInnerHeaderLen = 12;
inline constexpr size_t kRelayTagLen = 16;
// Bytes a data frame adds around the inner IP packet, inside the outer UDP payload.
inline constexpr size_t kRelayFrameOverhead = kRelayHeaderLen + kInnerHeaderLen + kRelayTagLen;  // 44
// ... and with the outer IPv4 + UDP headers: what the underlay MTU loses.
inline constexpr size_t kUnderlayOverhead = 20 + 8 + kRelayFrameOverhead;  // 72
// The MSS that keeps a full TCP segment (IPv4 and TCP headers without options: 40 bytes) inside one underlay
// packet of `underlay_mtu` bytes once it is encapsulated: what dpgw clamps tunnelled SYNs to and offers clients.
inline constexpr uint16_t inner_tcp_mss(uint16_t underlay_mtu) {
  return uint16_t(underlay_mtu - kUnderlayOverhead - 40);
}
inline constexpr uint16_t kDefaultTunnelPort = 51900;

// Header flags.
inline constexpr uint8_t kFlagKeyPhase = 0x01;       // epoch & 1 of the counter
inline constexpr uint8_t kFlagKeepaliveReply = 0x02; // a keepalive answering the peer's keepalive

// Inner header flags.
inline constexpr uint8_t kInnerFlowNew = 0x01;    // first packet of a flow
inline constexpr uint8_t kInnerFlowClose = 0x02;  // the sender removed the flow
inline constexpr uint8_t kInnerHasName = 0x04;    // the plaintext ends with a name trailer: [hostname][length byte]
inline constexpr uint8_t kInnerDirect = 0x08;     // a visitor's flow to the inner destination itself (direct mode)
inline constexpr size_t kMaxNameTrailer = 254;    // 253-byte name + its length

struct InnerHeader {
  uint64_t flow_id = 0;  // chosen by the gateway; the agent echoes it on return traffic
  uint8_t proto = 0;     // IP protocol of the inner packet (6 TCP, 17 UDP)
  uint8_t flags = 0;
  uint16_t service = 0;  // target service / hostname id (0: the inner destination is the target)
};

inline void encode_relay_header(uint8_t* out, const FrameMeta& m) {
  out[0] = kRelayVersion;
  out[1] = uint8_t(m.type);
  out[2] = uint8_t((m.flags & ~kFlagKeyPhase) | (epoch_of(m.counter) & 1 ? kFlagKeyPhase : 0));
  out[3] = 0;
  store_be32(out + 4, m.receiver_index);
  store_be64(out + 8, m.counter);
}

// Validates version, type, key phase and the minimum length for the type.
FrameError decode_relay_header(const uint8_t* frame, size_t len, FrameMeta& m);

inline void encode_inner_header(uint8_t* out, const InnerHeader& h) {
  store_be64(out, h.flow_id);
  out[8] = h.proto;
  out[9] = h.flags;
  store_be16(out + 10, h.service);
}

inline InnerHeader decode_inner_header(const uint8_t* in) {
  return InnerHeader{load_be64(in), in[8], in[9], load_be16(in + 10)};
}

// The name trailer (kInnerHasName): the hostname a flow was routed by, after the inner IP packet, for the far end
// to choose its target by (agent-side routing) or a rule by (visitors). Writes it at `out`; returns its length.
inline size_t write_name_trailer(uint8_t* out, std::string_view name) {
  const size_t n = name.size() > 253 ? 253 : name.size();
  std::memcpy(out, name.data(), n);
  out[n] = uint8_t(n);
  return n + 1;
}
// Reads a name trailer off the end of `bytes` (the plaintext after the inner header); `rest` becomes what is
// left (the IP packet). False when the trailer does not fit.
inline bool read_name_trailer(std::span<const uint8_t> bytes, std::string_view& name, size_t& rest) {
  if (bytes.empty()) return false;
  const size_t n = bytes.back();
  if (n == 0 || n > 253 || n + 1 > bytes.size()) return false;  // a DNS name is at most 253 bytes
  rest = bytes.size() - n - 1;
  name = std::string_view(reinterpret_cast<const char*>(bytes.data() + rest), n);
  return true;
}

class RelayFrameCodec final : public FrameCodec {
 public:
  size_t header_len() const override { return kRelayHeaderLen; }
  size_t trailer_len() const override { return kRelayTagLen; }
  void write_header(std::span<uint8_t> out, const FrameMeta& meta) const override {
    encode_relay_header(out.data(), meta);
  }
  FrameError read_header(std::span<const uint8_t> frame, FrameMeta& meta) const override {
    return decode_relay_header(frame.data(), frame.size(), meta);
  }
};

}  // namespace dptun
