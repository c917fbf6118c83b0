// dpctld: the control-plane daemon. main only wires things: arguments, config, signals, Dpctld.
#include <signal.h>
#include <sys/resource.h>

#include <openssl/crypto.h>

#include <atomic>
#include <cstdio>
#include <string>

#include "common/broken_pipes.hpp"
#include "common/cli.hpp"
#include "common/config_file.hpp"
#include "common/log.hpp"
#include "common/openssl_config.hpp"
#include "control/dpctld.hpp"
#include "version.hpp"

using namespace dptun;

namespace {

const char* kUsage =
    "usage: dpctld --config FILE [--check] [--log-level LEVEL] [--log-format text|json]\n"
    "       dpctld --version\n"
    "\n"
    "dpctld is the dptun control plane: agents register over TLS 1.3 with a client certificate (TCP,\n"
    "agent_listen; or QUIC over UDP, agent_quic_listen), and every failed handshake is logged as one JSON line\n"
    "with its reason (docs/control-plane.md).\n"
    "\n"
    "  --config FILE       libconfig file (example: conf/dpctld.conf)\n"
    "  --check             validate the config, the TLS files (CRLs: one from every CA that signs agent\n"
    "                      certificates, none expired) and the state file, then exit\n"
    "  --log-level LEVEL   debug, info (default), warn or error\n"
    "  --log-format FORMAT text (default) or json (one object per line)\n"
    "  --version           the version\n"
    "  --help              this text\n"
    "\n"
    "Signals: SIGHUP reloads the TLS files (certificate, key, CA, CRL) and the config's tunnels, entry points,\n"
    "ingress rules and limits without dropping registrations or flows (docs/operations.md says what needs a\n"
    "restart); SIGTERM/SIGINT stop dpctld cleanly.\n";

std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};
void on_signal(int sig) {
  if (sig == SIGHUP) g_reload = true;
  else g_stop = true;
}

}  // namespace

int main(int argc, char** argv) {
  ignore_broken_pipes();
  log_set_program("dpctld");
  DaemonArgs args;
  if (auto status = parse_daemon_args(argc, argv, "dpctld", kUsage, DPTUN_VERSION, args)) return *status;
  const std::string& config_path = args.config_path;
  DpctldConfig cfg;
  try {
    cfg = load_dpctld_config(config_path);
  } catch (const ConfigError& e) {
    fprintf(stderr, "dpctld: %s\n", e.what());
    return 2;
  }
  // OpenSSL's configuration (providers) before anything else uses OpenSSL: it is read once per process.
  if (!cfg.openssl_conf.empty()) {
    std::string error;
    if (!openssl_load_config(cfg.openssl_conf, error)) {
      fprintf(stderr, "dpctld: %s: %s\n", cfg.openssl_conf_where.c_str(), error.c_str());
      return 2;
    }
  }
  if (args.check_only) {
    const size_t config_tunnels = cfg.tunnels.size();
    const std::string state_file = cfg.state_file;
    Dpctld d(std::move(cfg));
    std::string error;
    if (!d.check(error)) {  // the TLS files and the state file too, as start() will read them
      fprintf(stderr, "dpctld: %s\n", error.c_str());
      return 2;
    }
    printf("%s: OK (%zu tunnels in the config; state %s readable)\n", config_path.c_str(), config_tunnels,
           state_file.c_str());
    return 0;
  }
  const std::string from = cfg.openssl_conf.empty() ? "" : " (" + cfg.openssl_conf + ")";
  LOG_INFO("OpenSSL %s, providers: %s%s", OpenSSL_version(OPENSSL_VERSION_STRING), openssl_providers().c_str(),
           from.c_str());
  // Every agent holds a connection: use all the descriptors the hard limit allows.
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
  Dpctld d(std::move(cfg));
  std::string error;
  if (!d.start(error)) {
    fprintf(stderr, "dpctld: %s\n", error.c_str());
    return 1;
  }
  d.run(g_stop, g_reload);
  LOG_INFO("stopped");
  return 0;
}
