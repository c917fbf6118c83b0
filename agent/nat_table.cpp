#include "agent/nat_table.hpp"

namespace dptun {

NatTable::NatTable(Ipv4Prefix pool, size_t max_bindings) : pool_(pool), max_bindings_(max_bindings) {
  first_ = pool.addr.value & pool.mask();  // network address
  last_ = first_ | ~pool.mask();           // broadcast
  own_ = pool.addr.value;
}

uint64_t NatTable::mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

NatBinding* NatTable::bind(uint32_t session, uint64_t flow_id, uint8_t proto, uint32_t client_ip,
                           uint16_t client_port, uint64_t now_ns, bool& created) {
  created = false;
  auto key = std::make_pair(session, flow_id);
  if (auto it = by_flow_.find(key); it != by_flow_.end()) {
    it->second.last_seen_ns = now_ns;
    return &it->second;
  }
  // Addresses strictly between network and broadcast, minus the TUN's own.
  const bool own_inside = own_ > first_ && own_ < last_;
  const uint32_t hosts = last_ - first_ - 1 - (own_inside ? 1 : 0);
  if (hosts == 0 || by_flow_.size() >= max_bindings_) return nullptr;
  uint64_t h = mix(flow_id ^ (uint64_t(session) << 40) ^ proto);
  for (int attempt = 0; attempt < 16; ++attempt, h = mix(h + 1)) {
    uint32_t ip = first_ + 1 + uint32_t(h % hosts);
    if (own_inside && ip >= own_) ++ip;  // skip over the TUN's address
    uint16_t port = uint16_t(kFirstPort + (h >> 32) % (65536 - kFirstPort));
    uint64_t rk = reply_key(proto, ip, port);
    if (by_reply_.count(rk)) continue;
    NatBinding b;
    b.session = session;
    b.flow_id = flow_id;
    b.proto = proto;
    b.client_ip = client_ip;
    b.client_port = client_port;
    b.snat_ip = ip;
    b.snat_port = port;
    b.last_seen_ns = now_ns;
    by_reply_.emplace(rk, key);
    created = true;
    return &by_flow_.emplace(key, b).first->second;
  }
  return nullptr;
}

NatBinding* NatTable::find_reply(uint8_t proto, uint32_t dst_ip, uint16_t dst_port) {
  auto it = by_reply_.find(reply_key(proto, dst_ip, dst_port));
  if (it == by_reply_.end()) return nullptr;
  auto f = by_flow_.find(it->second);
  return f == by_flow_.end() ? nullptr : &f->second;
}

size_t NatTable::expire(uint64_t now_ns, uint64_t udp_idle_ns, uint64_t tcp_idle_ns, uint64_t closed_ns,
                       uint64_t unconfirmed_ns) {
  size_t removed = 0;
  for (auto it = by_flow_.begin(); it != by_flow_.end();) {
    const NatBinding& b = it->second;
    uint64_t idle = now_ns - b.last_seen_ns;
    bool closed = b.reset || b.fin_seen == 3;
    uint64_t limit = closed ? closed_ns : b.proto == 6 ? tcp_idle_ns : udp_idle_ns;
    if (!b.confirmed && unconfirmed_ns < limit) limit = unconfirmed_ns;
    if (idle >= limit) {
      by_reply_.erase(reply_key(b.proto, b.snat_ip, b.snat_port));
      it = by_flow_.erase(it);
      ++removed;
    } else {
      ++it;
    }
  }
  return removed;
}

}  // namespace dptun
