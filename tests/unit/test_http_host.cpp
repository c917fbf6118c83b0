// HTTP Host from request heads: whole, cut at every byte, with a port, upper case, trailing dot, bare LF line
// ends; the absolute-form authority wins over Host (RFC 9112 3.2.2) and a Host that disagrees with it is refused;
// refused as ambiguous when two parsers could read the host differently (two Host lines, obs-fold, whitespace
// before a colon, bare CR, NUL, odd targets); no host when missing or unusable; too long; non-HTTP bytes
// recognised early; the incremental end-of-head scan agrees with a whole scan however the head is cut.
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
  assert_string_equal(host_of("GET / HTTP/1.1\r\nHost: dot.example.:443\r\n\r\n").c_str(), "dot.example");
  assert_string_equal(host_of("OPTIONS * HTTP/1.1\r\nHost: star.example\r\n\r\n").c_str(), "star.example");
  // Bare LF line ends (servers accept them, RFC 9112 2.2), also mixed with CRLF; empty lines before the request.
  assert_string_equal(host_of("GET / HTTP/1.1\nHost: lf.example\n\n").c_str(), "lf.example");
  assert_string_equal(host_of("GET / HTTP/1.1\r\nX: y\nHost: mixed.example\r\n\n").c_str(), "mixed.example");
  assert_string_equal(host_of("\r\nGET / HTTP/1.1\r\nHost: after-crlf.example\r\n\r\n").c_str(), "after-crlf.example");
  // No name to route by: a complete head without Host, an empty one, IP literals, a bad port, not a DNS name.
  assert_string_equal(host_of("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n").c_str(), "<no_host>");
  assert_string_equal(host_of("GET / HTTP/1.0\r\n\r\n").c_str(), "<no_host>");
  assert_string_equal(host_of("GET / HTTP/1.1\r\nHost:\r\n\r\n").c_str(), "<no_host>");
  assert_string_equal(host_of("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n").c_str(), "<no_host>");
  assert_string_equal(host_of("GET / HTTP/1.1\r\nHost: a.example:80x\r\n\r\n").c_str(), "<no_host>");
  assert_string_equal(host_of("GET / HTTP/1.1\r\nHost: a.example:\r\n\r\n").c_str(), "<no_host>");
  assert_string_equal(host_of("GET / HTTP/1.1\r\nHost: bad host\r\n\r\n").c_str(), "<no_host>");
  assert_string_equal(host_of("GET / HTTP/1.1\r\nHost: a.example, b.example\r\n\r\n").c_str(), "<no_host>");
  assert_string_equal(host_of("GET / HTTP/1.1\r\nHost: user@a.example\r\n\r\n").c_str(), "<no_host>");
  assert_string_equal(host_of("GET / SPDY/3\r\nHost: a.example\r\n\r\n").c_str(), "<not_http>");
  assert_string_equal(host_of("GET /\r\nHost: a.example\r\n\r\n").c_str(), "<not_http>");  // HTTP/0.9
  assert_string_equal(host_of("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").c_str(), "<not_http>");
}

// RFC 9112 3.2.2: a server takes the host from an absolute-form target (and an authority-form one) whatever Host
// says, so dpgw routes by it; a Host that names another host is refused rather than let one name reach another's
// server.
void absolute_form(void**) {
  assert_string_equal(host_of("GET http://abs.example/ HTTP/1.0\r\n\r\n").c_str(), "abs.example");
  assert_string_equal(host_of("GET http://abs.example HTTP/1.1\r\n\r\n").c_str(), "abs.example");
  assert_string_equal(host_of("GET HTTPS://Abs.Example:8443/x?y#z HTTP/1.1\r\nHost: abs.example\r\n\r\n").c_str(),
                      "Abs.Example");
  assert_string_equal(host_of("GET http://abs.example./ HTTP/1.1\r\nHost: ABS.example:80\r\n\r\n").c_str(), "abs.example");
  assert_string_equal(host_of("GET http://abs.example?q HTTP/1.1\r\nHost: abs.example\r\n\r\n").c_str(), "abs.example");
  assert_string_equal(host_of("CONNECT tunnel.example:443 HTTP/1.1\r\nHost: tunnel.example:443\r\n\r\n").c_str(),
                      "tunnel.example");
  assert_string_equal(host_of("GET http://app-a.example/ HTTP/1.1\r\nHost: app-b.example\r\n\r\n").c_str(), "<ambiguous>");
  assert_string_equal(host_of("GET http://a.example/ HTTP/1.1\r\nHost: \r\n\r\n").c_str(), "<ambiguous>");
  assert_string_equal(host_of("CONNECT a.example:443 HTTP/1.1\r\nHost: b.example\r\n\r\n").c_str(), "<ambiguous>");
  assert_string_equal(host_of("GET http://user@a.example/ HTTP/1.1\r\n\r\n").c_str(), "<ambiguous>");
  assert_string_equal(host_of("GET ftp://a.example/ HTTP/1.1\r\n\r\n").c_str(), "<ambiguous>");
  assert_string_equal(host_of("GET a.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n").c_str(), "<ambiguous>");
  assert_string_equal(host_of("GET http:///x HTTP/1.1\r\nHost: a.example\r\n\r\n").c_str(), "<no_host>");
  assert_string_equal(host_of("GET http://[::1]/ HTTP/1.1\r\n\r\n").c_str(), "<no_host>");
}

