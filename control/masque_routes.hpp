// UDP routes for clients (docs/masque.md): `udp+https://NAME:PORT` -> a tunnel -> `udp://HOST:PORT` as the agent
// reaches it, for CONNECT-UDP requests (RFC 9298) whose target is NAME:PORT, from clients whose certificate
// identity the route allows. Held in dpctld.conf (`routes`) and dpctld's state file (dpctl route add); the
// matcher answers a request with its route or a refusal whose HTTP status and Proxy-Status error (RFC 9209 2.3)
// the front end sends.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/uuid.hpp"

namespace dptun {

struct MasqueRoute {
  std::string host;  // what clients name as target_host: a DNS name in lower case or a dotted-quad IPv4 address
  uint16_t port = 0;
  Uuid tunnel;
  std::string to_host;  // where the agent sends the datagrams: a DNS name in lower case or an IPv4 address
  uint16_t to_port = 0;
  bool private_route = false;      // never matched for a request through the public front end
  std::vector<std::string> allow;  // certificate identities allowed: "CN=..", "DNS:..", "URI:.." or "*"
  std::string from_url() const { return "udp+https://" + host + ":" + std::to_string(port); }
  std::string to_url() const { return "udp://" + to_host + ":" + std::to_string(to_port); }
};

// "udp+https://NAME:PORT" (from) and "udp://HOST:PORT" (to): the host (a DNS name, lower-cased, or an IPv4 address)
// and the port (1..65535), or nullopt with what is wrong in `why` (a sentence naming the text).
std::optional<std::pair<std::string, uint16_t>> parse_route_url(std::string_view text, std::string_view scheme,
                                                                std::string& why);

// The state file's and dpgw's JSON of a route: {"from", "to", "tunnel", "private", "allow"}. decode throws
// FieldError naming the field.
nlohmann::json encode_masque_route(const MasqueRoute& r);
MasqueRoute decode_masque_route(const nlohmann::json& j);

// Why a CONNECT-UDP request is refused: the reason label of dptun_masque_refusals_total.
enum class MasqueRefusal : uint8_t {
  BadRequest,     // the :path is not a CONNECT-UDP target (proto/masque_path.hpp): 400, http_request_error
  UnknownTarget,  // no route for target_host:target_port: 404, destination_not_found
  PrivateRoute,   // only a private route, and the request came through the public front end: answered as
                  // UnknownTarget (a client never learns that a private route exists), counted apart
  NotAllowed,     // a route, but the client's certificate is not among its allowed identities: 403,
                  // http_request_denied
  NoAgent,        // a route, but no agent serves its tunnel now: 503, destination_unavailable
  DnsError,       // the route's `to` is a name that does not resolve to an IPv4 address: 502, dns_error
  Count
};
const char* masque_refusal_name(MasqueRefusal r);
int masque_refusal_http_status(MasqueRefusal r);
const char* masque_refusal_proxy_status(MasqueRefusal r);  // RFC 9209 2.3 error type

struct MasqueMatch {
  const MasqueRoute* route = nullptr;  // the route; nullptr when refused
  MasqueRefusal refusal = MasqueRefusal::UnknownTarget;
  explicit operator bool() const { return route != nullptr; }
};

// Routes by (host, port): one route per pair. Holds its own copy of the routes.
class MasqueRouteTable {
 public:
  MasqueRouteTable() = default;
  // Later routes with a pair already in the table are left out (dpctld refuses such duplicates before).
  explicit MasqueRouteTable(std::vector<MasqueRoute> routes);
  // The route for target `host` (a DNS name, compared without regard to case, or an IPv4 address) and `port`
  // asked by a client holding certificate `identities` ("CN=..", "DNS:..", "URI:..") through the public front end
  // (public_entry) or a private one.
  MasqueMatch match(std::string_view host, uint16_t port, const std::vector<std::string>& identities,
                    bool public_entry) const;
  // The same for a request's :path (proto/masque_path.hpp); BadRequest when it is not a CONNECT-UDP target.
  MasqueMatch match_path(std::string_view path, const std::vector<std::string>& identities, bool public_entry) const;
  size_t size() const { return routes_.size(); }

 private:
  std::vector<MasqueRoute> routes_;
  std::map<std::pair<std::string, uint16_t>, size_t> by_target_;
};

}  // namespace dptun
