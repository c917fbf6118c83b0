#include "control/masque_tcp_session.hpp"

#include <http_parser.h>
#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <map>
#include <vector>

#include "proto/quic_varint.hpp"

namespace dptun {

bool CapsuleStream::feed(std::span<const uint8_t> bytes, CapsuleStats& stats,
                         const std::function<void(std::span<const uint8_t>)>& payload) {
  bool malformed = false;
  reader_.feed(bytes, [&](std::span<const uint8_t> value) {
    if (malformed) return;
    const uint8_t* p = value.data();
    uint64_t context = 0;
    if (!quic_read_varint(p, value.data() + value.size(), context)) {
      malformed = true;  // RFC 9297 3.5: a DATAGRAM capsule's value starts with the context ID (RFC 9298 4)
      return;
    }
    if (context != 0) {
      stats.drop_context++;
      return;
    }
    stats.datagrams_in++;
    payload(value.subspan(size_t(p - value.data())));
  });
  stats.drop_too_large += reader_.oversized() - oversized_seen_;
  oversized_seen_ = reader_.oversized();
  stats.skipped_capsules += reader_.skipped() - skipped_seen_;
  skipped_seen_ = reader_.skipped();
  if (malformed) stats.drop_malformed++;
  return !malformed;
}

namespace {

bool answer_ok(uint16_t status) { return status >= 200 && status < 300; }

// ---------------------------------------------------------------------------------------------------------------
// HTTP/2
// ---------------------------------------------------------------------------------------------------------------

class H2Session final : public MasqueTcpSession {
 public:
  explicit H2Session(Callbacks cb) : cb_(std::move(cb)) {}
  ~H2Session() override {
    if (s_) nghttp2_session_del(s_);
  }

