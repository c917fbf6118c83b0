// The QUIC framing's receive state of a session (docs/protocol.md "QUIC framing", "Key hand-over and the receive
// path"): made by the control lcore from the connection dpctld's handshake established (QuicSessionSpec), read and
// written by the session's RX worker only (its header-protection context, like its replay window, has that one user).
// A generation's AEAD keys come four at a time, one per packet-number length, because an engine fixes the AAD length
// of a key and a short header's AAD is 10 to 13 bytes. This slice holds generation 0 (no key update yet).
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "crypto/aead.hpp"
#include "crypto/quic_keys.hpp"
#include "dataplane/tables/session.hpp"
#include "proto/gateway_specs.hpp"
#include "proto/quic_short_header.hpp"

namespace dptun {

struct QuicSessionState {
  QuicCipher cipher = QuicCipher::Aes128Gcm;
  std::array<uint8_t, 8> peer_cid{};
  QuicDatagramCodec codec;  // the rx worker's: header protection removed with the agent's hp key
  uint64_t rx_generation = 0;
  std::array<uint8_t, kQuicIvLen> rx_iv{};
  std::array<EpochCipher, 4> rx;  // [pn_len - 1]: AAD of 9 + pn_len bytes; epoch = the generation
  uint64_t largest_acked_by_peer = kQuicNoAck;  // from the agent's ACK frames (RX worker)

  explicit QuicSessionState(const QuicDatagramCodec::Config& c) : codec(c) {}
  // The key that opens a packet with `pn_len`-byte packet number (1..4).
  EpochCipher& rx_key(uint32_t pn_len) { return rx[pn_len - 1]; }
};

// Builds the state for `spec` with `engine`'s keys; nullptr and `error` when a key cannot be made.
std::unique_ptr<QuicSessionState> make_quic_session(const QuicSessionSpec& spec, AeadEngine& engine, std::string& error);

}  // namespace dptun
