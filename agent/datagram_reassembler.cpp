#include "agent/datagram_reassembler.hpp"

#include <cstring>

#include "common/bytes.hpp"
#include "packet/headers.hpp"
#include "packet/ipv4_fragment.hpp"

namespace dptun {

DatagramReassembler::DatagramReassembler(const ReassemblyLimits& limits, uint64_t seed)
    : table_(limits, seed), buffers_(limits.datagrams ? limits.datagrams : 1) {}

std::span<uint8_t> DatagramReassembler::add(std::span<const uint8_t> ip, uint64_t scope, uint64_t now_ns) {
  stats_.fragments++;
  const FragmentInfo fi = ipv4_fragment_info(ip.data());
  if (size_t(fi.header_len) + fi.len > ip.size()) {  // (parse_ip's checks make this impossible)
    stats_.drops[size_t(FragDrop::Malformed)]++;
    return {};
  }
  const FragmentKey key{load_be32(ip.data() + kIpv4OffSrc), load_be32(ip.data() + kIpv4OffDst),
                        load_be16(ip.data() + kIpv4OffId), ip[kIpv4OffProto], scope};
  Sink sink{stats_};
  FragDrop why;
  uint32_t slot;
  const auto result = table_.add(key, fi, NoFrag{}, now_ns, sink, why, slot);
  stats_.in_progress = table_.datagrams();
  if (result == Ipv4Reassembly<NoFrag>::Result::Dropped) {
    stats_.drops[size_t(why)]++;
    return {};
  }
  // The table has checked offset + length against max_size: the buffer holds any datagram it accepts.
  std::vector<uint8_t>& buf = buffers_[slot];
  if (buf.empty()) buf.resize(kHeadroom + table_.limits().max_size);
  std::memcpy(buf.data() + kHeadroom + fi.offset, ip.data() + fi.header_len, fi.len);
  if (fi.offset == 0) std::memcpy(buf.data() + kHeadroom - fi.header_len, ip.data(), fi.header_len);
  if (result == Ipv4Reassembly<NoFrag>::Result::Held) return {};
  stats_.reassembled++;
  const uint32_t hl = table_.first_header_len();
  uint8_t* start = buf.data() + kHeadroom - hl;
  finish_reassembled_header(start, table_.payload_len());
  return {start, hl + table_.payload_len()};
}

void DatagramReassembler::expire(uint64_t now_ns) {
  Sink sink{stats_};
  table_.expire(now_ns, 256, sink);
  stats_.in_progress = table_.datagrams();
}

}  // namespace dptun
