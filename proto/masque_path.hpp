// The CONNECT-UDP target in a request's path (RFC 9298 section 2): the default URI template
// "/.well-known/masque/udp/{target_host}/{target_port}/" expanded by simple string expansion (RFC 6570 3.2.2),
// so the host is percent-encoded (RFC 3986 2.1) and an IPv6 literal has its colons written %3A (no brackets,
// no zone). The one place dptun reads and writes that path (dpctld's HTTP/3 and HTTP/2 front ends, dpagent udp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dptun {

inline constexpr std::string_view kConnectUdpPathPrefix = "/.well-known/masque/udp/";
inline constexpr size_t kMaxConnectUdpPath = 1024;  // bytes of :path dptun reads at all

enum class ConnectUdpHostKind : uint8_t { Name, Ipv4, Ipv6 };

struct ConnectUdpTarget {
  std::string host;  // decoded: a DNS name in lower case, a dotted-quad IPv4 address, or an IPv6 address as sent
  uint16_t port = 0;  // 1..65535
  ConnectUdpHostKind kind = ConnectUdpHostKind::Name;
};

// Why a path is not a CONNECT-UDP target (each answered 400 with Proxy-Status error=http_request_error).
enum class ConnectUdpPathError : uint8_t {
  NotMasque,      // does not start with kConnectUdpPathPrefix
  TooLong,        // over kMaxConnectUdpPath
  BadEncoding,    // '%' not followed by two hex digits, or a decoded byte outside the host syntax
  BadHost,        // empty, not a DNS name / IPv4 / IPv6 literal, or over 253 bytes
  BadPort,        // not 1..65535 in decimal digits
  TrailingParts,  // anything (another segment, a query) after "{target_port}/", or the final '/' missing
  Count
};
const char* connect_udp_path_error_name(ConnectUdpPathError e);

// The target of `path` (the request's :path), or nullopt with the reason in *why.
std::optional<ConnectUdpTarget> parse_connect_udp_path(std::string_view path, ConnectUdpPathError* why = nullptr);

// The path for `host` (a DNS name, IPv4 or IPv6 address without brackets) and `port`: IPv6 colons become %3A,
// any other byte outside RFC 3986's unreserved set is percent-encoded.
std::string connect_udp_path(std::string_view host, uint16_t port);

}  // namespace dptun
