// An OpenSSL configuration file for dpctld and dpagent, loaded by OpenSSL's own mechanism (OPENSSL_init_crypto
// with OPENSSL_INIT_LOAD_CONFIG and the file as its settings, in place of OPENSSL_CONF / the system
// openssl.cnf): providers (default, fips, Intel's qatprovider...), their activation and algorithm properties.
#pragma once
#include <string>

namespace dptun {

// Loads `path` into OpenSSL's default library context. Call it before anything else uses OpenSSL (OpenSSL
// reads its configuration once per process). Fails, with `error` = "<path>: <what>: <OpenSSL's reason>", when
// the file cannot be read or parsed, a module it names fails, a provider it activates did not load (OpenSSL 3.0
// itself skips those without a word), or no loaded provider offers AES-128-GCM and AES-256-GCM (the relay
// frames' AEAD, and TLS 1.3's).
bool openssl_load_config(const std::string& path, std::string& error);

// The providers active in the default library context, "name (full name version), ..." or "none"; listing them
// loads OpenSSL's default configuration if nothing configured it yet.
std::string openssl_providers();

}  // namespace dptun