  bool init() {
    nghttp2_session_callbacks* cbs = nullptr;
    if (nghttp2_session_callbacks_new(&cbs) != 0) return false;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, &H2Session::on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, &H2Session::on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, &H2Session::on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, &H2Session::on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, &H2Session::on_stream_close);
    const int rv = nghttp2_session_server_new(&s_, cbs, this);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0) return false;
    const nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, kMaxStreams},
        {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1},  // RFC 8441 3
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, uint32_t(kMaxFieldSection)},
    };
    return nghttp2_submit_settings(s_, NGHTTP2_FLAG_NONE, settings, std::size(settings)) == 0;
  }

  const char* protocol() const override { return "h2"; }

  bool feed(std::span<const uint8_t> bytes) override {
    if (failed_) return false;
    const ssize_t n = nghttp2_session_mem_recv(s_, bytes.data(), bytes.size());
    if (n < 0) failed_ = true;  // a connection error (nghttp2 queued GOAWAY where it could), flooding, memory
    return !closing();
  }

  void peer_closed() override {
    // Every tunnel of the connection ends with it (on_stream_close is not called for them by nghttp2_session_del).
    std::vector<int32_t> open;
    for (const auto& [id, st] : streams_)
      if (st.tunnel && !st.ended) open.push_back(id);
    for (int32_t id : open) end_tunnel(id, "the connection closed", true);
    failed_ = true;
  }

  void take_output(std::string& out, size_t max) override {
    while (!failed_send_ && out.size() < max) {
      const uint8_t* data = nullptr;
      const ssize_t n = nghttp2_session_mem_send(s_, &data);
      if (n < 0) {
        failed_send_ = failed_ = true;
        break;
      }
      if (n == 0) break;
      out.append(reinterpret_cast<const char*>(data), size_t(n));
    }
  }

  void complete(int32_t stream, const ConnectUdpAnswer& a) override {
    auto it = streams_.find(stream);
    if (it == streams_.end() || !it->second.waiting) return;
    it->second.waiting = false;
    waiting_--;
    Stream& st = it->second;
    std::string early = std::move(st.early);
    st.early.clear();
    early_ -= early.size();
    answer(stream, st, a.status == ConnectUdpAnswer::kLater ? ConnectUdpAnswer{500, "proxy_internal_error", {}} : a);
    if (st.tunnel && !st.ended && !early.empty())
      read_capsules(stream, st, {reinterpret_cast<const uint8_t*>(early.data()), early.size()});
  }

  bool send_datagram(int32_t stream, std::span<const uint8_t> payload) override {
    auto it = streams_.find(stream);
    if (it == streams_.end() || !it->second.tunnel || it->second.ended) return false;
    Stream& st = it->second;
    std::vector<uint8_t> capsule;
    append_datagram_capsule(capsule, 0, payload);
    if (queued_ + capsule.size() > kMaxPendingOutput) {
      stats_.drop_slow_client++;
      return false;
    }
    if (st.out_off > 0 && st.out_off * 2 >= st.out.size()) {
      st.out.erase(0, st.out_off);
      st.out_off = 0;
    }
    st.out.append(reinterpret_cast<const char*>(capsule.data()), capsule.size());
    queued_ += capsule.size();
    stats_.datagrams_out++;
    if (st.deferred) {
      st.deferred = false;
      nghttp2_session_resume_data(s_, stream);
    }
    return true;
  }

  void cut(int32_t stream) override {
    auto it = streams_.find(stream);
    if (it == streams_.end() || !it->second.tunnel || it->second.ended) return;
    end_tunnel(stream, "", false);
    nghttp2_submit_rst_stream(s_, NGHTTP2_FLAG_NONE, stream, NGHTTP2_CANCEL);
  }

  bool closing() const override {
    return failed_ || (!nghttp2_session_want_read(s_) && !nghttp2_session_want_write(s_));
  }
  size_t tunnels() const override { return tunnels_; }
  size_t waiting() const override { return waiting_; }
  bool waiting(int32_t stream) const override {
    auto it = streams_.find(stream);
    return it != streams_.end() && it->second.waiting;
  }

 private:
  struct Stream {
    std::vector<HttpField> fields;
    size_t field_bytes = 0;
    bool too_large = false;
    bool request_read = false;
    bool waiting = false;   // the answer comes later (complete)
    bool tunnel = false;    // answered 2xx
    bool ended = false;     // the tunnel ended (tunnel_ended called, or cut)
    bool deferred = false;  // the data provider has nothing now (resume on the next capsule)
    std::string out;        // DATAGRAM capsules to send
    size_t out_off = 0;
    std::string early;      // capsules the client sent while the answer was pending (read on a 2xx, as HTTP/1.1's)
    CapsuleStream capsules;
  };

  static H2Session& self(void* user) { return *static_cast<H2Session*>(user); }

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
      self(user).streams_.try_emplace(frame->hd.stream_id);
    return 0;
  }

  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                       const uint8_t* value, size_t valuelen, uint8_t, void* user) {
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;  // trailers
    auto it = self(user).streams_.find(frame->hd.stream_id);
    if (it == self(user).streams_.end() || it->second.too_large) return 0;
    Stream& st = it->second;
    st.field_bytes += namelen + valuelen + 32;  // RFC 9113 6.5.2
    if (st.field_bytes > kMaxFieldSection) {
      st.too_large = true;
      st.fields.clear();
      return 0;
    }
    st.fields.push_back(HttpField{std::string(reinterpret_cast<const char*>(name), namelen),
                                  std::string(reinterpret_cast<const char*>(value), valuelen)});
    return 0;
  }

  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    H2Session& h = self(user);
    const int32_t id = frame->hd.stream_id;
    auto it = h.streams_.find(id);
    if (it == h.streams_.end()) return 0;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST && !it->second.request_read) {
      it->second.request_read = true;
      h.on_request(id, it->second);
    }
    it = h.streams_.find(id);
    if (it == h.streams_.end()) return 0;
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && it->second.tunnel && !it->second.ended) {
      // The client ended its side: the tunnel ends (RFC 9298 3), our side too.
      Stream& st = it->second;
      if (!st.capsules.at_boundary()) {
        h.stats_.drop_malformed++;
        h.end_tunnel(id, "the stream ended inside a capsule (malformed, RFC 9297 3.3)", true);
        nghttp2_submit_rst_stream(h.s_, NGHTTP2_FLAG_NONE, id, NGHTTP2_PROTOCOL_ERROR);
        return 0;
      }
      h.end_tunnel(id, "the client ended the stream", true);
      if (st.deferred) {
        st.deferred = false;
        nghttp2_session_resume_data(h.s_, id);  // the data provider now says EOF
      }
    }
    return 0;
  }

  static int on_data_chunk(nghttp2_session*, uint8_t, int32_t id, const uint8_t* data, size_t len, void* user) {
    H2Session& h = self(user);
    auto it = h.streams_.find(id);
    if (it != h.streams_.end() && it->second.waiting) {
      // RFC 9298 lets a client send before the answer: kept, at most kMaxPendingOutput bytes over the connection's
      // waiting streams (more resets the stream, counted too_large), and read once the answer is a 2xx.
      if (h.early_ + len > kMaxPendingOutput) {
        h.stats_.drop_too_large++;
        nghttp2_submit_rst_stream(h.s_, NGHTTP2_FLAG_NONE, id, NGHTTP2_ENHANCE_YOUR_CALM);
        return 0;
      }
      it->second.early.append(reinterpret_cast<const char*>(data), len);
      h.early_ += len;
      return 0;
    }
    if (it == h.streams_.end() || !it->second.tunnel || it->second.ended) return 0;  // a refused request's body: left
    h.read_capsules(id, it->second, {data, len});
    return 0;
  }

  void read_capsules(int32_t id, Stream& st, std::span<const uint8_t> bytes) {
    const bool ok = st.capsules.feed(bytes, stats_, [&](std::span<const uint8_t> payload) {
      if (cb_.datagram) cb_.datagram(id, payload);
    });
    if (!ok) {
      end_tunnel(id, "a malformed capsule (a DATAGRAM capsule without its context ID)", true);
      nghttp2_submit_rst_stream(s_, NGHTTP2_FLAG_NONE, id, NGHTTP2_PROTOCOL_ERROR);
    }
  }

  static int on_stream_close(nghttp2_session*, int32_t id, uint32_t error_code, void* user) {
    H2Session& h = self(user);
    auto it = h.streams_.find(id);
    if (it == h.streams_.end()) return 0;
    if (it->second.tunnel && !it->second.ended)
      h.end_tunnel(id, error_code ? "the client reset the stream (error " + std::to_string(error_code) + ")"
                                  : std::string("the stream closed"), true);
    if (it->second.waiting) h.waiting_--;
    h.early_ -= it->second.early.size();
    h.queued_ -= it->second.out.size() - it->second.out_off;
    h.streams_.erase(it);
    return 0;
  }

  static ssize_t read_data(nghttp2_session*, int32_t id, uint8_t* buf, size_t length, uint32_t* flags,
                           nghttp2_data_source*, void* user) {
    H2Session& h = self(user);
    auto it = h.streams_.find(id);
    if (it == h.streams_.end()) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    Stream& st = it->second;
    const size_t n = std::min(length, st.out.size() - st.out_off);
    if (n > 0) {
      std::copy_n(st.out.data() + st.out_off, n, buf);
      st.out_off += n;
      h.queued_ -= n;
      if (st.out_off == st.out.size()) {
        st.out.clear();
        st.out_off = 0;
      }
      return ssize_t(n);
    }
    if (st.ended) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      return 0;
    }
    st.deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }

  void end_tunnel(int32_t id, const std::string& why, bool notify) {
    auto it = streams_.find(id);
    if (it == streams_.end() || !it->second.tunnel || it->second.ended) return;
    it->second.ended = true;
    tunnels_--;
    if (notify && cb_.tunnel_ended) cb_.tunnel_ended(id, why);
  }

  void refuse(int32_t id, Stream& st, uint16_t status, const std::string& why) {
    if (cb_.bad_request) cb_.bad_request(id, status, why);
    answer(id, st, ConnectUdpAnswer{status, "http_request_error", why});
  }

  void on_request(int32_t id, Stream& st) {
    stats_.requests++;
    if (st.too_large) {
      st.fields.clear();
      return refuse(id, st, 431, "the request's fields are over " + std::to_string(kMaxFieldSection) + " bytes");
    }
    ConnectUdpRequestProblem problem;
    std::optional<ConnectUdpRequest> req = parse_connect_udp_request(st.fields, &problem);
    st.fields.clear();
    st.fields.shrink_to_fit();
    if (!req) return refuse(id, st, connect_udp_status(problem.error), problem.detail);
    if (tunnels_ + waiting_ >= kMaxTunnels) {
      stats_.over_tunnel_limit++;
      return answer(id, st, ConnectUdpAnswer{429, "connection_limit_reached",
                                             std::to_string(kMaxTunnels) + " CONNECT-UDP streams are open on this "
                                             "connection already: open another connection"});
    }
    const ConnectUdpAnswer a =
        cb_.connect_udp ? cb_.connect_udp(id, *req) : ConnectUdpAnswer{500, "proxy_internal_error", {}};
    if (a.status == ConnectUdpAnswer::kLater) {
      st.waiting = true;
      waiting_++;
      return;
    }
    answer(id, st, a);
  }

  void answer(int32_t id, Stream& st, const ConnectUdpAnswer& a) {
    const std::vector<HttpField> fields = connect_udp_response_fields(a.status, a.proxy_error, a.details);
    std::vector<nghttp2_nv> nva;
    for (const HttpField& f : fields)
      nva.push_back(nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(f.name.data())),
                               reinterpret_cast<uint8_t*>(const_cast<char*>(f.value.data())), f.name.size(),
                               f.value.size(), NGHTTP2_NV_FLAG_NONE});
    if (answer_ok(a.status)) {
      st.tunnel = true;
      tunnels_++;
      nghttp2_data_provider provider{};
      provider.read_callback = &H2Session::read_data;
      if (nghttp2_submit_response(s_, id, nva.data(), nva.size(), &provider) != 0) {
        end_tunnel(id, "the answer could not be queued", true);
        nghttp2_submit_rst_stream(s_, NGHTTP2_FLAG_NONE, id, NGHTTP2_INTERNAL_ERROR);
      }
      return;
    }
    // A refusal ends our side of the stream (END_STREAM on the HEADERS); a body the client still sends is left.
    if (nghttp2_submit_response(s_, id, nva.data(), nva.size(), nullptr) != 0)
      nghttp2_submit_rst_stream(s_, NGHTTP2_FLAG_NONE, id, NGHTTP2_INTERNAL_ERROR);
  }

  Callbacks cb_;
  nghttp2_session* s_ = nullptr;
  std::map<int32_t, Stream> streams_;
  size_t tunnels_ = 0, waiting_ = 0;
  size_t queued_ = 0;  // capsule bytes queued on all streams
  size_t early_ = 0;   // bytes held in waiting streams' `early`
  bool failed_ = false, failed_send_ = false;
};

