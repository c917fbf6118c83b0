#include "dataplane/tables/quic_session.hpp"

#include <openssl/crypto.h>

#include <algorithm>

namespace dptun {

namespace {

void wipe(std::vector<uint8_t>& v) {
  if (!v.empty()) OPENSSL_cleanse(v.data(), v.size());
}

// Generation `g`'s keys from its two traffic secrets; nullptr and `error` when a key cannot be made.
std::unique_ptr<QuicKeyGeneration> make_generation(uint64_t g, QuicCipher cipher, std::span<const uint8_t> rx_secret,
                                                   std::span<const uint8_t> tx_secret, uint32_t tx_header_len,
                                                   AeadEngine& engine, std::string& error) {
  QuicKdf kdf;
  QuicPacketKeys rx, tx;
  if (!kdf.ok() || !kdf.packet_keys(cipher, rx_secret, rx) || !kdf.packet_keys(cipher, tx_secret, tx)) {
    error = "QUIC keys cannot be derived from the session's secrets (" + std::string(quic_cipher_name(cipher)) + ")";
    return nullptr;
  }
  auto k = std::make_unique<QuicKeyGeneration>();
  k->generation = g;
  k->rx_iv = rx.iv;
  for (uint32_t pn_len = 1; pn_len <= 4; ++pn_len) {
    EpochCipher& c = k->rx[pn_len - 1];
    c.epoch = g;
    c.aead = engine.make_key(rx.key_bytes(), AeadDirection::Decrypt, uint32_t(kQuicPnOffset + pn_len));
    if (!c.aead) {
      error = std::string("the AEAD engine cannot make a QUIC receive key (") + engine.name() + ")";
      return nullptr;
    }
  }
  k->tx_iv = tx.iv;
  k->tx.epoch = g;
  k->tx.aead = engine.make_key(tx.key_bytes(), AeadDirection::Encrypt, tx_header_len);
  if (!k->tx.aead) {
    error = std::string("the AEAD engine cannot make a QUIC transmit key (") + engine.name() + ")";
    return nullptr;
  }
  return k;
}

// Moves the control lcore's secrets one generation on ("quic ku", RFC 9001 6.1).
bool next_secrets(QuicSessionState& q, std::string& error) {
  QuicKdf kdf;
  std::vector<uint8_t> rx(q.ctl_rx_secret.size()), tx(q.ctl_tx_secret.size());
  if (!kdf.ok() || !kdf.next_secret(q.cipher, q.ctl_rx_secret, rx) || !kdf.next_secret(q.cipher, q.ctl_tx_secret, tx)) {
    wipe(rx);
    wipe(tx);
    error = "the next QUIC key phase's secrets cannot be derived";
    return false;
  }
  wipe(q.ctl_rx_secret);
  wipe(q.ctl_tx_secret);
  q.ctl_rx_secret = std::move(rx);
  q.ctl_tx_secret = std::move(tx);
  ++q.ctl_secrets_generation;
  return true;
}

}  // namespace

QuicSessionState::~QuicSessionState() {
  for (auto& g : gens) delete g.load(std::memory_order_relaxed);
  wipe(ctl_rx_secret);
  wipe(ctl_tx_secret);
}

std::unique_ptr<QuicSessionState> make_quic_session(const QuicSessionSpec& spec, AeadEngine& engine,
                                                    const IpsecMbHeaderProtection* hp, std::string& error) {
  QuicKdf kdf;
  QuicPacketKeys rx, tx;
  if (!kdf.ok() || !kdf.packet_keys(spec.cipher, spec.rx_secret, rx) || !kdf.packet_keys(spec.cipher, spec.tx_secret, tx)) {
    error = "QUIC keys cannot be derived from the session's secrets (" + std::string(quic_cipher_name(spec.cipher)) + ")";
    return nullptr;
  }
  if (spec.cipher == QuicCipher::ChaCha20Poly1305) {
    error = "the QUIC fast path has AES-GCM engines only: TLS_CHACHA20_POLY1305_SHA256 is not offered";
    return nullptr;
  }
  if (!hp) {
    error = "the QUIC fast path needs ipsec-mb's AES for header protection, which did not start (see the log)";
    return nullptr;
  }
  if (spec.first_tx_pn >= kQuicTxPnLimit) {
    error = "the QUIC session's first packet number is beyond what dpgw sends (2^47)";
    return nullptr;
  }
  if (spec.cid_tails.empty() || spec.cid_tails.size() > kQuicMaxRxCids) {
    error = "a QUIC session needs 1 to " + std::to_string(kQuicMaxRxCids) + " connection ID tails";
    return nullptr;
  }
  QuicDatagramCodec::Config c;
  c.rx_cid_tails = spec.cid_tails;
  c.tx_dcid = spec.peer_cid;  // the agent's connection ID, as it issued it
  c.hp_cipher = quic_hp_cipher(spec.cipher);
  c.rx_hp = rx.hp_bytes();
  c.tx_hp = tx.hp_bytes();
  c.tx_pn_len = kQuicTxPnLen;
  auto s = std::make_unique<QuicSessionState>(c);
  if (!s->codec.ok() || !hp->make_key(c.hp_cipher, tx.hp_bytes(), s->tx_hp)) {
    error = "QUIC header protection cannot be set up";
    return nullptr;
  }
  // What the agent takes (RFC 9000 18.2, RFC 9221 3): the UDP payload around the inner packet, and the DATAGRAM
  // frame (dpgw's: the type byte 0x30, then the inner header and packet).
  const uint64_t agent_max =
      quic_peer_max_packet(s->codec.layout(), spec.max_udp_payload_size, spec.max_datagram_frame_size);
  if (agent_max < kQuicMinPeerPacket) {
    error = "the agent's transport parameters (max_udp_payload_size " + std::to_string(spec.max_udp_payload_size) +
            ", max_datagram_frame_size " + std::to_string(spec.max_datagram_frame_size) + ") leave room for inner " +
            "packets of " + std::to_string(agent_max) + " bytes; a QUIC tunnel needs " +
            std::to_string(kQuicMinPeerPacket);
    return nullptr;
  }
  s->agent_max_packet = uint32_t(std::min<uint64_t>(agent_max, UINT32_MAX));
  s->cipher = spec.cipher;
  s->peer_cid = spec.peer_cid;
  s->tx_first_pn = spec.first_tx_pn;
  s->ctl_rx_secret = spec.rx_secret;
  s->ctl_tx_secret = spec.tx_secret;
  auto g0 = make_generation(0, spec.cipher, s->ctl_rx_secret, s->ctl_tx_secret, s->codec.layout().header_len, engine,
                            error);
  if (!g0) return nullptr;
  s->gens[0].store(g0.release(), std::memory_order_relaxed);
  // Generation 1 from the start: the agent may update its keys with its first packets to dpgw.
  if (!next_secrets(*s, error)) return nullptr;
  auto g1 = make_generation(1, spec.cipher, s->ctl_rx_secret, s->ctl_tx_secret, s->codec.layout().header_len, engine,
                            error);
  if (!g1) return nullptr;
  s->gens[1].store(g1.release(), std::memory_order_relaxed);
  return s;
}

bool maintain_quic_keys(QuicSessionState& q, AeadEngine& engine, Reclaimer& reclaimer, uint64_t now_ns,
                        std::string& error, uint64_t keep_old_ns) {
  const uint64_t g = q.rx_generation.load(std::memory_order_acquire);
  if (g != q.ctl_rx_generation) {
    q.ctl_rx_generation = g;
    q.ctl_rx_since_ns = now_ns;
  }
  // Older than g - 1, and g - 1 once its time is up: retired (slot g + 2 and g - 1: the slots of g + 2 and g - 2).
  for (uint32_t k = 0; k < QuicSessionState::kGenSlots; ++k) {
    QuicKeyGeneration* have = q.gens[k].load(std::memory_order_relaxed);
    if (!have || have->generation >= g) continue;
    if (have->generation + 1 == g && now_ns - q.ctl_rx_since_ns < keep_old_ns) continue;
    reclaimer.retire(q.gens[k].exchange(nullptr, std::memory_order_acq_rel));
  }
  // g + 1 ready for the agent's next update (and dpgw's own); g itself (made as g + 1 before the RX worker moved).
  for (uint64_t want = g; want <= g + 1; ++want) {
    if (q.generation(want)) continue;
    while (q.ctl_secrets_generation < want)
      if (!next_secrets(q, error)) return false;
    if (q.ctl_secrets_generation != want) {  // (the secrets are ahead: cannot happen, generations only grow by one)
      error = "QUIC key generation " + std::to_string(want) + " is behind the secrets";
      return false;
    }
    auto k = make_generation(want, q.cipher, q.ctl_rx_secret, q.ctl_tx_secret, q.codec.layout().header_len, engine,
                             error);
    if (!k) return false;
    reclaimer.retire(q.gens[want % QuicSessionState::kGenSlots].exchange(k.release(), std::memory_order_acq_rel));
  }
  return true;
}

}  // namespace dptun
