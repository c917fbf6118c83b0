#include "common/uuid.hpp"

#include <openssl/rand.h>

#include <stdexcept>

#include "common/hex.hpp"

namespace dptun {

std::optional<Uuid> Uuid::parse(std::string_view text) {
  if (text.size() != 36 || text[8] != '-' || text[13] != '-' || text[18] != '-' || text[23] != '-')
    return std::nullopt;
  std::string compact;
  for (char c : text)
    if (c != '-') compact.push_back(c);
  auto raw = hex_decode(compact);
  if (!raw || raw->size() != 16) return std::nullopt;
  Uuid u;
  std::copy(raw->begin(), raw->end(), u.bytes.begin());
  return u;
}

Uuid Uuid::random_v4() {
  Uuid u;
  if (RAND_bytes(u.bytes.data(), int(u.bytes.size())) != 1)
    throw std::runtime_error("RAND_bytes failed");
  u.bytes[6] = uint8_t((u.bytes[6] & 0x0f) | 0x40);
  u.bytes[8] = uint8_t((u.bytes[8] & 0x3f) | 0x80);
  return u;
}

std::string Uuid::str() const {
  std::string h = hex_encode(bytes);
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) + "-" +
         h.substr(20);
}

}  // namespace dptun
