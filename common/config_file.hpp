// libconfig access that turns every problem into "file:line: key 'a.b.c': what is wrong".
#pragma once
#include <libconfig.h++>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>

#include "common/inet.hpp"

namespace dptun {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Owns a parsed config file; syntax errors and unreadable files become ConfigError.
class ConfigFile {
 public:
  explicit ConfigFile(const std::string& path);
  const libconfig::Setting& root() const { return cfg_.getRoot(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  libconfig::Config cfg_;
};

// Throws ConfigError naming the setting's file, line and full key path.
[[noreturn]] void config_fail(const libconfig::Setting& where, const std::string& what);
// Same, for a key that is missing from a group: names the group's line and the missing key.
[[noreturn]] void config_fail_missing(const libconfig::Setting& group, const char* key);

// "file:line: key 'a.b.c'", the prefix config_fail() gives a message: for checks made after loading (dpgw's crypto
// device exists only once EAL runs). config_where_missing: a key absent from `group`, at the group's line.
std::string config_where(const libconfig::Setting& where);
std::string config_where_missing(const libconfig::Setting& group, const char* key);

// Rejects keys the program does not know: a typo must not silently become a default.
void config_allow_keys(const libconfig::Setting& group, std::initializer_list<const char*> keys);

const libconfig::Setting* config_child(const libconfig::Setting& group, const char* key);
std::string config_string(const libconfig::Setting& group, const char* key,
                          std::optional<std::string> fallback = std::nullopt);
int64_t config_int(const libconfig::Setting& group, const char* key, int64_t min, int64_t max,
                   std::optional<int64_t> fallback = std::nullopt);
bool config_bool(const libconfig::Setting& group, const char* key, std::optional<bool> fallback = std::nullopt);
// Seconds as an integer or float; returned in nanoseconds.
uint64_t config_duration_ns(const libconfig::Setting& group, const char* key, double min_s, double max_s,
                            std::optional<double> fallback_s);
// `metrics_listen` of dpgw and dpctld: "ipv4:port" for Prometheus, or "" (nullopt: no metrics); `fallback` when
// the key is absent.
std::optional<Endpoint> config_metrics_listen(const libconfig::Setting& group, std::optional<Endpoint> fallback);
// The relay frames' AEAD: "aes-128-gcm" (the default) or "aes-256-gcm", as its key length in bytes (16 or 32).
uint8_t config_cipher_key_len(const libconfig::Setting& group, const char* key);
// Full dotted path of a setting, e.g. "dpgw.ports.[1].address".
std::string config_path(const libconfig::Setting& s);

}  // namespace dptun
