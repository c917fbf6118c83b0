// dpgw: the DPDK gateway process. main only wires things: arguments, config, EAL, Gateway, signals.
#include <rte_eal.h>
#include <rte_errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <rte_lcore.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "common/broken_pipes.hpp"
#include "common/cli.hpp"
#include "common/config_file.hpp"
#include "common/log.hpp"
#include "common/unix_socket.hpp"
#include "dataplane/main_lcore/eal_args.hpp"
#include "dataplane/main_lcore/gateway.hpp"
#include "dataplane/main_lcore/stats_report.hpp"
#include "version.hpp"
#include "dataplane/main_lcore/trace_command.hpp"
#include "proto/control_names.hpp"

using namespace dptun;

namespace {

const char* kUsage =
    "usage: dpgw --config FILE [--check] [--log-level LEVEL] [--log-format text|json]\n"
    "       dpgw stats [--config FILE | --socket PATH] [--json]\n"
    "       dpgw trace N [--config FILE | --socket PATH] [--filter EXPR] [--timeout S] [--json]\n"
    "       dpgw --version\n"
    "\n"
    "dpgw is the dptun gateway: a DPDK process that terminates relay-frame tunnels from agents and\n"
    "forwards public entry-point traffic through them (see docs/operations.md).\n"
    "\n"
    "  --config FILE       libconfig file (example: conf/dptun.conf)\n"
    "  --check             validate the config and exit (no DPDK, no root needed)\n"
    "  --log-level LEVEL   debug, info (default), warn or error\n"
    "  --log-format FORMAT text (default) or json (one object per line)\n"
    "  stats               print the counters of a running dpgw from its control socket\n"
    "    --config FILE     the socket dpgw.control_socket names in this config\n"
    "    --socket PATH     or this socket (default /run/dptun/dpgw.sock)\n"
    "    --json            machine-readable output\n"
    "  trace N             follow the next N packets through the pipeline, step by step (`dpgw trace --help`)\n"
    "  --version           the version\n"
    "  --help              this text\n"
    "\n"
    "Signals: SIGHUP reads the config again and applies static tunnels, peers (keys) and entry points while\n"
    "running (other changes need a restart; the log says which); SIGTERM/SIGINT stop dpgw cleanly and print its\n"
    "counters.\n";

std::atomic<bool>* g_stop = nullptr;
std::atomic<bool>* g_reload = nullptr;
std::atomic<bool> g_stop_early{false};  // SIGTERM/SIGINT before the gateway runs

void on_signal(int sig) {
  if (sig == SIGHUP) {
    if (g_reload) g_reload->store(true);  // before the gateway runs there is nothing to reload
  } else if (g_stop) {
    g_stop->store(true);
  } else {
    g_stop_early.store(true);
  }
}

// The pid of the DPDK primary process that holds `prefix`'s runtime directory (its config file is locked while
// it runs), or 0. Checked before EAL starts: EAL's own error for this says only "Success".
pid_t prefix_holder(const std::string& prefix) {
  const std::string path = "/var/run/dpdk/" + prefix + "/config";
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return 0;
  struct flock lk {};
  lk.l_type = F_WRLCK;
  lk.l_whence = SEEK_SET;
  pid_t pid = 0;
  if (fcntl(fd, F_GETLK, &lk) == 0 && lk.l_type != F_UNLCK) pid = lk.l_pid ? lk.l_pid : -1;
  close(fd);
  return pid;
}

// After rte_eal_cleanup: EAL leaves its runtime directory (/var/run/dpdk/<prefix>) behind; a stopped dpgw
// removes it, so nothing of it stays on the host.
void remove_runtime_dir(const std::string& dir) {
  if (dir.rfind("/var/run/dpdk/", 0) != 0 && dir.rfind("/run/dpdk/", 0) != 0) return;
  nftw(dir.c_str(), [](const char* p, const struct stat*, int, FTW*) { return remove(p); }, 16, FTW_DEPTH | FTW_PHYS);
}

int stats_command(int argc, char** argv) {
  std::string socket = "/run/dptun/dpgw.sock";
  bool json = false;
  Cli cli("dpgw stats", kUsage);
  cli.flag("json", json).help();
  control_socket_options(cli, socket);
  if (auto status = cli.parse(argc - 1, argv + 1)) return *status;
  std::string error;
  auto reply = unix_request(socket, std::string(name_of(json ? StatsRequest::Json : StatsRequest::Text)), error);
  if (!reply) {
    fprintf(stderr, "dpgw stats: %s (is dpgw running?)\n", error.c_str());
    return 1;
  }
  fputs(reply->c_str(), stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  log_set_program("dpgw");
  if (argc >= 2 && std::strcmp(argv[1], "stats") == 0) return stats_command(argc, argv);
  if (argc >= 2 && std::strcmp(argv[1], "trace") == 0) return trace_main(argc, argv);
  ignore_broken_pipes();  // the daemon (the commands above keep SIGPIPE: `dpgw trace | head` ends them)

  DaemonArgs args;
  if (auto status = parse_daemon_args(argc, argv, "dpgw", kUsage, DPTUN_VERSION, args)) return *status;
  const std::string& config_path = args.config_path;

  GatewayConfig cfg;
  try {
    cfg = load_gateway_config(config_path);
  } catch (const ConfigError& e) {
    fprintf(stderr, "dpgw: %s\n", e.what());
    return 2;
  }
  if (args.check_only) {
    const std::string edge = cfg.edge ? ", edge: session " + std::to_string(cfg.edge->session) + " to concentrator " +
                                            cfg.edge->concentrator.str()
                                      : std::string();
    printf("%s: OK (%zu ports, %u workers, %zu tunnels, %zu entry points%s)\n", config_path.c_str(), cfg.ports.size(),
           unsigned(cfg.workers), cfg.tunnels.size(), cfg.entry_points.size(), edge.c_str());
    return 0;
  }

  // Signals from here on: SIGHUP never ends dpgw, and SIGTERM during start-up still cleans up.
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
  if (pid_t holder = prefix_holder(cfg.eal.file_prefix)) {
    LOG_ERROR("another DPDK process (pid %d) runs with eal.file_prefix '%s': give this dpgw another file_prefix "
              "in %s, or stop that one",
              int(holder), cfg.eal.file_prefix.c_str(), config_path.c_str());
    return 1;
  }
  std::vector<std::string> eal_args = build_eal_args(cfg, argv[0]);
  std::string joined;
  for (const auto& a : eal_args) joined += " " + a;
  LOG_INFO("EAL:%s", joined.c_str());
  std::vector<char*> eal_argv;
  for (auto& a : eal_args) eal_argv.push_back(a.data());
  if (rte_eal_init(int(eal_argv.size()), eal_argv.data()) < 0) {
    LOG_ERROR("EAL initialisation failed: %s (EAL's own messages above say more)",
              rte_errno ? rte_strerror(rte_errno) : "no reason given");
    return 1;
  }
  const std::string runtime_dir = rte_eal_get_runtime_dir();
  int rc = 0;
  {
    std::string error;
    auto gw = Gateway::create(cfg, Gateway::Options{}, error);
    if (!gw) {
      LOG_ERROR("%s", error.c_str());
      rc = 1;
    } else {
      g_stop = &gw->dataplane().stop;
      g_reload = &gw->dataplane().reload;
      if (g_stop_early) gw->dataplane().stop = true;
      gw->run();
      g_stop = nullptr;
      g_reload = nullptr;
      LOG_INFO("stopped");
      printf("dpgw final counters\n%s", stats_text(gw->dataplane()).c_str());
      fflush(stdout);
    }
  }
  rte_eal_cleanup();
  remove_runtime_dir(runtime_dir);
  return rc;
}
