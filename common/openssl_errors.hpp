// OpenSSL's error queue as text for an error message (dpctld's TLS server, dpagent's TLS client).
#pragma once
#include <string>

namespace dptun {

// The thread's OpenSSL error queue as one string, oldest first, "; " between errors; the queue is cleared.
// "unknown error" when the queue is empty (a failed call that queued nothing still gets a reason).
// `with_data`: each error followed by the text OpenSSL attached to it, in parentheses (a config file's line, a
// file name, a module's dlopen message), when there is one.
std::string openssl_errors(bool with_data = false);

}  // namespace dptun