// Framing that another parser may read differently: refused, never guessed at.
void ambiguous(void**) {
  const char* cases[] = {
      "GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",  // two Host lines
      "GET / HTTP/1.1\r\nHost: a.example\r\nhost: a.example\r\n\r\n",  // even the same twice (RFC 9112 3.2)
      "GET / HTTP/1.1\r\nHost : b.example\r\nHost: a.example\r\n\r\n",  // whitespace before the colon
      "GET / HTTP/1.1\r\nHost\t: b.example\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a.example\r\n b.example\r\n\r\n",  // obs-fold
      "GET / HTTP/1.1\r\nX: y\r\n\tHost: b.example\r\n\r\n",
      "GET / HTTP/1.1\r\nX: y\rHost: b.example\r\nHost: a.example\r\n\r\n",  // a bare CR
      "GET / HTTP/1.1\r\nHost: a.example\rX: y\r\n\r\n",
      "GET / HTTP/1.1\r\nno colon here\r\n\r\n",
      "GET / HTTP/1.1\r\n: empty name\r\nHost: a.example\r\n\r\n",
      "GET / HTTP/1.1\r\nHo(st: a.example\r\n\r\n",
      "GET  / HTTP/1.1\r\nHost: a.example\r\n\r\n",  // two spaces
      "GET /a b HTTP/1.1\r\nHost: a.example\r\n\r\n",
  };
  for (const char* c : cases)
    if (host_of(c) != "<ambiguous>") fail_msg("%s: %s", c, host_of(c).c_str());
  // (The NUL case, spelled out: a string literal would stop at the NUL.)
  std::string nul = "GET / HTTP/1.1\r\nHost: a.example";
  nul += '\0';
  nul += ".b\r\n\r\n";
  assert_string_equal(host_of(nul).c_str(), "<ambiguous>");
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
}

// Heads up to kMaxRequestHead (32 KiB, about nginx's default) are read; longer ones are too big, as soon as that
// is known.
void sizes(void**) {
  const std::string start = "GET / HTTP/1.1\r\nHost: big.example\r\nCookie: ";
  std::string fits = start + std::string(kMaxRequestHead - start.size() - 4, 'c') + "\r\n\r\n";
  assert_int_equal(fits.size(), kMaxRequestHead);
  assert_string_equal(host_of(fits).c_str(), "big.example");
  std::string over = start + std::string(kMaxRequestHead - start.size() - 3, 'c') + "\r\n\r\n";
  assert_string_equal(host_of(over).c_str(), "<too_big>");
  std::string huge = "GET / HTTP/1.1\r\nX: " + std::string(kMaxRequestHead, 'a');
  assert_string_equal(host_of(huge).c_str(), "<too_big>");
  assert_string_equal(host_of(huge + "\r\nHost: a.example\r\n\r\n").c_str(), "<too_big>");
  assert_string_equal(host_of(huge.substr(0, kMaxRequestHead - 1)).c_str(), "<need_more>");
  // Many header lines (12 kB of cookies, the case that used to fail at 8 kB).
  std::string cookies = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 12; ++i) cookies += "Cookie: c" + std::to_string(i) + "=" + std::string(1000, 'v') + "\r\n";
  cookies += "Host: cookies.example\r\n\r\n";
  assert_string_equal(host_of(cookies).c_str(), "cookies.example");
}

// http_head_complete says "complete" exactly when the whole-head parser stops needing more, however the bytes are
// cut (each piece scanned once).
void incremental_end(void**) {
  const std::string heads[] = {
      "GET / HTTP/1.1\r\nHost: a.example\r\nX: y\r\n\r\nbody",
      "GET / HTTP/1.1\nHost: a.example\n\nbody",
      "GET / HTTP/1.1\r\nHost: a.example\n\r\n",
      "GET / HTTP/1.1\r\nHost: a.example\r\n\n",
      // Empty lines before the request line are skipped, not taken for the end of the head (found by fuzzing).
      "\r\n\r\nGET / HTTP/1.1\r\nHost: a.example\r\n\r\n",
      "\n\n\nGET / HTTP/1.1\nHost: a.example\n\n",
  };
  for (const std::string& h : heads) {
    for (size_t step = 1; step <= 7; ++step) {
      uint32_t scanned = 0;
      bool done = false;
      size_t at = 0;
      for (size_t n = step; !done && n <= h.size() + step; n += step) {
        at = std::min(n, h.size());
        done = http_head_complete({reinterpret_cast<const uint8_t*>(h.data()), at}, scanned);
        const HostResult r = host_from_http_request({reinterpret_cast<const uint8_t*>(h.data()), at});
        if (done != (r.status != HostStatus::NeedMore)) fail_msg("'%s' cut at %zu: complete=%d", h.c_str(), at, done);
      }
      assert_true(done);
    }
  }
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(requests),       cmocka_unit_test(absolute_form), cmocka_unit_test(ambiguous),
      cmocka_unit_test(cut_at_every_byte), cmocka_unit_test(not_http),  cmocka_unit_test(sizes),
      cmocka_unit_test(incremental_end),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
