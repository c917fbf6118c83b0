// Pure pieces of dpctld's QUIC handshake (docs/protocol.md "QUIC framing", "Handshake"): the 8-byte connection-ID
// layout, the ClientHello extension bodies both TLS stacks record (RFC 8446 §4.2.1, RFC 6066 §3, RFC 7301 §3.1),
// and the mapping of a TLS alert (sent or received) onto the OpenSSL error code that
// classify_handshake() already understands, so a failed QUIC handshake is classified like a TCP one.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "control/handshake_failure.hpp"
#include "proto/quic_short_header.hpp"  // kQuicCidLen: one length for every connection ID dptun issues

namespace dptun {

// Every connection ID dpctld (and later dpgw) issues: 8 bytes, the receiver's session index (4, big-endian), then
// the issuer's random tail (4). Before registration there is no index: kQuicUnassignedIndex (0, never a session's).
inline constexpr uint32_t kQuicUnassignedIndex = 0;
std::array<uint8_t, kQuicCidLen> quic_cid(uint32_t index, std::span<const uint8_t, 4> tail);
// The index of a connection ID of that layout; nullopt when it is not 8 bytes long.
std::optional<uint32_t> quic_cid_index(std::span<const uint8_t> cid);

// The application protocols dpctld's QUIC port accepts, in its order of preference (GnuTLS picks with server
// precedence): "dptun" (dpagent) and "h3" (standard HTTP/3 clients; issue 12 serves HTTP/3 on the same port).
inline constexpr const char* kQuicAlpnDptun = "dptun";
inline constexpr const char* kQuicAlpnH3 = "h3";
// ALPN extension body (2-byte list length, then 1-byte-length names): the names, or nullopt when malformed.
std::optional<std::vector<std::string>> parse_alpn_list(std::span<const uint8_t> body);

// supported_versions extension body of a ClientHello (1-byte length, 2-byte versions), GREASE values left out.
std::vector<uint16_t> parse_supported_versions(std::span<const uint8_t> body);
// server_name extension body: the host_name entry (type 0), or "" when there is none or it is malformed.
std::string parse_server_name(std::span<const uint8_t> body);

// A TLS 1.3 Certificate message body (RFC 8446 §4.4.2: request context, then a 3-byte list length) that carries
// no certificate: a client that has none answers a CertificateRequest so. nullopt when the body is malformed.
std::optional<bool> tls13_certificate_is_empty(std::span<const uint8_t> body);

// What a TLS alert says about a failed handshake, as the OpenSSL error code (ERR_PACK(ERR_LIB_SSL, 0, reason))
// OpenSSL would have recorded: `received` alerts come from the peer (SSL_AD_REASON_OFFSET + alert, as OpenSSL
// reports them: unknown_ca from an agent that refuses dpctld's certificate, ...), sent ones are what dpctld's TLS
// stack refused (certificate_required: no client certificate; protocol_version; handshake_failure: nothing in
// common; no_application_protocol). 0 for alerts that name nothing classify_handshake() knows.
unsigned long openssl_error_for_alert(uint8_t alert, bool received);
// The text for openssl_reason: "alert sent: certificate required" and the like.
std::string alert_reason_text(uint8_t alert, bool received);

}  // namespace dptun
