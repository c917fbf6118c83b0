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
  }
  return "unknown";
}

namespace {

bool token_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || std::strchr("!#$%&'*+-.^_`|~", c);
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if ((a[i] | 0x20) != (b[i] | 0x20)) return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

HostResult host_from_http_request(std::span<const uint8_t> stream) {
  const std::string_view all(reinterpret_cast<const char*>(stream.data()), stream.size());
  // The request line starts with a method token and a space: judge that as soon as it can be judged.
  size_t i = 0;
  while (i < all.size() && i < 16 && token_char(all[i])) ++i;
  if (i < all.size() && (i == 0 || all[i] != ' ' || i >= 16)) return {HostStatus::NotHttp, {}};
  if (i == all.size()) return {i < 16 ? HostStatus::NeedMore : HostStatus::NotHttp, {}};
  const size_t end = all.find("\r\n\r\n");
  if (end == std::string_view::npos)
    return {all.size() >= kMaxRequestHead ? HostStatus::TooBig : HostStatus::NeedMore, {}};
  if (end + 4 > kMaxRequestHead) return {HostStatus::TooBig, {}};
  const std::string_view head = all.substr(0, end + 2);  // every line ends in CRLF
  size_t line_end = head.find("\r\n");
  const std::string_view request_line = head.substr(0, line_end);
  if (request_line.find(" HTTP/1.") == std::string_view::npos) return {HostStatus::NotHttp, {}};
  std::string_view host;
  int hosts = 0;
  for (size_t pos = line_end + 2; pos < head.size();) {
    const size_t e = head.find("\r\n", pos);
    const std::string_view line = head.substr(pos, e - pos);
    pos = e + 2;
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return {HostStatus::NoHost, {}};  // not a header line
    if (iequals(line.substr(0, colon), "host")) {
      host = trim(line.substr(colon + 1));
      ++hosts;
    }
  }
  if (hosts != 1) return {HostStatus::NoHost, {}};  // none, or ambiguous (RFC 9112: reject several)
  // Remove a port; IPv6 literals ("[::1]:80") are not names any rule can match.
  if (!host.empty() && host.front() == '[') return {HostStatus::NoHost, {}};
  if (const size_t c = host.rfind(':'); c != std::string_view::npos) {
    const std::string_view port = host.substr(c + 1);
    if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos)
      return {HostStatus::NoHost, {}};
    host = host.substr(0, c);
  }
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);  // "example.com." is example.com
  if (!plausible_hostname(host)) return {HostStatus::NoHost, {}};
  return {HostStatus::Found, host};
}

}  // namespace dptun
