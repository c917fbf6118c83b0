#include "dataplane/tables/quic_session.hpp"

namespace dptun {

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
  QuicDatagramCodec::Config c;
  c.rx_cid_tail = spec.cid_tail;
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
  s->cipher = spec.cipher;
  s->peer_cid = spec.peer_cid;
  s->rx_iv = rx.iv;
  for (uint32_t pn_len = 1; pn_len <= 4; ++pn_len) {
    EpochCipher& k = s->rx_key(pn_len);
    k.epoch = 0;
    k.aead = engine.make_key(rx.key_bytes(), AeadDirection::Decrypt, uint32_t(kQuicPnOffset + pn_len));
    if (!k.aead) {
      error = std::string("the AEAD engine cannot make a QUIC receive key (") + engine.name() + ")";
      return nullptr;
    }
  }
  s->tx_iv = tx.iv;
  s->tx.epoch = 0;
  s->tx.aead = engine.make_key(tx.key_bytes(), AeadDirection::Encrypt, s->codec.layout().header_len);
  if (!s->tx.aead) {
    error = std::string("the AEAD engine cannot make a QUIC transmit key (") + engine.name() + ")";
    return nullptr;
  }
  return s;
}

}  // namespace dptun
