// The dpctld <-> dpgw control messages (docs/control-plane.md, "dpctld <-> dpgw") as JSON: the message envelope
// ({"type": <proto/control_names.hpp>, ...}) and the encoding of the values of proto/gateway_specs.hpp. dpctld
// encodes, dpgw decodes; dpctld's state file holds entry points and hostname rules in the same encoding.
// Decoders throw FieldError (a std::runtime_error) naming the offending field.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>

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

// "tcp" / "udp" as entry points and entry_del name their protocol (6 / 17); parse_l4_proto throws FieldError.
const char* l4_proto_name(uint8_t proto);
uint8_t parse_l4_proto(const nlohmann::json& obj, const char* key);

}  // namespace dptun
