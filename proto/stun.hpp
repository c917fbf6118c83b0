// STUN (RFC 8489): the one place that knows its wire format. dpgw's workers answer Binding requests with the
// client's address as they saw it (dataplane/nat/stun_input.hpp, docs/operations.md "STUN").
//
// A message (RFC 8489 5, 14): a 20-byte header, all fields big-endian,
//   0 type (2: the top two bits 0, then class and method interleaved) | 2 length (2: bytes after the header, a
//   multiple of 4) | 4 magic cookie 0x2112A442 (4) | 8 transaction ID (12)
// then attributes, each type (2) | length (2: of the value, before padding) | value, padded to a multiple of 4.
// An RFC 3489 client ("classic" STUN, RFC 5389 12) has no magic cookie: its transaction ID is the 16 bytes from 4.
// FINGERPRINT (14.7), when present, is the last attribute: the CRC-32 (ITU V.42, zlib's) of the message up to it,
// the header's length counting it, XOR 0x5354554E. MESSAGE-INTEGRITY and MESSAGE-INTEGRITY-SHA256 (14.5, 14.6)
// are skipped, never verified: dpgw has no credentials; the attributes after them other than
// MESSAGE-INTEGRITY-SHA256 and FINGERPRINT are ignored (14.5). IPv4 only: dpgw's ports are IPv4.
// Allocation-free and exception-free: the fast path calls these on every STUN datagram.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "common/bytes.hpp"

namespace dptun {

inline constexpr uint32_t kStunMagicCookie = 0x2112A442;  // RFC 8489 5
inline constexpr size_t kStunHeaderLen = 20;
inline constexpr uint16_t kStunDefaultPort = 3478;  // RFC 8489 18.5 (stun/udp)
inline constexpr uint32_t kStunFingerprintXor = 0x5354554E;  // RFC 8489 14.7

// Message types (RFC 8489 5: method 0x001 Binding, classes request 0b00, indication 0b01, success 0b10, error 0b11).
inline constexpr uint16_t kStunBindingRequest = 0x0001;
inline constexpr uint16_t kStunBindingIndication = 0x0011;
inline constexpr uint16_t kStunBindingSuccess = 0x0101;
inline constexpr uint16_t kStunBindingError = 0x0111;
inline constexpr uint16_t kStunMethodBinding = 0x001;

// Attribute types (RFC 8489 18.3; CHANGE-REQUEST: RFC 5780 7.2, RFC 3489 11.2.4). Below 0x8000 comprehension-required.
inline constexpr uint16_t kStunAttrMappedAddress = 0x0001;
inline constexpr uint16_t kStunAttrChangeRequest = 0x0003;
inline constexpr uint16_t kStunAttrUsername = 0x0006;
inline constexpr uint16_t kStunAttrMessageIntegrity = 0x0008;
inline constexpr uint16_t kStunAttrErrorCode = 0x0009;
inline constexpr uint16_t kStunAttrUnknownAttributes = 0x000A;
inline constexpr uint16_t kStunAttrRealm = 0x0014;
inline constexpr uint16_t kStunAttrNonce = 0x0015;
inline constexpr uint16_t kStunAttrMessageIntegritySha256 = 0x001C;
inline constexpr uint16_t kStunAttrPasswordAlgorithm = 0x001D;
inline constexpr uint16_t kStunAttrUserhash = 0x001E;
inline constexpr uint16_t kStunAttrXorMappedAddress = 0x0020;
inline constexpr uint16_t kStunAttrSoftware = 0x8022;
inline constexpr uint16_t kStunAttrFingerprint = 0x8028;

// At most this many unknown comprehension-required attributes are listed in a 420 answer (more are still a 420).
inline constexpr size_t kStunMaxUnknown = 8;

// Why bytes are not a STUN message dpgw reads (the drop stun_malformed counts all of them).
enum class StunError : uint8_t {
  TooShort,            // fewer than 20 bytes
  NotStun,             // the type's top two bits are not 0, or no magic cookie where one is required
  BadLength,           // the header's length is not the bytes after the header, or not a multiple of 4
  AttributeOverrun,    // an attribute (with its padding) runs past the message's end
  FingerprintNotLast,  // a FINGERPRINT followed by another attribute, or not 4 bytes long
  BadFingerprint,      // a FINGERPRINT whose CRC-32 does not match
  Count
};
const char* stun_error_name(StunError e);

// A message read by parse_stun.
struct StunMessage {
  uint16_t type = 0;      // class and method (RFC 8489 5)
  bool classic = false;   // no magic cookie: an RFC 3489 client (answered with MAPPED-ADDRESS, no FINGERPRINT)
  bool fingerprint = false;  // a FINGERPRINT was present (and matched)
  // The request's bytes 4..19: the magic cookie and the 96-bit transaction ID (classic: its 128-bit one), copied
  // into the response as they came.
  std::array<uint8_t, 16> id{};
  // Comprehension-required attributes (type < 0x8000) dpgw's Binding server does not understand, in the order they
  // came, the first kStunMaxUnknown of them: what a request's 420 (Unknown Attribute) lists. Understood: USERNAME,
  // USERHASH, REALM, NONCE, MESSAGE-INTEGRITY(-SHA256), PASSWORD-ALGORITHM (read past: no credentials here),
  // MAPPED-ADDRESS, XOR-MAPPED-ADDRESS, ERROR-CODE, UNKNOWN-ATTRIBUTES (meaningless in a request, harmless), and
  // CHANGE-REQUEST asking for no change (4 bytes, neither flag): dpgw has no other address to answer from, so one
  // asking for a change is unknown, rather than answered from the same address as if the change had been made.
  uint8_t n_unknown = 0;
  std::array<uint16_t, kStunMaxUnknown> unknown{};
  bool has_unknown() const { return n_unknown != 0; }

