// Writes the packets of one receive batch into dpagent's TUN, coalescing consecutive segments of a flow into one
// super-packet per write (GRO done in userspace: packet/gso.hpp has the rules) when the TUN has virtio-net headers.
// One write then carries up to kMaxSegments segments (64 KiB), and the kernel's TCP or UDP receive runs once for
// them instead of once per segment. Packets of one flow keep their order; different flows may be reordered.
//
// add() keeps a pointer into the caller's packet until flush(): the caller flushes before it reuses that memory
// (dpagent: before its next recvmmsg). write_now() is for packets in memory that does not stay put.
#pragma once
#include <sys/uio.h>

#include <array>
#include <cstdint>
#include <span>

#include "common/counter.hpp"
#include "common/tun_device.hpp"
#include "packet/gso.hpp"

namespace dptun {

// Written by the writer's thread, read by any (common/counter.hpp).
struct TunWriterStats {
  StatCounter packets = 0;          // packets handed to the TUN
  StatCounter writes = 0;           // write calls (fewer than packets when coalescing)
  StatCounter coalesced = 0;        // packets that went out as part of a super-packet
  StatCounter write_errors = 0;     // packets the TUN refused (counted per packet)
};

class TunWriter {
 public:
  static constexpr unsigned kMaxFlows = 8;      // flows with a super-packet being built at once
  static constexpr unsigned kMaxSegments = 64;  // segments per super-packet (UDP_MAX_SEGMENTS of older kernels)

  // `tun` must outlive the writer. Coalescing is off until enabled (it needs the TUN's virtio-net headers; UDP also
  // needs the kernel to take UDP super-packets, TUN_F_USO4, Linux 6.2).
  explicit TunWriter(const TunDevice& tun) : tun_(tun) {}
  void enable_coalescing(bool tcp, bool udp) {
    tcp_ = tcp && tun_.vnet_hdr();
    udp_ = udp && tun_.vnet_hdr();
  }
  bool coalescing() const { return tcp_; }
  bool coalescing_udp() const { return udp_; }

  void add(std::span<uint8_t> packet);
  void write_now(std::span<const uint8_t> packet);
  void flush();
  const TunWriterStats& stats() const { return stats_; }

 private:
  struct Flow {
    std::span<uint8_t> head;
    CoalesceInfo head_info, last;
    uint32_t bytes = 0;  // L4 payload so far
    unsigned count = 0;  // 0: unused
    std::array<iovec, kMaxSegments> pieces;  // [0]: the head packet whole; then the followers' payloads
  };
  Flow* flow_of(std::span<const uint8_t> packet);
  void start(Flow& f, std::span<uint8_t> packet, const CoalesceInfo& ci);
  void write(Flow& f);
  void write_one(std::span<const uint8_t> packet);

  const TunDevice& tun_;
  bool tcp_ = false, udp_ = false;
  std::array<Flow, kMaxFlows> flows_{};
  unsigned next_evict_ = 0;
  TunWriterStats stats_;
};

}  // namespace dptun
