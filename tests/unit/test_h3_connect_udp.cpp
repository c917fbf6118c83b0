// dpagent udp's HTTP/3 client of one CONNECT-UDP request (agent/h3_connect_udp.hpp), driven with the bytes a gateway
// sends: our streams' first bytes, the gateway's SETTINGS gating the request, the request's fields, the answer (2xx,
// interim, refusals with Proxy-Status), the receive rules for HTTP Datagrams and DATAGRAM capsules (other stream,
// other context ID, before the answer, cut short: dropped and counted; a Quarter Stream ID too big: connection error),
// and the stream errors RFC 9114 names.
#include <cstring>
#include <string>

#include "tests/unit/cmocka.hpp"

#include "agent/h3_connect_udp.hpp"
#include "proto/masque_capsule.hpp"
#include "proto/masque_datagram.hpp"
#include "proto/quic_varint.hpp"

using namespace dptun;

namespace {

using Bytes = std::vector<uint8_t>;
using State = H3ConnectUdpClient::State;
using Drop = H3ConnectUdpClient::Drop;

constexpr int64_t kServerControl = 3, kServerEncoder = 7, kServerDecoder = 11, kRequest = 0;

Bytes settings_stream(bool connect_protocol, bool datagram) {
  Bytes out;
  append_h3_varint(out, kH3StreamControl);
  H3Settings s;
  s.enable_connect_protocol = connect_protocol;
  s.h3_datagram = datagram;
  append_h3_settings(out, s);
  return out;
}

Bytes headers_frame(const std::vector<HttpField>& fields) {
  Bytes section;
  assert_true(encode_h3_field_section(fields, section));
  Bytes out;
  append_h3_frame_header(out, kH3FrameHeaders, section.size());
  out.insert(out.end(), section.begin(), section.end());
  return out;
}

Bytes data_frame(const Bytes& payload) {
  Bytes out;
  append_h3_frame_header(out, kH3FrameData, payload.size());
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

bool feed(H3ConnectUdpClient& c, int64_t id, const Bytes& b, bool fin = false,
          const H3ConnectUdpClient::Deliver& deliver = {}) {
  return c.on_stream_data(id, b, fin, deliver);
}

// A client whose request is out (the gateway offered CONNECT-UDP).
H3ConnectUdpClient requested() {
  H3ConnectUdpClient c("gw.example.net", "dns.corp.example", 53);
  assert_true(feed(c, kServerControl, settings_stream(true, true)));
  assert_int_equal(int(c.state()), int(State::Ready));
  assert_false(c.request(kRequest).empty());
  assert_int_equal(int(c.state()), int(State::AwaitAnswer));
  return c;
}

H3ConnectUdpClient opened() {
  H3ConnectUdpClient c = requested();
  assert_true(feed(c, kRequest, headers_frame(connect_udp_response_fields(200))));
  assert_int_equal(int(c.state()), int(State::Open));
  return c;
}

Bytes datagram(uint64_t stream_id, uint64_t context_id, const std::string& payload) {
  Bytes out(16 + payload.size());
  const size_t n = write_h3_datagram_header(out, stream_id, context_id);
  assert_true(n > 0);
  std::memcpy(out.data() + n, payload.data(), payload.size());
  out.resize(n + payload.size());
  return out;
}

std::string text(std::span<const uint8_t> s) { return std::string(reinterpret_cast<const char*>(s.data()), s.size()); }

}  // namespace

// Our control stream: type 0x00 then SETTINGS with H3_DATAGRAM = 1 and a QPACK table capacity of 0; the QPACK streams
// carry their type alone.
static void our_streams(void**) {
  const Bytes control = H3ConnectUdpClient::control_stream_bytes();
  assert_true(control.size() > 2);
  assert_int_equal(control[0], 0x00);
  H3FrameReader r(1024);
  bool seen = false;
  H3FrameReader::Handlers h;
  h.on_frame = [&](uint64_t type, std::span<const uint8_t> payload) {
    assert_int_equal(type, kH3FrameSettings);
    auto s = parse_h3_settings(payload);
    assert_true(s.has_value());
    assert_true(s->h3_datagram);
    assert_int_equal(s->qpack_max_table_capacity, 0);
    assert_false(s->enable_connect_protocol);  // a client's setting it would mean nothing
    seen = true;
    return true;
  };
  h.on_data = [](std::span<const uint8_t>, bool) { return false; };
  assert_true(r.feed(std::span<const uint8_t>(control).subspan(1), h));
  assert_true(seen && r.at_boundary());
  assert_string_equal(h3_error_name(kH3NoError), "H3_NO_ERROR");
  assert_string_equal(h3_error_name(kH3DatagramError), "H3_DATAGRAM_ERROR");
  assert_null(h3_error_name(0x1f * 7 + 0x21));  // a reserved code
  assert_true(H3ConnectUdpClient::encoder_stream_bytes() == Bytes{0x02});
  assert_true(H3ConnectUdpClient::decoder_stream_bytes() == Bytes{0x03});
}

// No request before the gateway's SETTINGS offer CONNECT-UDP; the stream may come a byte at a time, with the QPACK
// streams and an unknown stream type beside it.
static void settings_gate_the_request(void**) {
  H3ConnectUdpClient c("gw.example.net:8443", "dns.corp.example", 53);
  assert_int_equal(int(c.state()), int(State::AwaitSettings));
  assert_true(c.request(kRequest).empty());
  assert_true(feed(c, kServerEncoder, Bytes{0x02}));
  assert_true(feed(c, kServerDecoder, Bytes{0x03, 0x00}));
  assert_true(feed(c, 15, Bytes{0x40, 0x21, 0xde, 0xad}, true));  // a reserved stream type (0x21): ignored
  const Bytes control = settings_stream(true, true);
  for (size_t i = 0; i < control.size(); ++i) {
    assert_int_equal(int(c.state()), int(State::AwaitSettings));
    assert_true(feed(c, kServerControl, Bytes{control[i]}));
  }
  assert_int_equal(int(c.state()), int(State::Ready));
  assert_true(c.peer_settings().h3_datagram && c.peer_settings().enable_connect_protocol);
  assert_true(c.request(5).empty());  // not a client bidirectional stream
  const Bytes req = c.request(kRequest);
  assert_int_equal(c.request_stream(), kRequest);
  // One HEADERS frame carrying connect_udp_request_fields().
  const std::vector<HttpField> want = connect_udp_request_fields("gw.example.net:8443", "dns.corp.example", 53);
  H3FrameReader r(16384);
  std::vector<HttpField> got;
  H3FrameReader::Handlers h;
  h.on_frame = [&](uint64_t type, std::span<const uint8_t> payload) {
    assert_int_equal(type, kH3FrameHeaders);
    auto f = decode_h3_field_section(payload, 16384);
    assert_true(f.has_value());
    got = *f;
    return true;
  };
  h.on_data = [](std::span<const uint8_t>, bool) { return false; };
  assert_true(r.feed(req, h));
  assert_int_equal(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    assert_string_equal(got[i].name.c_str(), want[i].name.c_str());
    assert_string_equal(got[i].value.c_str(), want[i].value.c_str());
  }
  auto parsed = parse_connect_udp_request(got);
  assert_true(parsed.has_value());
  assert_string_equal(parsed->authority.c_str(), "gw.example.net:8443");
  assert_int_equal(parsed->target.port, 53);
  assert_true(parsed->capsule_protocol);
  assert_true(c.request(4).empty());  // one request
}

static void gateway_without_connect_udp(void**) {
  struct Case {
    bool connect_protocol, datagram;
    const char* lacks;
  } cases[] = {{true, false, "SETTINGS_H3_DATAGRAM = 1"},
               {false, true, "SETTINGS_ENABLE_CONNECT_PROTOCOL = 1"},
               {false, false, "SETTINGS_H3_DATAGRAM and SETTINGS_ENABLE_CONNECT_PROTOCOL"}};
  for (const Case& k : cases) {
    H3ConnectUdpClient c("gw", "t", 1);
    assert_false(feed(c, kServerControl, settings_stream(k.connect_protocol, k.datagram)));
    assert_int_equal(int(c.state()), int(State::Failed));
    assert_true(c.no_connect_udp());
    assert_int_equal(c.error_code(), kH3NoError);
    assert_non_null(strstr(c.problem().c_str(), "the gateway does not offer CONNECT-UDP over HTTP/3"));
    assert_non_null(strstr(c.problem().c_str(), k.lacks));
    assert_true(c.request(kRequest).empty());
  }
}

// RFC 9114 6.2.1, 6.1, 4.6, 7.2.4: the connection errors of the gateway's streams.
static void stream_errors(void**) {
  {  // the control stream must start with SETTINGS
    H3ConnectUdpClient c("gw", "t", 1);
    Bytes b{0x00};
    append_h3_frame_header(b, kH3FrameGoaway, 1);
    b.push_back(0);
    assert_false(feed(c, kServerControl, b));
    assert_int_equal(c.error_code(), kH3MissingSettings);
    assert_false(c.no_connect_udp());
  }
  {  // a second control stream
    H3ConnectUdpClient c("gw", "t", 1);
    assert_true(feed(c, kServerControl, settings_stream(true, true)));
    assert_false(feed(c, 7, Bytes{0x00}));
    assert_int_equal(c.error_code(), kH3StreamCreationError);
  }
  {  // SETTINGS twice
    H3ConnectUdpClient c("gw", "t", 1);
    Bytes b = settings_stream(true, true);
    const Bytes again(b.begin() + 1, b.end());
    assert_true(feed(c, kServerControl, b));
    assert_false(feed(c, kServerControl, again));
    assert_int_equal(c.error_code(), kH3FrameUnexpected);
  }
  {  // the control stream closed
    H3ConnectUdpClient c("gw", "t", 1);
    assert_false(feed(c, kServerControl, settings_stream(true, true), true));
    assert_int_equal(c.error_code(), kH3ClosedCriticalStream);
  }
  {  // a QPACK stream reset
    H3ConnectUdpClient c("gw", "t", 1);
    assert_true(feed(c, kServerEncoder, Bytes{0x02}));
    assert_false(c.on_stream_reset(kServerEncoder, kH3NoError));
    assert_int_equal(c.error_code(), kH3ClosedCriticalStream);
  }
  {  // a push stream: no MAX_PUSH_ID was sent
    H3ConnectUdpClient c("gw", "t", 1);
    assert_false(feed(c, 15, Bytes{0x01, 0x00}));
    assert_int_equal(c.error_code(), kH3IdError);
  }
  {  // a server-initiated bidirectional stream
    H3ConnectUdpClient c("gw", "t", 1);
    assert_false(feed(c, 1, Bytes{0x01, 0x00}));
    assert_int_equal(c.error_code(), kH3StreamCreationError);
  }
  {  // DATA on the request stream before the answer
    H3ConnectUdpClient c = requested();
    assert_false(feed(c, kRequest, data_frame(Bytes{1, 2, 3})));
    assert_int_equal(c.error_code(), kH3FrameUnexpected);
  }
  {  // the request stream ends without an answer
    H3ConnectUdpClient c = requested();
    assert_false(feed(c, kRequest, Bytes{}, true));
    assert_int_equal(c.error_code(), kH3RequestIncomplete);
  }
  {  // reset before the answer
    H3ConnectUdpClient c = requested();
    assert_false(c.on_stream_reset(kRequest, kH3RequestRejected));
    assert_int_equal(int(c.state()), int(State::Failed));
  }
  {  // an answer that is not QPACK
    H3ConnectUdpClient c = requested();
    Bytes b;
    append_h3_frame_header(b, kH3FrameHeaders, 3);
    b.insert(b.end(), {0xff, 0xff, 0xff});
    assert_false(feed(c, kRequest, b));
    assert_int_equal(int(c.state()), int(State::Failed));
  }
}

static void answers(void**) {
  {  // an interim answer, then 200 with capsule-protocol
    H3ConnectUdpClient c = requested();
    assert_true(feed(c, kRequest, headers_frame({{":status", "100"}})));
    assert_int_equal(int(c.state()), int(State::AwaitAnswer));
    const Bytes ok = headers_frame(connect_udp_response_fields(200));
    assert_true(feed(c, kRequest, Bytes(ok.begin(), ok.begin() + 2)));  // the frame split
    assert_int_equal(int(c.state()), int(State::AwaitAnswer));
    assert_true(feed(c, kRequest, Bytes(ok.begin() + 2, ok.end())));
    assert_int_equal(int(c.state()), int(State::Open));
    assert_int_equal(c.answer().status, 200);
    assert_true(c.answer().capsule_protocol);
  }
  {  // a refusal with Proxy-Status (RFC 9209)
    H3ConnectUdpClient c = requested();
    assert_true(feed(c, kRequest,
                     headers_frame(connect_udp_response_fields(404, "destination_not_found", "no route for it"))));
    assert_int_equal(int(c.state()), int(State::Refused));
    const std::string t = c.refusal_text();
    assert_true(t.rfind("404 (dptun; error=destination_not_found", 0) == 0);
    assert_non_null(strstr(t.c_str(), "no route for it"));
  }
  {  // 101 does not exist in HTTP/3 (RFC 9114 4.5): a malformed answer, not an interim one
    H3ConnectUdpClient c = requested();
    assert_false(feed(c, kRequest, headers_frame({{":status", "101"}})));
    assert_int_equal(c.error_code(), kH3MessageError);
  }
  {  // a refusal without one
    H3ConnectUdpClient c = requested();
    assert_true(feed(c, kRequest, headers_frame({{":status", "403"}})));
    assert_int_equal(int(c.state()), int(State::Refused));
    assert_string_equal(c.refusal_text().c_str(), "403");
  }
  {  // after the 2xx, the stream's end ends the proxying
    H3ConnectUdpClient c = opened();
    assert_true(feed(c, kRequest, Bytes{}, true));
    assert_int_equal(int(c.state()), int(State::Ended));
  }
  {
    H3ConnectUdpClient c = opened();
    assert_true(c.on_stream_reset(kRequest, kH3ConnectError));
    assert_int_equal(int(c.state()), int(State::Ended));
  }
}

// HTTP Datagrams: ours carry the request stream's Quarter Stream ID and context 0; received ones are taken only for
// that stream, context 0, after the 2xx.
static void datagrams(void**) {
  H3ConnectUdpClient c = requested();
  // Before the answer: dropped.
  assert_false(c.datagram_payload(datagram(kRequest, 0, "early")).has_value());
  assert_int_equal(c.drops(Drop::NotOpen), 1);
  assert_true(feed(c, kRequest, headers_frame(connect_udp_response_fields(200))));
  assert_int_equal(c.datagram_header_len(), 2);
  uint8_t hdr[8];
  assert_int_equal(c.write_datagram_header(hdr), 2);
  assert_int_equal(hdr[0], 0);  // Quarter Stream ID 0
  assert_int_equal(hdr[1], 0);  // context ID 0
  Drop why = Drop::Count;
  const Bytes answer = datagram(kRequest, 0, "answer");
  auto p = c.datagram_payload(answer, &why);
  assert_true(p.has_value());
  assert_string_equal(text(*p).c_str(), "answer");
  // An empty UDP payload is a datagram too.
  const Bytes empty = datagram(kRequest, 0, "");
  p = c.datagram_payload(empty);
  assert_true(p.has_value() && p->empty());
  assert_false(c.datagram_payload(datagram(4, 0, "other stream"), &why).has_value());
  assert_int_equal(int(why), int(Drop::UnknownStream));
  assert_false(c.datagram_payload(datagram(kRequest, 2, "extension"), &why).has_value());
  assert_int_equal(int(why), int(Drop::Context));
  assert_false(c.datagram_payload(Bytes{}, &why).has_value());
  assert_int_equal(int(why), int(Drop::Malformed));
  assert_false(c.datagram_payload(Bytes{0x00, 0x40}, &why).has_value());  // the context ID cut short
  assert_int_equal(int(why), int(Drop::Malformed));
  assert_int_equal(c.drops(Drop::UnknownStream), 1);
  assert_int_equal(c.drops(Drop::Context), 1);
  assert_int_equal(c.drops(Drop::Malformed), 2);
  assert_int_equal(int(c.state()), int(State::Open));
  // A Quarter Stream ID over 2^60 - 1: H3_DATAGRAM_ERROR (RFC 9297 2.1).
  Bytes big(8);
  quic_write_varint(big.data(), kMaxQuarterStreamId + 1);
  big.push_back(0);
  assert_false(c.datagram_payload(big).has_value());
  assert_int_equal(int(c.state()), int(State::Failed));
  assert_int_equal(c.error_code(), kH3DatagramError);
}

// DATAGRAM capsules on the request stream (RFC 9297 3.5), inside DATA frames and split anywhere.
static void capsules(void**) {
  H3ConnectUdpClient c = opened();
  Bytes body;
  const Bytes one{'o', 'n', 'e'}, two{'t', 'w', 'o'};
  append_datagram_capsule(body, 0, one);
  append_datagram_capsule(body, 3, two);  // context 3: dropped
  append_capsule_header(body, 0x2a, 2);    // an unknown capsule type: skipped
  body.insert(body.end(), {9, 9});
  append_datagram_capsule(body, 0, two);
  const Bytes stream = data_frame(body);
  std::vector<std::string> got;
  auto deliver = [&](std::span<const uint8_t> p) { got.push_back(text(p)); };
  for (size_t i = 0; i < stream.size(); i += 3)
    assert_true(feed(c, kRequest, Bytes(stream.begin() + long(i), stream.begin() + long(std::min(i + 3, stream.size()))),
                     false, deliver));
  assert_int_equal(got.size(), 2);
  assert_string_equal(got[0].c_str(), "one");
  assert_string_equal(got[1].c_str(), "two");
  assert_int_equal(c.drops(Drop::Context), 1);
  // A refusal's body is not read as capsules.
  H3ConnectUdpClient r = requested();
  assert_true(feed(r, kRequest, headers_frame(connect_udp_response_fields(403, "http_request_denied", "no"))));
  got.clear();
  assert_true(feed(r, kRequest, data_frame(body), false, deliver));
  assert_true(got.empty());
}

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(our_streams),      cmocka_unit_test(settings_gate_the_request),
      cmocka_unit_test(gateway_without_connect_udp), cmocka_unit_test(stream_errors),
      cmocka_unit_test(answers),          cmocka_unit_test(datagrams),
      cmocka_unit_test(capsules),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