  uint16_t method() const { return uint16_t((type & 0x000f) | (type & 0x00e0) >> 1 | (type & 0x3e00) >> 2); }
  uint8_t message_class() const { return uint8_t((type >> 4 & 1) | (type >> 7 & 2)); }  // 0 request .. 3 error
  bool is_binding_request() const { return type == kStunBindingRequest; }
};

// Reads `msg`, a whole UDP payload, as a STUN message (RFC 8489 5, 14). `classic_ok`: messages without the magic
// cookie are RFC 3489 clients' (RFC 5389 12), else NotStun. nullopt with `why` (when given) for what is not one.
std::optional<StunMessage> parse_stun(std::span<const uint8_t> msg, bool classic_ok, StunError* why = nullptr);

// The first bytes of a UDP payload as RFC 7983 demultiplexes STUN from what shares its port: at least a header,
// the type's top two bits 0, the magic cookie at 4..7. Says nothing of the rest (parse_stun does).
inline bool stun_has_cookie(std::span<const uint8_t> p) {
  return p.size() >= kStunHeaderLen && (p[0] & 0xc0) == 0 && load_be32(p.data() + 4) == kStunMagicCookie;
}

// Bytes of the answer write_stun_response writes to `req`: 40 for a success (32 classic), at most 76 for a 420.
size_t stun_response_len(const StunMessage& req);
inline constexpr size_t kStunMaxResponseLen = 80;  // a bound on stun_response_len

// Writes the answer to Binding request `req` from the client at `ip`:`port` (host order) into `out`: a Binding
// success response (RFC 8489 6.3.1.1) carrying XOR-MAPPED-ADDRESS (14.2, IPv4) then FINGERPRINT; for a classic
// request MAPPED-ADDRESS (14.1) and no FINGERPRINT, its 16 ID bytes copied (RFC 5389 12.2). A request with unknown
// comprehension-required attributes gets a Binding error response instead: ERROR-CODE 420 "Unknown Attribute"
// (14.8), UNKNOWN-ATTRIBUTES (14.13), then FINGERPRINT (not for classic). `out` may be the request's own bytes
// (`req` holds what is needed). Returns the bytes written, stun_response_len(req); 0 when `out` is shorter.
size_t write_stun_response(std::span<uint8_t> out, const StunMessage& req, uint32_t ip, uint16_t port);

// Client side (dpagent's endpoint discovery, agent/endpoint_discovery.hpp).
inline constexpr size_t kStunRequestLen = kStunHeaderLen + 8;  // a Binding request with FINGERPRINT only
using StunTransactionId = std::array<uint8_t, 12>;

// Writes a Binding request (RFC 8489 6.1) with transaction ID `id` and a FINGERPRINT (no credentials: the
// answer is only a hint, checked later by authenticated probes). Returns kStunRequestLen; 0 when `out` is shorter.
size_t write_stun_binding_request(std::span<uint8_t> out, const StunTransactionId& id);

// Why bytes are not the answer to a Binding request of ours.
enum class StunAnswerError : uint8_t {
  Malformed,      // not a STUN message (parse_stun's errors), or a classic one
  OtherTransaction,  // a response to a request we did not send (or no longer wait for), or not a response
  ErrorResponse,  // a Binding error response (RFC 8489 6.3.4)
  NoAddress,      // a success response without an IPv4 (XOR-)MAPPED-ADDRESS
  Count
};
const char* stun_answer_error_name(StunAnswerError e);

// A Binding success response's mapped address: XOR-MAPPED-ADDRESS (14.2), or MAPPED-ADDRESS (14.1) from a server
// that sends only that; IPv4 only. Host order.
struct StunMapped {
  uint32_t ip = 0;
  uint16_t port = 0;
};

// Reads `msg`, a whole UDP payload, as the answer to our Binding request `id`. A FINGERPRINT, when present, must
// match (parse_stun); none is required (RFC 8489 7.3 leaves it to the usage). nullopt with `why` (when given)
// otherwise.
std::optional<StunMapped> parse_stun_binding_answer(std::span<const uint8_t> msg, const StunTransactionId& id,
                                                    StunAnswerError* why = nullptr);

// Connectivity checks of a direct path (docs/nat-traversal.md; STUN used as ICE uses it, RFC 8445 7.2.2 and 7.3):
// a Binding request carrying USERNAME "<pair, 8 hex digits>:<role>" (role 'c' the controlling end, a visitor; 'd'
// the controlled one, an agent), then MESSAGE-INTEGRITY-SHA256 (RFC 8489 14.6: HMAC-SHA256 with the pair's check
// key over the message before it, the header's length counting it), then FINGERPRINT; its success response carries
// XOR-MAPPED-ADDRESS (where the request came from), MESSAGE-INTEGRITY-SHA256 and FINGERPRINT, the request's ID.
inline constexpr size_t kStunCheckKeyLen = 32;
inline constexpr size_t kStunCheckRequestLen = kStunHeaderLen + 16 + 36 + 8;   // 80
inline constexpr size_t kStunCheckResponseLen = kStunHeaderLen + 12 + 36 + 8;  // 76
using StunCheckKey = std::span<const uint8_t, kStunCheckKeyLen>;

// Write a check request / its success response into `out`; return the bytes written, 0 when `out` is shorter.
size_t write_stun_check_request(std::span<uint8_t> out, const StunTransactionId& id, uint32_t pair, char role,
                                StunCheckKey key);
size_t write_stun_check_response(std::span<uint8_t> out, const StunTransactionId& id, uint32_t ip, uint16_t port,
                                 StunCheckKey key);

// A check as parse_stun_check reads it, before its integrity is verified (the key depends on the pair: a request
// names it, a response is matched by its ID).
struct StunCheck {
  bool request = false;
  StunTransactionId id{};
  uint32_t pair = 0;  // requests
  char role = 0;      // requests: 'c' or 'd'
  StunMapped mapped;  // responses
  size_t integrity_at = 0;  // offset of MESSAGE-INTEGRITY-SHA256
};
// Reads a check request or success response: the magic cookie, FINGERPRINT present and matching, USERNAME of the
// form above (requests), XOR-MAPPED-ADDRESS (responses, IPv4), a 32-byte MESSAGE-INTEGRITY-SHA256. nullopt for
// anything else. Nothing is authenticated yet: stun_check_authentic does that.
std::optional<StunCheck> parse_stun_check(std::span<const uint8_t> msg);
// Whether `msg`'s MESSAGE-INTEGRITY-SHA256 is the HMAC-SHA256 of `key` over it (compared in constant time).
bool stun_check_authentic(std::span<const uint8_t> msg, const StunCheck& check, StunCheckKey key);

// FINGERPRINT's value for `msg_up_to_it`: the message's bytes before the attribute, its header's length already
// counting the FINGERPRINT (RFC 8489 14.7).
uint32_t stun_fingerprint(std::span<const uint8_t> msg_up_to_it);

}  // namespace dptun
