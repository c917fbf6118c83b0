// dpgw: the DPDK gateway process. main only wires things: arguments, config, EAL, Gateway, signals.
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "common/config_file.hpp"
#include "common/log.hpp"
#include "common/unix_socket.hpp"
#include "dataplane/eal_args.hpp"
#include "dataplane/gateway.hpp"
#include "dataplane/stats_report.hpp"

using namespace dptun;

namespace {

const char* kUsage =
    "usage: dpgw --config FILE [--check] [--log-level LEVEL]\n"
    "       dpgw stats [--socket PATH] [--json]\n"
    "\n"
    "dpgw is the dptun gateway: a DPDK process that terminates relay-frame tunnels from agents and\n"
    "forwards public entry-point traffic through them (see docs/operations.md).\n"
    "\n"
    "  --config FILE      libconfig file (example: conf/dptun.conf)\n"
    "  --check            validate the config and exit (no DPDK, no root needed)\n"
    "  --log-level LEVEL  debug, info (default), warn or error\n"
    "  stats              print the counters of a running dpgw from its stats socket\n"
    "    --socket PATH    stats socket (default /run/dptun/dpgw.sock, dpgw.control_socket in the config)\n"
    "    --json           machine-readable output\n"
    "  --help             this text\n";

std::atomic<bool>* g_stop = nullptr;

void on_signal(int) {
  if (g_stop) g_stop->store(true);
}

int usage_error(const std::string& what) {
  fprintf(stderr, "dpgw: %s\n%s", what.c_str(), kUsage);
  return 2;
}

int stats_command(int argc, char** argv) {
  std::string socket = "/run/dptun/dpgw.sock";
  bool json = false;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--json") {
      json = true;
    } else if (a == "--socket" && i + 1 < argc) {
      socket = argv[++i];
    } else if (a == "--help" || a == "-h") {
      fputs(kUsage, stdout);
      return 0;
    } else {
      return usage_error("stats: unknown argument '" + a + "'");
    }
  }
  std::string error;
  auto reply = unix_request(socket, json ? "json" : "text", error);
  if (!reply) {
    fprintf(stderr, "dpgw stats: %s (is dpgw running?)\n", error.c_str());
    return 1;
  }
  fputs(reply->c_str(), stdout);
  return 0;
}

bool parse_level(const std::string& s, LogLevel& out) {
  if (s == "debug") out = LogLevel::Debug;
  else if (s == "info") out = LogLevel::Info;
  else if (s == "warn") out = LogLevel::Warn;
  else if (s == "error") out = LogLevel::Error;
  else return false;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  log_set_program("dpgw");
  if (argc >= 2 && std::strcmp(argv[1], "stats") == 0) return stats_command(argc, argv);

  std::string config_path;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (a == "--check") {
      check_only = true;
    } else if (a == "--log-level" && i + 1 < argc) {
      LogLevel level;
      if (!parse_level(argv[++i], level)) return usage_error(std::string("unknown log level '") + argv[i] + "'");
      log_set_level(level);
    } else if (a == "--help" || a == "-h") {
      fputs(kUsage, stdout);
      return 0;
    } else {
      return usage_error("unknown argument '" + a + "'");
    }
  }
  if (config_path.empty()) return usage_error("--config FILE is required");

  GatewayConfig cfg;
  try {
    cfg = load_gateway_config(config_path);
  } catch (const ConfigError& e) {
    fprintf(stderr, "dpgw: %s\n", e.what());
    return 2;
  }
  if (check_only) {
    printf("%s: OK (%zu ports, %u workers, %zu tunnels, %zu entry points)\n", config_path.c_str(), cfg.ports.size(),
           unsigned(cfg.workers), cfg.tunnels.size(), cfg.entry_points.size());
    return 0;
  }

  std::vector<std::string> eal_args = build_eal_args(cfg, argv[0]);
  std::string joined;
  for (const auto& a : eal_args) joined += " " + a;
  LOG_INFO("EAL:%s", joined.c_str());
  std::vector<char*> eal_argv;
  for (auto& a : eal_args) eal_argv.push_back(a.data());
  if (rte_eal_init(int(eal_argv.size()), eal_argv.data()) < 0) {
    LOG_ERROR("EAL initialisation failed: %s", rte_strerror(rte_errno));
    return 1;
  }
  int rc = 0;
  {
    std::string error;
    auto gw = Gateway::create(cfg, Gateway::Options{}, error);
    if (!gw) {
      LOG_ERROR("%s", error.c_str());
      rc = 1;
    } else {
      g_stop = &gw->dataplane().stop;
      struct sigaction sa {};
      sa.sa_handler = on_signal;
      sigaction(SIGINT, &sa, nullptr);
      sigaction(SIGTERM, &sa, nullptr);
      gw->run();
      g_stop = nullptr;
      LOG_INFO("stopped");
      printf("dpgw final counters\n%s", stats_text(gw->dataplane()).c_str());
      fflush(stdout);
    }
  }
  rte_eal_cleanup();
  return rc;
}
