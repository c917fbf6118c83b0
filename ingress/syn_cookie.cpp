#include "ingress/syn_cookie.hpp"

#include <cstring>

namespace dptun {

namespace {

inline uint64_t rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

inline uint64_t load_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | p[i];
  return v;
}

struct SipState {
  uint64_t v0, v1, v2, v3;
  void round() {
    v0 += v1;
    v1 = rotl(v1, 13);
    v1 ^= v0;
    v0 = rotl(v0, 32);
    v2 += v3;
    v3 = rotl(v3, 16);
    v3 ^= v2;
    v0 += v3;
    v3 = rotl(v3, 21);
    v3 ^= v0;
    v2 += v1;
    v1 = rotl(v1, 17);
    v1 ^= v2;
    v2 = rotl(v2, 32);
  }
  void absorb(uint64_t m) {
    v3 ^= m;
    round();
    round();
    v0 ^= m;
  }
};

constexpr uint64_t kSlotSeconds = 64;

uint8_t mss_index(uint16_t mss) {
  uint8_t i = 0;
  while (i < 3 && kCookieMss[i + 1] <= mss) ++i;
  return i;
}

}  // namespace

uint64_t siphash24(const std::array<uint8_t, 16>& key, std::span<const uint8_t> data) {
  const uint64_t k0 = load_le64(key.data()), k1 = load_le64(key.data() + 8);
  SipState s{k0 ^ 0x736f6d6570736575ull, k1 ^ 0x646f72616e646f6dull, k0 ^ 0x6c7967656e657261ull,
             k1 ^ 0x7465646279746573ull};
  const size_t n = data.size();
  size_t i = 0;
  for (; i + 8 <= n; i += 8) s.absorb(load_le64(data.data() + i));
  uint64_t last = uint64_t(n & 0xff) << 56;
  for (size_t j = 0; i + j < n; ++j) last |= uint64_t(data[i + j]) << (8 * j);
  s.absorb(last);
  s.v2 ^= 0xff;
  for (int r = 0; r < 4; ++r) s.round();
  return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

namespace {
// SipHash of the connection (4-tuple, the client's ISN) and two more values of `a_bytes` and `b_bytes` bytes,
// all big-endian.
uint64_t connection_hash(const std::array<uint8_t, 16>& key, const TcpFourTuple& t, uint32_t client_isn, uint64_t a,
                         int a_bytes, uint64_t b, int b_bytes) {
  uint8_t in[16 + 16 + 2 + 2 + 4 + 8 + 8];
  size_t n = 0;
  auto put = [&](uint64_t v, int bytes) {
    for (int i = bytes - 1; i >= 0; --i) in[n++] = uint8_t(v >> (8 * i));
  };
  // IPv4 addresses as 4 bytes each, IPv6 ones as 16: the lengths keep the two families' inputs apart.
  for (const IpAddr& a : {t.client, t.server}) {
    if (a.is_v4()) {
      put(a.v4(), 4);
    } else {
      std::memcpy(in + n, a.bytes.data(), 16);
      n += 16;
    }
  }
  put(t.client_port, 2);
  put(t.server_port, 2);
  put(client_isn, 4);
  put(a, a_bytes);
  put(b, b_bytes);
  return siphash24(key, {in, n});
}
}  // namespace

uint32_t SynCookies::mac(const TcpFourTuple& t, uint32_t client_isn, uint64_t slot, uint32_t low) const {
  // `low`: the option bits and slot bits the cookie carries in the clear
  return uint32_t(connection_hash(key_, t, client_isn, slot, 8, low, 2) & 0x3fffff);
}

uint8_t SynCookies::timestamp_bits(const TcpFourTuple& t, uint32_t client_isn, uint32_t cookie) const {
  // 0x54: a domain tag, these bits are not the cookie's own MAC
  return uint8_t(connection_hash(key_, t, client_isn, cookie, 4, 0x54, 1));
}

uint32_t SynCookies::make(const TcpFourTuple& t, uint32_t client_isn, SynOptions o, uint64_t now_s) const {
  const uint64_t slot = now_s / kSlotSeconds;
  const uint32_t wscale = o.wscale > 14 ? 15 : o.wscale;
  const uint32_t low = uint32_t(slot & 3) << 8 | uint32_t(mss_index(o.mss)) << 6 | wscale << 2 |
                       uint32_t(o.sack) << 1 | uint32_t(o.timestamps);
  return mac(t, client_isn, slot, low) << 10 | low;
}

std::optional<SynOptions> SynCookies::check(const TcpFourTuple& t, uint32_t client_isn, uint32_t cookie,
                                            uint64_t now_s) const {
  const uint32_t low = cookie & 0x3ff;
  const uint64_t now_slot = now_s / kSlotSeconds;
  // The slot the cookie was made in: this one or the one before (the 2 bits tell which).
  uint64_t slot = now_slot;
  if ((slot & 3) != (low >> 8)) {
    if (now_slot == 0 || ((now_slot - 1) & 3) != (low >> 8)) return std::nullopt;
    slot = now_slot - 1;
  }
  if (mac(t, client_isn, slot, low) != cookie >> 10) return std::nullopt;
  SynOptions o;
  o.mss = kCookieMss[(low >> 6) & 3];
  const uint8_t ws = (low >> 2) & 0xf;
  o.wscale = ws == 15 ? 0xff : ws;
  o.sack = (low >> 1) & 1;
  o.timestamps = low & 1;
  if (o.wscale != 0xff && o.wscale > 14) return std::nullopt;
  return o;
}

}  // namespace dptun
