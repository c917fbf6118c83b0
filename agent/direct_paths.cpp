#include "agent/direct_paths.hpp"

#include <openssl/crypto.h>
#include <sys/random.h>

#include <algorithm>
#include <cstdio>

#include "common/bytes.hpp"
#include "common/json_writer.hpp"
#include "common/log.hpp"

namespace dptun {

DirectPaths::Pair::~Pair() { OPENSSL_cleanse(key.data(), key.size()); }

DirectPaths::DirectPaths(Send send, Report report) : send_(std::move(send)), report_(std::move(report)) {}

void DirectPaths::offer(const PeerOffer& o, uint64_t now_ns) {
  if (!pairs_.count(o.pair) && pairs_.size() >= kMaxPairs) {
    stats_.pairs_refused++;
    report_(PathReport{o.pair, PathState::Relayed, PathReason::TooManyPairs, std::nullopt, 0});
    return;
  }
  Pair& p = pairs_[o.pair];
  p = Pair{};
  p.id = o.pair;
  p.controlling = o.controlling;
  if (!derive_direct_check_key(o.secret, p.key)) {
    LOG_ERROR("direct paths: pair %08x: cannot derive its key (OpenSSL); the pair stays relayed", o.pair);
    pairs_.erase(o.pair);
    return;
  }
  p.peer_session = o.session;
  p.peer_name = o.name;
  // Server reflexive candidates first: behind NATs they are what works; host ones for peers on the same network.
  for (CandidateType t : {CandidateType::ServerReflexive, CandidateType::Host})
    for (const Candidate& c : o.peer.candidates)
      if (c.type == t && p.remotes.size() < kMaxRemotes && candidate_address_ok(c.address)) p.remotes.push_back(c.address);
  LOG_INFO("direct paths: pair %08x with session %u (%s, NAT %s): checking %zu candidate%s", p.id, p.peer_session,
           json_escape(p.peer_name).c_str(), nat_mapping_name(o.peer.nat), p.remotes.size(), p.remotes.size() == 1 ? "" : "s");
  set_state(p, PathState::Checking, PathReason::None, now_ns);
}

void DirectPaths::gone(uint32_t pair) {
  if (pairs_.erase(pair)) LOG_INFO("direct paths: pair %08x ended by dpctld", pair);
}

void DirectPaths::clear() { pairs_.clear(); }

void DirectPaths::set_state(Pair& p, PathState s, PathReason why, uint64_t now_ns) {
  p.state = s;
  p.reason = why;
  p.phase_ns = now_ns;
  switch (s) {
    case PathState::Checking:
      p.selected.reset();
      p.next_check_ns = now_ns;
      break;
    case PathState::Direct:
      p.next_check_ns = now_ns + kConsentIntervalNs;
      stats_.directs++;
      LOG_INFO("direct paths: pair %08x: direct to %s (%.2f ms)", p.id, p.selected->str().c_str(), double(p.rtt_ns) / 1e6);
      break;
    case PathState::Relayed:
      p.next_check_ns = now_ns + (why == PathReason::ConsentLost ? kRecheckAfterLossNs : kRecheckAfterFailureNs);
      if (why == PathReason::ConsentLost) {
        stats_.fallbacks++;
        LOG_WARN("direct paths: pair %08x: %s stopped answering for %.0f s: relayed, checking again in %.0f s", p.id,
                 p.selected ? p.selected->str().c_str() : "?", double(kConsentTimeoutNs) / 1e9,
                 double(kRecheckAfterLossNs) / 1e9);
      } else {
        stats_.unanswered++;
        LOG_INFO("direct paths: pair %08x: no answer from %zu candidate%s in %.0f s: relayed, checking again in %.0f s",
                 p.id, p.remotes.size(), p.remotes.size() == 1 ? "" : "s", double(kCheckWindowNs) / 1e9,
                 double(kRecheckAfterFailureNs) / 1e9);
      }
      p.selected.reset();
      break;
    case PathState::Count: break;
  }
  report_(PathReport{p.id, s, why, s == PathState::Direct ? p.selected : std::nullopt, p.rtt_ns / 1000});
}

void DirectPaths::send_check(Pair& p, Endpoint to, uint64_t now_ns) {
  Check& c = p.pending[p.pending_next++ % kPending];
  store_be32(c.id.data(), p.id);
  if (getrandom(c.id.data() + 4, c.id.size() - 4, 0) != ssize_t(c.id.size() - 4)) return;
  c.to = to;
  c.sent_ns = now_ns;
  uint8_t msg[kStunCheckRequestLen];
  const size_t n = write_stun_check_request(msg, c.id, p.id, role(p), p.key);
  if (!n) return;
  if (send_(to, {msg, n}))
    stats_.checks_tx++;
  else
    stats_.send_errors++;
}

void DirectPaths::tick(uint64_t now_ns) {
  size_t checking = 0;
  for (const auto& [id, p] : pairs_) checking += p.state == PathState::Checking;
  const uint64_t interval = std::max<uint64_t>(kCheckIntervalNs, checking * (1'000'000'000ull / kChecksPerSecond));
  for (auto& [id, p] : pairs_) {
    switch (p.state) {
      case PathState::Checking:
        if (now_ns - p.phase_ns >= kCheckWindowNs) {
          set_state(p, PathState::Relayed, PathReason::ChecksUnanswered, now_ns);
          break;
        }
        // One check per interval, to each candidate in turn (the tick is 100 ms: at most one per tick).
        if (!p.remotes.empty() && now_ns >= p.next_check_ns) {
          send_check(p, p.remotes[p.next_remote++ % p.remotes.size()], now_ns);
          p.next_check_ns = now_ns + interval;
        }
        break;
      case PathState::Direct:
        if (now_ns - p.last_answer_ns > kConsentTimeoutNs) {
          set_state(p, PathState::Relayed, PathReason::ConsentLost, now_ns);
          break;
        }
        if (now_ns >= p.next_check_ns) {
          send_check(p, *p.selected, now_ns);
          p.next_check_ns = now_ns + kConsentIntervalNs;
        }
        break;
      case PathState::Relayed:
        if (now_ns >= p.next_check_ns) set_state(p, PathState::Checking, PathReason::None, now_ns);
        break;
      case PathState::Count: break;
    }
  }
}

void DirectPaths::datagram(Endpoint from, std::span<const uint8_t> data, uint64_t now_ns) {
  const std::optional<StunCheck> c = parse_stun_check(data);
  if (!c) {
    stats_.not_checks++;
    return;
  }
  if (c->request)
    request(*c, from, data, now_ns);
  else
    response(*c, from, data, now_ns);
}

void DirectPaths::request(const StunCheck& c, Endpoint from, std::span<const uint8_t> data, uint64_t now_ns) {
  auto it = pairs_.find(c.pair);
  if (it == pairs_.end()) {
    stats_.unknown_pair++;
    return;
  }
  Pair& p = it->second;
  if (c.role == role(p)) {
    stats_.reflected++;
    return;
  }
  if (!stun_check_authentic(data, c, p.key)) {
    stats_.auth_failures++;
    return;
  }
  stats_.checks_rx++;
  uint8_t msg[kStunCheckResponseLen];
  const size_t n = write_stun_check_response(msg, c.id, from.ip.v4(), from.port, p.key);
  if (n && send_(from, {msg, n}))
    stats_.answers_tx++;
  else
    stats_.send_errors++;
  // A peer-reflexive address (RFC 8445 7.3.1.3): the peer's NAT mapping towards us, which no STUN server saw. Checked
  // at once (a triggered check): behind an endpoint-dependent NAT it is the only address that can work.
  if (p.state != PathState::Direct && candidate_address_ok(from) &&
      std::find(p.remotes.begin(), p.remotes.end(), from) == p.remotes.end() && p.remotes.size() < kMaxRemotes) {
    p.remotes.push_back(from);
    if (p.state == PathState::Checking) send_check(p, from, now_ns);
  }
}

void DirectPaths::response(const StunCheck& c, Endpoint from, std::span<const uint8_t> data, uint64_t now_ns) {
  auto it = pairs_.find(load_be32(c.id.data()));
  Check* check = nullptr;
  if (it != pairs_.end())
    for (Check& k : it->second.pending)
      if (k.sent_ns && k.id == c.id) check = &k;
  // No check of ours, answered already, too old to say anything of the path now, or answered from elsewhere than
  // where it went.
  if (!check || now_ns - check->sent_ns > kConsentTimeoutNs || check->to != from) {
    stats_.unknown_pair++;
    return;
  }
  Pair& p = it->second;
  if (!stun_check_authentic(data, c, p.key)) {
    stats_.auth_failures++;
    return;
  }
  stats_.answers_rx++;
  const uint64_t sent_ns = check->sent_ns;
  check->sent_ns = 0;  // one answer per check: a copy replayed later keeps nothing alive
  if (p.state != PathState::Direct) {
    p.selected = from;
    p.last_answer_ns = now_ns;
    p.rtt_ns = now_ns - sent_ns;
    set_state(p, PathState::Direct, PathReason::None, now_ns);
  } else if (from == *p.selected) {  // (a late answer from another candidate keeps nothing alive)
    p.last_answer_ns = now_ns;
    p.rtt_ns = now_ns - sent_ns;
  }
}

std::string DirectPaths::stats_json() const {
  JsonWriter j;
  j.begin_object()
      .field("pairs", uint64_t(pairs_.size()))
      .field("checks_tx", stats_.checks_tx)
      .field("checks_rx", stats_.checks_rx)
      .field("answers_tx", stats_.answers_tx)
      .field("answers_rx", stats_.answers_rx)
      .field("auth_failures", stats_.auth_failures)
      .field("unknown_pair", stats_.unknown_pair)
      .field("reflected", stats_.reflected)
      .field("not_checks", stats_.not_checks)
      .field("send_errors", stats_.send_errors)
      .field("directs", stats_.directs)
      .field("unanswered", stats_.unanswered)
      .field("fallbacks", stats_.fallbacks)
      .field("pairs_refused", stats_.pairs_refused);
  j.key("paths").begin_array();
  for (const auto& [pid, p] : pairs_) {
    j.begin_object().field("pair", pair_id_text(pid)).field("peer", uint64_t(p.peer_session));
    j.field("state", path_state_name(p.state));
    if (p.state == PathState::Relayed) j.field("reason", path_reason_name(p.reason));
    if (p.selected) j.field("remote", p.selected->str()).field("rtt_us", p.rtt_ns / 1000);
    j.end_object();
  }
  j.end_array().end_object();
  return j.str();
}

}  // namespace dptun
