#include "dataplane/main_lcore/port.hpp"

#include <rte_ethdev.h>

#include "common/log.hpp"
#include "dataplane/main_lcore/eal_args.hpp"

namespace dptun {

bool setup_port(const PortConfig& pc, uint16_t queues, rte_mempool* pool, PortInfo& out, std::string& error) {
  const std::string dev = port_device_name(pc.device);
  uint16_t port_id;
  if (rte_eth_dev_get_port_by_name(dev.c_str(), &port_id) != 0) {
    error = "port '" + pc.name + "': no DPDK device '" + dev + "' (check the device string and driver binding)";
    return false;
  }
  rte_eth_dev_info info;
  if (rte_eth_dev_info_get(port_id, &info) != 0) {
    error = "port '" + pc.name + "': cannot read device info";
    return false;
  }
  if (info.max_rx_queues < queues || info.max_tx_queues < queues) {
    error = "port '" + pc.name + "' (" + dev + ") has " + std::to_string(info.max_rx_queues) + " RX / " +
            std::to_string(info.max_tx_queues) + " TX queues but " + std::to_string(queues) +
            " workers need one each" +
            (dev.rfind("net_af_packet", 0) == 0 ? "; add qpairs=" + std::to_string(queues) + " to its device string"
                                                 : "");
    return false;
  }
  rte_eth_conf conf{};
  if (queues > 1) {
    uint64_t hf = (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP) & info.flow_type_rss_offloads;
    if (hf) {
      conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
      conf.rx_adv_conf.rss_conf.rss_hf = hf;
    } else {
      LOG_INFO("port '%s': no RSS offload; the driver spreads packets over its %u queues its own way",
               pc.name.c_str(), unsigned(queues));
    }
  }
  int rc = rte_eth_dev_configure(port_id, queues, queues, &conf);
  if (rc != 0) {
    error = "port '" + pc.name + "': configure failed (" + std::string(rte_strerror(-rc)) + ")";
    return false;
  }
  uint16_t rxd = pc.rx_desc, txd = pc.tx_desc;
  rte_eth_dev_adjust_nb_rx_tx_desc(port_id, &rxd, &txd);
  int socket = rte_eth_dev_socket_id(port_id);
  if (socket < 0) socket = 0;
  for (uint16_t q = 0; q < queues; ++q) {
    if ((rc = rte_eth_rx_queue_setup(port_id, q, rxd, unsigned(socket), nullptr, pool)) != 0 ||
        (rc = rte_eth_tx_queue_setup(port_id, q, txd, unsigned(socket), nullptr)) != 0) {
      error = "port '" + pc.name + "': queue " + std::to_string(q) + " setup failed (" + rte_strerror(-rc) + ")";
      return false;
    }
  }
  if (pc.mtu) {
    rc = rte_eth_dev_set_mtu(port_id, pc.mtu);
    if (rc != 0) LOG_WARN("port '%s': cannot set MTU %u (%s); using the device's", pc.name.c_str(), pc.mtu, rte_strerror(-rc));
  }
  if ((rc = rte_eth_dev_start(port_id)) != 0) {
    error = "port '" + pc.name + "': start failed (" + std::string(rte_strerror(-rc)) + ")";
    return false;
  }
  uint16_t mtu = 1500;
  if (rte_eth_dev_get_mtu(port_id, &mtu) != 0 || mtu < 576) mtu = pc.mtu ? pc.mtu : 1500;
  rte_ether_addr mac;
  rte_eth_macaddr_get(port_id, &mac);
  out.name = pc.name;
  out.port_id = port_id;
  std::copy(mac.addr_bytes, mac.addr_bytes + 6, out.mac.begin());
  out.address = pc.address.addr.value;
  out.mtu = mtu;
  LOG_INFO("port '%s' (%s): %s mac %02x:%02x:%02x:%02x:%02x:%02x mtu %u, %u queue pair(s)", pc.name.c_str(),
           dev.c_str(), pc.address.str().c_str(), out.mac[0], out.mac[1], out.mac[2], out.mac[3], out.mac[4],
           out.mac[5], unsigned(mtu), unsigned(queues));
  return true;
}

PortGuard::~PortGuard() {
  rte_eth_dev_stop(port_id_);
  rte_eth_dev_close(port_id_);
}

}  // namespace dptun
