// The CONNECT-UDP target path (RFC 9298 2): names, IPv4 and percent-encoded IPv6 targets read back to host and
// port; every malformed path (encoding, host, port, trailing parts, length) refused with its reason; what
// connect_udp_path writes reads back to the same target.
#include "tests/unit/cmocka.hpp"

#include <string>

#include "proto/masque_path.hpp"

using namespace dptun;

namespace {

void expect_target(const std::string& path, const char* host, uint16_t port, ConnectUdpHostKind kind) {
  ConnectUdpPathError why = ConnectUdpPathError::Count;
  auto t = parse_connect_udp_path(path, &why);
  if (!t) fail_msg("%s: refused (%s)", path.c_str(), connect_udp_path_error_name(why));
  assert_string_equal(t->host.c_str(), host);
  assert_int_equal(t->port, port);
  assert_int_equal(int(t->kind), int(kind));
}

void expect_refused(const std::string& path, ConnectUdpPathError want) {
  ConnectUdpPathError why = ConnectUdpPathError::Count;
  auto t = parse_connect_udp_path(path, &why);
  if (t) fail_msg("%s: accepted as %s:%u", path.c_str(), t->host.c_str(), unsigned(t->port));
  if (why != want)
    fail_msg("%s: refused as %s, expected %s", path.c_str(), connect_udp_path_error_name(why),
             connect_udp_path_error_name(want));
}

void targets(void**) {
  expect_target("/.well-known/masque/udp/time.corp.example.com/123/", "time.corp.example.com", 123,
                ConnectUdpHostKind::Name);
  expect_target("/.well-known/masque/udp/DNS.Example.ORG/53/", "dns.example.org", 53, ConnectUdpHostKind::Name);
  expect_target("/.well-known/masque/udp/192.0.2.6/443/", "192.0.2.6", 443, ConnectUdpHostKind::Ipv4);
  // RFC 9298 2: an IPv6 literal's colons percent-encoded (either case of hex digits), no brackets.
  expect_target("/.well-known/masque/udp/2001%3Adb8%3A%3A42/443/", "2001:db8::42", 443, ConnectUdpHostKind::Ipv6);
  expect_target("/.well-known/masque/udp/2001%3adb8%3a%3a42/443/", "2001:db8::42", 443, ConnectUdpHostKind::Ipv6);
  // Unreserved bytes may be percent-encoded too (RFC 3986 2.3: equivalent).
  expect_target("/.well-known/masque/udp/%6Ds.example/65535/", "ms.example", 65535, ConnectUdpHostKind::Name);
  expect_target("/.well-known/masque/udp/a/1/", "a", 1, ConnectUdpHostKind::Name);
}

void refused(void**) {
  using E = ConnectUdpPathError;
  expect_refused("/", E::NotMasque);
  expect_refused("/.well-known/masque/ip/10.0.0.1/", E::NotMasque);
  expect_refused("/.well-known/masque/UDP/a/1/", E::NotMasque);
  expect_refused("/.well-known/masque/udp/", E::TrailingParts);
  expect_refused("/.well-known/masque/udp/a/53", E::TrailingParts);       // the final '/' missing
  expect_refused("/.well-known/masque/udp/a/53/x", E::TrailingParts);
  expect_refused("/.well-known/masque/udp/a/53//", E::TrailingParts);
  expect_refused("/.well-known/masque/udp/a/53/?q=1", E::TrailingParts);
  expect_refused("/.well-known/masque/udp/a/b/53/", E::TrailingParts);
  expect_refused("/.well-known/masque/udp/a/0/", E::BadPort);
  expect_refused("/.well-known/masque/udp/a/65536/", E::BadPort);
  expect_refused("/.well-known/masque/udp/a/123456/", E::BadPort);
  expect_refused("/.well-known/masque/udp/a/-1/", E::BadPort);
  expect_refused("/.well-known/masque/udp/a/+53/", E::BadPort);
  expect_refused("/.well-known/masque/udp/a/%35%33/", E::BadPort);  // ports are digits, never encoded
  expect_refused("/.well-known/masque/udp/a//", E::BadPort);
  expect_refused("/.well-known/masque/udp/a/x", E::BadPort);
  expect_refused("/.well-known/masque/udp//53/", E::BadHost);
  expect_refused("/.well-known/masque/udp/-a.example/53/", E::BadHost);
  expect_refused("/.well-known/masque/udp/a..example/53/", E::BadHost);
  expect_refused("/.well-known/masque/udp/a.example./53/", E::BadHost);
  expect_refused("/.well-known/masque/udp/" + std::string(64, 'a') + ".example/53/", E::BadHost);
  expect_refused("/.well-known/masque/udp/10.0.0.256/53/", E::BadHost);
  expect_refused("/.well-known/masque/udp/10.1/53/", E::BadHost);
  expect_refused("/.well-known/masque/udp/2001%3Adb8%3A%3A42%3A%3A1/53/", E::BadHost);  // two "::"
  expect_refused("/.well-known/masque/udp/%5B2001%3Adb8%3A%3A42%5D/53/", E::BadEncoding);  // brackets
  expect_refused("/.well-known/masque/udp/fe80%3A%3A1%25eth0/53/", E::BadEncoding);  // a zone
  expect_refused("/.well-known/masque/udp/a%2Fb/53/", E::BadEncoding);  // an encoded '/'
  expect_refused("/.well-known/masque/udp/a%00b/53/", E::BadEncoding);
  expect_refused("/.well-known/masque/udp/a%4/53/", E::BadEncoding);
  expect_refused("/.well-known/masque/udp/a%/53/", E::BadEncoding);
  expect_refused("/.well-known/masque/udp/a%zz/53/", E::BadEncoding);
  expect_refused("/.well-known/masque/udp/a_b@c/53/", E::BadEncoding);
  expect_refused("/.well-known/masque/udp/" + std::string(kMaxConnectUdpPath, 'a') + "/53/", E::TooLong);
}

void written_paths_read_back(void**) {
  assert_string_equal(connect_udp_path("2001:db8::42", 443).c_str(), "/.well-known/masque/udp/2001%3Adb8%3A%3A42/443/");
  assert_string_equal(connect_udp_path("ntp.example", 123).c_str(), "/.well-known/masque/udp/ntp.example/123/");
  for (const char* host : {"ntp.example", "192.0.2.1", "2001:db8::42", "::1", "x-1.y-2.example"}) {
    auto t = parse_connect_udp_path(connect_udp_path(host, 4443));
    assert_non_null(t ? &*t : nullptr);
    assert_string_equal(t->host.c_str(), host);
    assert_int_equal(t->port, 4443);
  }
  // What is not a host stays refused after writing: an encoded '/' does not become a segment.
  assert_false(parse_connect_udp_path(connect_udp_path("a/1/", 53)).has_value());
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(targets),
      cmocka_unit_test(refused),
      cmocka_unit_test(written_paths_read_back),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
