#include "agent/h2_connect_udp.hpp"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstring>

#include "proto/masque_datagram.hpp"

namespace dptun {

const char* h2_connect_udp_state_name(H2ConnectUdpClient::State s) {
  using S = H2ConnectUdpClient::State;
  switch (s) {
    case S::AwaitSettings: return "await_settings";
    case S::AwaitAnswer: return "await_answer";
    case S::Open: return "open";
    case S::Refused: return "refused";
    case S::Failed: return "failed";
    case S::Ended: return "ended";
  }
  return "?";
}

struct H2ConnectUdpCallbacks {
  static H2ConnectUdpClient& c(void* user) { return *static_cast<H2ConnectUdpClient*>(user); }

  static int begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    H2ConnectUdpClient& self = c(user);
    if (frame->hd.stream_id == self.stream_) {
      self.fields_.clear();
      self.fields_size_ = 0;
    }
    return 0;
  }

  static int header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                    const uint8_t* value, size_t valuelen, uint8_t, void* user) {
    H2ConnectUdpClient& self = c(user);
    if (frame->hd.stream_id != self.stream_ || self.state_ != H2ConnectUdpClient::State::AwaitAnswer) return 0;
    self.fields_size_ += namelen + valuelen;
    if (self.fields_size_ > H2ConnectUdpClient::kMaxFieldSection) {
      self.fail("the gateway's answer has more than " + std::to_string(H2ConnectUdpClient::kMaxFieldSection) +
                " bytes of fields");
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // resets the stream
    }
    self.fields_.push_back({std::string(reinterpret_cast<const char*>(name), namelen),
                            std::string(reinterpret_cast<const char*>(value), valuelen)});
    return 0;
  }

  static int frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    H2ConnectUdpClient& self = c(user);
    switch (frame->hd.type) {
      case NGHTTP2_SETTINGS:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK)) self.settings_received();
        break;
      case NGHTTP2_HEADERS:
        if (frame->hd.stream_id == self.stream_ && self.state_ == H2ConnectUdpClient::State::AwaitAnswer)
          self.answer_received(frame->hd.flags & NGHTTP2_FLAG_END_STREAM);
        break;
      case NGHTTP2_DATA:
        if (frame->hd.stream_id == self.stream_ && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
            self.state_ == H2ConnectUdpClient::State::Open) {
          self.state_ = H2ConnectUdpClient::State::Ended;
          self.problem_ = self.capsules_.at_boundary() ? "the gateway ended the request stream"
                                                       : "the gateway ended the request stream inside a capsule";
        }
        break;
      case NGHTTP2_GOAWAY:
        self.goaway_ = true;
        break;
      default: break;
    }
    return 0;
  }

  static int data_chunk(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data, size_t len, void* user) {
    H2ConnectUdpClient& self = c(user);
    // Only the open request's stream carries capsules (a refusal's body is no UDP payload).
    if (stream_id != self.stream_ || self.state_ != H2ConnectUdpClient::State::Open) return 0;
    self.capsules_.feed({data, len}, [&](std::span<const uint8_t> value) { self.capsule_value(value); });
    return 0;
  }

  static int stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user) {
    H2ConnectUdpClient& self = c(user);
    if (stream_id != self.stream_) return 0;
    using S = H2ConnectUdpClient::State;
    const std::string why = error_code == NGHTTP2_NO_ERROR
                                ? std::string("ended")
                                : std::string("reset (") + nghttp2_http2_strerror(error_code) + ")";
    if (self.state_ == S::AwaitAnswer) {
      self.fail("the gateway " + why + " the request stream without an answer");
    } else if (self.state_ == S::Open) {
      self.state_ = S::Ended;
      self.problem_ = "the gateway " + why + " the request stream";
    }
    return 0;
  }

  static ssize_t read_pending(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                              nghttp2_data_source*, void* user) {
    H2ConnectUdpClient& self = c(user);
    const size_t n = std::min(length, self.pending());
    if (n == 0) {
      self.deferred_ = true;  // send() resumes it
      return NGHTTP2_ERR_DEFERRED;
    }
    std::memcpy(buf, self.pending_.data() + self.pending_off_, n);
    self.pending_off_ += n;
    if (self.pending_off_ == self.pending_.size()) {
      self.pending_.clear();
      self.pending_off_ = 0;
    }
    *flags = NGHTTP2_DATA_FLAG_NONE;  // the stream stays open
    return ssize_t(n);
  }
};

H2ConnectUdpClient::H2ConnectUdpClient(std::string authority, std::string target_host, uint16_t target_port,
                                       size_t max_pending)
    : authority_(std::move(authority)), host_(std::move(target_host)), port_(target_port), max_pending_(max_pending) {}

H2ConnectUdpClient::~H2ConnectUdpClient() {
  if (session_) nghttp2_session_del(session_);
}

bool H2ConnectUdpClient::start(std::string& error) {
  nghttp2_session_callbacks* cb = nullptr;
  if (nghttp2_session_callbacks_new(&cb) != 0) {
    error = "nghttp2: out of memory";
    return false;
  }
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, H2ConnectUdpCallbacks::begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, H2ConnectUdpCallbacks::header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, H2ConnectUdpCallbacks::frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, H2ConnectUdpCallbacks::data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, H2ConnectUdpCallbacks::stream_close);
  const int rv = nghttp2_session_client_new(&session_, cb, this);
  nghttp2_session_callbacks_del(cb);
  if (rv != 0) {
    error = std::string("nghttp2: ") + nghttp2_strerror(rv);
    return false;
  }
  const nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                       {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kWindow}};
  if (nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, std::size(iv)) != 0 ||
      nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, int32_t(kWindow)) != 0) {
    error = "nghttp2: cannot queue SETTINGS";
    return false;
  }
  return true;
}

