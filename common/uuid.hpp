// Tunnel ids: RFC 4122 UUIDs, parsed from and printed as the canonical 8-4-4-4-12 text.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dptun {

struct Uuid {
  std::array<uint8_t, 16> bytes{};
  bool operator==(const Uuid&) const = default;
  static std::optional<Uuid> parse(std::string_view text);
  static Uuid random_v4();  // from OpenSSL's CSPRNG
  std::string str() const;
};

}  // namespace dptun
