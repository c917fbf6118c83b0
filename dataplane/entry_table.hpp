// Public entry points by (protocol, destination port): one array load per packet.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "dataplane/gateway_config.hpp"

namespace dptun {

class EntryTable {
 public:
  explicit EntryTable(const std::vector<EntryPointConfig>& entries)
      : entries_(entries), tcp_(new uint16_t[65536]()), udp_(new uint16_t[65536]()) {
    for (size_t i = 0; i < entries_.size(); ++i)
      (entries_[i].proto == 6 ? tcp_ : udp_)[entries_[i].port] = uint16_t(i + 1);
  }

  // The entry point for a packet to dst_ip:dst_port, or nullptr.
  const EntryPointConfig* find(uint8_t proto, uint32_t dst_ip, uint16_t dst_port, uint16_t& index) const {
    if (proto != 6 && proto != 17) return nullptr;
    uint16_t slot = (proto == 6 ? tcp_ : udp_)[dst_port];
    if (!slot) return nullptr;
    const EntryPointConfig& e = entries_[slot - 1];
    if (e.listen && e.listen->value != dst_ip) return nullptr;
    index = uint16_t(slot - 1);
    return &e;
  }
  const EntryPointConfig& at(uint16_t index) const { return entries_[index]; }
  size_t size() const { return entries_.size(); }

 private:
  std::vector<EntryPointConfig> entries_;
  std::unique_ptr<uint16_t[]> tcp_, udp_;
};

}  // namespace dptun
