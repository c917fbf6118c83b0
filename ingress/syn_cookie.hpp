// SYN cookies for delayed binding: dpgw answers a SYN on a hostname port without keeping any state; the
// client's options (MSS, window scale, SACK, timestamps) travel in the SYN-ACK's sequence number, authenticated
// with SipHash-2-4 under a secret key, and come back in the final ACK. A cookie is valid for 64-128 seconds.
//
//   ISN = mac (22 bits) | time slot (2) | MSS index (2) | window scale (4, 15 = none) | SACK (1) | timestamps (1)
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <span>

#include "common/inet.hpp"

namespace dptun {

// SipHash-2-4 (Aumasson and Bernstein): a keyed 64-bit hash.
uint64_t siphash24(const std::array<uint8_t, 16>& key, std::span<const uint8_t> data);

struct SynOptions {
  uint16_t mss = 536;       // what the client can receive (rounded down to one of kCookieMss)
  uint8_t wscale = 0xff;    // 0..14, or 0xff: the client does not scale windows
  bool sack = false;
  bool timestamps = false;
  bool operator==(const SynOptions&) const = default;
};

struct TcpFourTuple {
  IpAddr client, server;  // the "server" is dpgw's entry point
  uint16_t client_port, server_port;
};

inline constexpr uint16_t kCookieMss[4] = {536, 1200, 1360, 1460};

class SynCookies {
 public:
  explicit SynCookies(const std::array<uint8_t, 16>& key) : key_(key) {}
  // The ISN for our SYN-ACK to a SYN with sequence number `client_isn`.
  uint32_t make(const TcpFourTuple& t, uint32_t client_isn, SynOptions opts, uint64_t now_s) const;
  // The client's options when `cookie` (the final ACK's ack number - 1) is ours and fresh, else nullopt.
  std::optional<SynOptions> check(const TcpFourTuple& t, uint32_t client_isn, uint32_t cookie, uint64_t now_s) const;
  // 8 more bits of MAC for clients that use timestamps: they go in our SYN-ACK's TSval and must come back in the
  // final ACK's TSecr (30 bits against blind guesses instead of 22).
  uint8_t timestamp_bits(const TcpFourTuple& t, uint32_t client_isn, uint32_t cookie) const;

 private:
  uint32_t mac(const TcpFourTuple& t, uint32_t client_isn, uint64_t slot, uint32_t low) const;
  std::array<uint8_t, 16> key_;
};

}  // namespace dptun
