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
    case FrameError::LongHeader: return "long_header";
    case FrameError::BadFixedBit: return "bad_fixed_bit";
    case FrameError::BadConnectionId: return "bad_connection_id";
    case FrameError::BadPacketNumber: return "bad_packet_number";
  }
  return "unknown";
}

FrameError RelayCodec::read_header(std::span<uint8_t> f, uint64_t, FrameMeta& m) const {
  const uint8_t* frame = f.data();
  const size_t len = f.size();
  if (len < kLayout.frame_len(0)) return FrameError::Short;
  if (frame[0] != kRelayVersion) return FrameError::BadVersion;
  uint8_t type = frame[1];
  m.type = FrameType(type);
  m.flags = frame[2];
  m.receiver_index = load_be32(frame + 4);
  m.counter = load_be64(frame + 8);
  switch (m.type) {
    case FrameType::Data:
      // inner header + at least a minimal IPv4 header
      if (len < kLayout.data_overhead() + 20) return FrameError::BadLength;
      break;
    case FrameType::Keepalive:
      if (len != kLayout.frame_len(0)) return FrameError::BadLength;
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
