// dpctld's HTTP/3 server session (control/h3_server.hpp) driven with the bytes a client sends: its SETTINGS, the
// CONNECT-UDP answers decided by a real route table (control/masque_routes.hpp), the order in which a request and the
// client's SETTINGS may come, and each connection error RFC 9114 names for a misbehaving client. What the session
// writes is read back with the frame reader and QPACK decoder, as a client would.
#include "control/h3_server.hpp"
#include "control/masque_routes.hpp"
#include "proto/h3_fields.hpp"
#include "tests/unit/cmocka.hpp"

#include <map>

using namespace dptun;

namespace {

struct Recorder final : H3Transport {
  std::map<int64_t, std::vector<uint8_t>> out;
  std::map<int64_t, bool> fin;
  std::vector<std::pair<int64_t, uint64_t>> resets;
  int64_t next_uni = 3;
  uint64_t closed_with = 0;
  bool closed = false;
  int64_t open_uni_stream() override {
    const int64_t id = next_uni;
    next_uni += 4;
    return id;
  }
  void write(int64_t id, std::span<const uint8_t> bytes, bool f) override {
    auto& o = out[id];
    o.insert(o.end(), bytes.begin(), bytes.end());
    if (f) fin[id] = true;
  }
  void reset_stream(int64_t id, uint64_t code) override { resets.emplace_back(id, code); }
  void close_connection(uint64_t code, const std::string&) override {
    closed = true;
    closed_with = code;
  }
};

const char* kTunnel = "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f";

MasqueRouteTable routes() {
  MasqueRoute dns;
  dns.host = "dns.corp.example.com";
  dns.port = 53;
  dns.tunnel = *Uuid::parse(kTunnel);
  dns.to_host = "10.0.0.53";
  dns.to_port = 53;
  dns.allow = {"CN=alice"};
  return MasqueRouteTable({dns});
}

// A client connection: the session under test, answering from the route table for a client named `cn`.
struct Client {
  Recorder t;
  MasqueRouteTable table = routes();
  std::string cn = "CN=alice";
  std::vector<std::pair<int64_t, uint16_t>> bad;
  std::vector<int64_t> ended;
  bool later = false;  // connect_udp answers later (ConnectUdpAnswer::kLater)
  bool quic_datagrams = true;
  H3ServerSession s{t, callbacks(), quic_datagrams};

