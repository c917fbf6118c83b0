#include "dataplane/main_lcore/eal_args.hpp"

#include <sched.h>

#include <regex>

namespace dptun {

bool is_pci_address(const std::string& device) {
  static const std::regex pci("^([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\\.[0-7]$");
  return std::regex_match(port_device_name(device), pci);
}

std::string port_device_name(const std::string& device) { return device.substr(0, device.find(',')); }

// Main lcore on the first CPU we may run on, worker i on the next ones, wrapping around.
static std::string default_lcores(unsigned workers) {
  cpu_set_t set;
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof set, &set) == 0)
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
  if (cpus.empty()) cpus.push_back(0);
  std::string out;
  for (unsigned l = 0; l <= workers; ++l)
    out += (l ? "," : "") + std::to_string(l) + "@" + std::to_string(cpus[l % cpus.size()]);
  return out;
}

std::vector<std::string> build_eal_args(const GatewayConfig& cfg, const std::string& program) {
  std::vector<std::string> a{program};
  a.push_back("--lcores");
  a.push_back(cfg.eal.lcores.empty() ? default_lcores(cfg.workers) : cfg.eal.lcores);
  a.push_back("--file-prefix");
  a.push_back(cfg.eal.file_prefix);
  if (!cfg.eal.hugepages) a.push_back("--no-huge");
  a.push_back("-m");
  a.push_back(std::to_string(cfg.eal.memory_mb));
  bool any_pci = false;
  for (const PortConfig& p : cfg.ports) {
    if (is_pci_address(p.device)) {
      any_pci = true;
      a.push_back("-a");
      a.push_back(p.device);
    } else {
      a.push_back("--vdev");
      a.push_back(p.device);
    }
  }
  // A crypto device on PCI (QAT: "0000:3d:01.0", or its cryptodev "0000:3d:01.0_qat_sym") is allow-listed too.
  if (cfg.crypto.uses_device()) {
    const std::string dev = port_device_name(cfg.crypto.device);
    const std::string pci = dev.substr(0, dev.find('_'));
    if (is_pci_address(pci)) {
      any_pci = true;
      a.push_back("-a");
      a.push_back(pci);
    }
  }
  // PCI devices the operator allow-lists (or block-lists) in eal.args need the PCI bus as well.
  for (const auto& x : cfg.eal.extra_args)
    if (x == "-a" || x == "-b" || x.rfind("--allow", 0) == 0 || x.rfind("--block", 0) == 0 ||
        (x.size() > 2 && (x.rfind("-a", 0) == 0 || x.rfind("-b", 0) == 0) && x[2] != '-'))
      any_pci = true;
  if (!any_pci) a.push_back("--no-pci");  // never touch NICs the config does not name
  if (!cfg.eal.log_level.empty()) {
    a.push_back("--log-level");
    a.push_back(cfg.eal.log_level);
  }
  for (const auto& x : cfg.eal.extra_args) a.push_back(x);
  return a;
}

}  // namespace dptun
