#include "dataplane/main_lcore/gateway_state.hpp"

#include "dataplane/tables/quic_session.hpp"
#include "proto/masque_datagram.hpp"

#include <algorithm>
#include <set>

#include "common/clock.hpp"
#include "common/log.hpp"
#include "common/tunnel_names.hpp"
#include "dataplane/loop/worker.hpp"
#include "dataplane/tables/pair_table.hpp"

namespace dptun {

GatewayState::GatewayState(Dataplane& dp, SessionKeyManager& keys, Reclaimer& reclaimer)
    : dp_(dp),
      keys_(keys),
      reclaimer_(reclaimer),
      slot_used_(dp.tunnels.capacity(), false),
      ingress_(dp, reclaimer, [this](const Uuid& id) -> std::optional<std::pair<uint16_t, uint32_t>> {
        const TunnelRec* t = find_tunnel(id);
        if (!t) return std::nullopt;
        return std::make_pair(t->slot, t->generation);
      }) {}

GatewayState::~GatewayState() {
  for (auto& [index, s] : sessions_) {
    dp_.sessions.publish(index, nullptr);
    delete s;
  }
  for (uint16_t slot = 0; slot < dp_.tunnels.capacity(); ++slot) delete dp_.tunnels.publish(slot, nullptr);
  delete dp_.entries.exchange(nullptr);
  delete dp_.ingress.exchange(nullptr);
  delete dp_.pairs.exchange(nullptr);
}

GatewayState::TunnelRec* GatewayState::find_tunnel(const Uuid& id) {
  auto it = tunnels_.find(id.str());
  return it == tunnels_.end() ? nullptr : &it->second;
}

void GatewayState::publish_tunnel(TunnelRec& t) {
  auto* pool = new TunnelPool;
  pool->id = t.id;
  pool->name = t.name;
  pool->generation = t.generation;
  pool->from_config = t.from_config;
  for (uint32_t index : t.sessions) pool->sessions.push_back(sessions_.at(index));
  reclaimer_.retire(const_cast<TunnelPool*>(dp_.tunnels.publish(t.slot, pool)));
}

void GatewayState::publish_entries() {
  std::vector<EntryPoint> out;
  for (const EntrySpec& e : entries_) {
    EntryPoint p;
    if (e.route == EntryRoute::Fixed) {
      const TunnelRec* t = find_tunnel(e.tunnel);
      if (!t) continue;  // cannot happen: fixed entries go with their tunnel
      p.tunnel = t->slot;
      p.tunnel_generation = t->generation;
    }
    p.route = e.route;
    p.label = std::string(e.proto == 6 ? "tcp/" : "udp/") + std::to_string(e.port);
    p.proto = e.proto;
    p.port = e.port;
    p.listen = e.listen;
    p.target = e.target;
    p.keepalive = e.keepalive;
    p.udp_ttl_ns = e.udp_ttl_ns;
    out.push_back(std::move(p));
  }
  reclaimer_.retire(const_cast<EntryTable*>(dp_.entries.exchange(new EntryTable(std::move(out)))));
}

void GatewayState::set_pairs(std::vector<PairSpec> pairs) {
  auto* table = new PairTable(pairs);
  reclaimer_.retire(const_cast<PairTable*>(dp_.pairs.exchange(table, std::memory_order_acq_rel)));
  pairs_ = std::move(pairs);
}

bool GatewayState::set_tunnel(const TunnelSpec& spec, std::string& error) {
  if (TunnelRec* t = find_tunnel(spec.id)) {
    if (t->from_config && !spec.from_config) {
      error = "tunnel " + spec.id.str() + " comes from dpgw's config and cannot be changed at runtime";
      return false;
    }
    if (t->name != spec.name) {
      t->name = spec.name;
      publish_tunnel(*t);
    }
    return true;
  }
  for (const auto& [key, t] : tunnels_)
    if (tunnel_name_key(t.name) == tunnel_name_key(spec.name)) {  // names compare without regard to case
      error = "another tunnel is already named '" + spec.name + "'";
      return false;
    }
  auto free_slot = std::find(slot_used_.begin(), slot_used_.end(), false);
  if (free_slot == slot_used_.end()) {
    error = "no room for another tunnel (dpgw.max_tunnels = " + std::to_string(slot_used_.size()) + ")";
    return false;
  }
  *free_slot = true;
  TunnelRec t;
  t.id = spec.id;
  t.name = spec.name;
  t.slot = uint16_t(free_slot - slot_used_.begin());
  t.generation = next_generation_++;
  t.from_config = spec.from_config;
  TunnelRec& ref = tunnels_[spec.id.str()] = t;
  publish_tunnel(ref);
  ingress_.tunnels_changed();  // rules naming it lead somewhere now
  LOG_INFO("tunnel %s (%s) added", ref.name.c_str(), ref.id.str().c_str());
  return true;
}

bool GatewayState::remove_tunnel(const Uuid& id, std::string& error) {
  TunnelRec* t = find_tunnel(id);
  if (!t) {
    error = "no tunnel " + id.str();
    return false;
  }
  if (t->from_config) {
    error = "tunnel " + id.str() + " comes from dpgw's config and cannot be removed at runtime";
    return false;
  }
  const size_t before = entries_.size();
  entries_.erase(std::remove_if(entries_.begin(), entries_.end(), [&](const EntrySpec& e) { return e.tunnel == id; }),
                 entries_.end());
  if (entries_.size() != before) publish_entries();
  for (uint32_t index : std::vector<uint32_t>(t->sessions)) drop_session(index);
  for (uint32_t index : std::vector<uint32_t>(t->visitors)) drop_session(index);
  reclaimer_.retire(const_cast<TunnelPool*>(dp_.tunnels.publish(t->slot, nullptr)));
  slot_used_[t->slot] = false;
  ingress_.tunnels_changed();
  LOG_INFO("tunnel %s (%s) removed", t->name.c_str(), id.str().c_str());
  tunnels_.erase(id.str());
  return true;
}

bool GatewayState::add_session(const SessionSpec& spec, std::string& error) {
  if (spec.index == 0 || spec.index > SessionTable::kMaxIndex) {
    error = "session index must be 1..65535";
    return false;
  }
  if (sessions_.count(spec.index)) {
    error = "session " + std::to_string(spec.index) + " exists already";
    return false;
  }
  TunnelRec* t = find_tunnel(spec.tunnel);
  if (!t) {
    error = "no tunnel " + spec.tunnel.str();
    return false;
  }
  if (spec.base_secret.size() != kBaseSecretLen) {
    error = "a session needs a 32-byte secret";
    return false;
  }
  auto s = std::make_unique<TunnelSession>();
  s->index = spec.index;
  s->serial = next_session_serial_++;
  s->tunnel = t->slot;
  s->weight = spec.weight;
  s->rx_worker = uint16_t(spec.index % dp_.workers.size());
  s->base_secret = spec.base_secret;
  s->peer_clock_counters = spec.peer_clock_counters;
  s->from_config = spec.from_config;
  s->visitor = spec.visitor;
  s->local_port = dp_.cfg->tunnel_port;
  if (spec.quic) {
    s->quic = make_quic_session(*spec.quic, keys_.engine(), dp_.quic_hp.get(), error);
    if (!s->quic) {
      error = "session " + std::to_string(spec.index) + ": " + error;
      return false;
    }
    s->local_port = dp_.cfg->quic_port;
    s->quic->update_after_packets = dp_.cfg->quic_key_update_packets;
    s->tx_counter.store(spec.quic->first_tx_pn);
    s->endpoint.store(spec.quic->path);  // validated by the handshake; any other address is validated first
  }
  if (spec.masque) {
    // A MASQUE client: a visitor of the route's tunnel over the QUIC framing, its datagrams to the route's target;
    // or, with a request_id, one whose capsules dpctld carries (no QUIC connection, nothing from the network).
    const bool capsules = spec.masque->request_id != 0;
    auto m = std::make_unique<MasqueState>();
    m->stream_id = spec.masque->stream_id;
    m->target = spec.masque->target;
    m->request_id = spec.masque->request_id;
    // The packets' source (MasqueState::source): the client's validated path; a capsule client's address is dpctld's
    // knowledge, so its packets come from the gateway's first address and the session index as port (one flow per
    // session all the same: the index is part of every visitor flow's key).
    if (spec.quic)
      m->source = spec.quic->path;
    else if (capsules && !dp_.ports.empty())
      m->source = Endpoint{Ipv4{dp_.ports[0].address}, uint16_t(spec.index)};
    m->header_len = uint8_t(write_h3_datagram_header(m->header, m->stream_id, kUdpPayloadContextId));
    if (!spec.visitor || !m->header_len || !m->target.ip.is_v4() || !m->target.port || !m->source.ip.is_v4() ||
        !m->source.port || (capsules ? spec.quic.has_value() || m->stream_id != 0 : !spec.quic)) {
      error = "session " + std::to_string(spec.index) +
              ": a MASQUE session needs the visitor role, an IPv4 target, and a QUIC connection with a request "
              "stream or (capsules carried by dpctld) a request id without either";
      return false;
    }
    s->masque = std::move(m);
  }
  if (spec.endpoint) {
    s->endpoint.store(*spec.endpoint);
    s->configured_endpoint = true;
  }
  // A session's key outlives this process (static keys; dpctld pushes its sessions again after a restart):
  // our counter follows the wall clock, starting one epoch ahead of it (docs/protocol.md).
  if (!s->quic) s->tx_counter.store(realtime_ns() + kClockLeadNs);
  if (!keys_.maintain(*s, dp_.clock.now_ns(), realtime_ns())) {
    error = "cannot create keys for session " + std::to_string(spec.index);
    return false;
  }
  TunnelSession* raw = s.release();
  sessions_[spec.index] = raw;
  dp_.sessions.publish(spec.index, raw);
  if (spec.visitor) {
    t->visitors.push_back(spec.index);  // never part of the pool that carries the tunnel's flows
  } else {
    t->sessions.push_back(spec.index);
    publish_tunnel(*t);
  }
  return true;
}

void GatewayState::drop_session(uint32_t index) {
  auto it = sessions_.find(index);
  if (it == sessions_.end()) return;
  TunnelSession* s = it->second;
  for (auto& [key, t] : tunnels_) {
    std::erase(t.visitors, index);
    auto pos = std::find(t.sessions.begin(), t.sessions.end(), index);
    if (pos == t.sessions.end()) continue;
    t.sessions.erase(pos);
    publish_tunnel(t);
  }
  dp_.sessions.publish(index, nullptr);
  reclaimer_.retire(s);
  sessions_.erase(it);
  orphans_.erase(index);
}

bool GatewayState::remove_session(uint32_t index, std::string& error) {
  auto it = sessions_.find(index);
  if (it == sessions_.end()) {
    error = "no session " + std::to_string(index);
    return false;
  }
  if (it->second->from_config) {
    error = "session " + std::to_string(index) + " comes from dpgw's config and cannot be removed at runtime";
    return false;
  }
  drop_session(index);
  return true;
}

const char* GatewayState::reserved_udp_port(uint16_t port) const {
  if (port == dp_.cfg->tunnel_port) return "the tunnel port (dpgw.tunnel_port)";
  if (dp_.cfg->stun_port && port == dp_.cfg->stun_port) return "the STUN port (dpgw.stun_port)";
  return nullptr;
}

bool GatewayState::set_entry(const EntrySpec& spec, std::string& error) {
  if ((spec.proto != 6 && spec.proto != 17) || spec.port == 0) {
    error = "an entry point needs proto tcp or udp and a port";
    return false;
  }
  if (spec.route == EntryRoute::Fixed && !find_tunnel(spec.tunnel)) {
    error = "no tunnel " + spec.tunnel.str();
    return false;
  }
  if (const char* why = spec.proto == 17 ? reserved_udp_port(spec.port) : nullptr) {
    error = "UDP port " + std::to_string(spec.port) + " is " + why;
    return false;
  }
  if (spec.listen && std::none_of(dp_.ports.begin(), dp_.ports.end(),
                                  [&](const PortInfo& p) { return p.address == spec.listen->value; })) {
    error = "entry point " + std::to_string(spec.port) + ": " + spec.listen->str() + " is not an address of this gateway";
    return false;
  }
  auto it = std::find_if(entries_.begin(), entries_.end(),
                         [&](const EntrySpec& e) { return e.proto == spec.proto && e.port == spec.port; });
  if (it != entries_.end()) {
    if (it->from_config && !spec.from_config) {
      error = "entry point " + std::to_string(spec.port) + " comes from dpgw's config and cannot be changed at runtime";
      return false;
    }
    *it = spec;
  } else {
    entries_.push_back(spec);
  }
  publish_entries();
  const TunnelRec* t = spec.route == EntryRoute::Fixed ? find_tunnel(spec.tunnel) : nullptr;
  LOG_INFO("entry point %s/%u%s%s set: %s", spec.proto == 6 ? "tcp" : "udp", unsigned(spec.port),
           spec.listen ? " on " : "", spec.listen ? spec.listen->str().c_str() : "",
           t ? ("tunnel " + t->name + " -> " + spec.target.str()).c_str()
             : (std::string("routed by ") + entry_route_name(spec.route)).c_str());
  return true;
}

bool GatewayState::remove_entry(uint8_t proto, uint16_t port, std::string& error) {
  auto it = std::find_if(entries_.begin(), entries_.end(),
                         [&](const EntrySpec& e) { return e.proto == proto && e.port == port; });
  if (it == entries_.end()) {
    error = "no entry point " + std::string(proto == 6 ? "tcp/" : "udp/") + std::to_string(port);
    return false;
  }
  if (it->from_config) {
    error = "entry point comes from dpgw's config and cannot be removed at runtime";
    return false;
  }
  entries_.erase(it);
  publish_entries();
  LOG_INFO("entry point %s/%u removed", proto == 6 ? "tcp" : "udp", unsigned(port));
  return true;
}

bool GatewayState::sync(const std::vector<TunnelSpec>& tunnels, const std::vector<SessionSpec>& sessions,
                        const std::vector<EntrySpec>& entries, std::string& error) {
  // Validate references first, so a bad sync changes nothing.
  std::set<std::string> ids;
  for (const auto& t : tunnels) ids.insert(t.id.str());
  for (const auto& [key, t] : tunnels_)
    if (t.from_config) ids.insert(key);
  for (const auto& s : sessions)
    if (!ids.count(s.tunnel.str())) {
      error = "session " + std::to_string(s.index) + " names unknown tunnel " + s.tunnel.str();
      return false;
    }
  for (const auto& e : entries)
    if (e.route == EntryRoute::Fixed && !ids.count(e.tunnel.str())) {
      error = "entry point " + std::to_string(e.port) + " names unknown tunnel " + e.tunnel.str();
      return false;
    }

  // Entry points: replace dpctld's with the new set.
  std::vector<EntrySpec> next;
  for (const auto& e : entries_)
    if (e.from_config) next.push_back(e);
  for (const auto& e : entries) {
    bool taken = std::any_of(next.begin(), next.end(), [&](const EntrySpec& x) { return x.proto == e.proto && x.port == e.port; });
    if (e.listen && std::none_of(dp_.ports.begin(), dp_.ports.end(),
                                 [&](const PortInfo& p) { return p.address == e.listen->value; })) {
      LOG_WARN("sync: entry point %u: %s is not an address of this gateway; left out", unsigned(e.port),
               e.listen->str().c_str());
      continue;
    }
    if (const char* why = e.proto == 17 ? reserved_udp_port(e.port) : nullptr) {
      LOG_WARN("sync: entry point udp/%u is %s; left out", unsigned(e.port), why);
      continue;
    }
    if (!taken) next.push_back(e);
  }
  // Tunnels: add or rename, then drop dpctld's that are gone (with their sessions).
  for (const auto& t : tunnels) {
    std::string err;
    if (!set_tunnel(t, err)) LOG_WARN("sync: tunnel %s: %s", t.id.str().c_str(), err.c_str());
  }
  std::vector<Uuid> gone;
  for (const auto& kv : tunnels_) {
    const Uuid& id = kv.second.id;  // (no structured binding: clang 14 cannot capture one in a lambda)
    if (!kv.second.from_config && std::none_of(tunnels.begin(), tunnels.end(), [&](const TunnelSpec& x) { return x.id == id; }))
      gone.push_back(id);
  }
  entries_ = std::move(next);
  for (const Uuid& id : gone) {
    std::string err;
    remove_tunnel(id, err);
  }
  publish_entries();
  // Sessions: add the new ones; ones dpctld no longer lists become orphans (removed once quiet).
  std::set<uint32_t> listed;
  for (const auto& s : sessions) {
    listed.insert(s.index);
    orphans_.erase(s.index);
    if (auto it = sessions_.find(s.index); it != sessions_.end()) {
      const TunnelSession& have = *it->second;
      const TunnelRec* t = find_tunnel(s.tunnel);
      if (have.from_config) continue;  // add_session below says why it cannot be
      // The same index with other keys (another registration than the one dpgw holds): the controller's is the
      // session now, and the old keys must never be selected again.
      if (have.base_secret == s.base_secret && t && have.tunnel == t->slot && have.visitor == s.visitor &&
          bool(have.quic) == s.quic.has_value() && bool(have.masque) == s.masque.has_value() &&
          (!have.masque || (have.masque->request_id == s.masque->request_id && have.masque->target == s.masque->target)))
        continue;
      LOG_INFO("sync: session %u is another registration now; replacing it", s.index);
      drop_session(s.index);
    }
    if (s.quic) {
      // A QUIC session comes only with SessionAdd, at its hand-over: its packet numbers live only in the memory of
      // the dpgw it was handed to (docs/protocol.md "Key hand-over"), and one this dpgw does not hold was handed to
      // an earlier one, which may have used any of them under these keys. Not taken: its agent connects again
      // (dpctld drops the session when this dpgw's status does not list it).
      LOG_INFO("sync: session %u is a QUIC connection handed to an earlier dpgw; not taken (its agent connects again)",
               s.index);
      continue;
    }
    std::string err;
    if (!add_session(s, err)) LOG_WARN("sync: session %u: %s", s.index, err.c_str());
  }
  for (const auto& [index, s] : sessions_)
    if (!s->from_config && !listed.count(index)) orphans_[index] = true;
  return true;
}

bool GatewayState::apply_config(const GatewayConfig& cfg, std::string& error, std::vector<std::string>* changes) {
  auto note = [&](std::string line) {
    if (changes) changes->push_back(std::move(line));
  };
  // Check first, so a bad reload changes nothing: names must not clash with tunnels dpctld manages, and session
  // indexes must not be dpctld's.
  for (const TunnelConfig& tc : cfg.tunnels) {
    for (const auto& [key, t] : tunnels_)
      if (!t.from_config && (t.id == tc.id || tunnel_name_key(t.name) == tunnel_name_key(tc.name))) {
        error = "tunnel " + tc.name + " (" + tc.id.str() + ") is managed by dpctld already";
        return false;
      }
    for (const StaticPeerConfig& pc : tc.peers)
      if (auto it = sessions_.find(pc.index); it != sessions_.end() && !it->second->from_config) {
        error = "session index " + std::to_string(pc.index) + " is in use by a dpctld session";
        return false;
      }
  }
  for (const EntryPointConfig& ec : cfg.entry_points) {
    if (const char* why = ec.proto == 17 ? reserved_udp_port(ec.port) : nullptr) {
      error = "entry point udp/" + std::to_string(ec.port) + " is " + why;
      return false;
    }
    if (ec.listen && std::none_of(dp_.ports.begin(), dp_.ports.end(),
                                  [&](const PortInfo& p) { return p.address == ec.listen->value; })) {
      error = "entry point " + std::to_string(ec.port) + ": " + ec.listen->str() + " is not an address of this gateway";
      return false;
    }
  }
  // Static entry points that go, or change their tunnel: removed before their tunnels.
  std::vector<EntrySpec> wanted;
  for (const EntryPointConfig& ec : cfg.entry_points) {
    EntrySpec e;
    e.proto = ec.proto;
    e.port = ec.port;
    e.listen = ec.listen;
    e.tunnel = cfg.tunnels[ec.tunnel].id;
    e.target = ec.target;
    e.keepalive = ec.keepalive;
    e.udp_ttl_ns = ec.udp_ttl_ns;
    e.from_config = true;
    wanted.push_back(e);
  }
  auto same_entry = [](const EntrySpec& a, const EntrySpec& b) {
    return a.proto == b.proto && a.port == b.port && a.listen == b.listen && a.tunnel == b.tunnel &&
           a.target == b.target && a.keepalive == b.keepalive && a.udp_ttl_ns == b.udp_ttl_ns && a.route == b.route;
  };
  const size_t entries_before = entries_.size();
  std::erase_if(entries_, [&](const EntrySpec& e) {
    if (!e.from_config) return false;
    const bool keep = std::any_of(wanted.begin(), wanted.end(), [&](const EntrySpec& w) { return same_entry(w, e); });
    if (!keep) note("entry point " + std::string(e.proto == 6 ? "tcp/" : "udp/") + std::to_string(e.port) + " removed");
    return !keep;
  });
  bool entries_changed = entries_.size() != entries_before;
  // Tunnels: gone ones with their sessions; new or renamed ones.
  std::vector<Uuid> gone;
  for (const auto& kv : tunnels_) {
    const Uuid& id = kv.second.id;
    if (kv.second.from_config && std::none_of(cfg.tunnels.begin(), cfg.tunnels.end(), [&](const TunnelConfig& c) { return c.id == id; }))
      gone.push_back(id);
  }
  for (const Uuid& id : gone) {
    TunnelRec* t = find_tunnel(id);
    note("tunnel " + t->name + " removed");
    t->from_config = false;  // ours to remove now
    std::string err;
    remove_tunnel(id, err);
  }
  for (const TunnelConfig& tc : cfg.tunnels) {
    const TunnelRec* before = find_tunnel(tc.id);
    const std::string old_name = before ? before->name : "";
    if (!set_tunnel(TunnelSpec{tc.id, tc.name, true}, error)) return false;
    if (!before) note("tunnel " + tc.name + " added");
    else if (old_name != tc.name) note("tunnel " + old_name + " renamed " + tc.name);
    TunnelRec* t = find_tunnel(tc.id);
    // Peers: unchanged ones stay; changed or gone ones go; new ones come.
    for (uint32_t index : std::vector<uint32_t>(t->sessions)) {
      const TunnelSession& s = *sessions_.at(index);
      if (!s.from_config) continue;
      auto pc = std::find_if(tc.peers.begin(), tc.peers.end(), [&](const StaticPeerConfig& p) { return p.index == index; });
      const bool same = pc != tc.peers.end() && pc->psk == s.base_secret && pc->weight == s.weight &&
                        (pc->endpoint.has_value() == s.configured_endpoint) &&
                        (!pc->endpoint || *pc->endpoint == s.endpoint.load());
      if (same) continue;
      note("tunnel " + tc.name + " peer " + std::to_string(index) + (pc == tc.peers.end() ? " removed" : " changed"));
      drop_session(index);
    }
    for (const StaticPeerConfig& pc : tc.peers) {
      if (sessions_.count(pc.index)) continue;
      SessionSpec spec;
      spec.index = pc.index;
      spec.tunnel = tc.id;
      spec.weight = pc.weight;
      spec.base_secret = pc.psk;
      spec.peer_clock_counters = true;
      spec.endpoint = pc.endpoint;
      spec.from_config = true;
      if (!add_session(spec, error)) return false;
      if (before) note("tunnel " + tc.name + " peer " + std::to_string(pc.index) + " added");
    }
  }
  for (EntrySpec& w : wanted) {
    if (std::any_of(entries_.begin(), entries_.end(), [&](const EntrySpec& e) { return e.from_config && same_entry(e, w); }))
      continue;
    // A config entry point wins over dpctld's on the same port: the config is the operator's file.
    std::erase_if(entries_, [&](const EntrySpec& e) { return e.proto == w.proto && e.port == w.port; });
    if (!set_entry(w, error)) return false;
    entries_changed = true;
    note("entry point " + std::string(w.proto == 6 ? "tcp/" : "udp/") + std::to_string(w.port) + " set");
  }
  if (entries_changed) publish_entries();
  return true;
}

void GatewayState::maintain(uint64_t now_ns, uint64_t real_ns) {
  ingress_.tick();
  std::vector<uint32_t> quiet;
  for (auto& [index, s] : sessions_) {
    if (!keys_.maintain(*s, now_ns, real_ns)) LOG_ERROR("session %u: cannot install keys", index);
    std::string error;
    if (s->quic && !maintain_quic_keys(*s->quic, keys_.engine(), reclaimer_, now_ns, error))
      LOG_ERROR("session %u: %s", index, error.c_str());
    if (orphans_.count(index) && !session_live(*s, now_ns, dp_.cfg->session_timeout_ns)) quiet.push_back(index);
  }
  for (uint32_t index : quiet) {
    LOG_INFO("session %u: orphaned and quiet, removed", index);
    drop_session(index);
  }
}

}  // namespace dptun
