// The QUIC framing's state of a session (docs/protocol.md "QUIC framing", "Key hand-over and the receive path",
// "Key updates"): made by the control lcore from the connection dpctld's handshake established (QuicSessionSpec).
//  - Keys by generation (RFC 9001 6: generation g is sent with key phase bit g & 1): QuicKeyGeneration, both
//    directions' AEAD keys and IVs, made by the control lcore ahead of use (maintain_quic_keys: the receive side's
//    current generation, the next one, and the previous one for about a second after a switch) and published in
//    `gens` by generation % 4; immutable once published, retired through the RCU reclaimer. Workers never derive or
//    allocate a key. The receive side holds four AEAD keys per generation, one per packet-number length, because an
//    engine fixes the AAD length of a key and a short header's AAD is 10 to 13 bytes; the transmit side one (4-byte
//    packet numbers: AAD 13 bytes). Header-protection keys never change with a key update (RFC 9001 6.3).
//  - Receive side: read and written by the session's RX worker only (its header-protection context, like its replay
//    window, has that one user): the current receive generation and its first packet number; the RX worker also
//    moves the transmit generation (below), following the agent's key update or starting dpgw's own.
//  - Transmit side: read by every worker (each sends to every session): a packet's number AND its key generation
//    come from the session's one tx_counter, whose low 48 bits are the packet number and whose high 16 bits the
//    transmit generation (mod 2^16), so that one atomic add per burst gives every packet both, and a higher packet
//    number never carries an older generation (RFC 9001 6.1). The RX worker moves the generation with one atomic
//    add of 1 << 48. The header-protection key expanded for ipsec-mb (crypto/hp_ipsec_mb.hpp: shared read-only,
//    one manager per worker) is the same for every generation.
//  - ACK state (docs/protocol.md "ACK generation"): the RX worker's.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "crypto/aead.hpp"
#include "crypto/hp_ipsec_mb.hpp"
#include "crypto/quic_keys.hpp"
#include "dataplane/tables/session.hpp"
#include "proto/gateway_specs.hpp"
#include "proto/quic_short_header.hpp"

namespace dptun {

// The packet-number length dpgw sends (docs/protocol.md "Packet numbers": one header length per connection).
inline constexpr uint32_t kQuicTxPnLen = 4;
static_assert(kQuicTxLayout.header_len == kQuicPnOffset + kQuicTxPnLen);  // what dpctld checks the agent's limits by

// tx_counter of a QUIC session: packet number (low 48 bits) and transmit key generation (high 16 bits, mod 2^16).
inline constexpr unsigned kQuicTxGenShift = 48;
inline constexpr uint64_t kQuicTxPnMask = (uint64_t(1) << kQuicTxGenShift) - 1;
// Packet numbers at and above this are not sent (dropped as key_unavailable): well before the 48 bits would carry
// into the generation (2^47 packets: a year and more at 10 Mpps to one session).
inline constexpr uint64_t kQuicTxPnLimit = uint64_t(1) << 47;
inline constexpr uint64_t quic_tx_pn(uint64_t counter) { return counter & kQuicTxPnMask; }
inline constexpr uint16_t quic_tx_generation(uint64_t counter) { return uint16_t(counter >> kQuicTxGenShift); }
// dpgw starts a key update of its own after this many packets sent in a generation (RFC 9001 6.6: AES-GCM's
// confidentiality limit is 2^23 packets; the agent's ngtcp2 updates near it too).
inline constexpr uint64_t kQuicUpdateAfterPackets = uint64_t(1) << 22;
// A failed candidate address is proposed again for validation at most this often (docs/protocol.md "Path
// validation"): an agent that keeps sending from an address dpgw cannot reach costs a few PATH_CHALLENGEs per 3 s.
inline constexpr uint64_t kQuicPathReproposeNs = 3'000'000'000ull;  // (after the control lcore gave it up, 2 s)
// The previous receive generation's keys stay this long after a switch, for reordered packets (RFC 9001 6.5 asks
// for about three PTOs; dptun's agents are milliseconds away).
inline constexpr uint64_t kQuicOldKeysKeepNs = 1'500'000'000;

// One key generation's packet protection (RFC 9001 6), both directions. Immutable once published.
struct QuicKeyGeneration {
  uint64_t generation = 0;
  std::array<uint8_t, kQuicIvLen> rx_iv{};
  std::array<EpochCipher, 4> rx;  // [pn_len - 1]: AAD of 9 + pn_len bytes
  std::array<uint8_t, kQuicIvLen> tx_iv{};
  EpochCipher tx;  // AAD 9 + kQuicTxPnLen bytes
  // The key that opens a packet with `pn_len`-byte packet number (1..4).
  const EpochCipher& rx_key(uint32_t pn_len) const { return rx[pn_len - 1]; }
};

struct QuicSessionState {
  static constexpr uint32_t kGenSlots = 4;  // generation % 4 (2^16, the counter's generation field, is a multiple)

