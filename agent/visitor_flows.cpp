#include "agent/visitor_flows.hpp"

#include "packet/headers.hpp"

namespace dptun {

VisitorFlows::VisitorFlows() : by_index_(SnatCodec::kPairBlockFlows, 0) {}

uint64_t VisitorFlows::idle_limit(uint8_t proto, const Flow& f) {
  if (proto != kIpProtoTcp) return kUdpIdleNs;
  return f.closing ? kClosingIdleNs : kTcpIdleNs;
}

void VisitorFlows::track(Flow& f, uint8_t tcp_flags, uint64_t now_ns) {
  f.last_ns = now_ns;
  if (tcp_flags & (kTcpFin | kTcpRst)) f.closing = true;
}

uint32_t VisitorFlows::from_program(uint8_t proto, uint32_t ip, uint16_t port, uint8_t tcp_flags, bool pair_ok,
                                    uint64_t now_ns) {
  const uint64_t k = key(proto, ip, port);
  if (auto it = flows_.find(k); it != flows_.end()) {
    Flow& f = it->second;
    // A closed TCP connection whose port a new one uses (a SYN): the new one chooses its way afresh.
    const bool restart = proto == kIpProtoTcp && f.closing && (tcp_flags & (kTcpSyn | kTcpAck)) == kTcpSyn;
    if (!restart) {
      track(f, proto == kIpProtoTcp ? tcp_flags : 0, now_ns);
      return f.index;
    }
    if (f.index != kNone) {
      by_index_[f.index] = 0;
      pair_count_--;
    }
    flows_.erase(it);
  }
  Flow f;
  f.last_ns = now_ns;
  if (pair_ok) {
    for (uint32_t i = 0; i < SnatCodec::kPairBlockFlows; ++i) {
      const uint32_t idx = (next_index_ + i) % SnatCodec::kPairBlockFlows;
      if (by_index_[idx]) continue;
      f.index = idx;
      next_index_ = idx + 1;  // (an index just freed is the last to be used again: late replies find no flow)
      break;
    }
    if (f.index == kNone) stats_.pair_full++;
  }
  if (f.index == kNone) {
    stats_.gateway_flows++;
    if (gateway_flows() >= kMaxGatewayFlows) {
      stats_.gateway_full++;
      return kNone;
    }
  } else {
    stats_.pair_flows++;
    by_index_[f.index] = k + 1;
    pair_count_++;
  }
  if (proto == kIpProtoTcp && (tcp_flags & (kTcpFin | kTcpRst))) f.closing = true;
  flows_.emplace(k, f);
  return f.index;
}

std::optional<VisitorFlows::Program> VisitorFlows::reply(uint32_t index, uint8_t proto, uint8_t tcp_flags,
                                                         uint64_t now_ns) {
  if (index >= by_index_.size() || !by_index_[index]) return std::nullopt;
  const uint64_t k = by_index_[index] - 1;
  if (uint8_t(k >> 48) != proto) return std::nullopt;
  auto it = flows_.find(k);
  if (it == flows_.end()) return std::nullopt;
  track(it->second, proto == kIpProtoTcp ? tcp_flags : 0, now_ns);
  return Program{proto, uint32_t(k >> 16), uint16_t(k)};
}

void VisitorFlows::expire(uint64_t now_ns) {
  for (auto it = flows_.begin(); it != flows_.end();) {
    const Flow& f = it->second;
    if (now_ns - f.last_ns < idle_limit(uint8_t(it->first >> 48), f)) {
      ++it;
      continue;
    }
    if (f.index != kNone) {
      by_index_[f.index] = 0;
      pair_count_--;
    }
    stats_.expired++;
    it = flows_.erase(it);
  }
}

void VisitorFlows::forget_pair_flows() {
  for (auto it = flows_.begin(); it != flows_.end();) {
    if (it->second.index == kNone) {
      ++it;
      continue;
    }
    by_index_[it->second.index] = 0;
    it = flows_.erase(it);
  }
  pair_count_ = 0;
}

}  // namespace dptun
