#include "ingress/http_host.hpp"

#include <cstring>

#include "ingress/client_hello.hpp"

namespace dptun {

const char* host_status_name(HostStatus s) {
  switch (s) {
    case HostStatus::Found: return "found";
    case HostStatus::NoHost: return "no_host";
    case HostStatus::NeedMore: return "need_more";
    case HostStatus::NotHttp: return "not_http";
    case HostStatus::TooBig: return "too_big";
    case HostStatus::Ambiguous: return "ambiguous";
  }
  return "unknown";
}

namespace {

bool token_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         (c != 0 && std::strchr("!#$%&'*+-.^_`|~", c));
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = char(x + 32);
    if (y >= 'A' && y <= 'Z') y = char(y + 32);
    if (x != y) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The DNS name of a Host value or an authority ("name", "name:port", "name."): nullopt-like empty view when it
// is not one (an IP literal in brackets, a bad port, userinfo, characters a name cannot have).
std::string_view name_of_authority(std::string_view a) {
  if (a.empty() || a.front() == '[') return {};
  if (const size_t c = a.rfind(':'); c != std::string_view::npos) {
    const std::string_view port = a.substr(c + 1);
    if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos) return {};
    a = a.substr(0, c);
  }
  if (a.size() > 1 && a.back() == '.') a.remove_suffix(1);  // "example.com." is example.com
  return plausible_hostname(a) ? a : std::string_view{};
}

}  // namespace

bool http_head_complete(std::span<const uint8_t> stream, uint32_t& scanned) {
  const size_t n = stream.size();
  // The empty lines host_from_http_request skips before the request line (at most 8 bytes) do not end the head.
  size_t start = 0;
  while (start < n && start < 8 && (stream[start] == '\r' || stream[start] == '\n')) ++start;
  for (size_t i = scanned > start ? scanned : start; i < n; ++i) {
    if (stream[i] != '\n') continue;
    // A line end: the head is over when the next line is empty ("\n" or "\r\n").
    if (i + 1 >= n || (stream[i + 1] == '\r' && i + 2 >= n)) {
      scanned = uint32_t(i);  // look again when more has come
      return false;
    }
    if (stream[i + 1] == '\n' || (stream[i + 1] == '\r' && stream[i + 2] == '\n')) {
      scanned = uint32_t(i);
      return true;
    }
  }
  scanned = uint32_t(n);
  return false;
}

HostResult host_from_http_request(std::span<const uint8_t> stream) {
  std::string_view all(reinterpret_cast<const char*>(stream.data()), stream.size());
  const HostResult ambiguous{HostStatus::Ambiguous, {}}, no_host{HostStatus::NoHost, {}};
  // RFC 9112 2.2: empty lines before the request line are ignored.
  size_t start = 0;
  while (start < all.size() && start < 8 && (all[start] == '\r' || all[start] == '\n')) ++start;
  // The request line starts with a method token and a space: judge that as soon as it can be judged.
  size_t i = start;
  while (i < all.size() && i - start < 16 && token_char(all[i])) ++i;
  if (i < all.size() && (i == start || all[i] != ' ' || i - start >= 16)) return {HostStatus::NotHttp, {}};
  if (i == all.size()) return {i - start < 16 ? HostStatus::NeedMore : HostStatus::NotHttp, {}};
  const std::string_view method = all.substr(start, i - start);

  // Lines end in LF, optionally preceded by CR (RFC 9112 2.2 lets a recipient take a bare LF as a line end, and
  // servers do: so must we, or a server could see a header line we do not). The head ends with an empty line.
  std::string_view request_line, host_value, authority;
  int hosts = 0;
  size_t pos = start;
  bool ended = false;
  for (bool first = true; pos < all.size(); first = false) {
    const size_t nl = all.find('\n', pos);
    if (nl == std::string_view::npos) break;
    std::string_view line = all.substr(pos, nl - pos);
    pos = nl + 1;
    if (pos > kMaxRequestHead) return {HostStatus::TooBig, {}};
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    // A bare CR or a NUL can end or cut a line for another parser (RFC 9112 2.2, RFC 9110 5.5).
    if (line.find('\r') != std::string_view::npos || line.find('\0') != std::string_view::npos) return ambiguous;
    if (first) {
      request_line = line;
      continue;
    }
    if (line.empty()) {
      ended = true;
      break;
    }
    // obs-fold (a line starting with whitespace continues the previous one, RFC 9112 5.2) and whitespace between
    // a field name and its colon (5.1) are refused: servers differ in what they make of them.
    if (line.front() == ' ' || line.front() == '\t') return ambiguous;
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return ambiguous;  // not a header line
    const std::string_view name = line.substr(0, colon);
    for (char c : name)
      if (!token_char(c)) return ambiguous;
    if (iequals(name, "host")) {
      host_value = trim(line.substr(colon + 1));
      ++hosts;
    }
  }
  if (!ended) {
    if (all.size() >= kMaxRequestHead) return {HostStatus::TooBig, {}};
    return {HostStatus::NeedMore, {}};
  }

  // request-line = method SP request-target SP HTTP-version (RFC 9112 3)
  const size_t sp2 = request_line.rfind(' ');
  if (sp2 == std::string_view::npos || sp2 <= method.size()) return {HostStatus::NotHttp, {}};
  const std::string_view version = request_line.substr(sp2 + 1);
  if (version.size() != 8 || version.substr(0, 7) != "HTTP/1." || version[7] < '0' || version[7] > '9')
    return {HostStatus::NotHttp, {}};
  const std::string_view target = request_line.substr(method.size() + 1, sp2 - method.size() - 1);
  if (target.empty()) return ambiguous;
  for (char c : target)
    if (uint8_t(c) <= 0x20 || c == 0x7f) return ambiguous;  // more spaces, or control characters
  if (hosts > 1) return ambiguous;  // RFC 9112 3.2: a request with several Host lines gets 400

  if (target.front() != '/' && target != "*") {
    // absolute-form ("http://authority/path") or authority-form (CONNECT "authority"): the server uses this
    // authority, whatever Host says (RFC 9112 3.2.2).
    if (const size_t sep = target.find("://"); sep != std::string_view::npos) {
      const std::string_view scheme = target.substr(0, sep);
      if (!iequals(scheme, "http") && !iequals(scheme, "https")) return ambiguous;
      authority = target.substr(sep + 3);
      authority = authority.substr(0, authority.find_first_of("/?#"));
    } else if (iequals(method, "CONNECT")) {
      authority = target;
    } else {
      return ambiguous;  // no form a server would read the same way
    }
    if (authority.find('@') != std::string_view::npos) return ambiguous;  // userinfo (RFC 9110 4.2.4)
    const std::string_view name = name_of_authority(authority);
    if (name.empty()) return no_host;
    // A Host line must name the same host: one that differs is how routing would be sidestepped.
    if (hosts == 1 && !iequals(name_of_authority(host_value), name)) return ambiguous;
    return {HostStatus::Found, name};
  }
  if (hosts == 0) return no_host;  // HTTP/1.0 without Host (or an HTTP/1.1 request the server will refuse)
  const std::string_view name = name_of_authority(host_value);
  if (name.empty()) return no_host;
  return {HostStatus::Found, name};
}

}  // namespace dptun
