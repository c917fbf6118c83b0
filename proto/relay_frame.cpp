#include "proto/relay_frame.hpp"

namespace dptun {

const char* frame_error_name(FrameError e) {
  switch (e) {
    case FrameError::None: return "none";
    case FrameError::Short: return "short";
    case FrameError::BadVersion: return "bad_version";
    case FrameError::BadType: return "bad_type";
    case FrameError::BadKeyPhase: return "bad_key_phase";
    case FrameError::BadLength: return "bad_length";
  }
  return "unknown";
}

FrameError decode_relay_header(const uint8_t* frame, size_t len, FrameMeta& m) {
  if (len < kRelayHeaderLen + kRelayTagLen) return FrameError::Short;
  if (frame[0] != kRelayVersion) return FrameError::BadVersion;
  uint8_t type = frame[1];
  m.type = FrameType(type);
  m.flags = frame[2];
  m.receiver_index = load_be32(frame + 4);
  m.counter = load_be64(frame + 8);
  switch (m.type) {
    case FrameType::Data:
      // inner header + at least a minimal IPv4 header
      if (len < kRelayFrameOverhead + 20) return FrameError::BadLength;
      break;
    case FrameType::Keepalive:
      if (len != kRelayHeaderLen + kRelayTagLen) return FrameError::BadLength;
      break;
    case FrameType::Control:
      break;
    default:
      return FrameError::BadType;
  }
  if (bool(m.flags & kFlagKeyPhase) != bool(epoch_of(m.counter) & 1)) return FrameError::BadKeyPhase;
  return FrameError::None;
}

}  // namespace dptun
