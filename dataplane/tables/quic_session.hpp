// The QUIC framing's state of a session (docs/protocol.md "QUIC framing", "Key hand-over and the receive path"):
// made by the control lcore from the connection dpctld's handshake established (QuicSessionSpec).
//  - Receive side: read and written by the session's RX worker only (its header-protection context, like its replay
//    window, has that one user). A generation's AEAD keys come four at a time, one per packet-number length, because
//    an engine fixes the AAD length of a key and a short header's AAD is 10 to 13 bytes. Generation 0 only (no key
//    update yet).
//  - Transmit side: immutable once published, read by every worker (each sends to every session): the server's
//    1-RTT key (4-byte packet numbers: AAD 13 bytes), IV and header-protection key expanded for ipsec-mb
//    (crypto/hp_ipsec_mb.hpp: shared read-only, one manager per worker). Packet numbers come from the session's
//    tx_counter (one counter for DATAGRAM and ACK packets: a number is never used twice).
//  - ACK state (docs/protocol.md "ACK generation"): the RX worker's.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "crypto/aead.hpp"
#include "crypto/hp_ipsec_mb.hpp"
#include "crypto/quic_keys.hpp"
#include "dataplane/tables/session.hpp"
#include "proto/gateway_specs.hpp"
#include "proto/quic_short_header.hpp"

namespace dptun {

// The packet-number length dpgw sends (docs/protocol.md "Packet numbers": one header length per connection).
inline constexpr uint32_t kQuicTxPnLen = 4;

struct QuicSessionState {
  QuicCipher cipher = QuicCipher::Aes128Gcm;
  std::array<uint8_t, 8> peer_cid{};
  // The codec: every worker writes headers with it (its write side is read-only); the RX worker removes header
  // protection with its OpenSSL context (the agent's hp key).
  QuicDatagramCodec codec;
  uint64_t rx_generation = 0;
  std::array<uint8_t, kQuicIvLen> rx_iv{};
  std::array<EpochCipher, 4> rx;  // [pn_len - 1]: AAD of 9 + pn_len bytes; epoch = the generation
  uint64_t largest_acked_by_peer = kQuicNoAck;  // from the agent's ACK frames (RX worker)

  // Transmit side (any worker; immutable once published).
  std::array<uint8_t, kQuicIvLen> tx_iv{};
  EpochCipher tx;        // the server's 1-RTT key, AAD 9 + kQuicTxPnLen bytes
  HpExpandedKey tx_hp;   // the server's "quic hp", for IpsecMbHeaderProtection::masks()

  // ACK state (RX worker). Times are the worker's clock (ns).
  uint64_t ack_wanted_ns = 0;  // arrival of the oldest ack-eliciting packet not acknowledged yet; 0: none
  uint64_t ack_sent_ns = 0;    // when the last ACK packet was queued; 0: never
  uint64_t top_rx_ns = 0;      // arrival of the highest packet number received (the ACK Delay field counts from it)
  bool ack_listed = false;     // in the RX worker's list of ACKs owed later (QuicInput)

  explicit QuicSessionState(const QuicDatagramCodec::Config& c) : codec(c) {}
  // The key that opens a packet with `pn_len`-byte packet number (1..4).
  EpochCipher& rx_key(uint32_t pn_len) { return rx[pn_len - 1]; }
};

// Builds the state for `spec` with `engine`'s keys and `hp`'s expanded header-protection key (nullptr: ipsec-mb
// could not start, QUIC sessions are refused); nullptr and `error` when a key cannot be made.
std::unique_ptr<QuicSessionState> make_quic_session(const QuicSessionSpec& spec, AeadEngine& engine,
                                                    const IpsecMbHeaderProtection* hp, std::string& error);

}  // namespace dptun
