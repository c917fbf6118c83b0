#include "proto/masque_path.hpp"

#include <arpa/inet.h>

#include <cctype>

namespace dptun {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool unreserved(unsigned char c) { return std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~'; }

// A DNS name (RFC 1123 2.1 labels: letters, digits, '-' inside), lower-cased in place.
bool dns_name(std::string& s) {
  if (s.empty() || s.size() > 253) return false;
  size_t label = 0;
  for (size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == '.') {
      if (label == 0 || label > 63 || s[i - 1] == '-' || s[i - label] == '-') return false;
      label = 0;
      continue;
    }
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (!std::isalnum(c) && c != '-') return false;
    s[i] = char(std::tolower(c));
    ++label;
  }
  return true;
}

}  // namespace

const char* connect_udp_path_error_name(ConnectUdpPathError e) {
  switch (e) {
    case ConnectUdpPathError::NotMasque: return "not_masque";
    case ConnectUdpPathError::TooLong: return "too_long";
    case ConnectUdpPathError::BadEncoding: return "bad_encoding";
    case ConnectUdpPathError::BadHost: return "bad_host";
    case ConnectUdpPathError::BadPort: return "bad_port";
    case ConnectUdpPathError::TrailingParts: return "trailing_parts";
    case ConnectUdpPathError::Count: break;
  }
  return "?";
}

std::optional<ConnectUdpTarget> parse_connect_udp_path(std::string_view path, ConnectUdpPathError* why) {
  auto fail = [&](ConnectUdpPathError e) -> std::optional<ConnectUdpTarget> {
    if (why) *why = e;
    return std::nullopt;
  };
  if (path.size() > kMaxConnectUdpPath) return fail(ConnectUdpPathError::TooLong);
  if (path.substr(0, kConnectUdpPathPrefix.size()) != kConnectUdpPathPrefix) return fail(ConnectUdpPathError::NotMasque);
  std::string_view rest = path.substr(kConnectUdpPathPrefix.size());
  const size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return fail(ConnectUdpPathError::TrailingParts);
  const std::string_view host_enc = rest.substr(0, slash);
  rest = rest.substr(slash + 1);
  const size_t slash2 = rest.find('/');
  if (slash2 == std::string_view::npos) {
    // "{host}/{port}" without its final '/', or a query glued to the port: a port check first says which.
    const size_t q = rest.find('?');
    const std::string_view p = rest.substr(0, q);
    if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string_view::npos)
      return fail(ConnectUdpPathError::BadPort);
    return fail(ConnectUdpPathError::TrailingParts);
  }
  const std::string_view port_text = rest.substr(0, slash2);
  if (slash2 + 1 != rest.size()) return fail(ConnectUdpPathError::TrailingParts);

  std::string host;
  for (size_t i = 0; i < host_enc.size(); ++i) {
    char c = host_enc[i];
    if (c == '%') {
      if (i + 2 >= host_enc.size()) return fail(ConnectUdpPathError::BadEncoding);
      const int hi = hex_value(host_enc[i + 1]), lo = hex_value(host_enc[i + 2]);
      if (hi < 0 || lo < 0) return fail(ConnectUdpPathError::BadEncoding);
      c = char(hi << 4 | lo);
      i += 2;
    }
    const unsigned char u = static_cast<unsigned char>(c);
    if (!unreserved(u) && c != ':') return fail(ConnectUdpPathError::BadEncoding);
    host += c;
  }
  if (port_text.empty() || port_text.size() > 5 || port_text.find_first_not_of("0123456789") != std::string_view::npos)
    return fail(ConnectUdpPathError::BadPort);
  unsigned port = 0;
  for (char c : port_text) port = port * 10 + unsigned(c - '0');
  if (port < 1 || port > 65535) return fail(ConnectUdpPathError::BadPort);

  ConnectUdpTarget t;
  t.port = uint16_t(port);
  unsigned char buf[16];
  if (host.find(':') != std::string::npos) {
    if (inet_pton(AF_INET6, host.c_str(), buf) != 1) return fail(ConnectUdpPathError::BadHost);
    t.kind = ConnectUdpHostKind::Ipv6;
    for (char& c : host) c = char(std::tolower(static_cast<unsigned char>(c)));
  } else if (!host.empty() && host.find_first_not_of("0123456789.") == std::string::npos) {
    // All digits and dots: an IPv4 address in dotted-quad form (inet_pton takes no other), never a name.
    if (inet_pton(AF_INET, host.c_str(), buf) != 1) return fail(ConnectUdpPathError::BadHost);
    t.kind = ConnectUdpHostKind::Ipv4;
  } else {
    if (!dns_name(host)) return fail(ConnectUdpPathError::BadHost);
    t.kind = ConnectUdpHostKind::Name;
  }
  t.host = std::move(host);
  return t;
}

std::string connect_udp_path(std::string_view host, uint16_t port) {
  static const char* hex = "0123456789ABCDEF";
  std::string out(kConnectUdpPathPrefix);
  for (char c : host) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (unreserved(u)) {
      out += c;
    } else {
      out += '%';
      out += hex[u >> 4];
      out += hex[u & 15];
    }
  }
  out += '/' + std::to_string(port) + '/';
  return out;
}

}  // namespace dptun
