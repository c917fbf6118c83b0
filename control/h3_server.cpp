#include "control/h3_server.hpp"

#include <algorithm>

#include "proto/h3_fields.hpp"
#include "proto/quic_varint.hpp"

namespace dptun {

namespace {
bool client_bidi(int64_t id) { return (id & 3) == 0; }
bool client_uni(int64_t id) { return (id & 3) == 2; }
}  // namespace

H3ServerSession::H3ServerSession(H3Transport& transport, Callbacks callbacks, bool quic_datagrams)
    : transport_(transport), cb_(std::move(callbacks)), quic_datagrams_(quic_datagrams) {}

bool H3ServerSession::start() {
  // The control stream alone: with a dynamic table of capacity 0 both ways, QPACK's encoder and decoder streams
  // would carry nothing, and RFC 9204 4.2 lets an endpoint leave them unopened then.
  const int64_t control = transport_.open_uni_stream();
  if (control < 0) {
    fail(kH3StreamCreationError, "the client allows no unidirectional stream for HTTP/3's control stream");
    return false;
  }
  H3Settings ours;
  ours.enable_connect_protocol = true;
  ours.h3_datagram = true;
  ours.max_field_section_size = kMaxFieldSection;  // RFC 9114 4.2.2: what a client may send
  std::vector<uint8_t> out;
  append_h3_varint(out, kH3StreamControl);
  append_h3_settings(out, ours);
  transport_.write(control, out, false);
  return true;
}

void H3ServerSession::fail(uint64_t code, const std::string& reason) {
  if (closed_) return;
  closed_ = true;
  transport_.close_connection(code, reason);
}

void H3ServerSession::on_stream_data(int64_t id, std::span<const uint8_t> data, bool fin) {
  if (closed_) return;
  if (client_uni(id)) on_uni_data(id, data, fin);
  else if (client_bidi(id)) on_request_data(id, data, fin);
}

void H3ServerSession::on_stream_reset(int64_t id) {
  if (closed_) return;
  if (client_uni(id)) {
    auto it = uni_.find(id);
    if (it != uni_.end() && it->second.kind != UniKind::Ignored && it->second.kind != UniKind::Unknown)
      fail(kH3ClosedCriticalStream, "the client reset a critical stream");
    return;
  }
  auto it = requests_.find(id);
  if (it == requests_.end()) return;
  if (it->second.accepted) {
    std::erase(tunnels_, id);
    if (cb_.request_ended) cb_.request_ended(id);
  }
  requests_.erase(it);
}

// ---- unidirectional streams (RFC 9114 6.2) ----

void H3ServerSession::on_uni_data(int64_t id, std::span<const uint8_t> data, bool fin) {
  UniStream& us = uni_[id];
  if (!us.typed) {
    // The stream type varint, possibly split across deliveries.
    while (!data.empty() && !us.typed) {
      us.type_bytes.push_back(data[0]);
      data = data.subspan(1);
      const size_t want = size_t(1) << (us.type_bytes[0] >> 6);
      if (us.type_bytes.size() < want) continue;
      const uint8_t* p = us.type_bytes.data();
      uint64_t type = 0;
      quic_read_varint(p, p + us.type_bytes.size(), type);
      us.typed = true;
      switch (type) {
        case kH3StreamControl:
          if (control_seen_) return fail(kH3StreamCreationError, "a second control stream");
          control_seen_ = true;
          us.kind = UniKind::Control;
          break;
        case kQpackStreamEncoder:
          if (encoder_seen_) return fail(kH3StreamCreationError, "a second QPACK encoder stream");
          encoder_seen_ = true;
          us.kind = UniKind::QpackEncoder;
          break;
        case kQpackStreamDecoder:
          if (decoder_seen_) return fail(kH3StreamCreationError, "a second QPACK decoder stream");
          decoder_seen_ = true;
          us.kind = UniKind::QpackDecoder;
          break;
        case kH3StreamPush: return fail(kH3StreamCreationError, "a push stream from the client");
        default:  // reserved and unknown types are ignored (RFC 9114 6.2, 6.2.3)
          us.kind = UniKind::Ignored;
          stats_.unknown_streams++;
          break;
      }
    }
    if (!us.typed) {
      if (fin) uni_.erase(id);
      return;
    }
  }
  switch (us.kind) {
    case UniKind::Control: {
      H3FrameReader::Handlers h;
      h.on_frame = [&](uint64_t type, std::span<const uint8_t> payload) { return on_control_frame(type, payload); };
      h.on_data = [&](std::span<const uint8_t>, bool) {
        fail(kH3FrameUnexpected, "a DATA frame on the control stream");
        return false;
      };
      const uint64_t skipped = us.frames.skipped();
      const bool ok = us.frames.feed(data, h);
      stats_.unknown_frames += us.frames.skipped() - skipped;
      if (!ok && !closed_) return fail(us.frames.error(), "a malformed frame on the control stream");
      if (fin && !closed_) fail(kH3ClosedCriticalStream, "the client closed its control stream");
      return;
    }
    case UniKind::QpackEncoder:
    case UniKind::QpackDecoder:
      // With a table capacity of 0 both ways nothing on them changes a field section: a reference to the dynamic
      // table fails to decode. Their bytes are read and left (QUIC's flow control bounds them).
      if (fin) fail(kH3ClosedCriticalStream, "the client closed a QPACK stream");
      return;
    case UniKind::Ignored:
    case UniKind::Unknown:
      if (fin) uni_.erase(id);
      return;
  }
}

bool H3ServerSession::on_control_frame(uint64_t type, std::span<const uint8_t> payload) {
  if (!peer_settings_ && type != kH3FrameSettings) {
    fail(kH3MissingSettings, "the control stream does not start with SETTINGS");
    return false;
  }
  switch (type) {
    case kH3FrameSettings: {
      if (peer_settings_) {
        fail(kH3FrameUnexpected, "a second SETTINGS frame");
        return false;
      }
      uint64_t error = 0;
      std::optional<H3Settings> s = parse_h3_settings(payload, &error);
      if (!s) {
        fail(error, "malformed SETTINGS");
        return false;
      }
      if (s->h3_datagram && !quic_datagrams_) {
        fail(kH3SettingsError, "SETTINGS_H3_DATAGRAM without the QUIC DATAGRAM transport parameter");
        return false;
      }
      peer_settings_ = *s;
      // Requests whose HEADERS came before the SETTINGS (another stream, so either may come first).
      for (auto& [id, rs] : requests_)
        if (rs.waiting_settings && !closed_) {
          rs.waiting_settings = false;
          decide(id, rs);
        }
      return !closed_;
    }
    case kH3FrameHeaders:
    case kH3FramePushPromise:
      fail(kH3FrameUnexpected, "a HEADERS or PUSH_PROMISE frame on the control stream");
      return false;
    case kH3FrameGoaway:       // the client stops opening requests; dpctld answers what it has
    case kH3FrameMaxPushId:    // dpctld never pushes
      return true;
    case kH3FrameCancelPush:   // of a push dpctld never promised (RFC 9114 7.2.3)
      fail(kH3IdError, "CANCEL_PUSH of a push never promised");
      return false;
    default:
      return true;
  }
}

// ---- request streams (RFC 9114 4.1) ----

void H3ServerSession::on_request_data(int64_t id, std::span<const uint8_t> data, bool fin) {
  auto it = requests_.find(id);
  if (it == requests_.end()) {
    if (data.empty() && fin) return;
    it = requests_.emplace(id, RequestStream{}).first;
  }
  RequestStream& rs = it->second;
  H3FrameReader::Handlers h;
  h.on_frame = [&](uint64_t type, std::span<const uint8_t> payload) { return on_request_frame(id, rs, type, payload); };
  h.on_data = [&](std::span<const uint8_t> piece, bool) {
    if (!rs.headers) {
      fail(kH3FrameUnexpected, "a DATA frame before the request's HEADERS");
      return false;
    }
    // A refused request's body is read and left; an accepted one's DATA carries capsules (slice 3 gives them to dpgw).
    if (rs.accepted) stats_.capsule_bytes += piece.size();
    return true;
  };
  const uint64_t skipped = rs.frames.skipped();
  const bool ok = rs.frames.feed(data, h);
  stats_.unknown_frames += rs.frames.skipped() - skipped;
  if (!ok) {
    if (!closed_) fail(rs.frames.error(), "a malformed frame on a request stream");
    return;
  }
  if (closed_ || !fin) return;
  if (!rs.frames.at_boundary()) return fail(kH3FrameError, "a request stream ended inside a frame");
  if (!rs.request && !rs.answered) {
    // Ended before a request came: nothing to answer (RFC 9114 4.1.2).
    transport_.reset_stream(id, kH3RequestIncomplete);
  } else if (rs.accepted) {
    // The client ended its side of the tunnel: dpctld ends its own.
    transport_.write(id, {}, true);
    std::erase(tunnels_, id);
    if (cb_.request_ended) cb_.request_ended(id);
  }
  requests_.erase(id);
}

bool H3ServerSession::on_request_frame(int64_t id, RequestStream& rs, uint64_t type, std::span<const uint8_t> payload) {
  switch (type) {
    case kH3FrameHeaders:
      break;
    case kH3FrameSettings:
    case kH3FrameGoaway:
    case kH3FrameMaxPushId:
    case kH3FrameCancelPush:
    case kH3FramePushPromise:
      fail(kH3FrameUnexpected, "a control frame on a request stream");
      return false;
    default:
      return true;
  }
  if (rs.accepted) {  // after a 2xx only DATA may follow on a CONNECT stream (RFC 9114 4.4)
    fail(kH3FrameUnexpected, "a HEADERS frame on an accepted CONNECT-UDP stream");
    return false;
  }
  if (rs.headers) return true;  // trailers of a request already answered or waiting: nothing in them matters
  rs.headers = true;
  stats_.requests++;
  if (requests_answered_ >= kMaxRequests) {
    transport_.reset_stream(id, kH3RequestRejected);
    rs.answered = true;
    return true;
  }
  FieldSectionError why = FieldSectionError::Malformed;
  std::optional<std::vector<HttpField>> fields = decode_h3_field_section(payload, kMaxFieldSection, &why);
  if (!fields) {
    if (why == FieldSectionError::TooLarge) {
      refuse(id, rs, 431, "the request's fields are over " + std::to_string(kMaxFieldSection) + " bytes");
      return true;
    }
    fail(kQpackDecompressionFailed, "a field section QPACK cannot decode");
    return false;
  }
  ConnectUdpRequestProblem problem;
  std::optional<ConnectUdpRequest> req = parse_connect_udp_request(*fields, &problem);
  if (!req) {
    refuse(id, rs, connect_udp_status(problem.error), problem.detail);
    return true;
  }
  rs.request = std::move(*req);
  if (!peer_settings_) {
    rs.waiting_settings = true;
    return true;
  }
  decide(id, rs);
  return !closed_;
}

void H3ServerSession::decide(int64_t id, RequestStream& rs) {
  if (!peer_settings_->h3_datagram) {
    refuse(id, rs, 400, "the client's SETTINGS do not offer HTTP Datagrams (SETTINGS_H3_DATAGRAM = 1)");
    return;
  }
  const ConnectUdpAnswer a = cb_.connect_udp ? cb_.connect_udp(id, *rs.request) : ConnectUdpAnswer{500, "proxy_internal_error", {}};
  if (a.status == ConnectUdpAnswer::kLater) {
    rs.waiting_owner = true;
    return;
  }
  answer(id, rs, a);
}

void H3ServerSession::complete(int64_t stream_id, const ConnectUdpAnswer& a) {
  auto it = requests_.find(stream_id);
  if (closed_ || it == requests_.end() || !it->second.waiting_owner || it->second.answered) return;
  it->second.waiting_owner = false;
  answer(stream_id, it->second, a.status == ConnectUdpAnswer::kLater ? ConnectUdpAnswer{500, "proxy_internal_error", {}} : a);
}

void H3ServerSession::answer(int64_t id, RequestStream& rs, const ConnectUdpAnswer& a) {
  const bool ok = a.status >= 200 && a.status < 300;
  const bool fin = !ok;
  rs.answered = true;
  requests_answered_++;
  std::vector<uint8_t> section;
  if (!encode_h3_field_section(connect_udp_response_fields(a.status, a.proxy_error, a.details), section)) {
    fail(kH3InternalError, "cannot encode an answer");
    return;
  }
  std::vector<uint8_t> out;
  append_h3_frame_header(out, kH3FrameHeaders, section.size());
  out.insert(out.end(), section.begin(), section.end());
  transport_.write(id, out, fin);
  if (ok) {
    rs.accepted = true;
    tunnels_.push_back(id);
    if (cb_.accepted) cb_.accepted(id);
  }
}

void H3ServerSession::refuse(int64_t id, RequestStream& rs, uint16_t status, const std::string& why) {
  if (cb_.bad_request) cb_.bad_request(id, status, why);
  answer(id, rs, ConnectUdpAnswer{status, "http_request_error", why});
}

}  // namespace dptun