void H2ConnectUdpClient::fail(std::string problem) {
  if (state_ == State::Failed) return;
  state_ = State::Failed;
  problem_ = std::move(problem);
}

void H2ConnectUdpClient::settings_received() {
  if (settings_seen_) return;
  settings_seen_ = true;
  // RFC 8441 3: extended CONNECT only after the server's SETTINGS_ENABLE_CONNECT_PROTOCOL = 1.
  if (nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL) != 1) {
    no_connect_udp_ = true;
    fail("the gateway's HTTP/2 SETTINGS lack SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (RFC 8441): it does not offer "
         "CONNECT-UDP over HTTP/2");
    nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR);
    return;
  }
  const std::vector<HttpField> fields = connect_udp_request_fields(authority_, host_, port_);
  std::vector<nghttp2_nv> nva;
  nva.reserve(fields.size());
  for (const HttpField& f : fields)
    nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(f.name.data())),
                   reinterpret_cast<uint8_t*>(const_cast<char*>(f.value.data())), f.name.size(), f.value.size(),
                   NGHTTP2_NV_FLAG_NONE});
  nghttp2_data_provider data{};
  data.read_callback = H2ConnectUdpCallbacks::read_pending;
  const int32_t id = nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(), &data, nullptr);
  if (id < 0) {
    fail(std::string("nghttp2 cannot submit the request: ") + nghttp2_strerror(id));
    return;
  }
  stream_ = id;
  state_ = State::AwaitAnswer;
}

void H2ConnectUdpClient::answer_received(bool end_stream) {
  auto a = parse_connect_udp_response(fields_);
  if (!a || a->status == 101) {  // RFC 9113 8.6: HTTP/2 has no 101
    fail("the gateway's answer is malformed (:status missing, repeated or invalid)");
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream_, NGHTTP2_PROTOCOL_ERROR);
    return;
  }
  if (a->status < 200) return;  // interim: the final answer follows
  answer_ = std::move(*a);
  if (answer_.status >= 300) {
    state_ = State::Refused;
    if (!end_stream) nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream_, NGHTTP2_CANCEL);
    return;
  }
  state_ = State::Open;
  if (end_stream) {
    state_ = State::Ended;
    problem_ = "the gateway ended the request stream with its 2xx answer";
  }
}

void H2ConnectUdpClient::capsule_value(std::span<const uint8_t> value) {
  auto p = parse_udp_proxying_payload(value);
  if (!p) {
    ++drops_[size_t(Drop::Malformed)];
    return;
  }
  if (p->context_id != kUdpPayloadContextId) {
    ++drops_[size_t(Drop::Context)];
    return;
  }
  ++capsules_rx_;
  if (deliver_ && *deliver_) (*deliver_)(p->payload);
}

bool H2ConnectUdpClient::receive(std::span<const uint8_t> bytes, const Deliver& deliver) {
  if (!session_ || state_ == State::Failed) return false;
  deliver_ = &deliver;
  const ssize_t rv = nghttp2_session_mem_recv(session_, bytes.data(), bytes.size());
  deliver_ = nullptr;
  if (rv < 0) {
    fail(std::string("HTTP/2: ") + nghttp2_strerror(int(rv)));
    return false;
  }
  if (finished() && (state_ == State::AwaitSettings || state_ == State::AwaitAnswer))
    fail(goaway_ ? "the gateway closed the HTTP/2 connection (GOAWAY) before answering"
                 : "the HTTP/2 connection ended before the answer");
  return state_ != State::Failed;
}

bool H2ConnectUdpClient::output(std::vector<uint8_t>& out, size_t max) {
  if (!session_) return false;
  while (out.size() < max) {
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      fail(std::string("HTTP/2: ") + nghttp2_strerror(int(n)));
      return false;
    }
    if (n == 0) break;
    out.insert(out.end(), data, data + n);
  }
  return true;
}

bool H2ConnectUdpClient::wants_write() const { return session_ && nghttp2_session_want_write(session_); }

bool H2ConnectUdpClient::finished() const {
  return !session_ || (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_));
}

void H2ConnectUdpClient::terminate() {
  if (session_) nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR);
}

H2ConnectUdpClient::Send H2ConnectUdpClient::send(std::span<const uint8_t> udp_payload) {
  if (state_ != State::Open) return Send::NotOpen;
  if (udp_payload.size() > kMaxPayload) return Send::TooBig;
  // Type (1 byte), Length (up to 4 bytes for 65508), context ID 0 (1 byte).
  const size_t capsule = 1 + (udp_payload.size() + 1 < 64 ? 1 : udp_payload.size() + 1 < 16384 ? 2 : 4) + 1 +
                         udp_payload.size();
  if (pending() + capsule > max_pending_) return Send::Full;
  if (pending_off_ > 0 && pending_off_ >= pending_.size() / 2) {  // keep the buffer from creeping
    pending_.erase(pending_.begin(), pending_.begin() + ptrdiff_t(pending_off_));
    pending_off_ = 0;
  }
  append_datagram_capsule(pending_, kUdpPayloadContextId, udp_payload);
  if (deferred_) {
    deferred_ = false;
    nghttp2_session_resume_data(session_, stream_);
  }
  return Send::Queued;
}

}  // namespace dptun
