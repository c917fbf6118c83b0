// Spliced-connection rewriting: sequence, acknowledgment, SACK edges and timestamps move by the deltas (with
// wrap-around), windows are rescaled, options at odd offsets are handled, and the checksum updated
// incrementally always equals one computed from scratch.
#include <vector>

#include "tests/unit/cmocka.hpp"

#include "common/bytes.hpp"
#include "ingress/tcp_splice.hpp"
#include "packet/checksum.hpp"

using namespace dptun;

namespace {

constexpr uint32_t kSrc = 0x0a630102, kDst = 0x0a630202;

// A TCP segment: 20-byte header + `options` (padded with EOL to a multiple of 4) + payload, with a valid checksum.
std::vector<uint8_t> segment(uint32_t seq, uint32_t ack, uint16_t window, std::vector<uint8_t> options,
                             std::vector<uint8_t> payload = {'h', 'i', '!'}) {
  while (options.size() % 4) options.push_back(0);
  std::vector<uint8_t> s(20 + options.size());
  store_be16(&s[0], 40000);
  store_be16(&s[2], 443);
  store_be32(&s[4], seq);
  store_be32(&s[8], ack);
  s[12] = uint8_t((s.size() / 4) << 4);
  s[13] = 0x10;  // ACK
  store_be16(&s[14], window);
  std::copy(options.begin(), options.end(), s.begin() + 20);
  s.insert(s.end(), payload.begin(), payload.end());
  store_be16(&s[16], ipv4_l4_checksum(kSrc, kDst, 6, s));
  return s;
}

size_t header_len(const std::vector<uint8_t>& s) { return size_t(s[12] >> 4) * 4; }

void checksum_still_valid(const std::vector<uint8_t>& s) {
  std::vector<uint8_t> copy = s;
  const uint16_t incremental = load_be16(&copy[16]);
  store_be16(&copy[16], 0);
  assert_int_equal(incremental, ipv4_l4_checksum(kSrc, kDst, 6, copy));
}

std::vector<uint8_t> ts_option(uint32_t tsval, uint32_t tsecr) {
  std::vector<uint8_t> o = {8, 10, 0, 0, 0, 0, 0, 0, 0, 0};
  store_be32(&o[2], tsval);
  store_be32(&o[6], tsecr);
  return o;
}

void client_to_server(void**) {
  TcpSplice sp{0x10000000u, 5000, 7, 9};
  // NOP NOP TS, then NOP SACK with two blocks (the SACK edges at odd-aligned offsets? no: 4-byte aligned here).
  std::vector<uint8_t> opt = {1, 1};
  auto ts = ts_option(111, 222);
  opt.insert(opt.end(), ts.begin(), ts.end());
  opt.insert(opt.end(), {1, 1, 5, 18});
  for (uint32_t e : {0xfffffff0u, 0x00000010u, 0x20u, 0x30u})
    for (int b = 3; b >= 0; --b) opt.push_back(uint8_t(e >> (8 * b)));
  auto s = segment(1000, 0xfffffff8u, 512, opt);
  assert_true(sp.to_server(s.data(), header_len(s)));
  assert_int_equal(load_be32(&s[4]), 1000);                       // seq: the client's own space
  assert_int_equal(load_be32(&s[8]), 0xfffffff8u + 0x10000000u);  // ack: wraps around
  assert_int_equal(load_be16(&s[14]), 512);                       // window: the client's scale, as negotiated
  assert_int_equal(load_be32(&s[24]), 111);                       // TSval: the client's clock
  assert_int_equal(load_be32(&s[28]), 222 + 5000);                // TSecr: back in the server's clock
  assert_int_equal(load_be32(&s[36]), 0xfffffff0u + 0x10000000u);
  assert_int_equal(load_be32(&s[40]), 0x10u + 0x10000000u);
  checksum_still_valid(s);
  // TSecr 0 (nothing to echo) stays 0.
  auto z = segment(1, 2, 3, ts_option(5, 0));
  sp.to_server(z.data(), header_len(z));
  assert_int_equal(load_be32(&z[26]), 0);
  checksum_still_valid(z);
}

void server_to_client(void**) {
  TcpSplice sp{0x10000000u, 5000, 7, 9};
  auto s = segment(0x0000000au, 4242, 1000, ts_option(5100, 333));
  assert_true(sp.to_client(s.data(), header_len(s)));
  assert_int_equal(load_be32(&s[4]), 0x0000000au - 0x10000000u);  // wraps the other way
  assert_int_equal(load_be32(&s[8]), 4242);
  assert_int_equal(load_be16(&s[14]), 4000);  // 1000 << 9 >> 7
  assert_int_equal(load_be32(&s[22]), 100);   // TSval 5100 - 5000
  assert_int_equal(load_be32(&s[26]), 333);
  checksum_still_valid(s);
}

void odd_offsets_and_junk(void**) {
  TcpSplice sp{0x01020304u, 0x0a0b0c0du, 0, 0};
  // MSS (4 bytes) + NOP (1) puts the TS option at an odd offset (25): its fields straddle checksum words.
  std::vector<uint8_t> opt = {2, 4, 0x05, 0xb4, 1};
  auto ts = ts_option(0x11223344u, 0x55667788u);
  opt.insert(opt.end(), ts.begin(), ts.end());
  auto s = segment(7, 8, 100, opt, {1, 2, 3, 4, 5});
  sp.to_server(s.data(), header_len(s));
  assert_int_equal(load_be32(&s[31]), 0x55667788u + 0x0a0b0c0du);
  checksum_still_valid(s);
  sp.to_client(s.data(), header_len(s));
  assert_int_equal(load_be32(&s[27]), 0x11223344u - 0x0a0b0c0du);
  checksum_still_valid(s);
  // A malformed option list (length running past the header): options untouched, seq/ack still rewritten.
  auto bad = segment(9, 10, 11, {8, 40, 0, 0});
  sp.to_server(bad.data(), header_len(bad));
  assert_int_equal(load_be32(&bad[8]), 10u + 0x01020304u);
  checksum_still_valid(bad);
  assert_false(sp.to_server(bad.data(), 12));
}

void inserted_bytes(void**) {
  // dpgw sent the server 28 bytes of its own (a PROXY v2 header) before the client's: the client's sequence
  // numbers move up by 28 towards the server, and the server's acknowledgments (and SACK edges) down again.
  TcpSplice sp{0, 0, 0, 0, 28, 0};
  auto c = segment(1000, 77, 512, {});
  sp.to_server(c.data(), header_len(c));
  assert_int_equal(load_be32(&c[4]), 1028);
  checksum_still_valid(c);
  std::vector<uint8_t> sack = {1, 1, 5, 10, 0, 0, 0x04, 0x10, 0, 0, 0x04, 0x20};
  auto s = segment(77, 1028, 512, sack);
  sp.to_client(s.data(), header_len(s));
  assert_int_equal(load_be32(&s[8]), 1000);
  assert_int_equal(load_be32(&s[24]), 0x0410 - 28);
  assert_int_equal(load_be32(&s[28]), 0x0420 - 28);
  checksum_still_valid(s);
  // The client scales its windows, the server refused scaling: towards the server they grow.
  TcpSplice noscale{0, 0, 7, 0, 0, 7};
  auto w = segment(1, 2, 100, {});
  noscale.to_server(w.data(), header_len(w));
  assert_int_equal(load_be16(&w[14]), 12800);
  checksum_still_valid(w);
}

void windows(void**) {
  TcpSplice same{0, 0, 7, 7};
  assert_int_equal(same.window_to_client(1234), 1234);
  TcpSplice up{0, 0, 9, 7};  // ours is larger: the server's window shrinks in our scale
  assert_int_equal(up.window_to_client(1024), 256);
  assert_int_equal(up.window_to_client(1), 1);  // never 0 when the server has room
  assert_int_equal(up.window_to_client(0), 0);
  TcpSplice down{0, 0, 0, 14};  // the server scales a lot, we do not at all: saturate
  assert_int_equal(down.window_to_client(100), 65535);
}

// While dpgw holds first bytes it acknowledged to the client itself, the server's acknowledgments of less reach
// the client as that much, with the window shrunk by the difference (the right edge stays); more passes as is.
void ack_floor(void**) {
  TcpSplice sp{0x1000, 0, 7, 7, 28, 0};
  sp.hold_acks = true;
  sp.ack_floor = 5000;  // client space
  // The server acknowledged up to 4028 in its space (4000 for the client): 1000 short.
  auto s = segment(0x2000, 4028, 100, ts_option(1, 2));  // window 100 << 7 = 12800 bytes
  assert_true(sp.to_client(s.data(), header_len(s)));
  assert_int_equal(load_be32(&s[8]), 5000);
  assert_int_equal(load_be16(&s[14]), (12800 - 1000) >> 7);
  checksum_still_valid(s);
  // Past the floor: only the usual rewriting.
  auto p = segment(0x2000, 6028, 100, {});
  sp.to_client(p.data(), header_len(p));
  assert_int_equal(load_be32(&p[8]), 6000);
  assert_int_equal(load_be16(&p[14]), 100);
  checksum_still_valid(p);
  // A window smaller than the gap: nothing left of it.
  auto z = segment(0x2000, 28, 2, {});
  sp.to_client(z.data(), header_len(z));
  assert_int_equal(load_be32(&z[8]), 5000);
  assert_int_equal(load_be16(&z[14]), 0);
  checksum_still_valid(z);
  // Across the wrap of the sequence space.
  sp.ack_floor = 0x10;
  auto w = segment(0x2000, 0xfffffff0u + 28, 100, {});
  sp.to_client(w.data(), header_len(w));
  assert_int_equal(load_be32(&w[8]), 0x10);
  checksum_still_valid(w);
  // Without ACK flag, or once the bytes are delivered (hold_acks off): untouched.
  auto n = segment(0x2000, 28, 100, {});
  n[13] = 0x02;
  store_be16(&n[16], 0);
  store_be16(&n[16], ipv4_l4_checksum(kSrc, kDst, 6, n));
  sp.to_client(n.data(), header_len(n));
  assert_int_equal(load_be32(&n[8]), 0);
  sp.hold_acks = false;
  auto o = segment(0x2000, 28, 100, {});
  sp.to_client(o.data(), header_len(o));
  assert_int_equal(load_be32(&o[8]), 0);
  checksum_still_valid(o);
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(client_to_server),
      cmocka_unit_test(server_to_client),
      cmocka_unit_test(odd_offsets_and_junk),
      cmocka_unit_test(inserted_bytes),
      cmocka_unit_test(windows),
      cmocka_unit_test(ack_floor),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
