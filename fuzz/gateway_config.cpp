// dpgw's config file (dataplane/main_lcore/gateway_config.hpp, conf/dptun.conf documents it), read by
// load_gateway_config() from a file as dpgw does. dpgw reports a ConfigError and exits; anything else escaping
// the loader, a crash or a sanitizer report is a finding.
// Inputs that name other files are skipped: `@include` and `psk_file` read whatever the operator points them
// at (a trusted choice, e.g. /dev/zero would never end), which is not what this harness is about.
#include "common/config_file.hpp"
#include "dataplane/main_lcore/gateway_config.hpp"
#include "fuzz/fuzz.hpp"

using namespace dptun;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fuzz::TempFile file;
  const std::span<const uint8_t> in(data, size);
  if (fuzz::contains(in, "@include") || fuzz::contains(in, "psk_file")) return 0;
  try {
    const GatewayConfig cfg = load_gateway_config(file.write(in));
    FUZZ_CHECK(cfg.workers >= 1);
    FUZZ_LOG("loaded: %zu ports, %zu tunnels, %zu entry points\n", cfg.ports.size(), cfg.tunnels.size(),
             cfg.entry_points.size());
  } catch (const ConfigError& e) {
    FUZZ_CHECK(*e.what() != '\0');
    FUZZ_LOG("%s\n", e.what());
  }
  return 0;
}
