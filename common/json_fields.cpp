#include "common/json_fields.hpp"

#include <cmath>

namespace dptun {

using nlohmann::json;

namespace {
[[noreturn]] void bad(const char* key, const std::string& what) {
  throw FieldError(std::string("'") + key + "' must be " + what);
}
std::string range_text(int64_t lo, int64_t hi) { return std::to_string(lo) + ".." + std::to_string(hi); }
}  // namespace

const json* field(const json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<int64_t> json_int_in(const json& v, int64_t lo, int64_t hi) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (hi < 0 || u > uint64_t(hi)) return std::nullopt;
    const int64_t i = int64_t(u);
    return i < lo ? std::nullopt : std::optional<int64_t>(i);
  }
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    return i < lo || i > hi ? std::nullopt : std::optional<int64_t>(i);
  }
  return std::nullopt;
}

int64_t int_field(const json& obj, const char* key, int64_t lo, int64_t hi, std::optional<int64_t> fallback) {
  const json* v = field(obj, key);
  if (!v) {
    if (fallback) return *fallback;
    throw FieldError(std::string("'") + key + "' is required (an integer in " + range_text(lo, hi) + ")");
  }
  auto i = json_int_in(*v, lo, hi);
  if (!i) bad(key, "an integer in " + range_text(lo, hi));
  return *i;
}

double number_field(const json& obj, const char* key, double lo, double hi, std::optional<double> fallback) {
  const json* v = field(obj, key);
  auto range = [&] {
    char buf[96];
    snprintf(buf, sizeof buf, "a number in %g..%g", lo, hi);
    return std::string(buf);
  };
  if (!v) {
    if (fallback) return *fallback;
    throw FieldError(std::string("'") + key + "' is required (" + range() + ")");
  }
  if (!v->is_number()) bad(key, range());
  const double d = v->get<double>();  // integers of any size convert to a double without UB
  if (!std::isfinite(d) || d < lo || d > hi) bad(key, range());
  return d;
}

bool bool_field(const json& obj, const char* key, std::optional<bool> fallback) {
  const json* v = field(obj, key);
  if (!v) {
    if (fallback) return *fallback;
    throw FieldError(std::string("'") + key + "' is required (true or false)");
  }
  if (!v->is_boolean()) bad(key, "true or false");
  return v->get<bool>();
}

std::string string_field(const json& obj, const char* key, std::optional<std::string> fallback) {
  const json* v = field(obj, key);
  if (!v) {
    if (fallback) return *fallback;
    throw FieldError(std::string("'") + key + "' is required");
  }
  if (!v->is_string()) bad(key, "a string");
  return v->get<std::string>();
}

std::string string_or(const json& obj, const char* key, const std::string& fallback) {
  const json* v = field(obj, key);
  return v && v->is_string() ? v->get<std::string>() : fallback;
}

Uuid uuid_field(const json& obj, const char* key) {
  auto u = Uuid::parse(string_field(obj, key));
  if (!u) throw FieldError(std::string("'") + key + "' is not a UUID");
  return *u;
}

const json& array_field(const json& obj, const char* key) {
  static const json empty = json::array();
  const json* v = field(obj, key);
  if (!v) return empty;
  if (!v->is_array()) bad(key, "a list");
  return *v;
}

}  // namespace dptun
