// The host a plain HTTP/1.x request is for, read from the first bytes of the connection (the request head may
// arrive over several segments): the name the origin server will use (RFC 9112 3.2.2: the authority of an
// absolute-form or authority-form request-target wins over the Host header), so that routing by it cannot be
// sidestepped. Heads that name their host in conflicting or unclear ways, which two parsers may read
// differently (two Host lines, a Host other than the target's authority, obs-fold, whitespace before a colon, a
// bare CR), are refused (Ambiguous) rather than guessed at. Bounds-checked; never allocates.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace dptun {

enum class HostStatus : uint8_t {
  Found,      // `host`: the name (port and one trailing dot removed; case as sent)
  NoHost,     // a complete head without a name to route by (no Host and an origin-form target, an IP literal,
              // a Host value that is not a DNS name)
  NeedMore,   // the head is not complete yet
  NotHttp,    // does not start like an HTTP/1.x request
  TooBig,     // no end of head within kMaxRequestHead bytes
  Ambiguous,  // the head names its host in conflicting or unclear ways (see above): answer 400
};

const char* host_status_name(HostStatus s);

struct HostResult {
  HostStatus status;
  std::string_view host;  // points into the input
};

// The largest request head read (request line, header lines and the empty line): nginx's default
// large_client_header_buffers (4 x 8 kB) hold about as much.
inline constexpr size_t kMaxRequestHead = 32768;

HostResult host_from_http_request(std::span<const uint8_t> stream);

// Incremental: true once `stream` holds the empty line that ends a request head (CRLF or bare LF line ends).
// `scanned` is the caller's progress (0 at first); each call looks only at bytes it has not seen, so a head
// that arrives in many pieces costs O(its length) in all, not O(length^2).
bool http_head_complete(std::span<const uint8_t> stream, uint32_t& scanned);

}  // namespace dptun
