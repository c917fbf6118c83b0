// dpctld configuration (conf/dpctld.conf documents every key): the agent TLS port and its certificates,
// where logs, metrics, the dpctl API and persisted state go, how to reach dpgw, and the initial tunnels.
#pragma once
#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/inet.hpp"
#include "common/tunnel_names.hpp"  // tunnel_name_problem, tunnel_name_key, tunnel_is
#include "common/uuid.hpp"
#include "control/masque_routes.hpp"
#include "control/tls_server.hpp"
#include "proto/gateway_specs.hpp"

namespace dptun {

// How a session's pool weight is chosen: the agent asks for one (--weight) and gets at most max_weight, or
// every session of the tunnel gets the fixed weight. 255 means "preferred" (see docs/control-plane.md).
struct WeightPolicy {
  bool fixed = false;
  uint8_t weight = 1;        // fixed weight
  uint8_t max_weight = 255;  // cap on what agents ask for
  uint8_t effective(int requested) const { return fixed ? weight : uint8_t(std::min(requested, int(max_weight))); }
  std::string str() const;   // "agent" / "agent, at most 100" / "fixed 5"
};

struct TunnelDef {
  Uuid id;
  std::string name;
  // Certificate identities that may register agents for this tunnel: "CN=<name>", "DNS:<name>", "URI:<uri>",
  // or "*" for any certificate the CA signed.
  std::vector<std::string> allow;
  WeightPolicy weights;
};

// Entry points and hostname rules are proto/gateway_specs.hpp's EntrySpec and IngressRuleSpec: what dpctld
// holds (config, state file) is what it tells dpgw. An IngressRuleSpec's hostname here is always normalized
// (normalize_hostname_rule).

struct DpctldConfig {
  std::string path;
  Endpoint agent_listen{Ipv4{0}, 7443};
  std::optional<Endpoint> agent_quic_listen;  // UDP: agents' QUIC handshakes and registrations (unset: none)
  // TCP: CONNECT-UDP clients over HTTP/2 and HTTP/1.1 (docs/masque.md; unset: none)
  std::optional<Endpoint> masque_tcp_listen;
  TlsFiles tls;
  uint64_t handshake_timeout_ns = 10'000'000'000ull;
  uint32_t max_pending_handshakes = 256;     // unfinished TLS handshakes at once (the oldest gives way)
  uint32_t max_pending_per_source = 16;      // ... from one address
  uint32_t failure_log_rate = 20;            // lines per second in the failure log (then a count of the rest)
  std::string failure_log = "-";  // JSON lines of failed agent handshakes; "-" = stdout
  std::optional<Endpoint> metrics_listen = Endpoint{Ipv4{0x7f000001}, 9108};
  std::string api_socket = "/run/dptun/dpctld.sock";
  std::string gateway_socket = "/run/dptun/dpgw.sock";
  std::string state_file = "/var/lib/dptun/dpctld.state";
  Endpoint gateway_endpoint;  // the dpgw address:port agents send relay frames to
  std::string agent_address;  // how agents reach agent_listen, HOST:PORT (for the dpagent command dpctl prints)
  std::string agent_ca;       // the --ca agents use: the CA file that verifies dpctld's certificate, as a path on
                              // agent hosts ("" = tls.ca when it verifies dpctld's own certificate)
  uint8_t key_len = 16;
  std::string openssl_conf;        // an OpenSSL configuration file to load at start (providers); "" = OpenSSL's own
  std::string openssl_conf_where;  // "file:line: key 'dpctld.openssl_conf'", for errors loading it
  uint64_t rekey_interval_ns = 120'000'000'000ull;
  uint64_t keepalive_ns = 2'000'000'000ull;
  uint64_t session_expiry_ns = 30'000'000'000ull;  // a session without agent connection and traffic is removed
  std::vector<TunnelDef> tunnels;
  std::vector<EntrySpec> entry_points;
  std::vector<IngressRuleSpec> ingress;
  std::vector<MasqueRoute> routes;  // udp+https routes for CONNECT-UDP clients (docs/masque.md)
};

// Throws ConfigError("file:line: key 'x': what is wrong").
DpctldConfig load_dpctld_config(const std::string& path);

// Hostname rules: "example.org" (exact), ".example.com" or "*.example.com" (the domain and every subdomain), or
// "~regex" (a pattern the whole name must match, case-insensitive, at most kMaxHostnamePattern bytes). Returns
// the normalized form (lower case; wildcards as "*.example.com"; patterns as given), or nullopt with `why` when
// it is not a valid rule. With compile = false a pattern is only checked for its length: the caller compiles it
// where a slow compile does no harm (dpctld's background thread).
inline constexpr size_t kMaxHostnamePattern = 256;
std::optional<std::string> normalize_hostname_rule(const std::string& text, std::string* why = nullptr,
                                                   bool compile = true);

// What is wrong with an entry point wherever it comes from (config file, state file, dpctl), or "": the
// ports the gateway needs itself -- its tunnel port (relay frames from agents) and, when dpctld is reached
// through dpgw's kernel path, dpctld's agent port.
std::string entry_point_problem(const EntrySpec& e, const DpctldConfig& cfg);

// What is wrong with an allow entry, or "": "CN=<name>", "DNS:<name>", "URI:<uri>" or "*".
std::string allow_problem(const std::string& allow);

// True when one of the certificate's identities is allowed ("*" allows any). DNS names compare without regard
// to case (RFC 4343); CN and URI entries exactly.
bool identity_allowed(const std::vector<std::string>& allow, const std::vector<std::string>& identities);

}  // namespace dptun
