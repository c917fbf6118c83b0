#include "common/openssl_errors.hpp"

#include <openssl/err.h>

namespace dptun {

std::string openssl_errors(bool with_data) {
  std::string out;
  const char* data = nullptr;
  int flags = 0;
  while (const unsigned long e = ERR_get_error_all(nullptr, nullptr, nullptr, &data, &flags)) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out += (out.empty() ? "" : "; ") + std::string(buf);
    if (with_data && data && *data && (flags & ERR_TXT_STRING)) out += std::string(" (") + data + ")";
  }
  return out.empty() ? "unknown error" : out;
}

}  // namespace dptun
