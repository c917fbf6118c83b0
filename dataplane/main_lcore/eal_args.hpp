// Builds the EAL command line from the [dpgw.eal] and [dpgw.ports] config: lcores, memory mode
// (--no-huge or hugepages), file prefix, vdevs and the PCI allow-list.
#pragma once
#include <string>
#include <vector>

#include "dataplane/main_lcore/gateway_config.hpp"

namespace dptun {

// True for a PCI address like 0000:3b:00.0 or 3b:00.0.
bool is_pci_address(const std::string& device);
// The ethdev name DPDK gives a port device: the vdev name before the first ',' or the PCI address.
std::string port_device_name(const std::string& device);
std::vector<std::string> build_eal_args(const GatewayConfig& cfg, const std::string& program);

}  // namespace dptun
