// The server name a client asks for, read from the first bytes of its connection: a TLS ClientHello (record
// layer, possibly spread over several records and TCP segments) or a bare ClientHello handshake message (QUIC's
// CRYPTO stream). Bounds-checked against hostile input; never allocates (the caller lends a buffer).
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace dptun {

enum class SniStatus : uint8_t {
  Found,      // `name` holds the server name
  NoName,     // a complete ClientHello without server_name (or with one we cannot use)
  NeedMore,   // so far so good: more bytes are needed
  NotTls,     // not a TLS handshake at all
  Malformed,  // a TLS handshake that breaks the rules (lengths, types)
  TooBig,     // the ClientHello does not fit the buffer
};

const char* sni_status_name(SniStatus s);

struct SniResult {
  SniStatus status;
  std::string_view name;  // valid while the buffer lives; lower case is not guaranteed
};

// The largest ClientHello read (the handshake message's body; OpenSSL accepts up to 128 kB, browsers send 2 kB).
inline constexpr size_t kMaxClientHello = 32768;

// `stream`: the client's bytes from the start of the TCP connection. `buffer`: scratch for the handshake
// message when it spans records (kMaxClientHello + 4 bytes suffice).
SniResult sni_from_tls_stream(std::span<const uint8_t> stream, std::span<uint8_t> buffer);

// Incremental: true once `stream` holds the whole first handshake message (over any number of records), or
// something sni_from_tls_stream will refuse at once (a record that is not a handshake, a bad length).
// `next_record` and `hello_bytes` are the caller's progress (0 at first): each call reads only the record headers
// it has not read, so a ClientHello that arrives in many pieces costs O(its records) in all.
bool tls_hello_complete(std::span<const uint8_t> stream, uint32_t& next_record, uint32_t& hello_bytes);

// `msg`: the handshake layer from its first byte (QUIC CRYPTO data at offset 0), complete or a prefix of it.
// A prefix that already holds the server_name extension is enough.
SniResult sni_from_handshake(std::span<const uint8_t> msg);

// True for a usable DNS name: 1..253 bytes of letters, digits, '-', '.', '_' (no empty labels).
bool plausible_hostname(std::string_view name);

}  // namespace dptun
