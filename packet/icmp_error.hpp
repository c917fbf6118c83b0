// ICMP error messages about TCP/UDP flows (RFC 792; RFC 1812 section 4.3.2.3 for what they quote): read one,
// classify why the datagram it quotes was refused, and rewrite it for the other side of a NAT. dpagent reads the
// errors its kernel routes into the TUN (the quoted datagram's source is the flow's translated address), dpgw
// rewrites them for the client, as a NAT router would. Addresses and ports in host order.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>

namespace dptun {

// Why a target could not be reached, from the ICMP type and code (RFC 792, RFC 1122 3.2.2.1, RFC 1812 5.2.7.1).
enum class IcmpErrorReason : uint8_t {
  NetUnreachable,    // type 3 codes 0, 6 (network unknown), 11 (for TOS)
  HostUnreachable,   // type 3 codes 1, 7 (host unknown), 8 (source host isolated), 12 (for TOS)
  ProtoUnreachable,  // type 3 code 2
  PortUnreachable,   // type 3 code 3: nothing listens there (UDP; TCP answers with a RST instead)
  FragNeeded,        // type 3 code 4: the datagram is bigger than the next hop's MTU and has DF (RFC 1191)
  AdminProhibited,   // type 3 codes 9, 10, 13 (a filter), 14, 15 (precedence)
  TimeExceeded,      // type 11: a routing loop (TTL), or reassembly timed out
  Other,             // type 3 code 5 (source route failed) and codes RFC 792 does not name
  Count
};

// Snake-case names used in counters and logs: "net_unreachable", ..., "time_exceeded", "other".
const char* icmp_error_reason_name(IcmpErrorReason r);
IcmpErrorReason icmp_error_reason(uint8_t type, uint8_t code);

struct IcmpError {
  uint8_t type = 0, code = 0;
  uint16_t mtu = 0;               // next-hop MTU of a fragmentation-needed error (RFC 1191); 0 otherwise
  uint32_t from = 0, to = 0;      // the error's own source (who refused) and destination
  // The quoted datagram (the packet that was refused): its protocol, addresses and TCP/UDP ports.
  uint8_t proto = 0;
  uint32_t src_ip = 0, dst_ip = 0;
  uint16_t src_port = 0, dst_port = 0;
  uint16_t quote_offset = 0;      // where the quoted IPv4 header starts in the packet
  uint16_t quote_header_len = 0;  // its length (options included)

  IcmpErrorReason reason() const { return icmp_error_reason(type, code); }
};

// Reads an IPv4 packet carrying ICMP destination unreachable (type 3) or time exceeded (type 11) that quotes the
// IPv4 header and at least the first 8 bytes of a TCP or UDP datagram (the quoted datagram's first fragment).
// False for anything else: other ICMP types, an ICMP checksum that does not verify, a fragment, a quote cut short
// or of another protocol, IP options on the error itself.
bool parse_icmp_error(std::span<const uint8_t> packet, IcmpError& out);

// Rewrites the ICMP error `e` (parsed from `packet`) in place for the other side of a NAT: the error comes from
// `from` to `to`, and the quoted datagram reads `quoted_src:quoted_src_port -> quoted_dst:quoted_dst_port` (the
// quoted UDP checksum follows incrementally; its IPv4 header checksum is recomputed). The quote keeps only the
// quoted IPv4 header and 8 bytes (what RFC 792 requires; nothing more of the far side leaves), TTL becomes 64 and
// the IPv4 and ICMP checksums are recomputed. Returns the new length of the packet (20 + 8 + quote).
size_t icmp_error_rewrite(std::span<uint8_t> packet, const IcmpError& e, uint32_t from, uint32_t to,
                          uint32_t quoted_src, uint16_t quoted_src_port, uint32_t quoted_dst,
                          uint16_t quoted_dst_port);

}  // namespace dptun
