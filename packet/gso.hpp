// Generic segmentation and receive coalescing of IPv4 TCP/UDP "super-packets" as a TUN with IFF_VNET_HDR passes
// them: each packet is preceded by a virtio-net header (VnetHeader: Linux's struct VnetHeader, 10 bytes, fields
// in host byte order; virtio spec 1.2 section 5.1.6) naming the segment size, the checksum the device (here: we)
// must complete, and the offsets of the headers.
//
// Segmentation (the kernel's TSO/USO done by us): a TCP super-packet becomes segments of `gso_size` payload bytes,
// each with its own IPv4 header (total length, id + i, checksum) and TCP header (sequence number advanced, FIN/PSH
// only on the last, CWR only on the first, full checksum) - RFC 9293 and the Linux tcp_gso_segment rules; a UDP one
// (kVnetGsoUdpL4) becomes datagrams of `gso_size` payload bytes with their own UDP length and checksum.
// Coalescing (GRO done by us, for writes): the rules that decide which segments may become one are in
// CoalesceKey / can_follow (agent/tun_writer.hpp uses them).
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>

namespace dptun {

// Debian 12's kernel headers predate VIRTIO_NET_HDR_GSO_UDP_L4 (and their virtio_net.h does not compile as C++):
// the layout and values are the kernel ABI, stated here.
struct VnetHeader {
  uint8_t flags;        // kVnetNeedsCsum, kVnetDataValid
  uint8_t gso_type;     // kVnetGso*, | kVnetGsoEcn
  uint16_t hdr_len;     // L3 + L4 header bytes
  uint16_t gso_size;    // L4 payload bytes per segment
  uint16_t csum_start;  // where the checksummed bytes start (the L4 header)
  uint16_t csum_offset; // where the checksum goes, from csum_start
};
static_assert(sizeof(VnetHeader) == 10);
inline constexpr uint8_t kVnetNeedsCsum = 1, kVnetDataValid = 2;
inline constexpr uint8_t kVnetGsoNone = 0, kVnetGsoTcpV4 = 1, kVnetGsoUdpL4 = 5, kVnetGsoEcn = 0x80;
inline constexpr size_t kVnetHeaderLen = sizeof(VnetHeader);
// The largest IPv4 packet, and so the largest super-packet a TUN hands over.
inline constexpr size_t kMaxSuperPacket = 65535;

// Completes a partial checksum (kVnetNeedsCsum, no GSO): the ones-complement sum of the bytes from
// csum_start to the end (the checksum field holds the pseudo-header sum) is stored at csum_start + csum_offset.
// A UDP checksum that comes out 0 is sent as 0xffff (RFC 768). False when the offsets lie outside the packet.
bool complete_checksum(std::span<uint8_t> packet, const VnetHeader& h);

// How many segments a TCP/UDP super-packet (kVnetGsoTcpV4 or kVnetGsoUdpL4) makes; 0 when it is malformed or of another
// type (IPv6 is not segmented here: dpagent's TUN has no IPv6).
uint32_t gso_segment_count(std::span<const uint8_t> packet, const VnetHeader& h);

// Writes segment `index` (0-based, < gso_segment_count) of a TCP/UDP super-packet into `out`, with complete, correct
// checksums; returns its length, 0 when malformed or `out` is too small.
size_t gso_write_segment(std::span<const uint8_t> packet, const VnetHeader& h, uint32_t index,
                         std::span<uint8_t> out);

// --- Coalescing -------------------------------------------------------------------------------------------------

// What a segment must share with the first of a coalesced packet: the IPv4 addresses, protocol, ports, TOS, TTL and
// DF, and for TCP the acknowledgement number, window and options (Linux tcp_gro_receive's rules, so that the
// receiver sees exactly what separate segments would have told it).
struct CoalesceInfo {
  uint8_t proto = 0;      // kIpProtoTcp / kIpProtoUdp; 0: cannot be coalesced (write it as it is)
  uint16_t l3_len = 0;    // IPv4 header
  uint16_t l4_len = 0;    // TCP header with options / UDP header
  uint16_t payload = 0;   // bytes behind the L4 header
  uint32_t seq = 0;       // TCP sequence number (host order)
  bool push = false;      // TCP PSH: the sender's burst ends here
};

// Classifies a packet with a verified checksum as a candidate for coalescing: IPv4 without options, not a
// fragment, TCP with only ACK (and PSH) set and a payload, or UDP with a payload and `udp` allowed. proto 0 when it
// is not one. The checksum is verified here (a merged packet's checksum is vouched for by us, not the kernel).
CoalesceInfo coalesce_info(std::span<const uint8_t> packet, bool udp);

// True when `next` may follow `head` (whose last merged segment is `last`) in one coalesced packet, `bytes` being
// the L4 payload merged so far.
bool can_follow(std::span<const uint8_t> head, const CoalesceInfo& head_info, const CoalesceInfo& last,
                std::span<const uint8_t> next, const CoalesceInfo& next_info, uint32_t bytes);

// Turns `head` (its headers) into the first part of a coalesced packet of `payload_total` L4 payload bytes in
// `segments` segments of head_info.payload bytes (the last may be shorter): IPv4 total length and checksum, TCP PSH
// when the last had it, the L4 checksum field set to the pseudo-header sum for the receiver to complete, and the
// virtio-net header that says so (GSO type, size, csum_start/offset).
VnetHeader make_coalesced(std::span<uint8_t> head, const CoalesceInfo& head_info, uint32_t payload_total,
                              bool last_push);

}  // namespace dptun
