// The agent <-> dpctld protocol on the TLS connection (docs/control-plane.md, "Registration protocol"):
// newline-delimited JSON.
#pragma once
#include <array>
#include <cstdint>
#include <openssl/ssl.h>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/inet.hpp"

namespace dptun {

inline constexpr int kControlProtocolVersion = 1;
inline constexpr char kExporterLabel[] = "EXPORTER-dptun-relay-v1";

// An agent's message to dpctld, read (control/control_protocol.cpp): a ping, or a registration with its fields
// checked, or what is wrong with it (a refusal reason and the text the agent gets).
// NAT traversal (docs/nat-traversal.md): what an agent learned of the socket it keeps for direct paths, sent
// after each registration and whenever it changes:
//   {"type":"candidates","nat":"endpoint-independent",
//    "candidates":[{"type":"host","address":"10.0.0.2:41000"},{"type":"srflx","address":"198.51.100.7:41000"}]}
// Candidate types are ICE's (RFC 8445 5.1.1.1, 5.1.1.2): `host` (an address of the agent's own host) and `srflx`
// (server reflexive: the address and port a STUN server saw). `nat` is the NAT's mapping behaviour (RFC 4787 4.1)
// as far as the agent's STUN answers tell it: `none` (a STUN server saw a host candidate), `endpoint-independent`
// (the same mapping towards every server asked), `endpoint-dependent` (a new mapping per server: a "symmetric"
// NAT), `unknown` (fewer than two answers). IPv4, at most kMaxCandidates; no candidate is an unspecified,
// loopback, multicast or broadcast address, or port 0.
enum class NatMapping : uint8_t { Unknown, None, EndpointIndependent, EndpointDependent, Count };
enum class CandidateType : uint8_t { Host, ServerReflexive, Count };
const char* nat_mapping_name(NatMapping m);
const char* candidate_type_name(CandidateType t);
struct Candidate {
  CandidateType type = CandidateType::Host;
  Endpoint address;
  bool operator==(const Candidate&) const = default;
};
struct CandidateReport {
  NatMapping nat = NatMapping::Unknown;
  std::vector<Candidate> candidates;
  bool operator==(const CandidateReport&) const = default;
};
inline constexpr size_t kMaxCandidates = 8;
// An address a peer may be asked to send to: IPv4, not 0.0.0.0/8, 127.0.0.0/8, 224.0.0.0/4 (multicast) or above
// (240/4 and the broadcast address), port not 0.
bool candidate_address_ok(const Endpoint& e);
std::string candidates_message(const CandidateReport& r);
// The candidates as the messages carry them ([{"type":..,"address":..}], also in dpctl's JSON), and as log lines
// say them ("srflx 198.51.100.7:41000 host 10.0.0.2:41000", or "none").
nlohmann::json candidates_json(const std::vector<Candidate>& list);
std::string candidates_text(const std::vector<Candidate>& list);
// A pair id as logs, dpctl and dpagent's counters show it: 8 hex digits.
std::string pair_id_text(uint32_t pair);

// Pairing (docs/nat-traversal.md): dpctld pairs a visitor with one agent of its tunnel, both with candidates, and
// gives both ends the other's candidates and a pair secret it drew for this pairing alone (32 random bytes, hex):
//   {"type":"peer","pair":305419896,"role":"controlling"|"controlled","secret":"<64 hex digits>","session":32770,
//    "name":"agent-1","nat":"endpoint-independent","candidates":[...as in a candidates report...]}
//   {"type":"peer_gone","pair":305419896}       the pairing ended (a session went, or candidates changed)
// With "data" the pair also carries the visitor's flows (pair frames, "The pair's data"): `block` is the visitor's
// block of flow tags (SnatCodec::pair_tag), `target` where its flows go, the target of the tunnel's rule for the
// service it named at registration ("service"; port 0: the visitor's --local port). Both ends get both: the agent
// sends the visitor's packets to that target whatever they say:
//   "data":{"block":17,"target":"10.99.3.2:8080"}
// Without "data" the pair only checks its path, and every flow goes through dpgw.
// The visitor is the controlling end. Each end reports what its checks found:
//   {"type":"path","pair":305419896,"state":"checking"|"direct"|"relayed","reason":"...","remote":"ip:port",
//    "rtt_us":850}
// `remote` and `rtt_us` with "direct" only; `reason` with "relayed" (PathReason). Pair ids are never 0.
struct PairDataOffer {
  uint16_t block = 0;              // < SnatCodec::kPairBlocks
  std::optional<Endpoint> target;  // always set in an offer that parses
  bool operator==(const PairDataOffer&) const = default;
};
struct PeerOffer {
  uint32_t pair = 0;
  bool controlling = false;
  std::array<uint8_t, 32> secret{};  // wiped with the object
  uint32_t session = 0;  // the peer's session index
  std::string name;      // the peer's agent name (at most 64 bytes of UTF-8)
  CandidateReport peer;
  std::optional<PairDataOffer> data;
  PeerOffer() = default;
  PeerOffer(const PeerOffer&) = default;
  PeerOffer& operator=(const PeerOffer&) = default;
  ~PeerOffer();
};
std::string peer_message(const PeerOffer& p);
std::string peer_gone_message(uint32_t pair);

enum class PathState : uint8_t { Checking, Direct, Relayed, Count };
// Why a pair's data goes through dpgw.
enum class PathReason : uint8_t {
  None,              // (not relayed)
  ChecksUnanswered,  // no authenticated answer to any check: the NATs keep the ends apart (or a firewall)
  ConsentLost,       // a direct path that stopped answering
  TooManyPairs,      // this end has kMaxPairs already
  Count
};
const char* path_state_name(PathState s);
const char* path_reason_name(PathReason r);
struct PathReport {
  uint32_t pair = 0;
  PathState state = PathState::Checking;
  PathReason reason = PathReason::None;
  std::optional<Endpoint> remote;
  uint64_t rtt_us = 0;
  bool operator==(const PathReport&) const = default;
};
std::string path_message(const PathReport& r);

// A line from dpctld that is not the registration's answer: a pairing, its end, or something else (ignored).
struct ControllerMessage {
  enum class Kind : uint8_t { Peer, PeerGone, Other, Invalid } kind = Kind::Other;
  PeerOffer peer;        // Peer
  uint32_t pair = 0;     // PeerGone
  std::string error;     // Invalid: why
};
ControllerMessage parse_controller_message(std::string_view line);

struct AgentMessage {
  // Candidates with a non-empty `error`: a report dpctld ignores (counted), the session goes on.
  enum class Kind : uint8_t { Ping, Register, Candidates, Path, Invalid } kind = Kind::Invalid;
  std::string tunnel;  // id or name
  int weight = 1;      // 1..255
  std::string name;    // at most 64 bytes
  bool visitor = false;
  std::string service;         // Register, a visitor's: the hostname it visits (lowercase, at most 253 bytes)
  bool pair_data = false;      // Register: "features" holds "pair_data" (the dpagent carries a direct pair's data)
  CandidateReport candidates;  // Candidates
  PathReport path;             // Path (with a non-empty `error`: ignored, counted)
  bool bad_version = false;  // Invalid because of the protocol version (not the request's shape)
  std::string error;         // Invalid: why
};
AgentMessage parse_agent_message(std::string_view line);

// dpctld's answer to a registration that it accepted (docs/control-plane.md), one place for both ends:
//   {"type":"registered","version":1,"session":N,"tunnel":"<uuid>","weight":1..255,"role":"agent"|"visitor",
//    "gateway":"IPv4:port","cipher":"aes-128-gcm"|"aes-256-gcm","rekey_interval":s,"keepalive":s,
//    "framing":"relay"|"quic"[,"stun_port":N]}
// (seconds as JSON numbers; stun_port only when dpgw has one). Read with every field the agent uses type- and
// range-checked (tunnel and role are only shown): `error` names the field that is wrong, and the agent then
// registers again (nothing throws).
struct RegisteredReply {
  uint32_t session = 0;  // 1..2^32-1
  std::string tunnel;    // the tunnel's id
  unsigned weight = 1;   // what the session got (the tunnel's weight policy may differ from what was asked)
  bool visitor = false;
  Endpoint gateway;
  uint8_t key_len = 16;  // 16: AES-128-GCM, 32: AES-256-GCM
  uint64_t rekey_interval_ns = 120'000'000'000;  // 1 s .. 1 day
  uint64_t keepalive_ns = 2'000'000'000;         // 0.05 s .. 1 h
  bool quic_framing = false;                     // the data follows on the QUIC connection (dpgw takes it over)
  uint16_t stun_port = 0;                        // 0: none said
  std::string error;                             // read: non-empty when the reply cannot be used
};
std::string registered_message(const RegisteredReply& r);
// `msg`: a parsed object whose type is "registered"; `asked_weight` stands in for an absent "weight".
RegisteredReply parse_registered_reply(const nlohmann::json& msg, unsigned asked_weight);

// Both ends derive a session's 32-byte base secret from the TLS 1.3 exporter, bound to the session index.
// Returns an empty vector when OpenSSL fails.
std::vector<uint8_t> export_session_secret(SSL* ssl, uint32_t session_index);

}  // namespace dptun
