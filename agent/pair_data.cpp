#include "agent/pair_data.hpp"

#include <openssl/crypto.h>

#include <algorithm>

#include "common/json_writer.hpp"
#include "common/log.hpp"
#include "crypto/key_schedule.hpp"
#include "packet/ipv4_rewrite.hpp"
#include "proto/relay_frame.hpp"
#include "proto/snat_codec.hpp"

namespace dptun {

PairData::PairData(AeadEngine& engine, uint8_t key_len, uint64_t rekey_interval_ns, SendDirect direct,
                   SendRelay relay, DirectRemote remote, unsigned engine_slot)
    : engine_(engine),
      engine_slot_(engine_slot),
      key_len_(key_len),
      rekey_interval_ns_(rekey_interval_ns),
      direct_(std::move(direct)),
      relay_(std::move(relay)),
      remote_(std::move(remote)),
      block_pair_(SnatCodec::kPairBlocks, 0) {}

void PairData::offer(const PeerOffer& o) {
  gone(o.pair);
  if (!o.data) return;
  std::array<uint8_t, kBaseSecretLen> base{};
  if (!derive_direct_data_secret(o.secret, base)) {
    LOG_ERROR("direct paths: pair %08x: cannot derive its data key: its flows go through dpgw", o.pair);
    return;
  }
  Pair p;
  p.id = o.pair;
  p.controlling = o.controlling;
  p.block = o.data->block;
  p.target = o.data->target;
  p.session = std::make_unique<AgentSession>(o.pair, std::vector<uint8_t>(base.begin(), base.end()), key_len_,
                                             rekey_interval_ns_, engine_, AgentSession::CounterMode::FromZero,
                                             o.controlling ? AgentSession::End::Gateway : AgentSession::End::Agent);
  OPENSSL_cleanse(base.data(), base.size());
  p.session->use_engine_threads(engine_slot_, engine_slot_);
  stats_.pairs++;
  LOG_INFO("direct paths: pair %08x carries data (block %u%s%s)", p.id, unsigned(p.block),
           p.target ? ", target " : "", p.target ? p.target->str().c_str() : "");
  if (!p.controlling) block_pair_[p.block] = p.id;
  pairs_.emplace(p.id, std::move(p));
}

void PairData::gone(uint32_t pair) {
  auto it = pairs_.find(pair);
  if (it == pairs_.end()) return;
  if (!it->second.controlling && block_pair_[it->second.block] == pair) block_pair_[it->second.block] = 0;
  pairs_.erase(it);
}

void PairData::clear() {
  pairs_.clear();
  std::fill(block_pair_.begin(), block_pair_.end(), 0);
}

PairData::Pair* PairData::by_id(uint32_t id) {
  auto it = pairs_.find(id);
  return it == pairs_.end() ? nullptr : &it->second;
}

PairData::Pair* PairData::by_block(uint16_t block) {
  if (block >= block_pair_.size() || !block_pair_[block]) return nullptr;
  return by_id(block_pair_[block]);
}

PairData::Pair* PairData::visitor_pair() {
  for (auto& [id, p] : pairs_)
    if (p.controlling) return &p;
  return nullptr;
}

void PairData::send(Pair& p, uint8_t* frame, size_t plaintext_len, uint64_t now_ns) {
  const RelayCodec& codec = p.session->codec();
  const uint32_t encrypted = codec.layout().prefix_len + uint32_t(plaintext_len);
  if (!p.session->seal(FrameType::Data, kFlagPair, frame, encrypted, now_ns)) {
    stats_.seal_errors++;
    return;
  }
  const std::span<const uint8_t> bytes{frame, codec.layout().frame_len(encrypted)};
  if (const std::optional<Endpoint> to = remote_(p.id)) {
    if (!direct_(*to, bytes)) {
      stats_.send_errors++;
      return;
    }
    stats_.frames_tx_direct++;
    stats_.bytes_tx_direct += bytes.size();
    return;
  }
  if (!relay_(bytes)) {
    stats_.send_errors++;
    return;
  }
  stats_.frames_tx_relayed++;
  stats_.bytes_tx_relayed += bytes.size();
}

PairData::Pair* PairData::open(std::span<uint8_t> frame, bool relayed, std::span<uint8_t>& plaintext,
                               uint64_t now_ns) {
  uint32_t index = 0;
  const RelayCodec codec{};
  if (!codec.receiver_of(frame, index)) {
    stats_.malformed++;
    return nullptr;
  }
  Pair* p = by_id(index);
  if (!p) {
    stats_.unknown_pair++;
    return nullptr;
  }
  FrameMeta meta;
  switch (p->session->open(frame, meta, now_ns)) {
    case AgentSession::OpenResult::Ok: break;
    case AgentSession::OpenResult::Replay: stats_.replay++; return nullptr;
    case AgentSession::OpenResult::AuthFail:
    case AgentSession::OpenResult::NoKey: stats_.auth_fail++; return nullptr;
    default: stats_.malformed++; return nullptr;
  }
  if (meta.type != FrameType::Data || !(meta.flags & kFlagPair)) {
    stats_.malformed++;
    return nullptr;
  }
  (relayed ? stats_.frames_rx_relayed : stats_.frames_rx_direct)++;
  (relayed ? stats_.bytes_rx_relayed : stats_.bytes_rx_direct) += frame.size();
  const FrameLayout& l = codec.layout();
  plaintext = frame.subspan(l.inner_offset(), frame.size() - l.inner_offset() - l.tag_len);
  return p;
}

bool PairData::address_to_target(const Pair& p, uint8_t* pkt, const PacketInfo& pi, Ipv4Prefix own_net) {
  if (!p.target || own_net.contains(Ipv4{p.target->ip.v4()})) {
    stats_.bad_target++;
    return false;
  }
  const Endpoint& t = *p.target;
  ipv4_rewrite_dst(pkt, pkt + pi.l4_offset, pi.l4_proto, t.ip.v4(), t.port ? t.port : pi.dst_port);
  return true;
}

std::string PairData::stats_json() const {
  JsonWriter j;
  j.begin_object()
      .field("pairs", uint64_t(pairs_.size()))
      .field("pairings", stats_.pairs.get())
      .field("frames_tx_direct", stats_.frames_tx_direct.get())
      .field("frames_tx_relayed", stats_.frames_tx_relayed.get())
      .field("frames_rx_direct", stats_.frames_rx_direct.get())
      .field("frames_rx_relayed", stats_.frames_rx_relayed.get())
      .field("bytes_tx_direct", stats_.bytes_tx_direct.get())
      .field("bytes_tx_relayed", stats_.bytes_tx_relayed.get())
      .field("bytes_rx_direct", stats_.bytes_rx_direct.get())
      .field("bytes_rx_relayed", stats_.bytes_rx_relayed.get())
      .field("send_errors", stats_.send_errors.get())
      .field("seal_errors", stats_.seal_errors.get())
      .field("unknown_pair", stats_.unknown_pair.get())
      .field("auth_fail", stats_.auth_fail.get())
      .field("replay", stats_.replay.get())
      .field("malformed", stats_.malformed.get())
      .field("bad_tag", stats_.bad_tag.get())
      .field("bad_target", stats_.bad_target.get())
      .field("no_pair", stats_.no_pair.get())
      .field("no_flow", stats_.no_flow.get())
      .end_object();
  return j.str();
}

}  // namespace dptun
