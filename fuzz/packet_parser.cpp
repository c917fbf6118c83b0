// The packet parser (packet/parser.hpp) on any bytes, read four ways: as an Ethernet frame (what a port
// receives), as a bare IP packet, as what a tunnel may carry (parse_tunnel_packet: the inner packet of a relay
// frame), and as a reassembled datagram of which only a first piece is at hand (parse_ipv4_head, with heads of
// several lengths, each in a buffer of exactly that size). Properties: the status is a known one, and every
// offset and length an Ok parse reports lies inside the input, so that the data path can use them without
// checking again; parse_ipv4_head says what parse_ip says of the whole packet, unless it lacks bytes (Truncated).
#include <memory>

#include "fuzz/fuzz.hpp"
#include "packet/parser.hpp"

using namespace dptun;

namespace {

void check(std::span<const uint8_t> in, ParseStatus s, const PacketInfo& pi) {
  FUZZ_CHECK(s < ParseStatus::Count);
  FUZZ_CHECK(parse_status_name(s) != nullptr);
  if (s != ParseStatus::Ok) return;
  const size_t n = in.size();
  FUZZ_CHECK(pi.l3_offset <= n);
  FUZZ_CHECK(pi.vlan_count <= 2);
  if (pi.l3 == L3Kind::Arp) FUZZ_CHECK(size_t(pi.l3_offset) + 28 <= n);
  if (pi.l3 != L3Kind::Ipv4 && pi.l3 != L3Kind::Ipv6) return;
  const size_t ip_end = size_t(pi.l3_offset) + pi.ip_total_len;
  FUZZ_CHECK(ip_end <= n);
  FUZZ_CHECK(pi.ip_header_len >= 20 && pi.ip_header_len <= pi.ip_total_len);
  if (pi.has_l4) {
    FUZZ_CHECK(pi.l4_offset >= size_t(pi.l3_offset) + pi.ip_header_len);
    FUZZ_CHECK(size_t(pi.l4_offset) + pi.l4_len <= ip_end);
    if (pi.l4_proto == 6) {
      FUZZ_CHECK(pi.tcp_header_len >= 20 && pi.tcp_header_len <= pi.l4_len);
      FUZZ_CHECK(pi.tcp_header_len % 4 == 0);
    }
    if (pi.l4_proto == 17) FUZZ_CHECK(pi.l4_len >= 8);
    if (pi.l4_proto == 1 || pi.l4_proto == 58) FUZZ_CHECK(pi.l4_len >= 4);
    FUZZ_CHECK(size_t(pi.l4_payload_offset()) <= size_t(pi.l4_offset) + pi.l4_len);
  } else if (pi.is_fragment && pi.is_first_fragment) {
    // The first fragment's L4 header may be cut short: only its start is known.
    FUZZ_CHECK(size_t(pi.l4_offset) + pi.l4_len <= ip_end);
  }
}

bool same(const PacketInfo& a, const PacketInfo& b) {
  return a.l3 == b.l3 && a.vlan_count == b.vlan_count && a.vlan_tci == b.vlan_tci && a.ethertype == b.ethertype &&
         a.l3_offset == b.l3_offset && a.ip_header_len == b.ip_header_len && a.ip_total_len == b.ip_total_len &&
         a.src_ip == b.src_ip && a.dst_ip == b.dst_ip && a.ttl == b.ttl && a.dont_fragment == b.dont_fragment &&
         a.is_fragment == b.is_fragment && a.is_first_fragment == b.is_first_fragment && a.has_l4 == b.has_l4 &&
         a.l4_proto == b.l4_proto && a.l4_offset == b.l4_offset && a.l4_len == b.l4_len &&
         a.src_port == b.src_port && a.dst_port == b.dst_port && a.tcp_flags == b.tcp_flags &&
         a.tcp_header_len == b.tcp_header_len && a.icmp_type == b.icmp_type && a.icmp_code == b.icmp_code;
}

void check_head(std::span<const uint8_t> in) {
  if (in.empty() || in[0] >> 4 != 4) return;
  PacketInfo whole;
  const ParseStatus ws = parse_ip(in, whole);
  for (size_t h : {size_t(20), size_t(24), size_t(28), size_t(40), size_t(48), size_t(60), size_t(68), size_t(80),
                   in.size()}) {
    if (h > in.size()) continue;
    std::unique_ptr<uint8_t[]> head(new uint8_t[h]);
    std::memcpy(head.get(), in.data(), h);
    PacketInfo pi;
    const ParseStatus s = parse_ipv4_head({head.get(), h}, in.size(), pi);
    FUZZ_CHECK(s < ParseStatus::Count);
    if (s == ParseStatus::Truncated) continue;
    FUZZ_CHECK(s == ws);
    if (s == ParseStatus::Ok) FUZZ_CHECK(same(pi, whole));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> in(data, size);
  PacketInfo pi;
  const ParseStatus eth = parse_ethernet(in, pi);
  check(in, eth, pi);
  FUZZ_LOG("ethernet: %s (ethertype %04x, l4 proto %u, has_l4 %d)\n", parse_status_name(eth), pi.ethertype,
           pi.l4_proto, pi.has_l4);
  const ParseStatus ip = parse_ip(in, pi);
  check(in, ip, pi);
  FUZZ_LOG("ip: %s\n", parse_status_name(ip));
  if (parse_tunnel_packet(in, pi)) {
    FUZZ_LOG("tunnel packet: proto %u, ports %u -> %u\n", pi.l4_proto, pi.src_port, pi.dst_port);
    check(in, ParseStatus::Ok, pi);
    FUZZ_CHECK(pi.l3 == L3Kind::Ipv4 && pi.l3_offset == 0 && pi.has_l4 && !pi.is_fragment);
    FUZZ_CHECK(pi.l4_proto == 6 || pi.l4_proto == 17);
  }
  check_head(in);
  return 0;
}
