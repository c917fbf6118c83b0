#include "common/openssl_config.hpp"

#include <openssl/conf.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/provider.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "common/openssl_errors.hpp"

namespace dptun {

namespace {

struct DeclaredProvider {
  std::string name;
  std::string module;  // "" = OpenSSL's modules directory / built in
};

bool is_false(const char* v) {
  for (const char* no : {"0", "no", "false", "off", "n", "NO", "FALSE", "OFF", "N", "No", "False", "Off"})
    if (std::strcmp(v, no) == 0) return true;
  return false;
}

// The providers the file activates: its init section (openssl_conf = ...), that section's `providers`, and in
// each provider's section `activate` (an `identity` renames the provider). Read with OpenSSL's own parser.
std::vector<DeclaredProvider> declared_providers(const std::string& path) {
  std::vector<DeclaredProvider> out;
  CONF* conf = NCONF_new(nullptr);
  long bad_line = 0;
  if (conf && NCONF_load(conf, path.c_str(), &bad_line) > 0) {
    const char* init = NCONF_get_string(conf, nullptr, "openssl_conf");
    const char* providers = init ? NCONF_get_string(conf, init, "providers") : nullptr;
    const STACK_OF(CONF_VALUE)* list = providers ? NCONF_get_section(conf, providers) : nullptr;
    for (int i = 0; list && i < sk_CONF_VALUE_num(list); ++i) {
      const CONF_VALUE* p = sk_CONF_VALUE_value(list, i);
      DeclaredProvider d{p->name, ""};
      bool activate = false;
      const STACK_OF(CONF_VALUE)* section = NCONF_get_section(conf, p->value);
      for (int k = 0; section && k < sk_CONF_VALUE_num(section); ++k) {
        const CONF_VALUE* kv = sk_CONF_VALUE_value(section, k);
        if (std::strcmp(kv->name, "activate") == 0) activate = !is_false(kv->value);
        else if (std::strcmp(kv->name, "module") == 0) d.module = kv->value;
        else if (std::strcmp(kv->name, "identity") == 0) d.name = kv->value;
      }
      if (activate) out.push_back(std::move(d));
    }
  }
  NCONF_free(conf);
  ERR_clear_error();  // lookups of absent keys queue errors
  return out;
}

}  // namespace

bool openssl_load_config(const std::string& path, std::string& error) {
  if (FILE* f = std::fopen(path.c_str(), "r")) {
    std::fclose(f);
  } else {
    error = path + ": cannot read the OpenSSL configuration: " + std::strerror(errno);
    return false;
  }
  ERR_clear_error();
  OPENSSL_INIT_SETTINGS* settings = OPENSSL_INIT_new();
  if (!settings) {
    error = path + ": cannot load the OpenSSL configuration: " + openssl_errors();
    return false;
  }
  OPENSSL_INIT_set_config_filename(settings, path.c_str());
  // OpenSSL's default flags ignore a missing file and modules that fail; here every problem is an error.
  OPENSSL_INIT_set_config_file_flags(settings, CONF_MFLAGS_DEFAULT_SECTION);
  const int ok = OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, settings);
  OPENSSL_INIT_free(settings);
  if (ok != 1) {
    error = path + ": OpenSSL cannot load this configuration: " + openssl_errors(true);
    return false;
  }
  for (const DeclaredProvider& d : declared_providers(path)) {
    if (OSSL_PROVIDER_available(nullptr, d.name.c_str())) continue;
    // OpenSSL 3.0 skips a provider it cannot activate without a word (config_diagnostics or not): load its module
    // once more, by its path, for OpenSSL's reason.
    ERR_clear_error();
    std::string reason;
    if (OSSL_PROVIDER* again = OSSL_PROVIDER_load(nullptr, d.module.empty() ? d.name.c_str() : d.module.c_str())) {
      OSSL_PROVIDER_unload(again);
      reason = "its module loads on its own; check the provider's section";
    } else {
      reason = openssl_errors(true);
    }
    error = path + ": provider '" + d.name + "'" + (d.module.empty() ? "" : " (module " + d.module + ")") +
            " is activated here but did not load: " + reason;
    return false;
  }
  for (const char* algorithm : {"AES-128-GCM", "AES-256-GCM"}) {
    EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, algorithm, nullptr);
    if (!cipher) {
      const std::string why = openssl_errors(true);
      error = path + ": no provider it loads offers " + algorithm + " (providers: " + openssl_providers() + "): " + why;
      return false;
    }
    EVP_CIPHER_free(cipher);
  }
  return true;
}

std::string openssl_providers() {
  std::string out;
  OSSL_PROVIDER_do_all(
      nullptr,
      [](OSSL_PROVIDER* p, void* arg) -> int {
        auto& list = *static_cast<std::string*>(arg);
        char* full = nullptr;
        char* version = nullptr;
        OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_ptr(OSSL_PROV_PARAM_NAME, &full, 0),
                               OSSL_PARAM_construct_utf8_ptr(OSSL_PROV_PARAM_VERSION, &version, 0),
                               OSSL_PARAM_construct_end()};
        OSSL_PROVIDER_get_params(p, params);
        list += std::string(list.empty() ? "" : ", ") + OSSL_PROVIDER_get0_name(p);
        if (full || version)
          list += std::string(" (") + (full ? full : "") + (full && version ? " " : "") + (version ? version : "") + ")";
        return 1;
      },
      &out);
  ERR_clear_error();
  return out.empty() ? "none" : out;
}

}  // namespace dptun
