// What dpgw reads from a client's TCP header on its own (delayed binding and MSS clamping): the handshake
// options (packet/tcp_segment.hpp), the MSS option (packet/tcp_mss.hpp) and the SYN cookie that comes back in
// the final ACK (ingress/syn_cookie.hpp). Input: [u16 MSS limit][4-tuple, ISN, cookie: 20 bytes][u32 seconds]
// [TCP header: its data offset gives its length, as parse_ethernet() leaves it].
// Properties: options read back as written; clamping lowers only the MSS value, keeps the checksum valid
// (the header's ones-complement sum does not change) and leaves a header it does not clamp alone; a cookie
// made for a SYN's options checks in its own and the next 64-second slot, with the options the cookie can
// carry, and not two slots later; whatever a cookie check returns is a set of options the cookie can carry.
#include <algorithm>
#include <array>
#include <memory>

#include "fuzz/fuzz.hpp"
#include "ingress/syn_cookie.hpp"
#include "packet/checksum.hpp"
#include "packet/tcp_mss.hpp"
#include "packet/tcp_segment.hpp"

using namespace dptun;

namespace {

const SynCookies g_cookies(std::array<uint8_t, 16>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16});

bool options_carried(const SynOptions& o) {
  return std::find(std::begin(kCookieMss), std::end(kCookieMss), o.mss) != std::end(kCookieMss) &&
         (o.wscale <= 14 || o.wscale == 0xff);
}

uint16_t sum_of(const uint8_t* h, size_t len) { return csum_fold(csum_add({h, len})); }
bool same_sum(uint16_t a, uint16_t b) { return a == b || (a == 0 && b == 0xffff) || (a == 0xffff && b == 0); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in({data, size});
  const uint16_t max_mss = in.u16();
  const TcpFourTuple tuple{Ipv4{in.u32()}, Ipv4{in.u32()}, in.u16(), in.u16()};
  const uint32_t isn = in.u32(), cookie = in.u32();
  const uint64_t now_s = in.u32();
  const auto rest = in.rest();
  if (rest.size() < 20) return 0;
  const size_t hl = size_t(rest[12] >> 4) * 4;
  if (hl < 20 || hl > rest.size()) return 0;
  // Exactly the header on the heap: ASan sees a read past it.
  std::unique_ptr<uint8_t[]> tcp(new uint8_t[hl]);
  std::memcpy(tcp.get(), rest.data(), hl);

  const TcpHandshakeOptions o = tcp_read_options(tcp.get(), hl);
  FUZZ_CHECK(o.wscale <= 14 || o.wscale == 0xff);
  // Written as dpgw writes its SYN-ACK's options, they read back the same.
  uint8_t opts[20 + 20] = {};
  opts[12] = uint8_t(((20 + 20) / 4) << 4);
  const size_t n = tcp_write_handshake_options(opts + 20, o);
  FUZZ_CHECK(n <= 20 && n % 4 == 0);
  const TcpHandshakeOptions back = tcp_read_options(opts, 20 + n);
  FUZZ_CHECK(back.mss == o.mss && back.wscale == o.wscale && back.sack_ok == o.sack_ok && back.has_ts == o.has_ts);
  if (o.has_ts) FUZZ_CHECK(back.tsval == o.tsval && back.tsecr == o.tsecr);

  const uint16_t mss = tcp_find_mss(tcp.get(), hl);
  FUZZ_LOG("header of %zu bytes: mss %u wscale %u sack %d ts %d\n", hl, o.mss, o.wscale, o.sack_ok, o.has_ts);
  std::unique_ptr<uint8_t[]> clamped(new uint8_t[hl]);
  std::memcpy(clamped.get(), tcp.get(), hl);
  if (tcp_clamp_mss(clamped.get(), hl, max_mss)) {
    FUZZ_CHECK(mss > max_mss && (tcp[13] & 0x02));
    FUZZ_CHECK(tcp_find_mss(clamped.get(), hl) == max_mss);
    FUZZ_CHECK(same_sum(sum_of(tcp.get(), hl), sum_of(clamped.get(), hl)));
    size_t changed = 0;
    for (size_t i = 0; i < hl; ++i) changed += tcp[i] != clamped[i] && i != 16 && i != 17;
    FUZZ_CHECK(changed <= 2);
  } else {
    FUZZ_CHECK(std::memcmp(tcp.get(), clamped.get(), hl) == 0);
  }

  // The SYN cookie for this SYN's options.
  const SynOptions so{o.mss ? o.mss : uint16_t(536), o.wscale, o.sack_ok, o.has_ts};
  const uint32_t ours = g_cookies.make(tuple, isn, so, now_s);
  const uint64_t slot_end = (now_s / 64 + 1) * 64;  // the first second of the next slot
  for (uint64_t later : {now_s, slot_end - 1, slot_end, slot_end + 63}) {
    const auto got = g_cookies.check(tuple, isn, ours, later);
    FUZZ_CHECK(got.has_value());
    FUZZ_CHECK(options_carried(*got));
    uint16_t want_mss = kCookieMss[0];
    for (uint16_t m : kCookieMss)
      if (m <= so.mss) want_mss = m;
    FUZZ_CHECK(got->mss == want_mss && got->wscale == so.wscale && got->sack == so.sack &&
               got->timestamps == so.timestamps);
  }
  FUZZ_CHECK(!g_cookies.check(tuple, isn, ours, slot_end + 64).has_value());
  // Any ACK number from outside: whatever passes is a set of options a cookie can carry.
  if (const auto got = g_cookies.check(tuple, isn, cookie, now_s)) FUZZ_CHECK(options_carried(*got));
  (void)g_cookies.timestamp_bits(tuple, isn, cookie);
  return 0;
}
