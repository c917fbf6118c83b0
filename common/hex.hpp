// Hex text <-> bytes, for keys in config files (never for logging them).
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dptun {

// Accepts upper/lower case; whitespace is not allowed. nullopt on odd length or a bad digit.
std::optional<std::vector<uint8_t>> hex_decode(std::string_view text);
std::string hex_encode(std::span<const uint8_t> bytes);

}  // namespace dptun