  QuicCipher cipher = QuicCipher::Aes128Gcm;
  std::array<uint8_t, 8> peer_cid{};
  // The longest inner packet (and name trailer) one of dpgw's packets may carry by the agent's transport parameters
  // (max_udp_payload_size, max_datagram_frame_size): Encap::frame_budget takes the smaller of this and the MTU's.
  uint32_t agent_max_packet = UINT32_MAX;
  // The codec: every worker writes headers with it (its write side is read-only); the RX worker removes header
  // protection with its OpenSSL context (the agent's hp key).
  QuicDatagramCodec codec;
  // Published key generations (control lcore writes, workers read), by generation % kGenSlots.
  std::array<std::atomic<QuicKeyGeneration*>, kGenSlots> gens{};
  HpExpandedKey tx_hp;   // the server's "quic hp", for IpsecMbHeaderProtection::masks()

  // Receive side and key-update bookkeeping (RX worker; rx_generation read by the control lcore).
  std::atomic<uint64_t> rx_generation{0};
  uint64_t rx_first_pn = 0;    // the first packet number that opened in rx_generation
  uint64_t tx_generation = 0;  // the transmit generation in full (the counter holds its low 16 bits)
  uint64_t tx_first_pn = 0;    // the first packet number sent in tx_generation
  uint64_t update_after_packets = kQuicUpdateAfterPackets;  // dpgw's own update after this many (tests lower it)
  uint64_t largest_acked_by_peer = kQuicNoAck;  // from the agent's ACK frames (RX worker)

  // ACK state (RX worker). Times are the worker's clock (ns).
  uint64_t ack_wanted_ns = 0;  // arrival of the oldest ack-eliciting packet not acknowledged yet; 0: none
  uint64_t ack_sent_ns = 0;    // when the last ACK packet was queued; 0: never
  uint64_t top_rx_ns = 0;      // arrival of the highest packet number received (the ACK Delay field counts from it)
  bool ack_listed = false;     // in the RX worker's list of ACKs owed later (QuicInput)

  // Path validation (RFC 9000 8.2, 9; docs/protocol.md "Path validation"). An authenticated packet newer than all
  // before from an address other than the endpoint does not move it: the RX worker proposes that address to the
  // control lcore (QuicSlowPathHeader::kNewPath) once, and again only after kQuicPathReproposeNs; the control lcore
  // sends PATH_CHALLENGE there and moves the endpoint when the PATH_RESPONSE comes. RX worker only (the control
  // lcore learns the address from the proposal's message, never from here):
  Endpoint proposed{};
  uint64_t proposed_ns = 0;
  // UDP payload bytes of authenticated packets from `proposed` (RX worker writes, control lcore reads: the 3x
  // anti-amplification limit, RFC 9000 8.1).
  std::atomic<uint64_t> proposed_rx_bytes{0};
  // What the session may send the control lcore (RX worker): at most kSlowPathPerWindow copies per
  // kSlowPathWindowNs (a legitimate agent sends a handful), so that one session's flood of rare frames or of new
  // addresses cannot fill the slow path's ring for every other (dropped beyond: quic_slow_path_limit).
  static constexpr uint32_t kSlowPathPerWindow = 64;
  static constexpr uint64_t kSlowPathWindowNs = 100'000'000;
  uint64_t slow_window_ns = 0;
  uint32_t slow_in_window = 0;

  // Control lcore only: the secrets of generation ctl_secrets_generation (the newest made), for the next ones.
  uint64_t ctl_secrets_generation = 0;
  std::vector<uint8_t> ctl_rx_secret, ctl_tx_secret;
  uint64_t ctl_rx_generation = 0;   // rx_generation as the control lcore last saw it
  uint64_t ctl_rx_since_ns = 0;     // when it saw it change

  explicit QuicSessionState(const QuicDatagramCodec::Config& c) : codec(c) {}
  ~QuicSessionState();  // frees the published generations (no worker reads them any more), wipes the secrets
  QuicSessionState(const QuicSessionState&) = delete;
  QuicSessionState& operator=(const QuicSessionState&) = delete;

  // Generation `g`'s keys when they are published, else nullptr.
  const QuicKeyGeneration* generation(uint64_t g) const {
    const QuicKeyGeneration* k = gens[g % kGenSlots].load(std::memory_order_acquire);
    return k && k->generation == g ? k : nullptr;
  }
  // The transmit keys for a counter value from tx_counter (its 16-bit generation), else nullptr.
  const QuicKeyGeneration* tx_generation_of(uint64_t counter) const {
    const uint16_t g = quic_tx_generation(counter);
    const QuicKeyGeneration* k = gens[g % kGenSlots].load(std::memory_order_acquire);
    return k && uint16_t(k->generation) == g ? k : nullptr;
  }
};

// Builds the state for `spec` with `engine`'s keys and `hp`'s expanded header-protection key (nullptr: ipsec-mb
// could not start, QUIC sessions are refused); nullptr and `error` when a key cannot be made.
std::unique_ptr<QuicSessionState> make_quic_session(const QuicSessionSpec& spec, AeadEngine& engine,
                                                    const IpsecMbHeaderProtection* hp, std::string& error);

// Control lcore, every tick: keeps session `q`'s key generations published ahead of use -- the receive side's
// current generation g and g + 1 (so that the RX worker can follow the agent's update and start dpgw's own), g - 1
// until `keep_old_ns` after the RX worker moved to g, nothing older (retired through `reclaimer`). False (and
// `error`) when a key could not be made; the session keeps what it has.
bool maintain_quic_keys(QuicSessionState& q, AeadEngine& engine, Reclaimer& reclaimer, uint64_t now_ns,
                        std::string& error, uint64_t keep_old_ns = kQuicOldKeysKeepNs);

}  // namespace dptun