  H3ServerSession::Callbacks callbacks() {
    H3ServerSession::Callbacks cb;
    cb.connect_udp = [this](int64_t, const ConnectUdpRequest& req) {
      if (later) return ConnectUdpAnswer{ConnectUdpAnswer::kLater, {}, {}};
      const MasqueMatch m = table.match(req.target.host, req.target.port, {cn}, true);
      if (!m)
        return ConnectUdpAnswer{uint16_t(masque_refusal_http_status(m.refusal)),
                                masque_refusal_proxy_status(m.refusal), "no"};
      return ConnectUdpAnswer{200, {}, {}};
    };
    cb.bad_request = [this](int64_t id, uint16_t status, const std::string&) { bad.emplace_back(id, status); };
    cb.request_ended = [this](int64_t id) { ended.push_back(id); };
    return cb;
  }
};

std::vector<uint8_t> control_stream(bool h3_datagram) {
  std::vector<uint8_t> b;
  append_h3_varint(b, kH3StreamControl);
  H3Settings s;
  s.h3_datagram = h3_datagram;
  append_h3_settings(b, s);
  return b;
}

std::vector<uint8_t> headers_frame(const std::vector<HttpField>& fields) {
  std::vector<uint8_t> section, b;
  assert_true(encode_h3_field_section(fields, section));
  append_h3_frame_header(b, kH3FrameHeaders, section.size());
  b.insert(b.end(), section.begin(), section.end());
  return b;
}

std::vector<uint8_t> connect_udp(const std::string& host, uint16_t port) {
  return headers_frame(connect_udp_request_fields("gw.example.com", host, port));
}

// The answer's fields on `id`, read as a client would: one HEADERS frame.
std::vector<HttpField> answer_on(Recorder& t, int64_t id) {
  std::vector<HttpField> fields;
  H3FrameReader r(H3ServerSession::kMaxFrame);
  H3FrameReader::Handlers h;
  h.on_frame = [&](uint64_t type, std::span<const uint8_t> payload) {
    assert_int_equal(type, kH3FrameHeaders);
    fields = decode_h3_field_section(payload, 65536).value();
    return true;
  };
  h.on_data = [](std::span<const uint8_t>, bool) { return false; };
  assert_true(r.feed(t.out[id], h));
  assert_true(r.at_boundary());
  return fields;
}

std::string field(const std::vector<HttpField>& fs, const std::string& name) {
  for (const HttpField& f : fs)
    if (f.name == name) return f.value;
  return "";
}

void test_settings_sent_first(void**) {
  Client c;
  assert_true(c.s.start());
  // One unidirectional stream: its type (control), then SETTINGS with extended CONNECT and HTTP Datagrams.
  const std::vector<uint8_t>& b = c.t.out[3];
  assert_true(b.size() > 2);
  assert_int_equal(b[0], kH3StreamControl);
  H3FrameReader r(1024);
  std::optional<H3Settings> got;
  H3FrameReader::Handlers h;
  h.on_frame = [&](uint64_t type, std::span<const uint8_t> payload) {
    assert_int_equal(type, kH3FrameSettings);
    got = parse_h3_settings(payload);
    return true;
  };
  h.on_data = [](std::span<const uint8_t>, bool) { return false; };
  assert_true(r.feed(std::span<const uint8_t>(b).subspan(1), h));
  assert_true(got.has_value());
  assert_true(got->enable_connect_protocol);
  assert_true(got->h3_datagram);
  assert_int_equal(got->qpack_max_table_capacity, 0);
  assert_false(c.t.fin[3]);
}

void test_accepted_and_refused(void**) {
  Client c;
  c.s.start();
  c.s.on_stream_data(2, control_stream(true), false);
  c.s.on_stream_data(0, connect_udp("dns.corp.example.com", 53), false);
  std::vector<HttpField> a = answer_on(c.t, 0);
  assert_string_equal(field(a, ":status").c_str(), "200");
  assert_string_equal(field(a, "capsule-protocol").c_str(), "?1");
  assert_false(c.t.fin[0]);  // the stream stays open: it is the tunnel
  assert_int_equal(c.s.open_tunnels().size(), 1);

  c.s.on_stream_data(4, connect_udp("time.corp.example.com", 123), false);
  a = answer_on(c.t, 4);
  assert_string_equal(field(a, ":status").c_str(), "404");
  assert_true(field(a, "proxy-status").find("error=destination_not_found") != std::string::npos);
  assert_true(c.t.fin[4]);

  c.cn = "CN=bob";
  c.s.on_stream_data(8, connect_udp("dns.corp.example.com", 53), false);
  a = answer_on(c.t, 8);
  assert_string_equal(field(a, ":status").c_str(), "403");
  assert_true(field(a, "proxy-status").find("error=http_request_denied") != std::string::npos);

  // The client ends the tunnel: dpctld ends its side and says so.
  c.s.on_stream_data(0, {}, true);
  assert_true(c.t.fin[0]);
  assert_int_equal(c.ended.size(), 1);
  assert_true(c.s.open_tunnels().empty());
  assert_false(c.t.closed);
}

void test_request_before_settings(void**) {
  Client c;
  c.s.start();
  c.s.on_stream_data(0, connect_udp("dns.corp.example.com", 53), false);
  assert_true(c.t.out[0].empty());  // held until the client's SETTINGS say whether it takes HTTP Datagrams
  c.s.on_stream_data(2, control_stream(true), false);
  assert_string_equal(field(answer_on(c.t, 0), ":status").c_str(), "200");
}

void test_no_h3_datagram_setting(void**) {
  Client c;
  c.s.start();
  c.s.on_stream_data(2, control_stream(false), false);
  c.s.on_stream_data(0, connect_udp("dns.corp.example.com", 53), false);
  assert_string_equal(field(answer_on(c.t, 0), ":status").c_str(), "400");
  assert_int_equal(c.bad.size(), 1);
  assert_true(c.s.open_tunnels().empty());
}

void test_other_requests(void**) {
  Client c;
  c.s.start();
  c.s.on_stream_data(2, control_stream(true), false);
  c.s.on_stream_data(0, headers_frame({{":method", "GET"}, {":scheme", "https"}, {":authority", "gw"},
                                       {":path", "/index.html"}}), true);
  assert_string_equal(field(answer_on(c.t, 0), ":status").c_str(), "405");
  // Classic CONNECT (a TCP tunnel): not served.
  c.s.on_stream_data(4, headers_frame({{":method", "CONNECT"}, {":authority", "10.0.0.1:22"}}), false);
  assert_string_equal(field(answer_on(c.t, 4), ":status").c_str(), "501");
  // A path that is no CONNECT-UDP target.
  std::vector<HttpField> f = connect_udp_request_fields("gw", "dns.corp.example.com", 53);
  for (HttpField& x : f)
    if (x.name == ":path") x.value = "/.well-known/masque/udp/dns.corp.example.com/0/";
  c.s.on_stream_data(8, headers_frame(f), false);
  assert_string_equal(field(answer_on(c.t, 8), ":status").c_str(), "400");
  assert_int_equal(c.bad.size(), 3);
  assert_false(c.t.closed);
}

void test_byte_at_a_time(void**) {
  Client c;
  c.s.start();
  const std::vector<uint8_t> ctl = control_stream(true), req = connect_udp("dns.corp.example.com", 53);
  for (uint8_t b : ctl) c.s.on_stream_data(2, std::span<const uint8_t>(&b, 1), false);
  for (uint8_t b : req) c.s.on_stream_data(0, std::span<const uint8_t>(&b, 1), false);
  assert_string_equal(field(answer_on(c.t, 0), ":status").c_str(), "200");
}

// A fresh session fed `stream`'s bytes must close the connection with `code`.
void expect_close(int64_t stream, const std::vector<uint8_t>& bytes, bool fin, uint64_t code, bool settings_first = true) {
  Client c;
  c.s.start();
  if (settings_first) c.s.on_stream_data(2, control_stream(true), false);
  c.s.on_stream_data(stream, bytes, fin);
  assert_true(c.t.closed);
  assert_int_equal(c.t.closed_with, code);
  assert_true(c.s.closed());
}

void test_connection_errors(void**) {
  // A control stream that does not start with SETTINGS.
  std::vector<uint8_t> b{uint8_t(kH3StreamControl)};
  append_h3_frame_header(b, kH3FrameGoaway, 1);
  b.push_back(0);
  expect_close(2, b, false, kH3MissingSettings, false);
  // A second control stream, a push stream from a client, a second SETTINGS.
  expect_close(6, control_stream(true), false, kH3StreamCreationError);
  expect_close(6, {uint8_t(kH3StreamPush)}, false, kH3StreamCreationError);
  b = control_stream(true);
  std::vector<uint8_t> again;
  append_h3_settings(again, H3Settings{});
  b.insert(b.end(), again.begin(), again.end());
  expect_close(2, b, false, kH3FrameUnexpected, false);
  // The control stream closed.
  expect_close(2, control_stream(true), true, kH3ClosedCriticalStream, false);
  // DATA before a request's HEADERS; SETTINGS on a request stream.
  b.clear();
  append_h3_frame_header(b, kH3FrameData, 2);
  b.insert(b.end(), {0, 0});
  expect_close(0, b, false, kH3FrameUnexpected);
  b.clear();
  append_h3_settings(b, H3Settings{});
  expect_close(0, b, false, kH3FrameUnexpected);
  // A field section QPACK cannot read: a reference to the dynamic table, whose capacity is 0.
  b.clear();
  append_h3_frame_header(b, kH3FrameHeaders, 3);
  b.insert(b.end(), {0x02, 0x00, 0x80});  // Required Insert Count 1, then an indexed dynamic field
  expect_close(0, b, false, kQpackDecompressionFailed);
  // A request stream that ends inside a frame.
  b = connect_udp("dns.corp.example.com", 53);
  b.pop_back();
  expect_close(0, b, true, kH3FrameError);
}

void test_unknown_streams_and_frames_ignored(void**) {
  Client c;
  c.s.start();
  // A reserved stream type (0x1f * N + 0x21, RFC 9114 6.2.3) and a reserved frame type on the control stream.
  std::vector<uint8_t> grease;
  append_h3_varint(grease, 0x21);
  grease.insert(grease.end(), {1, 2, 3});
  c.s.on_stream_data(6, grease, false);
  // A reserved frame bigger than any frame dptun buffers: skipped as it comes (RFC 9114 9).
  std::vector<uint8_t> ctl = control_stream(true);
  append_h3_frame_header(ctl, 0x21, 20000);
  ctl.resize(ctl.size() + 20000, 9);
  c.s.on_stream_data(2, ctl, false);
  c.s.on_stream_data(0, connect_udp("dns.corp.example.com", 53), false);
  assert_string_equal(field(answer_on(c.t, 0), ":status").c_str(), "200");
  assert_false(c.t.closed);
  assert_int_equal(c.s.stats().unknown_streams, 1);
  assert_int_equal(c.s.stats().unknown_frames, 1);
}

// A refused request's body does not end the connection (RFC 9114 4.1: HEADERS then DATA is a valid sequence).
void test_refused_request_body(void**) {
  Client c;
  c.s.start();
  c.s.on_stream_data(2, control_stream(true), false);
  std::vector<uint8_t> post = headers_frame({{":method", "POST"}, {":scheme", "https"}, {":authority", "gw"},
                                             {":path", "/upload"}});
  append_h3_frame_header(post, kH3FrameData, 3);
  post.insert(post.end(), {'a', 'b', 'c'});
  c.s.on_stream_data(0, post, true);
  assert_string_equal(field(answer_on(c.t, 0), ":status").c_str(), "405");
  assert_false(c.t.closed);
}

void test_more_connection_errors(void**) {
  // SETTINGS_H3_DATAGRAM from a client whose transport parameters allow no DATAGRAM frame (RFC 9297 2.1.1).
  {
    Client c;
    c.quic_datagrams = false;
    H3ServerSession s(c.t, c.callbacks(), false);
    s.start();
    s.on_stream_data(2, control_stream(true), false);
    assert_true(c.t.closed);
    assert_int_equal(c.t.closed_with, kH3SettingsError);
  }
  // CANCEL_PUSH of a push never promised (RFC 9114 7.2.3).
  std::vector<uint8_t> b = control_stream(true);
  append_h3_frame_header(b, kH3FrameCancelPush, 1);
  b.push_back(0);
  expect_close(2, b, false, kH3IdError, false);
  // HEADERS on a CONNECT-UDP stream after its 200 (RFC 9114 4.4).
  Client c;
  c.s.start();
  c.s.on_stream_data(2, control_stream(true), false);
  c.s.on_stream_data(0, connect_udp("dns.corp.example.com", 53), false);
  assert_false(c.t.closed);
  c.s.on_stream_data(0, headers_frame({{"x-trailer", "1"}}), false);
  assert_true(c.t.closed);
  assert_int_equal(c.t.closed_with, kH3FrameUnexpected);
}

// An answer given later: nothing until complete(); complete() on a stream the client ended meanwhile sends nothing.
void test_later_answers(void**) {
  Client c;
  c.later = true;
  c.s.start();
  c.s.on_stream_data(2, control_stream(true), false);
  c.s.on_stream_data(0, connect_udp("dns.corp.example.com", 53), false);
  assert_true(c.t.out[0].empty());
  assert_true(c.s.waiting(0));
  c.s.complete(0, ConnectUdpAnswer{200, {}, {}});
  assert_string_equal(field(answer_on(c.t, 0), ":status").c_str(), "200");
  assert_false(c.s.waiting(0));
  assert_int_equal(c.s.open_tunnels().size(), 1);
  // The client ends its request while the answer is pending: complete() then sends nothing.
  c.s.on_stream_data(4, connect_udp("dns.corp.example.com", 53), true);
  assert_false(c.s.waiting(4));
  c.s.complete(4, ConnectUdpAnswer{200, {}, {}});
  assert_true(c.t.out[4].empty());
  assert_int_equal(c.s.open_tunnels().size(), 1);
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(test_settings_sent_first),
      cmocka_unit_test(test_accepted_and_refused),
      cmocka_unit_test(test_request_before_settings),
      cmocka_unit_test(test_no_h3_datagram_setting),
      cmocka_unit_test(test_other_requests),
      cmocka_unit_test(test_byte_at_a_time),
      cmocka_unit_test(test_connection_errors),
      cmocka_unit_test(test_unknown_streams_and_frames_ignored),
      cmocka_unit_test(test_refused_request_body),
      cmocka_unit_test(test_more_connection_errors),
      cmocka_unit_test(test_later_answers),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
