// TCP handshake options read and written (every combination survives a round trip, malformed lists stop the
// reading), and whole packets built with checksums a from-scratch computation agrees with.
#include <vector>

#include "tests/unit/cmocka.hpp"

#include "common/bytes.hpp"
#include "packet/checksum.hpp"
#include "packet/headers.hpp"
#include "packet/parser.hpp"
#include "packet/tcp_segment.hpp"

using namespace dptun;

namespace {

void options_round_trip(void**) {
  for (int mask = 0; mask < 16; ++mask) {
    TcpHandshakeOptions o;
    if (mask & 1) o.mss = 1388;
    if (mask & 2) o.sack_ok = true;
    if (mask & 4) {
      o.has_ts = true;
      o.tsval = 0xdeadbeef;
      o.tsecr = 7;
    }
    if (mask & 8) o.wscale = 7;
    std::vector<uint8_t> seg(60, 0);
    const size_t n = tcp_write_handshake_options(seg.data() + 20, o);
    assert_true(n % 4 == 0 && n <= 20);
    const TcpHandshakeOptions back = tcp_read_options(seg.data(), 20 + n);
    assert_int_equal(back.mss, o.mss);
    assert_int_equal(back.sack_ok, o.sack_ok);
    assert_int_equal(back.has_ts, o.has_ts);
    assert_int_equal(back.tsval, o.tsval);
    assert_int_equal(back.tsecr, o.tsecr);
    assert_int_equal(back.wscale, o.wscale);
  }
}

void malformed_options(void**) {
  // MSS, then an option whose length runs past the header: what came before counts, the rest is ignored.
  std::vector<uint8_t> seg(28, 0);
  const uint8_t opts[8] = {2, 4, 0x05, 0xb4, 3, 9, 7, 0};
  std::copy(opts, opts + 8, seg.begin() + 20);
  TcpHandshakeOptions o = tcp_read_options(seg.data(), 28);
  assert_int_equal(o.mss, 1460);
  assert_int_equal(o.wscale, 0xff);
  const uint8_t big_shift[4] = {3, 3, 20, 0};  // a window scale above 14 means 14 (RFC 7323)
  std::copy(big_shift, big_shift + 4, seg.begin() + 20);
  assert_int_equal(tcp_read_options(seg.data(), 24).wscale, 14);
  const uint8_t zero_len[4] = {8, 0, 0, 0};  // a zero length would loop forever in a careless reader
  std::copy(zero_len, zero_len + 4, seg.begin() + 20);
  assert_false(tcp_read_options(seg.data(), 24).has_ts);
}

void packets(void**) {
  uint8_t opts[12];
  const size_t olen = tcp_write_timestamps(opts, 100, 200);
  const uint8_t payload[5] = {'h', 'e', 'l', 'l', 'o'};
  std::vector<uint8_t> out(128);
  const size_t n = tcp_write_packet(out, {0x0a000001, 0x0a000002, 1234, 80, 0xfffffffe, 42, kTcpAck | kTcpPsh, 512,
                                          {opts, olen}, {payload, 5}, 7});
  assert_int_equal(n, 20 + 20 + 12 + 5);
  PacketInfo pi;
  assert_true(parse_tunnel_packet({out.data(), n}, pi));
  assert_int_equal(pi.l4_proto, 6);
  assert_int_equal(pi.src_port, 1234);
  assert_int_equal(pi.tcp_header_len, 32);
  assert_int_equal(pi.tcp_flags, kTcpAck | kTcpPsh);
  assert_int_equal(ipv4_header_checksum({out.data(), 20}), 0);  // a valid header sums to 0
  assert_int_equal(csum_fold(csum_add({out.data() + 20, n - 20}, ipv4_pseudo_sum(0x0a000001, 0x0a000002, 6, uint16_t(n - 20)))),
                   0xffff);
  assert_int_equal(load_be32(out.data() + 24), 0xfffffffe);
  assert_int_equal(tcp_write_packet({out.data(), 40}, {1, 2, 3, 4, 5, 6, 0, 0, {}, {payload, 5}, 0}), 0);  // too small
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(options_round_trip),
      cmocka_unit_test(malformed_options),
      cmocka_unit_test(packets),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
