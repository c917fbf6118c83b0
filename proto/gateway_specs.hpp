// What dpgw is told by dpctld (docs/control-plane.md, "dpctld <-> dpgw"): a tunnel, a session, an entry point
// and a hostname rule as plain values. dpctld holds its entry points and rules in these types too (its config
// and state file). No JSON here: the data path includes it; the JSON encoding is proto/gateway_messages.hpp.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/inet.hpp"
#include "common/uuid.hpp"
#include "crypto/quic_keys.hpp"
#include "proto/entry_route.hpp"

namespace dptun {

inline constexpr int kGatewayProtocolVersion = 1;
inline constexpr uint32_t kFirstControlSessionIndex = 32768;  // 1..32767 belong to static peers

struct TunnelSpec {
  Uuid id;
  std::string name;
  bool from_config = false;  // dpgw's own config (not part of the messages)
};

// A session whose agent speaks the QUIC framing (docs/protocol.md "QUIC framing"): what dpgw needs of the connection
// dpctld's handshake made. Secrets: the 1-RTT traffic secrets, quic_secret_len(cipher) bytes each.
struct QuicSessionSpec {
  QuicCipher cipher = QuicCipher::Aes128Gcm;
  std::vector<uint8_t> rx_secret;  // the agent's (client's) 1-RTT secret: what dpgw opens with
  std::vector<uint8_t> tx_secret;  // the server's: what dpgw seals with
  // The tails of dpctld's connection IDs the agent may send to (index | tail; every one issued and not retired, the
  // first one first): 1..kQuicMaxRxCids (proto/quic_short_header.hpp), as many as the agent's
  // active_connection_id_limit let dpctld issue (RFC 9000 5.1.1).
  std::vector<std::array<uint8_t, 4>> cid_tails;
  std::array<uint8_t, 8> peer_cid{};  // the agent's connection ID: the DCID of what dpgw sends
  uint64_t first_tx_pn = uint64_t(1) << 30;  // above every number the handshake used (docs/protocol.md)
  // The agent's transport parameters that bound what dpgw sends it (RFC 9000 18.2, RFC 9221 3): the biggest UDP
  // payload it takes, and the biggest DATAGRAM frame (type, length and data).
  uint64_t max_udp_payload_size = 65527;
  uint64_t max_datagram_frame_size = 65535;
  // The agent's address on the path the handshake validated (RFC 9000 8.1; where dpctld's ngtcp2 last sent): dpgw's
  // first endpoint for the session, so that no packet from anywhere else moves it without a PATH_CHALLENGE answered
  // (a replay of a packet dpctld received cannot pull the tunnel elsewhere).
  Endpoint path{};
  bool operator==(const QuicSessionSpec&) const = default;
};

// A MASQUE client's session (docs/masque.md, "Datagrams on the fast path"): a QUIC session of an HTTP/3 client whose
// CONNECT-UDP request dpctld accepted. Each DATAGRAM frame it sends is an HTTP Datagram (RFC 9297 2.1) of request
// stream `stream_id` whose UDP payload (context ID 0, RFC 9298 4) goes to `target` through the session's tunnel, as
// a visitor's flow does; the target's replies come back the same way. Only with `visitor`, and with `quic` unless
// request_id is set.
// request_id != 0: an HTTP/2 or HTTP/1.1 client (docs/masque.md "HTTP/2 and HTTP/1.1 fallback") whose DATAGRAM
// capsules dpctld reads and writes itself: its UDP payloads reach dpgw in masque_datagrams messages on the control
// socket and the target's replies go back to dpctld the same way (proto/gateway_messages.hpp), both naming the session
// index and this id. Such a session has no `quic` object and never takes a frame from the network; stream_id is 0.
struct MasqueSpec {
  uint64_t stream_id = 0;  // the request stream: a client-initiated bidirectional stream (a multiple of 4)
  Endpoint target;         // the route's target as the tunnel's agents reach it (IPv4 address, port 1..65535)
  uint64_t request_id = 0;  // 1..2^53-1: dpctld's id of an HTTP/2 or HTTP/1.1 request (unique per dpctld run); 0: HTTP/3
  bool operator==(const MasqueSpec&) const = default;
};
// The largest MasqueSpec::request_id: 2^53 - 1, an integer every JSON reader holds exactly.
inline constexpr int64_t kMaxMasqueRequestId = (int64_t(1) << 53) - 1;

struct SessionSpec {
  uint32_t index = 0;
  Uuid tunnel;
  uint8_t weight = 1;
  std::vector<uint8_t> base_secret;  // 32 bytes
  bool visitor = false;  // a visitor of the tunnel (dpagent visit): reaches its services, never carries its flows
  bool peer_clock_counters = false;  // static peer: the agent's counters follow the wall clock (not sent)
  std::optional<Endpoint> endpoint;  // static peer's configured agent endpoint (not sent)
  bool from_config = false;
  std::optional<QuicSessionSpec> quic;  // the QUIC framing; relay frames when absent
  std::optional<MasqueSpec> masque;     // a MASQUE client (with visitor; with quic unless masque->request_id)
};

struct EntrySpec {
  uint8_t proto = 0;  // 6 or 17
  uint16_t port = 0;
  std::optional<Ipv4> listen;
  EntryRoute route = EntryRoute::Fixed;  // proto/entry_route.hpp
  Uuid tunnel;        // fixed entry points only
  Endpoint target;    // fixed entry points only
  bool keepalive = false;
  uint64_t udp_ttl_ns = 5'000'000'000ull;
  bool from_config = false;  // dpgw's own config (not part of the messages; dpctld keeps its config's apart)
};

// A rule's target: "a.b.c.d:port", or "a.b.c.d" alone (port 0: the port the client connected to, so one rule
// serves :80 and :443 alike).
std::optional<Endpoint> parse_rule_target(std::string_view text);
std::string rule_target_str(const Endpoint& e);

// A hostname rule (docs/control-plane.md, "Hostname rules"): a normalized hostname pattern, the tunnel it
// leads to and the target the agent reaches; private rules are never used by public entry points.
struct IngressRuleSpec {
  std::string hostname;  // "app.example.org", "*.example.com" or "~regex"
  Uuid tunnel;
  std::optional<Endpoint> target;
  bool private_rule = false;     // written "$<uuid>": only visitors holding the tunnel id may use it
  bool proxy_protocol = false;   // send a PROXY protocol v2 header to the target first (TCP)
};

// A direct-path pair whose pair frames dpgw relays (docs/nat-traversal.md "The pair's data"): a relay frame v1 with
// kFlagPair (proto/relay_frame.hpp) whose receiver index is `pair`, from the current endpoint of one of the two
// sessions, goes unopened to the other's (dataplane/relay/pair_relay.hpp). `a` is the visitor's session index, `b`
// the agent's (of the visitor's tunnel); dpctld draws `pair` at random, never 0, one pair per id.
struct PairSpec {
  uint32_t pair = 0;  // the pair id: 1..2^32-1
  uint32_t a = 0;     // the visitor's session index: 1..65535
  uint32_t b = 0;     // the agent's session index: 1..65535, not a
  bool operator==(const PairSpec&) const = default;
};
// The most pairs one pair_set holds (and dpgw's pair table).
inline constexpr size_t kMaxPairs = 65536;

}  // namespace dptun
