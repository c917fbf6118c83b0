// Fields of JSON objects that come from outside the process: dpctl requests, agent registrations, the
// dpctld <-> dpgw messages, dpctld's replies to agents, the state file. Every number is range-checked before
// it is converted (4294973497 is not read as 6201, 1e300 is never cast to an integer, 2.5 is not an integer),
// every field is type-checked, and `null` counts as absent. Errors throw FieldError naming the key and what it
// must be ("'port' must be an integer in 1..65535"); callers catch it where the request is answered.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include "common/uuid.hpp"

namespace dptun {

struct FieldError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The value at obj[key] when obj is an object that has it and it is not null; otherwise nullptr.
const nlohmann::json* field(const nlohmann::json& obj, const char* key);

// An integer in lo..hi (JSON integers only, never floats). Absent: `fallback`, or FieldError when none.
int64_t int_field(const nlohmann::json& obj, const char* key, int64_t lo, int64_t hi,
                  std::optional<int64_t> fallback = std::nullopt);
// A finite number in lo..hi (integers and floats).
double number_field(const nlohmann::json& obj, const char* key, double lo, double hi,
                    std::optional<double> fallback = std::nullopt);
bool bool_field(const nlohmann::json& obj, const char* key, std::optional<bool> fallback = std::nullopt);
std::string string_field(const nlohmann::json& obj, const char* key,
                         std::optional<std::string> fallback = std::nullopt);
// The string at obj[key], or `fallback` when it is absent or not a string (for messages only logged or shown).
std::string string_or(const nlohmann::json& obj, const char* key, const std::string& fallback);
// A UUID in its canonical text (common/uuid.hpp); FieldError when absent or not one.
Uuid uuid_field(const nlohmann::json& obj, const char* key);
// An array (empty when absent); FieldError when present and not an array.
const nlohmann::json& array_field(const nlohmann::json& obj, const char* key);

// The value itself as an integer in lo..hi, or nullopt (wrong type, float, out of range).
std::optional<int64_t> json_int_in(const nlohmann::json& v, int64_t lo, int64_t hi);

}  // namespace dptun
