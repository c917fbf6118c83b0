// dpctld's config file (control/dpctld_config.hpp, conf/dpctld.conf documents it), read by load_dpctld_config()
// from a file as dpctld does. dpctld reports a ConfigError and exits; anything else escaping the loader, a crash
// or a sanitizer report is a finding. Inputs with `@include` are skipped (it reads any file the operator names).
#include "common/config_file.hpp"
#include "control/dpctld_config.hpp"
#include "fuzz/fuzz.hpp"

using namespace dptun;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::TempFile file;
  const std::span<const uint8_t> in(data, size);
  if (fuzz::contains(in, "@include")) return 0;
  try {
    const DpctldConfig cfg = load_dpctld_config(file.write(in));
    FUZZ_CHECK(cfg.key_len == 16 || cfg.key_len == 32);
    FUZZ_LOG("loaded: %zu tunnels, %zu entry points, %zu rules\n", cfg.tunnels.size(), cfg.entry_points.size(),
             cfg.ingress.size());
  } catch (const ConfigError& e) {
    FUZZ_CHECK(*e.what() != '\0');
    FUZZ_LOG("%s\n", e.what());
  }
  return 0;
}
