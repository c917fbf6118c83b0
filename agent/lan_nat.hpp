// Optional LAN delivery for dpagent (--lan-nat): the host forwards tunnelled flows to targets elsewhere on
// its networks and masquerades them behind its own address, so replies come back to it and into the TUN.
// Enables net.ipv4.ip_forward and installs an nftables table named after the TUN; the table goes on exit.
#pragma once
#include <string>

#include "common/inet.hpp"

namespace dptun {

class LanNat {
 public:
  LanNat() = default;
  LanNat(const LanNat&) = delete;
  LanNat& operator=(const LanNat&) = delete;
  ~LanNat();
  bool enable(const std::string& tun_name, Ipv4Prefix tun_net, std::string& error);
  const std::string& table() const { return table_; }

 private:
  std::string table_;  // empty until installed
};

}  // namespace dptun
