// IPv4 address, prefix and endpoint value types with strict text parsing (host byte order inside).
#pragma once
#include <cstdint>
#include <optional>
#include <utility>
#include <string>
#include <string_view>

namespace dptun {

struct Ipv4 {
  uint32_t value = 0;  // host byte order
  constexpr bool operator==(const Ipv4&) const = default;
  static std::optional<Ipv4> parse(std::string_view text);
  std::string str() const;
};

struct Ipv4Prefix {
  Ipv4 addr;
  uint8_t len = 32;
  uint32_t mask() const { return len == 0 ? 0 : ~uint32_t(0) << (32 - len); }
  bool contains(Ipv4 ip) const { return (ip.value & mask()) == (addr.value & mask()); }
  // "a.b.c.d/len"; a bare address means /32.
  static std::optional<Ipv4Prefix> parse(std::string_view text);
  std::string str() const;
  constexpr bool operator==(const Ipv4Prefix&) const = default;
};

struct Endpoint {
  Ipv4 ip;
  uint16_t port = 0;
  constexpr bool operator==(const Endpoint&) const = default;
  // "a.b.c.d:port" with port 1..65535.
  static std::optional<Endpoint> parse(std::string_view text);
  std::string str() const;
  // ip and port packed into one word, so an endpoint can live in a single atomic.
  uint64_t pack() const { return uint64_t(ip.value) << 16 | port; }
  static Endpoint unpack(uint64_t v) { return {Ipv4{uint32_t(v >> 16)}, uint16_t(v)}; }
};

// Parses a decimal unsigned number with no sign, no spaces and no overflow past max.
std::optional<uint64_t> parse_uint(std::string_view text, uint64_t max);

// "host:port": host an IPv4 address or a DNS name (RFC 1123 labels, at most 253 characters), port 1..65535.
std::optional<std::pair<std::string, uint16_t>> parse_host_port(std::string_view text);

}  // namespace dptun
