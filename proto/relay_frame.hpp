// Relay frame v1 (docs/protocol.md "Relay frame"): a 16-byte cleartext header, then the AES-GCM ciphertext of
// [12-byte inner header | inner IP packet [| name trailer]] (proto/frame_codec.hpp), then the 16-byte tag.
// Header: 0 version (1) | 1 type (1) | 2 flags (1) | 3 reserved, 0 (1) | 4 receiver index (4) | 8 counter (8),
// big-endian; the whole header is the AEAD's AAD.
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
inline constexpr uint16_t kDefaultTunnelPort = 51900;

// Header flags.
inline constexpr uint8_t kFlagKeyPhase = 0x01;       // epoch & 1 of the counter
inline constexpr uint8_t kFlagKeepaliveReply = 0x02; // a keepalive answering the peer's keepalive
// A pair frame (docs/nat-traversal.md "The pair's data"): a data frame between the two ends of a direct-path pair
// (a visitor and an agent), keyed from the pair's secret; its receiver index is the pair id. It travels straight to
// the peer on a direct path, else through dpgw, which forwards it to the pair's other end unopened.
inline constexpr uint8_t kFlagPair = 0x04;

// The relay frame v1 codec (the FrameCodec of proto/frame_codec.hpp). Stateless: one layout for every session.
class RelayCodec {
  static constexpr uint32_t kHeaderLen = 16;
  static constexpr uint32_t kTagLen = 16;

 public:
  static constexpr FrameLayout kLayout{kHeaderLen, 0, kTagLen};
  constexpr const FrameLayout& layout() const { return kLayout; }

  void write_inner(uint8_t* frame, const InnerHeader& ih) const { encode_inner_header(frame + kHeaderLen, ih); }
  void write_header(uint8_t* frame, const FrameMeta& m) const {
    frame[0] = kRelayVersion;
    frame[1] = uint8_t(m.type);
    frame[2] = uint8_t((m.flags & ~kFlagKeyPhase) | (epoch_of(m.counter) & 1 ? kFlagKeyPhase : 0));
    frame[3] = 0;
    store_be32(frame + 4, m.receiver_index);
    store_be64(frame + 8, m.counter);
  }
  AeadOp seal_op(uint8_t* frame, uint32_t encrypted_len, const uint8_t* iv) const {
    return AeadOp{frame + kHeaderLen, encrypted_len, iv, frame, frame + kHeaderLen + encrypted_len};
  }
  void protect(std::span<uint8_t>) const {}  // relay headers travel unprotected

  // False for what cannot be a relay frame of any session: shorter than a header and tag, or another version.
  bool receiver_of(std::span<const uint8_t> frame, uint32_t& index) const {
    if (frame.size() < kLayout.frame_len(0) || frame[0] != kRelayVersion) return false;
    index = load_be32(frame.data() + 4);
    return true;
  }
  // Validates version, type, key phase and the length for the type (a data frame holds at least an IPv4 header).
  FrameError read_header(std::span<uint8_t> frame, uint64_t largest, FrameMeta& m) const;
  // `frame` passed read_header.
  AeadOp open_op(std::span<uint8_t> frame, const uint8_t* iv) const {
    const uint32_t len = uint32_t(frame.size());
    return AeadOp{frame.data() + kHeaderLen, len - kHeaderLen - kTagLen, iv, frame.data(),
                  frame.data() + len - kTagLen};
  }
  // A data frame that passed read_header, decrypted.
  bool read_inner(std::span<uint8_t> frame, InnerHeader& ih, std::span<uint8_t>& packet) const {
    return read_inner_plaintext(frame.subspan(kHeaderLen, frame.size() - kHeaderLen - kTagLen), ih, packet);
  }
};
static_assert(FrameCodec<RelayCodec>);

// Bytes a data frame adds around the inner IP packet, inside the outer UDP payload: 44.
inline constexpr size_t kRelayFrameOverhead = RelayCodec::kLayout.data_overhead();
// ... and with the outer IPv4 + UDP headers: what the underlay MTU loses (72).
inline constexpr size_t kUnderlayOverhead = 20 + 8 + kRelayFrameOverhead;
// The MSS that keeps a full TCP segment (IPv4 and TCP headers without options: 40 bytes) inside one underlay
// packet of `underlay_mtu` bytes once it is encapsulated: what dpgw clamps tunnelled SYNs to and offers clients.
inline constexpr uint16_t inner_tcp_mss(uint16_t underlay_mtu) {
  return uint16_t(underlay_mtu - kUnderlayOverhead - 40);
}

}  // namespace dptun
