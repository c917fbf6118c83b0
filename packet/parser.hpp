// Bounds-checked parse of Ethernet / VLAN / ARP / IPv4 / IPv6 / TCP / UDP / ICMP headers into offsets.
// Never reads past the span; every rejection has its own status so the caller can count it.
#pragma once
#include <cstdint>
#include <span>

namespace dptun {

enum class ParseStatus : uint8_t {
  Ok = 0,
  Truncated,          // the frame ends inside a header
  BadIpVersion,       // ethertype says IPv4/IPv6 but the version nibble disagrees
  BadIpHeaderLength,  // IHL < 5 or past the frame
  BadIpTotalLength,   // total length < header length or past the frame
  BadIpChecksum,
  BadL4Header,        // TCP data offset / UDP length inconsistent with the IP payload
  BadArp,             // ARP that is not Ethernet/IPv4
  TooManyHeaders,     // VLAN stack or IPv6 extension chain too long
  Count
};

const char* parse_status_name(ParseStatus s);

enum class L3Kind : uint8_t { Other = 0, Arp, Ipv4, Ipv6 };

// Plain data, no default member values: arrays of it on the fast path are not zeroed for nothing; the
// parse functions value-initialise it (all zero) before filling it.
struct PacketInfo {
  L3Kind l3;
  uint8_t vlan_count;
  uint16_t vlan_tci;     // outermost tag, when vlan_count > 0
  uint16_t ethertype;    // innermost ethertype
  uint16_t l3_offset;
  // IPv4 (IPv6 fills l4_proto/l4_offset/l4_len only)
  uint16_t ip_header_len;
  uint16_t ip_total_len;
  uint32_t src_ip;  // host order
  uint32_t dst_ip;
  uint8_t ttl;
  bool dont_fragment;
  bool is_fragment;        // MF set or offset != 0
  bool is_first_fragment;  // offset == 0 (the L4 header is present)
  // L4 (valid when has_l4)
  bool has_l4;
  uint8_t l4_proto;
  uint16_t l4_offset;
  uint16_t l4_len;  // L4 header + payload, as the IP / UDP length says
  uint16_t src_port;
  uint16_t dst_port;
  uint8_t tcp_flags;
  uint8_t tcp_header_len;
  uint8_t icmp_type;
  uint8_t icmp_code;

  uint16_t l4_payload_offset() const {
    return uint16_t(l4_offset + (l4_proto == 6 ? tcp_header_len : l4_proto == 17 ? 8 : 0));
  }
};

// Parses an Ethernet frame. Ethernet padding after the IP packet is allowed and ignored.
ParseStatus parse_ethernet(std::span<const uint8_t> frame, PacketInfo& out);
// Parses a bare IP packet (as read from a TUN device or carried inside a relay frame); l3_offset = 0.
ParseStatus parse_ip(std::span<const uint8_t> packet, PacketInfo& out);

// Parses an IPv4 packet of `packet_len` bytes of which only the first `head.size()` are at hand (the first buffer
// of a datagram reassembled from fragments): like parse_ip, provided every header (IPv4, and TCP with its options,
// UDP or ICMP) lies within `head`, else Truncated. The payload is never read.
ParseStatus parse_ipv4_head(std::span<const uint8_t> head, size_t packet_len, PacketInfo& out);

// What a tunnel carries: a whole (unfragmented) IPv4 TCP or UDP packet. Parses it into `out`.
inline bool parse_tunnel_packet(std::span<const uint8_t> packet, PacketInfo& out) {
  return parse_ip(packet, out) == ParseStatus::Ok && out.l3 == L3Kind::Ipv4 && !out.is_fragment && out.has_l4 &&
         (out.l4_proto == 6 || out.l4_proto == 17);
}

}  // namespace dptun
