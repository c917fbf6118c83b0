// Builds well-formed Ethernet/IPv4/TCP/UDP frames with correct checksums for the tests to start from
// (and then break on purpose).
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/bytes.hpp"
#include "packet/checksum.hpp"
#include "packet/headers.hpp"

namespace dptun::test {

struct FrameSpec {
  uint32_t src_ip = 0x0a000001, dst_ip = 0x0a000002;
  uint16_t src_port = 40000, dst_port = 80;
  uint8_t proto = kIpProtoTcp;
  uint8_t tcp_flags = kTcpAck;
  std::vector<uint8_t> tcp_options;  // multiple of 4
  std::vector<uint8_t> ip_options;   // multiple of 4
  size_t payload = 16;
  std::vector<uint16_t> vlans;       // outer first
  uint16_t frag = 0;                 // IPv4 flags + fragment offset field
  uint8_t ttl = 64;
};

// Returns the whole Ethernet frame; `l3_offset` receives the IP header offset.
inline std::vector<uint8_t> build_ipv4_frame(const FrameSpec& s, size_t* l3_offset = nullptr) {
  std::vector<uint8_t> f(12, 0);
  for (int i = 0; i < 6; ++i) f[i] = uint8_t(0x02 + i), f[6 + i] = uint8_t(0x12 + i);
  for (uint16_t tci : s.vlans) {
    f.push_back(0x81), f.push_back(0x00);
    f.push_back(uint8_t(tci >> 8)), f.push_back(uint8_t(tci));
  }
  f.push_back(0x08), f.push_back(0x00);
  const size_t l3 = f.size();
  if (l3_offset) *l3_offset = l3;
  const size_t ihl = 20 + s.ip_options.size();
  size_t l4_hdr = s.proto == kIpProtoTcp ? 20 + s.tcp_options.size() : s.proto == kIpProtoUdp ? 8 : 8;
  const size_t total = ihl + l4_hdr + s.payload;
  f.resize(l3 + total, 0);
  uint8_t* ip = f.data() + l3;
  ip[0] = uint8_t(0x40 | (ihl / 4));
  store_be16(ip + 2, uint16_t(total));
  store_be16(ip + 4, 0x1234);
  store_be16(ip + 6, s.frag);
  ip[8] = s.ttl;
  ip[9] = s.proto;
  store_be32(ip + 12, s.src_ip);
  store_be32(ip + 16, s.dst_ip);
  if (!s.ip_options.empty()) std::memcpy(ip + 20, s.ip_options.data(), s.ip_options.size());
  store_be16(ip + 10, ipv4_header_checksum({ip, ihl}));
  uint8_t* l4 = ip + ihl;
  for (size_t i = 0; i < s.payload; ++i) l4[l4_hdr + i] = uint8_t(i * 7 + 3);
  const size_t l4_len = l4_hdr + s.payload;
  if (s.proto == kIpProtoTcp) {
    store_be16(l4, s.src_port);
    store_be16(l4 + 2, s.dst_port);
    store_be32(l4 + 4, 1000);
    store_be32(l4 + 8, 2000);
    l4[12] = uint8_t((l4_hdr / 4) << 4);
    l4[13] = s.tcp_flags;
    store_be16(l4 + 14, 65535);
    if (!s.tcp_options.empty()) std::memcpy(l4 + 20, s.tcp_options.data(), s.tcp_options.size());
    store_be16(l4 + 16, ipv4_l4_checksum(s.src_ip, s.dst_ip, kIpProtoTcp, {l4, l4_len}));
  } else if (s.proto == kIpProtoUdp) {
    store_be16(l4, s.src_port);
    store_be16(l4 + 2, s.dst_port);
    store_be16(l4 + 4, uint16_t(l4_len));
    uint16_t c = ipv4_l4_checksum(s.src_ip, s.dst_ip, kIpProtoUdp, {l4, l4_len});
    store_be16(l4 + 6, c ? c : 0xffff);
  } else if (s.proto == kIpProtoIcmp) {
    l4[0] = kIcmpEchoRequest;
    store_be16(l4 + 2, csum_finish(csum_add({l4, l4_len})));
  }
  return f;
}

// True when the IPv4 header checksum and the TCP/UDP checksum of the packet at `ip` verify.
inline bool ipv4_checksums_ok(const uint8_t* ip) {
  size_t ihl = size_t(ip[0] & 15) * 4;
  size_t total = load_be16(ip + 2);
  if (csum_fold(csum_add({ip, ihl})) != 0xffff) return false;
  uint8_t proto = ip[9];
  const uint8_t* l4 = ip + ihl;
  if (proto == kIpProtoUdp && load_be16(l4 + 6) == 0) return true;
  if (proto != kIpProtoTcp && proto != kIpProtoUdp) return true;
  uint32_t sum = csum_add({l4, total - ihl}, ipv4_pseudo_sum(load_be32(ip + 12), load_be32(ip + 16), proto,
                                                            uint16_t(total - ihl)));
  return csum_fold(sum) == 0xffff;
}

}  // namespace dptun::test
