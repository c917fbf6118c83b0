#include "agent/h3_connect_udp.hpp"

#include <cstdio>

#include "proto/masque_datagram.hpp"
#include "proto/quic_varint.hpp"

namespace dptun {

const char* h3_connect_udp_state_name(H3ConnectUdpClient::State s) {
  using S = H3ConnectUdpClient::State;
  switch (s) {
    case S::AwaitSettings: return "await_settings";
    case S::Ready: return "ready";
    case S::AwaitAnswer: return "await_answer";
    case S::Open: return "open";
    case S::Refused: return "refused";
    case S::Failed: return "failed";
    case S::Ended: return "ended";
  }
  return "?";
}

const char* h3_error_name(uint64_t code) {
  switch (code) {
    case kH3NoError: return "H3_NO_ERROR";
    case kH3GeneralProtocolError: return "H3_GENERAL_PROTOCOL_ERROR";
    case kH3InternalError: return "H3_INTERNAL_ERROR";
    case kH3StreamCreationError: return "H3_STREAM_CREATION_ERROR";
    case kH3ClosedCriticalStream: return "H3_CLOSED_CRITICAL_STREAM";
    case kH3FrameUnexpected: return "H3_FRAME_UNEXPECTED";
    case kH3FrameError: return "H3_FRAME_ERROR";
    case kH3ExcessiveLoad: return "H3_EXCESSIVE_LOAD";
    case kH3IdError: return "H3_ID_ERROR";
    case kH3SettingsError: return "H3_SETTINGS_ERROR";
    case kH3MissingSettings: return "H3_MISSING_SETTINGS";
    case kH3RequestRejected: return "H3_REQUEST_REJECTED";
    case kH3RequestCancelled: return "H3_REQUEST_CANCELLED";
    case kH3RequestIncomplete: return "H3_REQUEST_INCOMPLETE";
    case kH3MessageError: return "H3_MESSAGE_ERROR";
    case kH3ConnectError: return "H3_CONNECT_ERROR";
    case kQpackDecompressionFailed: return "QPACK_DECOMPRESSION_FAILED";
    case kH3DatagramError: return "H3_DATAGRAM_ERROR";
    default: return nullptr;
  }
}

H3ConnectUdpClient::H3ConnectUdpClient(std::string authority, std::string target_host, uint16_t target_port)
    : authority_(std::move(authority)), host_(std::move(target_host)), port_(target_port) {}

std::vector<uint8_t> H3ConnectUdpClient::control_stream_bytes() {
  std::vector<uint8_t> out;
  append_h3_varint(out, kH3StreamControl);
  H3Settings s;
  s.qpack_max_table_capacity = 0;
  s.qpack_blocked_streams = 0;
  s.h3_datagram = true;
  append_h3_settings(out, s);
  return out;
}

std::vector<uint8_t> H3ConnectUdpClient::encoder_stream_bytes() {
  std::vector<uint8_t> out;
  append_h3_varint(out, kQpackStreamEncoder);
  return out;
}

std::vector<uint8_t> H3ConnectUdpClient::decoder_stream_bytes() {
  std::vector<uint8_t> out;
  append_h3_varint(out, kQpackStreamDecoder);
  return out;
}

bool H3ConnectUdpClient::connection_error(uint64_t code, std::string problem) {
  if (state_ != State::Failed) {
    state_ = State::Failed;
    error_code_ = code;
    problem_ = std::move(problem);
  }
  return false;
}

bool H3ConnectUdpClient::drop(Drop d, Drop* why) {
  ++drops_[size_t(d)];
  if (why) *why = d;
  return false;
}

bool H3ConnectUdpClient::on_stream_data(int64_t id, std::span<const uint8_t> data, bool fin, const Deliver& deliver) {
  if (state_ == State::Failed) return false;
  switch (id & 3) {
    case 3: return uni_data(id, data, fin);  // server-initiated unidirectional
    case 0:
      if (id == request_stream_) return request_data(data, fin, deliver);
      return true;  // a request of ours that is gone: nothing to read
    default:
      // A server never opens a bidirectional stream (RFC 9114 6.1); ngtcp2 refuses data on our own
      // unidirectional streams.
      return connection_error(kH3StreamCreationError, "the gateway opened a bidirectional stream");
  }
}

bool H3ConnectUdpClient::on_stream_reset(int64_t id, uint64_t app_error) {
  if (state_ == State::Failed) return false;
  char code[24];
  snprintf(code, sizeof code, "0x%llx", static_cast<unsigned long long>(app_error));
  if ((id & 3) == 3) {
    auto it = uni_.find(id);
    if (it != uni_.end() && it->second.kind != UniKind::Ignored && it->second.kind != UniKind::Unknown)
      return connection_error(kH3ClosedCriticalStream, std::string("the gateway reset a critical stream (error ") + code + ")");
    return true;
  }
  if (id != request_stream_) return true;
  if (state_ == State::AwaitAnswer)
    return connection_error(kH3RequestCancelled, std::string("the gateway reset the request before answering (error ") + code + ")");
  if (state_ == State::Open) {
    state_ = State::Ended;
    problem_ = std::string("the gateway reset the request stream (error ") + code + ")";
  }
  return true;
}

// The stream's type (a varint) first, then per type: the control stream's frames; the QPACK streams are read and
// their bytes ignored (our table capacity is 0, so the gateway's encoder has nothing to insert, and we never
// reference its table); other types are ignored (RFC 9114 6.2).
bool H3ConnectUdpClient::uni_data(int64_t id, std::span<const uint8_t> data, bool fin) {
  UniStream& s = uni_[id];
  if (s.kind == UniKind::Unknown) {
    while (!data.empty() && s.kind == UniKind::Unknown) {
      s.type_bytes[s.type_len++] = data[0];
      data = data.subspan(1);
      const size_t need = size_t(1) << (s.type_bytes[0] >> 6);
      if (s.type_len < need) continue;
      const uint8_t* p = s.type_bytes;
      uint64_t type = 0;
      quic_read_varint(p, s.type_bytes + s.type_len, type);
      bool* seen = nullptr;
      UniKind kind = UniKind::Ignored;
      if (type == kH3StreamControl) {
        seen = &have_control_;
        kind = UniKind::Control;
      } else if (type == kQpackStreamEncoder) {
        seen = &have_encoder_;
        kind = UniKind::Encoder;
      } else if (type == kQpackStreamDecoder) {
        seen = &have_decoder_;
        kind = UniKind::Decoder;
      } else if (type == kH3StreamPush) {
        // We never sent MAX_PUSH_ID: no push ID is allowed (RFC 9114 4.6).
        return connection_error(kH3IdError, "the gateway opened a push stream without a MAX_PUSH_ID");
      }
      if (seen) {
        if (*seen) return connection_error(kH3StreamCreationError, "the gateway opened a second control or QPACK stream");
        *seen = true;
      }
      s.kind = kind;
    }
    if (s.kind == UniKind::Unknown) {
      if (fin) uni_.erase(id);  // a stream that ended before its type: ignored
      return true;
    }
  }
  switch (s.kind) {
    case UniKind::Control: {
      H3FrameReader::Handlers h;
      h.on_frame = [this](uint64_t type, std::span<const uint8_t> payload) { return control_frame(type, payload); };
      h.on_data = [this](std::span<const uint8_t>, bool) {
        return connection_error(kH3FrameUnexpected, "the gateway sent a DATA frame on its control stream");
      };
      if (!control_reader_.feed(data, h)) {
        if (state_ != State::Failed)
          return connection_error(control_reader_.error() ? control_reader_.error() : kH3FrameError,
                      "the gateway's control stream is malformed");
        return false;
      }
      if (fin) return connection_error(kH3ClosedCriticalStream, "the gateway closed its control stream");
      return true;
    }
    case UniKind::Encoder:
    case UniKind::Decoder:
      if (fin) return connection_error(kH3ClosedCriticalStream, "the gateway closed a QPACK stream");
      return true;
    default:
      if (fin) uni_.erase(id);
      return true;
  }
}

bool H3ConnectUdpClient::control_frame(uint64_t type, std::span<const uint8_t> payload) {
  if (!settings_seen_) {
    if (type != kH3FrameSettings)
      return connection_error(kH3MissingSettings, "the gateway's control stream does not start with SETTINGS");
    settings_seen_ = true;
    uint64_t error = kH3SettingsError;
    auto s = parse_h3_settings(payload, &error);
    if (!s) return connection_error(error, "the gateway sent malformed SETTINGS");
    peer_settings_ = *s;
    if (!s->h3_datagram || !s->enable_connect_protocol) {
      no_connect_udp_ = true;
      std::string lack = !s->h3_datagram && !s->enable_connect_protocol ? "SETTINGS_H3_DATAGRAM and SETTINGS_ENABLE_CONNECT_PROTOCOL"
                         : !s->h3_datagram                               ? "SETTINGS_H3_DATAGRAM"
                                                                         : "SETTINGS_ENABLE_CONNECT_PROTOCOL";
      return connection_error(kH3NoError, "the gateway does not offer CONNECT-UDP over HTTP/3 (its SETTINGS lack " + lack + " = 1)");
    }
    if (state_ == State::AwaitSettings) state_ = State::Ready;
    return true;
  }
  switch (type) {
    case kH3FrameSettings: return connection_error(kH3FrameUnexpected, "the gateway sent SETTINGS twice");
    case kH3FrameHeaders:
    case kH3FramePushPromise:
    case kH3FrameMaxPushId:  // only a client sends it (RFC 9114 7.2.7)
      return connection_error(kH3FrameUnexpected, "the gateway sent a request-stream frame on its control stream");
    case kH3FrameGoaway: goaway_ = true; return true;
    default: return true;  // CANCEL_PUSH (no push exists), unknown and reserved types
  }
}

bool H3ConnectUdpClient::request_data(std::span<const uint8_t> data, bool fin, const Deliver& deliver) {
  H3FrameReader::Handlers h;
  h.on_frame = [this](uint64_t type, std::span<const uint8_t> payload) { return request_frame(type, payload); };
  h.on_data = [&](std::span<const uint8_t> piece, bool) {
    if (state_ == State::AwaitAnswer)
      return connection_error(kH3FrameUnexpected, "the gateway sent DATA before the answer's HEADERS");
    // After a 2xx the body is the capsule protocol (RFC 9297 3.2); a refusal's body is not read.
    if (state_ == State::Open)
      capsules_.feed(piece, [&](std::span<const uint8_t> value) { capsule_payload(value, deliver); });
    return true;
  };
  if (!request_reader_.feed(data, h)) {
    if (state_ != State::Failed)
      return connection_error(request_reader_.error() ? request_reader_.error() : kH3FrameError,
                  "the answer on the request stream is malformed");
    return false;
  }
  if (!fin) return true;
  if (!request_reader_.at_boundary()) return connection_error(kH3FrameError, "the request stream ended inside a frame");
  if (state_ == State::AwaitAnswer) return connection_error(kH3RequestIncomplete, "the gateway ended the request without an answer");
  if (state_ == State::Open) {
    state_ = State::Ended;
    problem_ = "the gateway ended the request stream";
  }
  return true;
}

bool H3ConnectUdpClient::request_frame(uint64_t type, std::span<const uint8_t> payload) {
  switch (type) {
    case kH3FrameHeaders: {
      if (state_ != State::AwaitAnswer) return true;  // trailers (after the answer): nothing in them for us
      FieldSectionError why = FieldSectionError::Malformed;
      auto fields = decode_h3_field_section(payload, kMaxFieldSection, &why);
      if (!fields)
        return connection_error(why == FieldSectionError::Malformed ? kQpackDecompressionFailed : kH3ExcessiveLoad,
                    std::string("the answer's field section is ") +
                        (why == FieldSectionError::Malformed ? "not valid QPACK" : "too large"));
      auto answer = parse_connect_udp_response(*fields);
      if (!answer) return connection_error(kH3MessageError, "the answer has no valid :status");
      // 101 (Switching Protocols) does not exist in HTTP/3 (RFC 9114 4.5): a malformed answer.
      if (answer->status == 101) return connection_error(kH3MessageError, "the answer is 101, which HTTP/3 does not have");
      if (answer->status < 200) return true;  // interim (1xx): the final answer follows
      answer_ = *answer;
      state_ = answer->status < 300 ? State::Open : State::Refused;
      return true;
    }
    case kH3FrameSettings:
    case kH3FrameGoaway:
    case kH3FrameMaxPushId:
    case kH3FrameCancelPush:
      return connection_error(kH3FrameUnexpected, "the gateway sent a control frame on the request stream");
    case kH3FramePushPromise: return connection_error(kH3IdError, "the gateway sent PUSH_PROMISE without a MAX_PUSH_ID");
    default: return true;  // unknown and reserved types
  }
}

void H3ConnectUdpClient::capsule_payload(std::span<const uint8_t> value, const Deliver& deliver) {
  auto p = parse_udp_proxying_payload(value);
  if (!p) {
    drop(Drop::Malformed, nullptr);
    return;
  }
  if (p->context_id != kUdpPayloadContextId) {
    drop(Drop::Context, nullptr);
    return;
  }
  if (deliver) deliver(p->payload);
}

std::vector<uint8_t> H3ConnectUdpClient::request(int64_t stream_id) {
  if (state_ != State::Ready || stream_id < 0 || (stream_id & 3) != 0) return {};
  const std::vector<HttpField> fields = connect_udp_request_fields(authority_, host_, port_);
  std::vector<uint8_t> section;
  if (!encode_h3_field_section(fields, section)) {
    connection_error(kH3InternalError, "QPACK could not encode the request");
    return {};
  }
  std::vector<uint8_t> out;
  append_h3_frame_header(out, kH3FrameHeaders, section.size());
  out.insert(out.end(), section.begin(), section.end());
  request_stream_ = stream_id;
  state_ = State::AwaitAnswer;
  return out;
}

std::optional<std::span<const uint8_t>> H3ConnectUdpClient::datagram_payload(std::span<const uint8_t> frame,
                                                                              Drop* why) {
  HttpDatagramError err = HttpDatagramError::Truncated;
  auto d = parse_h3_datagram(frame, &err);
  if (!d) {
    if (err == HttpDatagramError::QuarterStreamIdTooBig)
      connection_error(kH3DatagramError, "the gateway sent an HTTP Datagram with a Quarter Stream ID over 2^60 - 1");
    drop(Drop::Malformed, why);
    return std::nullopt;
  }
  if (request_stream_ < 0 || d->stream_id != uint64_t(request_stream_)) {
    drop(Drop::UnknownStream, why);
    return std::nullopt;
  }
  if (state_ != State::Open) {
    drop(Drop::NotOpen, why);
    return std::nullopt;
  }
  if (d->udp.context_id != kUdpPayloadContextId) {
    drop(Drop::Context, why);
    return std::nullopt;
  }
  return d->udp.payload;
}

size_t H3ConnectUdpClient::datagram_header_len() const {
  return request_stream_ < 0 ? 0 : h3_datagram_header_len(uint64_t(request_stream_), kUdpPayloadContextId);
}

size_t H3ConnectUdpClient::write_datagram_header(std::span<uint8_t> out) const {
  if (request_stream_ < 0) return 0;
  return write_h3_datagram_header(out, uint64_t(request_stream_), kUdpPayloadContextId);
}

}  // namespace dptun
