// The dpctld <-> dpgw control messages (docs/control-plane.md, "dpctld <-> dpgw") as JSON: the message envelope
// ({"type": <proto/control_names.hpp>, ...}) and the encoding of the values of proto/gateway_specs.hpp. dpctld
// encodes, dpgw decodes; dpctld's state file holds entry points and hostname rules in the same encoding.
// Decoders throw FieldError (a std::runtime_error) naming the offending field.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "proto/control_names.hpp"
#include "proto/gateway_specs.hpp"

namespace dptun {

// {"type": <name>} with the body's members.
nlohmann::json gateway_message(GatewayMessageType type, nlohmann::json body = nlohmann::json::object());
// The "type" of a message, or nullopt when it has none or one that is not in GatewayMessageType.
std::optional<GatewayMessageType> gateway_message_type(const nlohmann::json& msg);
// {"type":"trace","op": <op>} with the body's members (`dpgw trace`; docs/operations.md, "Packet trace").
nlohmann::json trace_message(TraceOp op, nlohmann::json body = nlohmann::json::object());
// An error reply: {"type":"error","reason":...} with its "code" when one is given.
nlohmann::json gateway_error(const std::string& reason, std::optional<GatewayErrorCode> code = std::nullopt);
// The "code" of an error reply, when it is one of GatewayErrorCode.
std::optional<GatewayErrorCode> gateway_error_code(const nlohmann::json& reply);

nlohmann::json encode_tunnel(const TunnelSpec& t);
nlohmann::json encode_ingress_rule(const IngressRuleSpec& r);
IngressRuleSpec decode_ingress_rule(const nlohmann::json& j);  // the hostname as sent (dpctld normalizes it)
nlohmann::json encode_session(const SessionSpec& s);
nlohmann::json encode_entry(const EntrySpec& e);
TunnelSpec decode_tunnel(const nlohmann::json& j);
SessionSpec decode_session(const nlohmann::json& j);
EntrySpec decode_entry(const nlohmann::json& j);

// An entry point's "ttl" in obj: seconds, 0.1..86400 (default 5), in nanoseconds (rounded: a TTL read, written
// and read again stays the same to the nanosecond).
uint64_t entry_ttl_ns(const nlohmann::json& obj);

// UDP payloads of one MASQUE client whose DATAGRAM capsules dpctld carries (HTTP/2, HTTP/1.1; MasqueSpec::request_id,
// docs/masque.md "HTTP/2 and HTTP/1.1 fallback"), both ways on dpgw's control socket, never answered:
//   {"type": "masque_datagrams", "index": I, "request_id": R, "datagrams": ["<base64 (RFC 4648 4) UDP payload>", ...]}
// dpctld -> dpgw: the client's payloads, each to become one UDP datagram to the session's target; dpgw -> dpctld
// (to the controller's connection): the target's replies. 1..kMaxMasqueDatagrams payloads of 0..kMaxMasqueDatagramSize
// bytes each, in order. A message naming a session that is gone, or whose request_id differs (the index serves
// another session now), is dropped whole and counted by its receiver.
struct MasqueDatagrams {
  static constexpr size_t kMaxMasqueDatagrams = 64;
  static constexpr size_t kMaxMasqueDatagramSize = 65527;  // bytes: the largest UDP payload over IPv4
  uint32_t index = 0;
  uint64_t request_id = 0;
  std::vector<std::vector<uint8_t>> datagrams;
};
nlohmann::json encode_masque_datagrams(const MasqueDatagrams& d);
// Throws FieldError naming the field: index not kFirstControlSessionIndex..65535, request_id not 1..2^53-1, no
// datagrams or too many, one that is not base64 or too long. Base64 is read strictly: RFC 4648 4's alphabet, a
// multiple of 4 characters, padded with at most two '=' at the end, no blanks or line breaks; "" is an empty payload.
// encode_masque_datagrams writes it so (OpenSSL's EVP_EncodeBlock), with "type" and no "seq".
MasqueDatagrams decode_masque_datagrams(const nlohmann::json& j);

// The direct-path pairs whose pair frames dpgw relays, the whole list each time (dpctld -> dpgw; PairSpec):
//   {"type": "pair_set", "pairs": [{"pair": 123, "sessions": [A, B]}, ...]}
// "pair": the pair id, 1..2^32-1; "sessions": [the visitor's session index, the agent's], each 1..65535, not equal.
// At most kMaxPairs pairs, no pair id twice; [] clears them. A sync may carry the same list as its "pairs" member.
nlohmann::json encode_pairs(std::span<const PairSpec> pairs);  // the "pairs" list
nlohmann::json pair_set_message(std::span<const PairSpec> pairs);  // the whole message, for GatewayLink::send
// The "pairs" list (encode_pairs' format). Throws FieldError naming the field: not a list, too many, an entry that is
// not an object, a pair id 0 or not a 32-bit integer, "sessions" not two different indexes 1..65535, a pair id twice.
std::vector<PairSpec> decode_pairs(const nlohmann::json& list);
// A pair_set message's "pairs" (required: FieldError when absent).
std::vector<PairSpec> decode_pair_set(const nlohmann::json& msg);

// "tcp" / "udp" as entry points and entry_del name their protocol (6 / 17); parse_l4_proto throws FieldError.
const char* l4_proto_name(uint8_t proto);
uint8_t parse_l4_proto(const nlohmann::json& obj, const char* key);

}  // namespace dptun
