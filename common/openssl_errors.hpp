// OpenSSL's error queue as text for an error message (dpctld's TLS server, dpagent's TLS client).
#pragma once
#include <string>

namespace dptun {

// The thread's OpenSSL error queue as one string, oldest first, "; " between errors; the queue is cleared.
// "unknown error" when the queue is empty (a failed call that queued nothing still gets a reason).
std::string openssl_errors();

}  // namespace dptun
