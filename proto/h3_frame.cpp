#include "proto/h3_frame.hpp"

#include <algorithm>

#include "proto/quic_varint.hpp"

namespace dptun {

namespace {

// Frame types reserved because HTTP/2 used them (PRIORITY, PING, WINDOW_UPDATE, CONTINUATION; RFC 9114 7.2.8).
bool http2_frame_type(uint64_t type) { return type == 0x02 || type == 0x06 || type == 0x08 || type == 0x09; }

// Setting identifiers HTTP/2 defined without an HTTP/3 counterpart (RFC 9114 7.2.4.1, 11.2.2).
bool http2_setting(uint64_t id) { return id >= 0x02 && id <= 0x05; }

void append_setting(std::vector<uint8_t>& out, uint64_t id, uint64_t value) {
  append_h3_varint(out, id);
  append_h3_varint(out, std::min(value, kQuicVarintMax));
}

}  // namespace

void append_h3_varint(std::vector<uint8_t>& out, uint64_t v) {
  uint8_t buf[8];
  out.insert(out.end(), buf, buf + quic_write_varint(buf, v));
}

void append_h3_frame_header(std::vector<uint8_t>& out, uint64_t type, uint64_t payload_len) {
  append_h3_varint(out, type);
  append_h3_varint(out, payload_len);
}

void append_h3_settings(std::vector<uint8_t>& out, const H3Settings& s) {
  std::vector<uint8_t> payload;
  if (s.qpack_max_table_capacity != 0)
    append_setting(payload, kH3SettingQpackMaxTableCapacity, s.qpack_max_table_capacity);
  if (s.max_field_section_size != UINT64_MAX)
    append_setting(payload, kH3SettingMaxFieldSectionSize, s.max_field_section_size);
  if (s.qpack_blocked_streams != 0) append_setting(payload, kH3SettingQpackBlockedStreams, s.qpack_blocked_streams);
  if (s.enable_connect_protocol) append_setting(payload, kH3SettingEnableConnectProtocol, 1);
  if (s.h3_datagram) append_setting(payload, kH3SettingH3Datagram, 1);
  append_h3_frame_header(out, kH3FrameSettings, payload.size());
  out.insert(out.end(), payload.begin(), payload.end());
}

std::optional<H3Settings> parse_h3_settings(std::span<const uint8_t> payload, uint64_t* error) {
  auto fail = [&](uint64_t code) -> std::optional<H3Settings> {
    if (error) *error = code;
    return std::nullopt;
  };
  H3Settings s;
  std::vector<uint64_t> seen;  // every identifier, known or not: none may come twice (RFC 9114 7.2.4)
  const uint8_t* p = payload.data();
  const uint8_t* end = p + payload.size();
  while (p < end) {
    uint64_t id = 0, value = 0;
    if (!quic_read_varint(p, end, id) || !quic_read_varint(p, end, value)) return fail(kH3FrameError);
    if (http2_setting(id)) return fail(kH3SettingsError);
    seen.push_back(id);
    switch (id) {
      case kH3SettingQpackMaxTableCapacity: s.qpack_max_table_capacity = value; break;
      case kH3SettingMaxFieldSectionSize: s.max_field_section_size = value; break;
      case kH3SettingQpackBlockedStreams: s.qpack_blocked_streams = value; break;
      case kH3SettingEnableConnectProtocol:  // RFC 9220 3: 0 or 1
        if (value > 1) return fail(kH3SettingsError);
        s.enable_connect_protocol = value == 1;
        break;
      case kH3SettingH3Datagram:  // RFC 9297 2.1.1: any other value is H3_SETTINGS_ERROR
        if (value > 1) return fail(kH3SettingsError);
        s.h3_datagram = value == 1;
        break;
      default: break;  // unknown and reserved (0x1f * N + 0x21) identifiers are ignored
    }
  }
  std::sort(seen.begin(), seen.end());
  if (std::adjacent_find(seen.begin(), seen.end()) != seen.end()) return fail(kH3SettingsError);
  return s;
}

namespace {
// The frame types HTTP/3 defines besides DATA (RFC 9114 7.2): read whole; any other type is skipped.
bool known_frame_type(uint64_t t) {
  return t == kH3FrameHeaders || t == kH3FrameCancelPush || t == kH3FrameSettings || t == kH3FramePushPromise ||
         t == kH3FrameGoaway || t == kH3FrameMaxPushId;
}
}  // namespace

bool H3FrameReader::feed(std::span<const uint8_t> bytes, const Handlers& h) {
  if (error_ != 0) return false;
  size_t i = 0;
  // A frame whose payload is empty completes without input, so the loop also runs when a state has nothing left.
  while (i < bytes.size() || (state_ != State::Header && remaining_ == 0)) {
    switch (state_) {
      case State::Header: {
        if (!quic_varint_pair_push(header_, header_len_, bytes[i++], type_, remaining_)) break;
        if (http2_frame_type(type_)) {
          error_ = kH3FrameUnexpected;
          return false;
        }
        if (type_ == kH3FrameData) {
          state_ = State::Data;
          if (remaining_ == 0) {  // an empty DATA frame: one empty piece
            state_ = State::Header;
            if (h.on_data && !h.on_data({}, true)) return false;
          }
          break;
        }
        if (!known_frame_type(type_)) {  // ignored whatever its size (RFC 9114 9): skipped, never buffered
          skipped_++;
          state_ = State::Skip;
          break;
        }
        if (remaining_ > max_frame_) {
          error_ = kH3ExcessiveLoad;
          return false;
        }
        payload_.clear();
        payload_.reserve(size_t(remaining_));
        state_ = State::Payload;
        break;
      }
      case State::Payload: {
        const size_t take = size_t(std::min<uint64_t>(remaining_, bytes.size() - i));
        payload_.insert(payload_.end(), bytes.begin() + ptrdiff_t(i), bytes.begin() + ptrdiff_t(i + take));
        i += take;
        remaining_ -= take;
        if (remaining_ == 0) {
          state_ = State::Header;
          if (h.on_frame && !h.on_frame(type_, payload_)) return false;
        }
        break;
      }
      case State::Skip: {
        const size_t take = size_t(std::min<uint64_t>(remaining_, bytes.size() - i));
        i += take;
        remaining_ -= take;
        if (remaining_ == 0) state_ = State::Header;
        break;
      }
      case State::Data: {
        const size_t take = size_t(std::min<uint64_t>(remaining_, bytes.size() - i));
        remaining_ -= take;
        const bool end = remaining_ == 0;
        const std::span<const uint8_t> piece = bytes.subspan(i, take);
        i += take;
        if (end) state_ = State::Header;
        if (h.on_data && !h.on_data(piece, end)) return false;
        break;
      }
    }
  }
  return true;
}

bool H3FrameReader::at_boundary() const { return state_ == State::Header && header_len_ == 0; }

}  // namespace dptun
