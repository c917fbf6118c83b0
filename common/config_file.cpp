#include "common/config_file.hpp"

#include "common/clock.hpp"

#include <cmath>
#include <cstring>

namespace dptun {

ConfigFile::ConfigFile(const std::string& path) : path_(path) {
  cfg_.setAutoConvert(false);
  try {
    cfg_.readFile(path.c_str());
  } catch (const libconfig::FileIOException&) {
    throw ConfigError(path + ": cannot read config file: " + std::strerror(errno));
  } catch (const libconfig::ParseException& e) {
    throw ConfigError(std::string(e.getFile() ? e.getFile() : path.c_str()) + ":" +
                      std::to_string(e.getLine()) + ": syntax error: " + e.getError());
  }
}

std::string config_path(const libconfig::Setting& s) {
  std::string p = s.getPath();
  return p.empty() ? "(top level)" : p;
}

static std::string location(const libconfig::Setting& s) {
  const char* file = s.getSourceFile();
  return std::string(file ? file : "config") + ":" + std::to_string(s.getSourceLine());
}

std::string config_where(const libconfig::Setting& where) {
  return location(where) + ": key '" + config_path(where) + "'";
}

std::string config_where_missing(const libconfig::Setting& group, const char* key) {
  std::string path = group.isRoot() ? key : config_path(group) + "." + key;
  return location(group) + ": key '" + path + "'";
}

void config_fail(const libconfig::Setting& where, const std::string& what) {
  throw ConfigError(config_where(where) + ": " + what);
}

void config_fail_missing(const libconfig::Setting& group, const char* key) {
  throw ConfigError(config_where_missing(group, key) + ": required but missing");
}

void config_allow_keys(const libconfig::Setting& group, std::initializer_list<const char*> keys) {
  if (!group.isGroup()) config_fail(group, "expected a group { ... }");
  for (int i = 0; i < group.getLength(); ++i) {
    const libconfig::Setting& child = group[i];
    const char* name = child.getName();
    bool known = false;
    for (const char* k : keys) known = known || (name && std::strcmp(k, name) == 0);
    if (!known) {
      std::string list;
      for (const char* k : keys) list += std::string(list.empty() ? "" : ", ") + k;
      config_fail(child, "unknown key (known here: " + list + ")");
    }
  }
}

const libconfig::Setting* config_child(const libconfig::Setting& group, const char* key) {
  return group.exists(key) ? &group[key] : nullptr;
}

std::string config_string(const libconfig::Setting& group, const char* key, std::optional<std::string> fallback) {
  const libconfig::Setting* s = config_child(group, key);
  if (!s) {
    if (fallback) return *fallback;
    config_fail_missing(group, key);
  }
  if (s->getType() != libconfig::Setting::TypeString) config_fail(*s, "expected a string in double quotes");
  return std::string(static_cast<const char*>(*s));
}

int64_t config_int(const libconfig::Setting& group, const char* key, int64_t min, int64_t max,
                   std::optional<int64_t> fallback) {
  const libconfig::Setting* s = config_child(group, key);
  if (!s) {
    if (fallback) return *fallback;
    config_fail_missing(group, key);
  }
  int64_t v;
  if (s->getType() == libconfig::Setting::TypeInt)
    v = int(*s);
  else if (s->getType() == libconfig::Setting::TypeInt64)
    v = static_cast<long long>(*s);
  else
    config_fail(*s, "expected an integer");
  if (v < min || v > max)
    config_fail(*s, "value " + std::to_string(v) + " out of range " + std::to_string(min) + ".." +
                        std::to_string(max));
  return v;
}

bool config_bool(const libconfig::Setting& group, const char* key, std::optional<bool> fallback) {
  const libconfig::Setting* s = config_child(group, key);
  if (!s) {
    if (fallback) return *fallback;
    config_fail_missing(group, key);
  }
  if (s->getType() != libconfig::Setting::TypeBoolean) config_fail(*s, "expected true or false");
  return bool(*s);
}

uint64_t config_duration_ns(const libconfig::Setting& group, const char* key, double min_s, double max_s,
                            std::optional<double> fallback_s) {
  const libconfig::Setting* s = config_child(group, key);
  double v;
  if (!s) {
    if (!fallback_s) config_fail_missing(group, key);
    v = *fallback_s;
  } else if (s->getType() == libconfig::Setting::TypeInt) {
    v = double(int(*s));
  } else if (s->getType() == libconfig::Setting::TypeInt64) {
    v = double(static_cast<long long>(*s));
  } else if (s->getType() == libconfig::Setting::TypeFloat) {
    v = double(*s);
  } else {
    config_fail(*s, "expected a number of seconds");
  }
  if (!(v >= min_s && v <= max_s))
    config_fail(*s, "value " + seconds_text(v) + " s out of range " + seconds_text(min_s) + ".." +
                        seconds_text(max_s) + " s");
  return uint64_t(std::llround(v * 1e9));
}

std::optional<Endpoint> config_metrics_listen(const libconfig::Setting& group, std::optional<Endpoint> fallback) {
  const libconfig::Setting* s = config_child(group, "metrics_listen");
  if (!s) return fallback;
  const std::string text = config_string(group, "metrics_listen");
  if (text.empty()) return std::nullopt;
  auto ep = Endpoint::parse(text);
  if (!ep) config_fail(*s, "expected ipv4:port, or \"\" to disable metrics");
  return ep;
}

uint8_t config_cipher_key_len(const libconfig::Setting& group, const char* key) {
  const std::string cipher = config_string(group, key, "aes-128-gcm");
  if (cipher == "aes-128-gcm") return 16;
  if (cipher == "aes-256-gcm") return 32;
  config_fail(group[key], "expected \"aes-128-gcm\" or \"aes-256-gcm\"");
}

}  // namespace dptun