// ---------------------------------------------------------------------------------------------------------------
// HTTP/1.1
// ---------------------------------------------------------------------------------------------------------------

std::string lower_ascii(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return s;
}

std::string trim_ows(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) --e;
  return s.substr(b, e - b);
}

// Whether the comma-separated list `value` (RFC 9110 5.6.1) has `token` (case-insensitive).
bool list_has(const std::string& value, std::string_view token) {
  size_t start = 0;
  while (start <= value.size()) {
    size_t comma = value.find(',', start);
    if (comma == std::string::npos) comma = value.size();
    if (lower_ascii(trim_ows(value.substr(start, comma - start))) == token) return true;
    start = comma + 1;
  }
  return false;
}

const char* reason_phrase(uint16_t status) {
  switch (status) {
    case 101: return "Switching Protocols";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

class H1Session final : public MasqueTcpSession {
 public:
  explicit H1Session(Callbacks cb) : cb_(std::move(cb)) {
    http_parser_init(&parser_, HTTP_REQUEST);
    parser_.data = this;
    http_parser_settings_init(&settings_);
    settings_.on_url = &H1Session::on_url;
    settings_.on_header_field = &H1Session::on_header_field;
    settings_.on_header_value = &H1Session::on_header_value;
    settings_.on_headers_complete = &H1Session::on_headers_complete;
  }

  const char* protocol() const override { return "http/1.1"; }

  bool feed(std::span<const uint8_t> bytes) override {
    if (state_ == State::Closing) return false;
    if (state_ == State::Tunnel) {
      read_capsules(bytes);
      return state_ != State::Closing;
    }
    if (state_ == State::Waiting) {  // capsules sent before the answer: kept (bounded) until the 101
      if (early_.size() + bytes.size() > kMaxPendingOutput) return fail_closed();
      early_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
      return true;
    }
    const size_t n = http_parser_execute(&parser_, &settings_, reinterpret_cast<const char*>(bytes.data()), bytes.size());
    head_bytes_ += n;
    if (!headers_done_) {
      if (HTTP_PARSER_ERRNO(&parser_) != HPE_OK) {
        refuse(400, std::string("not an HTTP/1.1 request (") + http_errno_description(HTTP_PARSER_ERRNO(&parser_)) + ")");
        return false;
      }
      if (head_bytes_ > kMaxFieldSection) {
        refuse(431, "the request's head is over " + std::to_string(kMaxFieldSection) + " bytes");
        return false;
      }
      return true;
    }
    if (head_bytes_ > kMaxFieldSection) {
      refuse(431, "the request's head is over " + std::to_string(kMaxFieldSection) + " bytes");
      return false;
    }
    early_.assign(reinterpret_cast<const char*>(bytes.data()) + n, bytes.size() - n);
    on_request();
    return state_ != State::Closing;
  }

  void peer_closed() override {
    if (state_ == State::Tunnel) {
      if (!capsules_.at_boundary()) {
        stats_.drop_malformed++;
        end_tunnel("the connection ended inside a capsule (malformed, RFC 9297 3.3)");
      } else {
        end_tunnel("the client closed the connection");
      }
    }
    state_ = State::Closing;
  }

  void take_output(std::string& out, size_t max) override {
    if (out_.empty()) return;
    const size_t n = std::min(out_.size() - out_off_, max > out.size() ? max - out.size() : 0);
    out.append(out_, out_off_, n);
    out_off_ += n;
    if (out_off_ == out_.size()) {
      out_.clear();
      out_off_ = 0;
    }
  }

  void complete(int32_t, const ConnectUdpAnswer& a) override {
    if (state_ != State::Waiting) return;
    answer(a.status == ConnectUdpAnswer::kLater ? ConnectUdpAnswer{500, "proxy_internal_error", {}} : a);
  }

  bool send_datagram(int32_t, std::span<const uint8_t> payload) override {
    if (state_ != State::Tunnel) return false;
    std::vector<uint8_t> capsule;
    append_datagram_capsule(capsule, 0, payload);
    if (out_.size() - out_off_ + capsule.size() > kMaxPendingOutput) {
      stats_.drop_slow_client++;
      return false;
    }
    if (out_off_ > 0 && out_off_ * 2 >= out_.size()) {  // what was sent goes: out_ stays near the bound
      out_.erase(0, out_off_);
      out_off_ = 0;
    }
    out_.append(reinterpret_cast<const char*>(capsule.data()), capsule.size());
    stats_.datagrams_out++;
    return true;
  }

  void cut(int32_t) override {
    if (state_ == State::Tunnel) tunnel_ = false;
    state_ = State::Closing;
  }

  bool closing() const override { return state_ == State::Closing; }
  size_t tunnels() const override { return state_ == State::Tunnel ? 1 : 0; }
  size_t waiting() const override { return state_ == State::Waiting ? 1 : 0; }
  bool waiting(int32_t) const override { return state_ == State::Waiting; }

 private:
  enum class State : uint8_t { Request, Waiting, Tunnel, Closing };

  static H1Session& self(http_parser* p) { return *static_cast<H1Session*>(p->data); }
  static int on_url(http_parser* p, const char* at, size_t len) {
    self(p).url_.append(at, len);
    return 0;
  }
  static int on_header_field(http_parser* p, const char* at, size_t len) {
    H1Session& h = self(p);
    if (h.value_last_ || h.headers_.empty()) h.headers_.emplace_back();
    h.value_last_ = false;
    h.headers_.back().first.append(at, len);
    return 0;
  }
  static int on_header_value(http_parser* p, const char* at, size_t len) {
    H1Session& h = self(p);
    if (h.headers_.empty()) return 1;
    h.value_last_ = true;
    h.headers_.back().second.append(at, len);
    return 0;
  }
  // 2: whatever follows the head is not this request's body (the capsules after an Upgrade, RFC 9298 3.2).
  static int on_headers_complete(http_parser* p) {
    self(p).headers_done_ = true;
    return 2;
  }

  bool fail_closed() {
    state_ = State::Closing;
    return false;
  }

  void refuse(uint16_t status, const std::string& why) {
    if (cb_.bad_request) cb_.bad_request(0, status, why);
    answer(ConnectUdpAnswer{status, "http_request_error", why});
  }

  // The request mapped to the fields of its HTTP/2 form (RFC 9298 3.2 and 3.4 say the same thing), then read by
  // parse_connect_udp_request as HTTP/2's and HTTP/3's are.
  void on_request() {
    stats_.requests++;
    if (parser_.http_major != 1 || parser_.http_minor != 1) return refuse(400, "not an HTTP/1.1 request");
    if (parser_.method != HTTP_GET)
      return refuse(405, std::string("method ") + http_method_str(http_method(parser_.method)) +
                             ": CONNECT-UDP over HTTP/1.1 is a GET with Upgrade: connect-udp");
    const std::string* host = nullptr;
    const std::string* upgrade = nullptr;
    std::string connection;
    std::vector<HttpField> fields;
    std::vector<HttpField> regular;
    for (auto& [name, value] : headers_) {
      const std::string n = lower_ascii(name);
      if (n == "host") {
        if (host) return refuse(400, "Host given twice");
        host = &value;
      } else if (n == "upgrade") {
        if (upgrade) return refuse(400, "Upgrade given twice");
        upgrade = &value;
      } else if (n == "connection") {
        connection += (connection.empty() ? "" : ",") + value;
      } else if (n == "content-length") {
        if (trim_ows(value) != "0") return refuse(400, "a CONNECT-UDP request has no body");
      } else {
        regular.push_back(HttpField{n, trim_ows(value)});
      }
    }
    if (!upgrade) return refuse(400, "not an Upgrade request (CONNECT-UDP needs Upgrade: connect-udp)");
    if (!list_has(connection, "upgrade")) return refuse(400, "Upgrade without Connection: Upgrade");
    if (!host) return refuse(400, "no Host field");
    fields.push_back({":method", "CONNECT"});
    fields.push_back({":protocol", lower_ascii(trim_ows(*upgrade))});
    fields.push_back({":scheme", "https"});
    fields.push_back({":authority", trim_ows(*host)});
    fields.push_back({":path", url_});
    fields.insert(fields.end(), regular.begin(), regular.end());
    headers_.clear();
    ConnectUdpRequestProblem problem;
    std::optional<ConnectUdpRequest> req = parse_connect_udp_request(fields, &problem);
    if (!req) return refuse(connect_udp_status(problem.error), problem.detail);
    const ConnectUdpAnswer a =
        cb_.connect_udp ? cb_.connect_udp(0, *req) : ConnectUdpAnswer{500, "proxy_internal_error", {}};
    if (a.status == ConnectUdpAnswer::kLater) {
      state_ = State::Waiting;
      return;
    }
    answer(a);
  }

  void answer(const ConnectUdpAnswer& a) {
    if (answer_ok(a.status)) {
      out_ += "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\n"
              "Capsule-Protocol: ?1\r\n\r\n";
      state_ = State::Tunnel;
      tunnel_ = true;
      std::string early = std::move(early_);
      early_.clear();
      if (!early.empty()) read_capsules({reinterpret_cast<const uint8_t*>(early.data()), early.size()});
      return;
    }
    out_ += "HTTP/1.1 " + std::to_string(a.status) + " " + reason_phrase(a.status) + "\r\n";
    for (const HttpField& f : connect_udp_response_fields(a.status, a.proxy_error, a.details))
      if (f.name == "proxy-status") out_ += "Proxy-Status: " + f.value + "\r\n";
    if (a.status == 405) out_ += "Allow: GET\r\n";
    out_ += "Connection: close\r\nContent-Length: 0\r\n\r\n";
    state_ = State::Closing;
  }

  void read_capsules(std::span<const uint8_t> bytes) {
    const bool ok = capsules_.feed(bytes, stats_, [&](std::span<const uint8_t> payload) {
      if (cb_.datagram) cb_.datagram(0, payload);
    });
    if (!ok) {
      end_tunnel("a malformed capsule (a DATAGRAM capsule without its context ID)");
      state_ = State::Closing;
    }
  }

  void end_tunnel(const std::string& why) {
    if (!tunnel_) return;
    tunnel_ = false;
    if (cb_.tunnel_ended) cb_.tunnel_ended(0, why);
  }

  Callbacks cb_;
  http_parser parser_{};
  http_parser_settings settings_{};
  State state_ = State::Request;
  bool tunnel_ = false;  // accepted and not ended
  bool headers_done_ = false;
  bool value_last_ = false;
  size_t head_bytes_ = 0;
  std::string url_;
  std::vector<std::pair<std::string, std::string>> headers_;
  std::string early_;  // bytes after the head: capsules sent before the 101
  std::string out_;
  size_t out_off_ = 0;
  CapsuleStream capsules_;
};

}  // namespace

std::unique_ptr<MasqueTcpSession> make_h2_session(MasqueTcpSession::Callbacks cb) {
  auto s = std::make_unique<H2Session>(std::move(cb));
  if (!s->init()) return nullptr;
  return s;
}

std::unique_ptr<MasqueTcpSession> make_h1_session(MasqueTcpSession::Callbacks cb) {
  return std::make_unique<H1Session>(std::move(cb));
}

}  // namespace dptun
