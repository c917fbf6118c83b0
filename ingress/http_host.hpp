// The Host of a plain HTTP/1.x request, read from the first bytes of the connection (the request head may
// arrive over several segments). Bounds-checked; never allocates.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace dptun {

enum class HostStatus : uint8_t {
  Found,      // `host` holds the Host header's name (port removed)
  NoHost,     // a complete request head without a usable Host
  NeedMore,   // the head is not complete yet
  NotHttp,    // does not start like an HTTP/1.x request
  TooBig,     // no end of head within kMaxRequestHead bytes
};

const char* host_status_name(HostStatus s);

struct HostResult {
  HostStatus status;
  std::string_view host;  // points into the input
};

inline constexpr size_t kMaxRequestHead = 8192;

HostResult host_from_http_request(std::span<const uint8_t> stream);

}  // namespace dptun
