// dpctld: the control-plane daemon. main only wires things: arguments, config, signals, Dpctld.
#include <signal.h>
#include <sys/resource.h>

#include <atomic>
#include <cstdio>
#include <string>

#include "common/config_file.hpp"
#include "common/log.hpp"
#include "control/dpctld.hpp"

using namespace dptun;

namespace {

const char* kUsage =
    "usage: dpctld --config FILE [--check] [--log-level LEVEL]\n"
    "\n"
    "dpctld is the dptun control plane: agents register over TLS 1.3 with a client certificate, and every\n"
    "failed handshake is logged as one JSON line with its reason (docs/operations.md).\n"
    "\n"
    "  --config FILE      libconfig file (example: conf/dpctld.conf)\n"
    "  --check            validate the config, the TLS files and the state file, then exit\n"
    "  --log-level LEVEL  debug, info (default), warn or error\n"
    "  --help             this text\n";

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop = true; }

}  // namespace

int main(int argc, char** argv) {
  log_set_program("dpctld");
  std::string config_path;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (a == "--check") {
      check_only = true;
    } else if (a == "--log-level" && i + 1 < argc) {
      std::string l = argv[++i];
      if (l == "debug") log_set_level(LogLevel::Debug);
      else if (l == "info") log_set_level(LogLevel::Info);
      else if (l == "warn") log_set_level(LogLevel::Warn);
      else if (l == "error") log_set_level(LogLevel::Error);
      else {
        fprintf(stderr, "dpctld: unknown log level '%s'\n%s", l.c_str(), kUsage);
        return 2;
      }
    } else if (a == "--help" || a == "-h") {
      fputs(kUsage, stdout);
      return 0;
    } else {
      fprintf(stderr, "dpctld: unknown argument '%s'\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  if (config_path.empty()) {
    fprintf(stderr, "dpctld: --config FILE is required\n%s", kUsage);
    return 2;
  }
  DpctldConfig cfg;
  try {
    cfg = load_dpctld_config(config_path);
  } catch (const ConfigError& e) {
    fprintf(stderr, "dpctld: %s\n", e.what());
    return 2;
  }
  if (check_only) {
    TlsServer tls;
    std::string error;
    if (!tls.load(cfg.tls, error)) {
      fprintf(stderr, "dpctld: %s\n", error.c_str());
      return 2;
    }
    const size_t config_tunnels = cfg.tunnels.size();
    const std::string state_file = cfg.state_file;
    Dpctld d(std::move(cfg));
    if (!d.load_persisted(false, error)) {  // the state file too, as start() will read it
      fprintf(stderr, "dpctld: %s\n", error.c_str());
      return 2;
    }
    printf("%s: OK (%zu tunnels in the config; state %s readable)\n", config_path.c_str(), config_tunnels,
           state_file.c_str());
    return 0;
  }
  // Every agent holds a connection: use all the descriptors the hard limit allows.
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  Dpctld d(std::move(cfg));
  std::string error;
  if (!d.start(error)) {
    fprintf(stderr, "dpctld: %s\n", error.c_str());
    return 1;
  }
  d.run(g_stop);
  LOG_INFO("stopped");
  return 0;
}
