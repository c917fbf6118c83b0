// The CONNECT-UDP request and its answer as HTTP fields, the same over HTTP/3 and HTTP/2: extended CONNECT (RFC 9220
// 3 / RFC 8441 4) with :protocol connect-udp, :scheme https, :authority and the target in :path (RFC 9298 3.4,
// proto/masque_path.hpp); the answer's :status, capsule-protocol: ?1 on 2xx (RFC 9297 3.4, RFC 9298 3.5) and a
// Proxy-Status field naming the error on a refusal (RFC 9209 2: `dptun; error=<type>; details="<text>"`). The one
// place that knows which fields these messages carry; request rules are RFC 9114 4.2-4.3.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proto/h3_fields.hpp"
#include "proto/masque_path.hpp"

namespace dptun {

inline constexpr std::string_view kProxyStatusName = "dptun";  // the intermediary's name in Proxy-Status

struct ConnectUdpRequest {
  std::string authority;
  std::string path;          // as sent (the route table reads it again: MasqueRouteTable::match_path)
  ConnectUdpTarget target;   // parsed from path
  bool capsule_protocol = false;  // the request carried capsule-protocol: ?1
};

// Why a request is not a CONNECT-UDP request dptun serves; each with its status (connect_udp_status) and the
// Proxy-Status error type http_request_error.
enum class ConnectUdpRequestError : uint8_t {
  Malformed,      // RFC 9114 4.3.1 / 4.2: a pseudo-header missing, repeated, unknown, or after a regular field; a
                  // name with upper case; a connection-specific field (connection, keep-alive, proxy-connection,
                  // transfer-encoding, upgrade; te other than "trailers"): 400
  NotConnect,     // :method is not CONNECT: 405
  NotConnectUdp,  // CONNECT without :protocol (a TCP tunnel) or with another protocol: 501
  BadScheme,      // :scheme is not https: 400
  BadPath,        // :path is not a CONNECT-UDP target (path_error says why): 400
  Count
};
const char* connect_udp_request_error_name(ConnectUdpRequestError e);
uint16_t connect_udp_status(ConnectUdpRequestError e);

struct ConnectUdpRequestProblem {
  ConnectUdpRequestError error = ConnectUdpRequestError::Malformed;
  ConnectUdpPathError path_error = ConnectUdpPathError::NotMasque;  // when error is BadPath
  std::string detail;  // one short sentence for the log and Proxy-Status details (names the field)
};

// Reads a request's field section. nullopt with *why when it is not a CONNECT-UDP request dptun serves.
std::optional<ConnectUdpRequest> parse_connect_udp_request(std::span<const HttpField> fields,
                                                           ConnectUdpRequestProblem* why = nullptr);

// The request a client sends for target `host` (a DNS name, IPv4 or IPv6 address) and `port` through gateway
// `authority` (host[:port]): :method, :protocol, :scheme, :authority, :path, capsule-protocol: ?1.
std::vector<HttpField> connect_udp_request_fields(std::string_view authority, std::string_view host, uint16_t port);

// The answer: `status` (100..599); on 2xx capsule-protocol: ?1; otherwise, when proxy_error is not empty, a
// Proxy-Status with that error type (RFC 9209 2.3) and `details` (bytes outside printable ASCII become '?', '"'
// and '\' are escaped, at most 200 bytes).
std::vector<HttpField> connect_udp_response_fields(uint16_t status, std::string_view proxy_error = {},
                                                   std::string_view details = {});

struct ConnectUdpResponse {
  uint16_t status = 0;
  bool capsule_protocol = false;
  std::string proxy_status;  // the Proxy-Status field as received (empty when absent)
};
// Reads an answer's field section (what dpagent udp receives): nullopt when :status is missing, repeated or not
// three digits.
std::optional<ConnectUdpResponse> parse_connect_udp_response(std::span<const HttpField> fields);
// A refusal for a log line: "404 (dptun; error=destination_not_found; details=\"...\")", the status and the
// Proxy-Status field if any.
std::string connect_udp_refusal_text(const ConnectUdpResponse& r);

// Why a client dropped a UDP payload the gateway sent (HTTP Datagrams over HTTP/3, DATAGRAM capsules over HTTP/3 and
// HTTP/2), one counter each; the same names whichever HTTP version carried them.
enum class ConnectUdpDrop : uint8_t {
  Malformed,      // a varint cut short
  UnknownStream,  // an HTTP Datagram for another request stream (HTTP/3 only)
  Context,        // a context ID other than 0 (no extension is registered, RFC 9298 4)
  NotOpen,        // before the 2xx answer (or after the request ended)
  Count
};
const char* connect_udp_drop_name(ConnectUdpDrop d);

}  // namespace dptun
