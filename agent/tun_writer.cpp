#include "agent/tun_writer.hpp"

#include <cstring>

#include "packet/headers.hpp"

namespace dptun {

namespace {
// The same IPv4 5-tuple (addresses, protocol, ports): packets whose order must be kept.
bool same_flow(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  if (a.size() < kIpv4HeaderLen || b.size() < kIpv4HeaderLen || (b[0] >> 4) != 4) return false;
  const size_t la = size_t(a[0] & 0x0f) * 4, lb = size_t(b[0] & 0x0f) * 4;
  if (a[kIpv4OffProto] != b[kIpv4OffProto] || std::memcmp(a.data() + kIpv4OffSrc, b.data() + kIpv4OffSrc, 8) != 0)
    return false;
  if (a.size() < la + 4 || b.size() < lb + 4) return false;
  return std::memcmp(a.data() + la, b.data() + lb, 4) == 0;
}
}  // namespace

TunWriter::Flow* TunWriter::flow_of(std::span<const uint8_t> packet) {
  for (Flow& f : flows_)
    if (f.count && same_flow(f.head, packet)) return &f;
  return nullptr;
}

void TunWriter::add(std::span<uint8_t> packet) {
  if (!tcp_) {
    write_one(packet);
    return;
  }
  const CoalesceInfo ci = coalesce_info(packet, udp_);
  Flow* f = flow_of(packet);
  if (!ci.proto) {
    // Not a candidate (a handshake, a bare ACK, a bad checksum, ICMP ...): after what its flow has pending.
    if (f) write(*f);
    write_one(packet);
    return;
  }
  if (f && f->count < kMaxSegments && can_follow(f->head, f->head_info, f->last, packet, ci, f->bytes)) {
    f->pieces[f->count++] = iovec{packet.data() + ci.l3_len + ci.l4_len, ci.payload};
    f->bytes += ci.payload;
    f->last = ci;
    // Nothing can follow a short segment, a PSH or a full super-packet: out it goes.
    if (ci.push || ci.payload < f->head_info.payload || f->count == kMaxSegments) write(*f);
    return;
  }
  if (f) {
    write(*f);
  } else {
    for (Flow& g : flows_)
      if (!g.count) {
        f = &g;
        break;
      }
    if (!f) {
      f = &flows_[next_evict_];
      next_evict_ = (next_evict_ + 1) % kMaxFlows;
      write(*f);
    }
  }
  start(*f, packet, ci);
  if (ci.push) write(*f);
}

void TunWriter::start(Flow& f, std::span<uint8_t> packet, const CoalesceInfo& ci) {
  f.head = packet;
  f.head_info = ci;
  f.last = ci;
  f.bytes = ci.payload;
  f.count = 1;
  f.pieces[0] = iovec{packet.data(), packet.size()};
}

void TunWriter::write(Flow& f) {
  if (!f.count) return;
  if (f.count == 1) {
    write_one(f.head);
  } else {
    const VnetHeader h = make_coalesced(f.head, f.head_info, f.bytes, f.last.push);
    stats_.writes++;
    stats_.packets += f.count;
    stats_.coalesced += f.count;
    if (!tun_.write_packet(h, {f.pieces.data(), f.count})) stats_.write_errors += f.count;
  }
  f.count = 0;
}

void TunWriter::write_one(std::span<const uint8_t> packet) {
  stats_.writes++;
  stats_.packets++;
  if (!tun_.write_packet(packet)) stats_.write_errors++;
}

void TunWriter::write_now(std::span<const uint8_t> packet) {
  if (Flow* f = flow_of(packet)) write(*f);
  write_one(packet);
}

void TunWriter::flush() {
  for (Flow& f : flows_) write(f);
}

}  // namespace dptun
