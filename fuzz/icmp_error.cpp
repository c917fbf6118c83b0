// The ICMP errors about a flow that dpagent reads from its TUN and dpgw reads from an agent's frames
// (packet/icmp_error.hpp). Input: [new source u32][new destination u32][quoted source u32, port u16]
// [quoted destination u32, port u16][an IPv4 packet].
// Properties: a packet is read only within its length; what parses quotes a TCP/UDP header inside it; the rewrite
// (dpgw's NAT for the client) keeps the quoted IPv4 header and 8 bytes, and what it writes parses again with the new
// addresses and ports, the same type, code and reason.
#include <cstring>
#include <memory>

#include "fuzz/fuzz.hpp"
#include "packet/icmp_error.hpp"

using namespace dptun;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in({data, size});
  const uint32_t from = in.u32(), to = in.u32();
  const uint32_t qsrc = in.u32();
  const uint16_t qsport = in.u16();
  const uint32_t qdst = in.u32();
  const uint16_t qdport = in.u16();
  const auto rest = in.rest();
  // Exactly the packet on the heap: ASan sees a read past it.
  std::unique_ptr<uint8_t[]> pkt(new uint8_t[rest.size() + 1]);
  if (!rest.empty()) std::memcpy(pkt.get(), rest.data(), rest.size());
  const std::span<uint8_t> packet(pkt.get(), rest.size());

  IcmpError e;
  if (!parse_icmp_error(packet, e)) return 0;
  FUZZ_CHECK(e.quote_offset + e.quote_header_len + 8u <= packet.size());
  FUZZ_CHECK(e.proto == 6 || e.proto == 17);
  FUZZ_CHECK(e.quote_header_len >= 20 && e.quote_header_len <= 60);
  FUZZ_CHECK(icmp_error_reason_name(e.reason()) != nullptr);
  FUZZ_CHECK(e.mtu == 0 || (e.type == 3 && e.code == 4));
  FUZZ_LOG("type %u code %u proto %u quote header %u\n", e.type, e.code, e.proto, e.quote_header_len);

  const size_t len = icmp_error_rewrite(packet, e, from, to, qsrc, qsport, qdst, qdport);
  FUZZ_CHECK(len == size_t(e.quote_offset) + e.quote_header_len + 8 && len <= packet.size());
  IcmpError back;
  FUZZ_CHECK(parse_icmp_error(packet.first(len), back));
  FUZZ_CHECK(back.type == e.type && back.code == e.code && back.reason() == e.reason() && back.proto == e.proto);
  FUZZ_CHECK(back.from == from && back.to == to);
  FUZZ_CHECK(back.src_ip == qsrc && back.src_port == qsport && back.dst_ip == qdst && back.dst_port == qdport);
  FUZZ_CHECK(back.mtu == e.mtu);
  return 0;
}
