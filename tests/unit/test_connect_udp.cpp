// The CONNECT-UDP request and answer fields: the request dpagent udp sends reads back (also through QPACK) as its
// target; every rule of RFC 9114 4.2 / 4.3.1, RFC 9220 3 and RFC 9298 3.4 that a request can break gives its error
// kind and status; capsule-protocol read as a Structured Field Boolean (RFC 9297 3.4, RFC 8941); answers with
// capsule-protocol on 2xx and an escaped Proxy-Status (RFC 9209 2) otherwise, and answers read back.
#include "proto/connect_udp.hpp"

#include <string>
#include <vector>

#include "proto/h3_fields.hpp"
#include "tests/unit/cmocka.hpp"

using namespace dptun;

namespace {

using Fields = std::vector<HttpField>;

const std::string kPath = "/.well-known/masque/udp/time.corp.example.com/123/";

Fields good_request() {
  return {
      {":method", "CONNECT"}, {":protocol", "connect-udp"}, {":scheme", "https"},
      {":authority", "gw.example.net"}, {":path", kPath}, {"capsule-protocol", "?1"},
  };
}

void request_round_trip(void**) {
  const Fields f = connect_udp_request_fields("gw.example.net:443", "2001:db8::42", 443);
  assert_int_equal(f.size(), 6);
  assert_string_equal(f[0].name.c_str(), ":method");
  assert_string_equal(f[0].value.c_str(), "CONNECT");
  assert_string_equal(f[1].value.c_str(), "connect-udp");
  assert_string_equal(f[2].value.c_str(), "https");
  assert_string_equal(f[3].value.c_str(), "gw.example.net:443");
  assert_string_equal(f[4].value.c_str(), "/.well-known/masque/udp/2001%3Adb8%3A%3A42/443/");
  assert_string_equal(f[5].name.c_str(), "capsule-protocol");
  assert_string_equal(f[5].value.c_str(), "?1");

  // Through QPACK, as a HEADERS frame's payload would carry it.
  std::vector<uint8_t> section;
  assert_true(encode_h3_field_section(f, section));
  auto decoded = decode_h3_field_section(section, 16384);
  assert_true(decoded.has_value());
  ConnectUdpRequestProblem why;
  auto r = parse_connect_udp_request(*decoded, &why);
  assert_true(r.has_value());
  assert_string_equal(r->authority.c_str(), "gw.example.net:443");
  assert_string_equal(r->path.c_str(), f[4].value.c_str());
  assert_string_equal(r->target.host.c_str(), "2001:db8::42");
  assert_int_equal(r->target.port, 443);
  assert_int_equal(int(r->target.kind), int(ConnectUdpHostKind::Ipv6));
  assert_true(r->capsule_protocol);

  // A name target, lower-cased by the path reader; regular fields after the pseudo-header fields are fine.
  Fields g = good_request();
  g[4].value = "/.well-known/masque/udp/Time.Corp.Example.com/123/";
  g.push_back({"user-agent", "dpagent"});
  g.push_back({"te", "trailers"});
  r = parse_connect_udp_request(g);
  assert_true(r.has_value());
  assert_string_equal(r->target.host.c_str(), "time.corp.example.com");
  assert_int_equal(r->target.port, 123);
  assert_int_equal(int(r->target.kind), int(ConnectUdpHostKind::Name));
}

void expect(const Fields& f, ConnectUdpRequestError e, const char* detail_part) {
  ConnectUdpRequestProblem why;
  why.error = ConnectUdpRequestError::Count;
  assert_false(parse_connect_udp_request(f, &why).has_value());
  if (why.error != e || why.detail.find(detail_part) == std::string::npos)
    fail_msg("wanted %s with '%s', got %s: %s", connect_udp_request_error_name(e), detail_part,
             connect_udp_request_error_name(why.error), why.detail.c_str());
}

Fields without(const std::string& name) {
  Fields f = good_request();
  std::erase_if(f, [&](const HttpField& x) { return x.name == name; });
  return f;
}

Fields with(const std::string& name, const std::string& value) {
  Fields f = good_request();
  for (auto& x : f)
    if (x.name == name) x.value = value;
  return f;
}

void request_errors(void**) {
  using E = ConnectUdpRequestError;
  Fields f;

  // Malformed (RFC 9114 4.2, 4.3.1).
  f = good_request();
  f.push_back({"Capsule-Protocol", "?1"});
  expect(f, E::Malformed, "upper case");
  f = good_request();
  f[0].name = ":Method";
  expect(f, E::Malformed, "upper case");
  f = good_request();
  f.insert(f.begin() + 2, {"user-agent", "x"});
  expect(f, E::Malformed, "after a regular field");
  f = good_request();
  f.push_back({":method", "CONNECT"});  // repeated, and after a regular field: the order is found first
  expect(f, E::Malformed, "after a regular field");
  f = good_request();
  f.insert(f.begin() + 1, {":method", "CONNECT"});
  expect(f, E::Malformed, ":method repeated");
  f = good_request();
  f.insert(f.begin(), {":status", "200"});
  expect(f, E::Malformed, "unknown pseudo-header");
  for (const char* name : {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}) {
    f = good_request();
    f.push_back({name, "x"});
    expect(f, E::Malformed, "connection-specific");
  }
  f = good_request();
  f.push_back({"te", "gzip"});
  expect(f, E::Malformed, "connection-specific");
  f = good_request();
  f.push_back({"x-a b", "1"});
  expect(f, E::Malformed, "not a token");
  f = good_request();
  f.push_back({"", "1"});
  expect(f, E::Malformed, "empty name");
  for (const char* v : {"a\r\nb", "a\nb", " lead", "trail\t"}) {
    f = good_request();
    f.push_back({"user-agent", v});
    expect(f, E::Malformed, "invalid value");
  }
  f = good_request();
  f.push_back({"user-agent", std::string("a\0b", 3)});
  expect(f, E::Malformed, "invalid value");
  expect(without(":method"), E::Malformed, ":method missing");
  expect(without(":scheme"), E::Malformed, ":scheme missing");
  expect(without(":path"), E::Malformed, ":path missing");
  expect(without(":authority"), E::Malformed, ":authority missing");
  expect(with(":authority", ""), E::Malformed, ":authority empty");
  expect(with(":authority", "alice@gw.example.net"), E::Malformed, "userinfo");
  expect({}, E::Malformed, ":method missing");

  // The others, each with its status.
  expect(with(":method", "GET"), E::NotConnect, "'GET' is not CONNECT");
  expect(with(":method", "connect"), E::NotConnect, "is not CONNECT");  // methods are case-sensitive
  expect(without(":protocol"), E::NotConnectUdp, "TCP tunnel");
  expect(with(":protocol", "websocket"), E::NotConnectUdp, "'websocket' is not connect-udp");
  expect(with(":protocol", "connect-ip"), E::NotConnectUdp, "is not connect-udp");
  expect(with(":scheme", "http"), E::BadScheme, "'http' is not https");
  expect(with(":path", "/"), E::BadPath, "not_masque");

  struct PathCase {
    const char* path;
    ConnectUdpPathError e;
  } paths[] = {
      {"/.well-known/masque/udp/dns.example/65536/", ConnectUdpPathError::BadPort},
      {"/.well-known/masque/udp/dns.example/53/x", ConnectUdpPathError::TrailingParts},
      {"/.well-known/masque/udp/a%zz/53/", ConnectUdpPathError::BadEncoding},
      {"/.well-known/masque/tcp/dns.example/53/", ConnectUdpPathError::NotMasque},
  };
  for (const auto& c : paths) {
    ConnectUdpRequestProblem why;
    assert_false(parse_connect_udp_request(with(":path", c.path), &why).has_value());
    assert_int_equal(int(why.error), int(E::BadPath));
    assert_int_equal(int(why.path_error), int(c.e));
    assert_true(why.detail.find(connect_udp_path_error_name(c.e)) != std::string::npos);
  }

  assert_int_equal(connect_udp_status(E::Malformed), 400);
  assert_int_equal(connect_udp_status(E::NotConnect), 405);
  assert_int_equal(connect_udp_status(E::NotConnectUdp), 501);
  assert_int_equal(connect_udp_status(E::BadScheme), 400);
  assert_int_equal(connect_udp_status(E::BadPath), 400);
  assert_string_equal(connect_udp_request_error_name(E::Malformed), "malformed");
  assert_string_equal(connect_udp_request_error_name(E::NotConnect), "not_connect");
  assert_string_equal(connect_udp_request_error_name(E::NotConnectUdp), "not_connect_udp");
  assert_string_equal(connect_udp_request_error_name(E::BadScheme), "bad_scheme");
  assert_string_equal(connect_udp_request_error_name(E::BadPath), "bad_path");

  // A long value is cut in the detail, which stays short.
  ConnectUdpRequestProblem why;
  assert_false(parse_connect_udp_request(with(":method", std::string(500, 'M')), &why).has_value());
  assert_true(why.detail.size() < 80);
}

// capsule-protocol is an Item that must be a Boolean (RFC 9297 3.4; RFC 8941 3.3.6, parameters 3.1.2).
void capsule_protocol(void**) {
  struct Case {
    const char* value;
    bool want;
  } cases[] = {
      {"?1", true},
      {"?0", false},
      {"?1;x", true},
      {"?1; a=1;b=\"s\\\"q\";c=tok/x:y;d=:aGk=:;e=?0;f=-1.5;g", true},
      {"  ?1  ", true},  // leading and trailing SP are discarded
      {"?1;", false},    // a parameter without a key
      {"?1;X", false},   // keys are lower case
      {"?1;a=", false},  // no value after '='
      {"?1;a=\"open", false},
      {"?1;a=1.2345", false},  // at most three decimal digits
      {"?1;a=\"\\n\"", false},  // only \" and \\ escape
      {"?1 ?1", false},
      {"?1,?1", false},  // a List, not an Item
      {"?2", false},
      {"1", false},
      {"true", false},
      {"?", false},
      {"", false},
      {"\t?1", false},  // only SP is discarded
  };
  // Read from an answer (whose other fields are not checked, so values with whitespace at the ends reach it).
  for (const auto& c : cases) {
    const Fields resp = {{":status", "200"}, {"capsule-protocol", c.value}};
    auto a = parse_connect_udp_response(resp);
    assert_true(a.has_value());
    if (a->capsule_protocol != c.want) fail_msg("capsule-protocol '%s' read as %d", c.value, a->capsule_protocol);
  }
  // The request reads it the same way.
  for (const char* v : {"?1;x", "?0", "?2"}) {
    auto r = parse_connect_udp_request(with("capsule-protocol", v));
    assert_true(r.has_value());
    assert_int_equal(r->capsule_protocol, std::string(v) == "?1;x");
  }
  auto r = parse_connect_udp_request(without("capsule-protocol"));
  assert_true(r.has_value());
  assert_false(r->capsule_protocol);
  Fields twice = good_request();
  twice.push_back({"capsule-protocol", "?1"});  // two lines make it a List: ignored
  r = parse_connect_udp_request(twice);
  assert_true(r.has_value());
  assert_false(r->capsule_protocol);
}

void response_fields(void**) {
  Fields f = connect_udp_response_fields(200);
  assert_int_equal(f.size(), 2);
  assert_string_equal(f[0].name.c_str(), ":status");
  assert_string_equal(f[0].value.c_str(), "200");
  assert_string_equal(f[1].name.c_str(), "capsule-protocol");
  assert_string_equal(f[1].value.c_str(), "?1");
  f = connect_udp_response_fields(204, "destination_not_found", "ignored on 2xx");
  assert_int_equal(f.size(), 2);
  assert_string_equal(f[1].name.c_str(), "capsule-protocol");

  f = connect_udp_response_fields(403);
  assert_int_equal(f.size(), 1);
  assert_string_equal(f[0].value.c_str(), "403");

  f = connect_udp_response_fields(404, "destination_not_found");
  assert_int_equal(f.size(), 2);
  assert_string_equal(f[1].name.c_str(), "proxy-status");
  assert_string_equal(f[1].value.c_str(), "dptun; error=destination_not_found");

  // Quotes and backslashes escaped, each byte outside printable ASCII (LF, 0x01, the two of U+00E9) as '?'.
  f = connect_udp_response_fields(400, "http_request_error", "path \"a\\b\"\n\x01\xc3\xa9 end");
  assert_string_equal(f[1].value.c_str(),
                      "dptun; error=http_request_error; details=\"path \\\"a\\\\b\\\"???? end\"");

  // At most 200 bytes between the quotes, an escape never cut in half.
  f = connect_udp_response_fields(400, "http_request_error", std::string(300, 'z'));
  const std::string prefix = "dptun; error=http_request_error; details=\"";
  assert_int_equal(f[1].value.size(), prefix.size() + 200 + 1);
  f = connect_udp_response_fields(400, "http_request_error", std::string(199, 'z') + "\"tail");
  assert_true(f[1].value == prefix + std::string(199, 'z') + "\"");  // the 2-byte \" does not fit: stops

  // What the escaping writes is an sf-string a reader takes back: the answer as a whole reads back.
  f = connect_udp_response_fields(502, "dns_error", "no \"such\" name");
  auto a = parse_connect_udp_response(f);
  assert_true(a.has_value());
  assert_int_equal(a->status, 502);
  assert_false(a->capsule_protocol);
  assert_string_equal(a->proxy_status.c_str(), "dptun; error=dns_error; details=\"no \\\"such\\\" name\"");
}

void response_parse(void**) {
  // Through QPACK: 200 with capsule-protocol.
  std::vector<uint8_t> section;
  assert_true(encode_h3_field_section(connect_udp_response_fields(200), section));
  auto decoded = decode_h3_field_section(section, 4096);
  assert_true(decoded.has_value());
  auto a = parse_connect_udp_response(*decoded);
  assert_true(a.has_value());
  assert_int_equal(a->status, 200);
  assert_true(a->capsule_protocol);
  assert_true(a->proxy_status.empty());

  // Proxy-Status on two lines reads as one List.
  Fields f = {{":status", "503"}, {"proxy-status", "a; error=x"}, {"server", "s"}, {"proxy-status", "dptun"}};
  a = parse_connect_udp_response(f);
  assert_true(a.has_value());
  assert_int_equal(a->status, 503);
  assert_string_equal(a->proxy_status.c_str(), "a; error=x, dptun");

  const Fields bad[] = {
      {},
      {{"capsule-protocol", "?1"}},
      {{":status", "200"}, {":status", "200"}},
      {{":status", "20"}},
      {{":status", "2000"}},
      {{":status", "2x0"}},
      {{":status", ""}},
  };
  for (const Fields& b : bad) assert_false(parse_connect_udp_response(b).has_value());
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(request_round_trip), cmocka_unit_test(request_errors), cmocka_unit_test(capsule_protocol),
      cmocka_unit_test(response_fields),    cmocka_unit_test(response_parse),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
