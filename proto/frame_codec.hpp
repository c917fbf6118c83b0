// The seam between tunnel framings: relay frame v1 today, QUIC short-header DATAGRAM framing later.
// A framing owns the cleartext header (what the AEAD authenticates as AAD) and the trailer length.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>

namespace dptun {

enum class FrameType : uint8_t { Data = 1, Keepalive = 2, Control = 3 };

// What a framing must carry in cleartext, whatever its wire layout.
struct FrameMeta {
  FrameType type = FrameType::Data;
  uint8_t flags = 0;
  uint32_t receiver_index = 0;  // selects the receiver's session (a QUIC framing maps its connection id here)
  uint64_t counter = 0;         // nonce counter (a QUIC framing maps its packet number here)
};

enum class FrameError : uint8_t {
  None = 0,
  Short,        // shorter than header + tag
  BadVersion,
  BadType,
  BadKeyPhase,  // key-phase flag disagrees with the counter's epoch
  BadLength,    // length impossible for the frame type
};

const char* frame_error_name(FrameError e);

class FrameCodec {
 public:
  virtual ~FrameCodec() = default;
  virtual size_t header_len() const = 0;   // cleartext bytes, authenticated as AAD
  virtual size_t trailer_len() const = 0;  // AEAD tag
  virtual void write_header(std::span<uint8_t> out, const FrameMeta& meta) const = 0;
  // Validates and decodes the cleartext header of a whole frame (header + ciphertext + tag).
  virtual FrameError read_header(std::span<const uint8_t> frame, FrameMeta& meta) const = 0;
};

}  // namespace dptun
