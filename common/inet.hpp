// IP address, prefix and endpoint value types with strict text parsing. Ipv4 holds host byte order; IpAddr (either
// family) holds the 16 bytes of an IPv6 address in network byte order, IPv4 as IPv4-mapped (RFC 4291 2.5.5.2).
#pragma once
#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <utility>
#include <string>
#include <string_view>
#include <type_traits>

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

// An IPv4 or IPv6 address. IPv4 is held IPv4-mapped (::ffff:a.b.c.d), so one 16-byte value, one comparison and
// one hash serve both families; the default is 0.0.0.0 (IPv4, unspecified). Today's data path forwards IPv4 only
// (IPv6 packets are counted and dropped); this is the type its keys, endpoints and routes carry.
struct IpAddr {
  std::array<uint8_t, 16> bytes{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0};  // network byte order

  constexpr IpAddr() = default;
  constexpr IpAddr(Ipv4 a) {  // NOLINT: an IPv4 address is an IP address
    if (std::is_constant_evaluated()) {
      bytes = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, uint8_t(a.value >> 24), uint8_t(a.value >> 16),
               uint8_t(a.value >> 8), uint8_t(a.value)};
      return;
    }
    // Two 8-byte stores on the fast path: readers load the address as two 8-byte words (==, flow hashes), and a
    // load spanning several narrower stores (the constant head, then the 4 address bytes) cannot be forwarded from
    // them; it waits for them to reach the cache (~12 cycles, once per flow lookup).
    const uint64_t head = 0;
    const uint64_t tail = 0xffff0000ull | uint64_t(__builtin_bswap32(a.value)) << 32;  // bytes 8..15, little-endian
    std::memcpy(bytes.data(), &head, 8);
    std::memcpy(bytes.data() + 8, &tail, 8);
  }
  static constexpr IpAddr v6(const std::array<uint8_t, 16>& b) {
    IpAddr a;
    a.bytes = b;
    return a;
  }
  constexpr bool is_v4() const {
    if (std::is_constant_evaluated()) {
      for (int i = 0; i < 10; ++i)
        if (bytes[i]) return false;
      return bytes[10] == 0xff && bytes[11] == 0xff;
    }
    uint64_t head;  // (two loads on the fast path)
    uint32_t mid;
    std::memcpy(&head, bytes.data(), 8);
    std::memcpy(&mid, bytes.data() + 8, 4);
    return head == 0 && mid == 0xffff0000u;  // bytes 8..11 = 00 00 ff ff, read little-endian
  }
  // The IPv4 address in host byte order (meaningful when is_v4()).
  constexpr uint32_t v4() const {
    if (std::is_constant_evaluated())
      return uint32_t(bytes[12]) << 24 | uint32_t(bytes[13]) << 16 | uint32_t(bytes[14]) << 8 | bytes[15];
    uint32_t be;  // (one load and a byte swap on the fast path)
    std::memcpy(&be, bytes.data() + 12, 4);
    return __builtin_bswap32(be);
  }
  constexpr bool unspecified() const { return is_v4() ? v4() == 0 : *this == IpAddr::v6({}); }
  constexpr bool operator==(const IpAddr& o) const {
    if (std::is_constant_evaluated()) return bytes == o.bytes;
    uint64_t a[2], b[2];  // (two 8-byte compares on the fast path, not a call to memcmp)
    std::memcpy(a, bytes.data(), 16);
    std::memcpy(b, o.bytes.data(), 16);
    return ((a[0] ^ b[0]) | (a[1] ^ b[1])) == 0;
  }
  // Either family: "a.b.c.d" or RFC 5952 text ("2001:db8::1"); IPv4-mapped IPv6 text is taken as IPv4.
  static std::optional<IpAddr> parse(std::string_view text);
  std::string str() const;  // a.b.c.d, or RFC 5952 text for IPv6
};

struct Endpoint {
  IpAddr ip;
  uint16_t port = 0;
  constexpr bool operator==(const Endpoint&) const = default;
  // "a.b.c.d:port" with port 1..65535 (IPv4: what the data path forwards today).
  static std::optional<Endpoint> parse(std::string_view text);
  std::string str() const;  // a.b.c.d:port, or [v6]:port
};

// Parses a decimal unsigned number with no sign, no spaces and no overflow past max.
std::optional<uint64_t> parse_uint(std::string_view text, uint64_t max);

// "host:port": host an IPv4 address or a DNS name (RFC 1123 labels, at most 253 characters), port 1..65535.
std::optional<std::pair<std::string, uint16_t>> parse_host_port(std::string_view text);

}  // namespace dptun
