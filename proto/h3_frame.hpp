// HTTP/3 framing (RFC 9114): frames are Type (varint), Length (varint), Payload (7.1); a unidirectional stream starts
// with its type (a varint, 6.2); SETTINGS is a list of (identifier, value) varint pairs (7.2.4). Varints: RFC 9000 16
// (proto/quic_varint.hpp). The one place dptun reads and writes HTTP/3 frames (dpctld's HTTP/3 front end, dpagent udp).
// Slow path: the reader copies the frames it buffers. Settings and error codes: RFC 9114 7.2.4.1 and 8.1, RFC 9204 5,
// RFC 9220 3 (ENABLE_CONNECT_PROTOCOL), RFC 9297 2.1.1 (H3_DATAGRAM).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

namespace dptun {

// Frame types (RFC 9114 7.2).
inline constexpr uint64_t kH3FrameData = 0x00;
inline constexpr uint64_t kH3FrameHeaders = 0x01;
inline constexpr uint64_t kH3FrameCancelPush = 0x03;
inline constexpr uint64_t kH3FrameSettings = 0x04;
inline constexpr uint64_t kH3FramePushPromise = 0x05;
inline constexpr uint64_t kH3FrameGoaway = 0x07;
inline constexpr uint64_t kH3FrameMaxPushId = 0x0d;

// Unidirectional stream types (RFC 9114 6.2, RFC 9204 4.2).
inline constexpr uint64_t kH3StreamControl = 0x00;
inline constexpr uint64_t kH3StreamPush = 0x01;
inline constexpr uint64_t kQpackStreamEncoder = 0x02;
inline constexpr uint64_t kQpackStreamDecoder = 0x03;

// Setting identifiers.
inline constexpr uint64_t kH3SettingQpackMaxTableCapacity = 0x01;  // RFC 9204 5
inline constexpr uint64_t kH3SettingMaxFieldSectionSize = 0x06;     // RFC 9114 7.2.4.1
inline constexpr uint64_t kH3SettingQpackBlockedStreams = 0x07;     // RFC 9204 5
inline constexpr uint64_t kH3SettingEnableConnectProtocol = 0x08;   // RFC 9220 3
inline constexpr uint64_t kH3SettingH3Datagram = 0x33;              // RFC 9297 2.1.1

// Application error codes (RFC 9114 8.1, RFC 9204 6, RFC 9297 2.1).
inline constexpr uint64_t kH3NoError = 0x100;
inline constexpr uint64_t kH3GeneralProtocolError = 0x101;
inline constexpr uint64_t kH3InternalError = 0x102;
inline constexpr uint64_t kH3StreamCreationError = 0x103;
inline constexpr uint64_t kH3ClosedCriticalStream = 0x104;
inline constexpr uint64_t kH3FrameUnexpected = 0x105;
inline constexpr uint64_t kH3FrameError = 0x106;
inline constexpr uint64_t kH3ExcessiveLoad = 0x107;
inline constexpr uint64_t kH3IdError = 0x108;
inline constexpr uint64_t kH3SettingsError = 0x109;
inline constexpr uint64_t kH3MissingSettings = 0x10a;
inline constexpr uint64_t kH3RequestRejected = 0x10b;
inline constexpr uint64_t kH3RequestCancelled = 0x10c;
inline constexpr uint64_t kH3RequestIncomplete = 0x10d;
inline constexpr uint64_t kH3MessageError = 0x10e;
inline constexpr uint64_t kH3ConnectError = 0x10f;
inline constexpr uint64_t kQpackDecompressionFailed = 0x200;
inline constexpr uint64_t kH3DatagramError = 0x33;

// The settings dptun reads and sends; others are ignored when read (RFC 9114 7.2.4).
struct H3Settings {
  uint64_t qpack_max_table_capacity = 0;
  uint64_t max_field_section_size = UINT64_MAX;  // UINT64_MAX: not sent (unlimited, RFC 9114 4.2.2)
  uint64_t qpack_blocked_streams = 0;
  bool enable_connect_protocol = false;
  bool h3_datagram = false;
};

// Reads a SETTINGS frame's payload. nullopt with *error the connection error to close with: H3_SETTINGS_ERROR for
// an identifier given twice, an HTTP/2 identifier (0x02..0x05, RFC 9114 7.2.4.1), or ENABLE_CONNECT_PROTOCOL /
// H3_DATAGRAM other than 0 or 1; H3_FRAME_ERROR for a payload that ends inside a varint.
std::optional<H3Settings> parse_h3_settings(std::span<const uint8_t> payload, uint64_t* error = nullptr);
// Appends a whole SETTINGS frame (type, length, payload) carrying the non-default values of `s` (booleans as 1 when
// true; max_field_section_size unless UINT64_MAX).
void append_h3_settings(std::vector<uint8_t>& out, const H3Settings& s);
// Appends a frame's Type and Length varints for a payload of `payload_len` bytes.
void append_h3_frame_header(std::vector<uint8_t>& out, uint64_t type, uint64_t payload_len);
// Appends one varint (a unidirectional stream's type, a GOAWAY's ID).
void append_h3_varint(std::vector<uint8_t>& out, uint64_t v);

// Reads one stream's frames, fed in pieces of any size. DATA payloads are passed on as they arrive (on_data, in
// pieces, never buffered); the other frame types RFC 9114 7.2 defines are buffered whole up to `max_frame` bytes and
// passed to on_frame; frames of unknown and reserved types are skipped whatever their length, never buffered
// (RFC 9114 9), and counted (skipped()). The stream's state after an error is undefined: the caller ends the
// connection with error().
class H3FrameReader {
 public:
  explicit H3FrameReader(size_t max_frame) : max_frame_(max_frame) {}
  struct Handlers {
    // A whole frame other than DATA: its type and payload (valid during the call). Returning false stops feed()
    // (the caller closed the stream or the connection).
    std::function<bool(uint64_t type, std::span<const uint8_t> payload)> on_frame;
    // Part of a DATA frame's payload; `end` on its last part (also called with an empty piece for an empty frame).
    std::function<bool(std::span<const uint8_t> piece, bool end)> on_data;
  };
  // False on a framing error: a frame over max_frame (H3_EXCESSIVE_LOAD), a reserved HTTP/2 frame type 0x02, 0x06,
  // 0x08 or 0x09 (H3_FRAME_UNEXPECTED, RFC 9114 7.2.8); error() has the code. Also false when a handler returned
  // false (error() stays 0).
  bool feed(std::span<const uint8_t> bytes, const Handlers& h);
  // True when the stream may end here: not inside a frame (RFC 9114 7.1: a frame cut by the stream's end is
  // H3_FRAME_ERROR).
  bool at_boundary() const;
  uint64_t error() const { return error_; }
  uint64_t skipped() const { return skipped_; }  // frames of unknown types

 private:
  enum class State : uint8_t { Header, Payload, Data, Skip };
  size_t max_frame_;
  State state_ = State::Header;
  uint8_t header_[16];
  size_t header_len_ = 0;
  uint64_t type_ = 0, remaining_ = 0;
  std::vector<uint8_t> payload_;
  uint64_t error_ = 0;
  uint64_t skipped_ = 0;
};

}  // namespace dptun
