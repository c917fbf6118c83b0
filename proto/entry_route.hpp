// How an entry point finds the tunnel and target of a new flow (docs/hostname-routing.md): fixed (its own), or by a
// hostname the client sends, read by one of dpgw's name readers and matched against the ingress rules. One row per
// kind; everything that reads or acts on an entry point's route goes by this table: the dpctl API, dpctld.conf,
// dpctld's state file, dpgw's decoding of dpctld's messages and its config, and the workers' dispatch (a switch on
// the row's name source, without a default). A new kind is one row here and one reader in dataplane/hostname/.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dptun {

enum class EntryRoute : uint8_t { Fixed, TlsSni, HttpHost, QuicSni };

// Where dpgw reads the hostname of a new flow.
enum class NameSource : uint8_t {
  None,             // fixed: no name
  TlsClientHello,   // the SNI of the TLS ClientHello (RFC 6066 section 3), TCP binding
  HttpRequestHead,  // the authority of an HTTP/1.x request head (RFC 9112 section 3.2), TCP binding
  QuicInitial,      // the SNI of the ClientHello in the client's Initial packets (RFC 9001 section 5), QUIC holds
};

struct EntryRouteKind {
  EntryRoute route;
  const char* name;  // as written in dpctl, dpctld.conf, the state file and dpctld's messages
  uint8_t proto;     // the IP protocol an entry point of this kind listens on (0: tcp or udp)
  NameSource source;
};

inline constexpr std::array<EntryRouteKind, 4> kEntryRouteKinds{{
    {EntryRoute::Fixed, "fixed", 0, NameSource::None},
    {EntryRoute::TlsSni, "sni", 6, NameSource::TlsClientHello},
    {EntryRoute::HttpHost, "http", 6, NameSource::HttpRequestHead},
    {EntryRoute::QuicSni, "quic", 17, NameSource::QuicInitial},
}};

constexpr const EntryRouteKind& entry_route_kind(EntryRoute r) { return kEntryRouteKinds[size_t(r)]; }
inline const char* entry_route_name(EntryRoute r) { return entry_route_kind(r).name; }
std::optional<EntryRoute> parse_entry_route(std::string_view name);

// The one check of a route by hostname named for an entry point of IP protocol `proto` (6 or 17): "" with `out` set
// when it may be used, else what is wrong, naming the routes that exist (e.g. "route must be sni or http (tcp), or
// quic (udp)"). "fixed" is not named: an entry point without a route is fixed.
std::string entry_route_problem(std::string_view name, uint8_t proto, EntryRoute& out);

}  // namespace dptun
