#include "control/direct_pairs.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <algorithm>

#include "common/clock.hpp"
#include "common/log.hpp"
#include "proto/snat_codec.hpp"
#include "proto/stun.hpp"

namespace dptun {

DirectPairs::DirectPairs() : block_used_(SnatCodec::kPairBlocks) {}

std::optional<uint16_t> DirectPairs::block_for(uint32_t visitor) {
  if (auto it = blocks_.find(visitor); it != blocks_.end()) return it->second;
  for (uint32_t i = 0; i < SnatCodec::kPairBlocks; ++i) {
    const uint32_t b = (next_block_ + i) % SnatCodec::kPairBlocks;
    if (block_used_[b]) continue;
    block_used_[b] = true;
    next_block_ = b + 1;  // (a block just freed is the last to be given again)
    blocks_[visitor] = uint16_t(b);
    return uint16_t(b);
  }
  return std::nullopt;
}

std::vector<PairSpec> DirectPairs::relay_specs() const {
  std::vector<PairSpec> out;
  for (const auto& [id, p] : pairs_)
    if (p.data) out.push_back(PairSpec{id, p.visitor, p.agent});
  return out;
}

bool DirectPairs::can_pair(const SessionRecord& s) {
  return s.channel != 0 && !s.masque && !s.quic && s.candidates && !s.candidates->candidates.empty();
}

uint32_t DirectPairs::new_id() {
  for (;;) {
    uint32_t id = 0;
    if (RAND_bytes(reinterpret_cast<uint8_t*>(&id), sizeof id) != 1) continue;
    // (never the STUN magic cookie: a pair frame's receiver index lies where a STUN message has it, and the direct
    // path's socket tells them apart by it)
    if (id != 0 && id != kStunMagicCookie && !pairs_.count(id)) return id;
  }
}

void DirectPairs::end(std::map<uint32_t, Pair>::iterator it, const std::map<uint32_t, SessionRecord>& sessions,
                      std::vector<Message>& out) {
  const Pair& p = it->second;
  for (const uint32_t end : {p.visitor, p.agent})
    if (auto s = sessions.find(end); s != sessions.end() && s->second.channel)
      out.push_back({end, peer_gone_message(p.id)});
  by_visitor_.erase(p.visitor);
  pairs_.erase(it);
  stats_.ended++;
  generation_++;
}

std::vector<DirectPairs::Message> DirectPairs::reconcile(const std::map<uint32_t, SessionRecord>& sessions,
                                                         const TargetResolver& resolve, uint64_t rules_gen) {
  std::vector<Message> out;
  const bool rules_changed = rules_gen != rules_gen_;
  rules_gen_ = rules_gen;
  // A visitor's block of flow tags goes with its session.
  for (auto it = blocks_.begin(); it != blocks_.end();) {
    if (sessions.count(it->first)) {
      ++it;
      continue;
    }
    block_used_[it->second] = false;
    it = blocks_.erase(it);
  }
  // Pairs whose ends can no longer pair, or whose candidates changed, end.
  for (auto it = pairs_.begin(); it != pairs_.end();) {
    const Pair& p = it->second;
    const auto v = sessions.find(p.visitor), a = sessions.find(p.agent);
    bool keep = v != sessions.end() && a != sessions.end() && can_pair(v->second) && can_pair(a->second) &&
                v->second.candidates_gen == p.visitor_gen && a->second.candidates_gen == p.agent_gen &&
                v->second.tunnel == a->second.tunnel;
    // A rule changed or went: the pair's data must follow it (a new pairing, with the new target or none).
    if (keep && rules_changed) {
      std::string why;
      const std::optional<Endpoint> target =
          v->second.pair_data && a->second.pair_data ? resolve(v->second, why) : std::nullopt;
      keep = target == p.resolved;
    }
    auto next = std::next(it);
    if (!keep) end(it, sessions, out);
    it = next;
  }
  // Per tunnel, the agents that can pair, best first: the highest weight, then the lowest index.
  std::map<std::string, std::vector<const SessionRecord*>> agents;
  for (const auto& [index, a] : sessions)
    if (!a.visitor && can_pair(a)) agents[a.tunnel.str()].push_back(&a);
  for (auto& [tunnel, list] : agents)
    std::stable_sort(list.begin(), list.end(),
                     [](const SessionRecord* x, const SessionRecord* y) { return x->weight > y->weight; });
  // How many pairs each agent has now.
  std::map<uint32_t, size_t> load;
  for (const auto& [id, p] : pairs_) load[p.agent]++;
  for (const auto& [index, v] : sessions) {
    if (!v.visitor || !can_pair(v) || by_visitor_.count(index)) continue;
    auto t = agents.find(v.tunnel.str());
    if (t == agents.end()) continue;
    const SessionRecord* best = nullptr;
    for (const SessionRecord* a : t->second)
      if (load[a->index] < kMaxPairsPerAgent) {
        best = a;
        break;
      }
    if (!best) continue;
    Pair p;
    p.id = new_id();
    p.visitor = index;
    p.agent = best->index;
    p.visitor_gen = v.candidates_gen;
    p.agent_gen = best->candidates_gen;
    p.made_unix_ns = realtime_ns();
    PeerOffer offer;
    offer.pair = p.id;
    if (RAND_bytes(offer.secret.data(), int(offer.secret.size())) != 1) continue;  // tried again next time
    // The visitor's offer names the agent, and the other way round.
    // The visitor's flows go in pair frames when its service resolves to a target, and both ends can carry them.
    if (!v.pair_data || !best->pair_data)
      p.no_data = std::string(v.pair_data ? "the agent" : "the visitor") + "'s dpagent carries no pair data";
    else
      p.resolved = resolve(v, p.no_data);
    if (p.resolved) {
      if (std::optional<uint16_t> block = block_for(index))
        p.data = PairDataOffer{*block, *p.resolved};
      else
        p.no_data = "every block of flow tags is taken";
    }
    offer.controlling = true;
    offer.session = best->index;
    offer.name = best->agent_name;
    offer.peer = *best->candidates;
    offer.data = p.data;
    out.push_back({index, peer_message(offer)});
    offer.controlling = false;
    offer.session = index;
    offer.name = v.agent_name;
    offer.peer = *v.candidates;
    out.push_back({best->index, peer_message(offer)});
    OPENSSL_cleanse(offer.secret.data(), offer.secret.size());
    LOG_INFO("direct paths: pair %08x: visitor session %u (%s) with agent session %u (%s)", p.id, index,
             v.agent_name.c_str(), best->index, best->agent_name.c_str());
    if (!p.data) LOG_INFO("direct paths: pair %08x carries no data: %s", p.id, p.no_data.c_str());
    load[best->index]++;
    by_visitor_[index] = p.id;
    pairs_[p.id] = p;
    stats_.made++;
    generation_++;
  }
  return out;
}

bool DirectPairs::on_path(uint32_t session, const PathReport& r) {
  auto it = pairs_.find(r.pair);
  if (it == pairs_.end() || (it->second.visitor != session && it->second.agent != session)) {
    stats_.path_reports_rejected++;
    return false;
  }
  stats_.path_reports++;
  Pair& p = it->second;
  const bool was_direct = p.direct();
  (session == p.visitor ? p.visitor_path : p.agent_path) = r;
  if (p.direct() != was_direct) (p.direct() ? stats_.became_direct : stats_.fallbacks)++;
  if (p.direct() != was_direct)
    LOG_INFO("direct paths: pair %08x (sessions %u, %u) is %s", p.id, p.visitor, p.agent,
             p.direct() ? "direct" : "relayed again");
  return true;
}

std::map<uint32_t, std::vector<const DirectPairs::Pair*>> DirectPairs::by_session() const {
  std::map<uint32_t, std::vector<const Pair*>> out;
  for (const auto& [id, p] : pairs_) {
    out[p.visitor].push_back(&p);
    out[p.agent].push_back(&p);
  }
  return out;
}

}  // namespace dptun
