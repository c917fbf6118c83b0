#include "control/control_protocol.hpp"

#include <cstring>

namespace dptun {

std::vector<uint8_t> export_session_secret(SSL* ssl, uint32_t session_index) {
  std::vector<uint8_t> secret(32);
  const uint8_t context[4] = {uint8_t(session_index >> 24), uint8_t(session_index >> 16), uint8_t(session_index >> 8),
                              uint8_t(session_index)};
  if (SSL_export_keying_material(ssl, secret.data(), secret.size(), kExporterLabel, std::strlen(kExporterLabel),
                                 context, sizeof context, 1) != 1)
    return {};
  return secret;
}

}  // namespace dptun
