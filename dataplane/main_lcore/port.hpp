// Ethernet port bring-up: one RX/TX queue pair per worker, RSS over IP/TCP/UDP when there are several,
// MTU, start; and the RAII handle that stops and closes it.
#pragma once
#include <cstdint>
#include <string>

#include "dataplane/tables/dataplane.hpp"
#include "dataplane/main_lcore/gateway_config.hpp"

struct rte_mempool;

namespace dptun {

// Finds the port for pc.device, configures `queues` queue pairs, starts it and fills `out`.
bool setup_port(const PortConfig& pc, uint16_t queues, rte_mempool* pool, PortInfo& out, std::string& error);

class PortGuard {
 public:
  explicit PortGuard(uint16_t port_id) : port_id_(port_id) {}
  ~PortGuard();
  PortGuard(const PortGuard&) = delete;
  PortGuard& operator=(const PortGuard&) = delete;

 private:
  uint16_t port_id_;
};

}  // namespace dptun
