// HTTP Host from request heads: whole, cut at every byte, with a port, upper case, absolute form; refused
// when missing, doubled, malformed or too long; non-HTTP bytes recognised early.
#include <string>

#include "tests/unit/cmocka.hpp"

#include "ingress/http_host.hpp"

using namespace dptun;

namespace {

std::string host_of(const std::string& s) {
  HostResult r = host_from_http_request({reinterpret_cast<const uint8_t*>(s.data()), s.size()});
  return r.status == HostStatus::Found ? std::string(r.host) : std::string("<") + host_status_name(r.status) + ">";
}

void requests(void**) {
  assert_string_equal(host_of("GET / HTTP/1.1\r\nHost: www.example.com\r\nAccept: */*\r\n\r\n").c_str(), "www.example.com");
  assert_string_equal(host_of("GET / HTTP/1.1\r\nhOsT:App.Example.ORG:8080  \r\n\r\n").c_str(), "App.Example.ORG");
  assert_string_equal(host_of("POST /x HTTP/1.0\r\nUser-Agent: t\r\nHost:\tapi.example.net.\r\n\r\nbody").c_str(), "api.example.net");
  assert_string_equal(host_of("GET http://other/ HTTP/1.1\r\nHost: h.example\r\n\r\n").c_str(), "h.example");
  assert_string_equal(host_of("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n").c_str(), "<no_host>");
  assert_string_equal(host_of("GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n").c_str(), "<no_host>");
  assert_string_equal(host_of("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n").c_str(), "<no_host>");
  assert_string_equal(host_of("GET / HTTP/1.1\r\nHost: a.example:80x\r\n\r\n").c_str(), "<no_host>");
  assert_string_equal(host_of("GET / HTTP/1.1\r\nHost: bad host\r\n\r\n").c_str(), "<no_host>");
  assert_string_equal(host_of("GET / HTTP/1.1\r\nno colon here\r\n\r\n").c_str(), "<no_host>");
  assert_string_equal(host_of("GET / SPDY/3\r\nHost: a.example\r\n\r\n").c_str(), "<not_http>");
}

void cut_at_every_byte(void**) {
  const std::string req = "GET /index.html HTTP/1.1\r\nHost: cut.example.org\r\nConnection: close\r\n\r\n";
  for (size_t n = 0; n < req.size(); ++n)
    if (host_of(req.substr(0, n)) != "<need_more>") fail_msg("prefix %zu: %s", n, host_of(req.substr(0, n)).c_str());
  assert_string_equal(host_of(req).c_str(), "cut.example.org");
}

void not_http(void**) {
  assert_string_equal(host_of(std::string("\x16\x03\x01", 3)).c_str(), "<not_http>");  // TLS
  assert_string_equal(host_of("SSH-2.0-OpenSSH_9.2\r\n").c_str(), "<not_http>");
  assert_string_equal(host_of(" GET / HTTP/1.1\r\n\r\n").c_str(), "<not_http>");
  assert_string_equal(host_of("AVERYLONGMETHODNAMEXX / HTTP/1.1\r\n").c_str(), "<not_http>");
  std::string huge = "GET / HTTP/1.1\r\nX: " + std::string(kMaxRequestHead, 'a');
  assert_string_equal(host_of(huge).c_str(), "<too_big>");
  assert_string_equal(host_of(huge + "\r\nHost: a.example\r\n\r\n").c_str(), "<too_big>");
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(requests),
      cmocka_unit_test(cut_at_every_byte),
      cmocka_unit_test(not_http),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
