// The packet parser (packet/parser.hpp) on any bytes, read three ways: as an Ethernet frame (what a port
// receives), as a bare IP packet, and as what a tunnel may carry (parse_tunnel_packet: the inner packet of a relay
// frame). Properties: the status is a known one, and every offset and length an Ok parse reports lies inside the
// input, so that the data path can use them without checking again.
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
  return 0;
}
