// HTTP Datagrams of UDP proxying (RFC 9297 2.1, RFC 9298 5): the quarter stream ID and context ID read and
// written on known bytes, every varint length, the bounds (quarter stream ID over 2^60 - 1, truncated varints),
// and a header written into a buffer too small or for a stream that is not client-initiated bidirectional.
#include "tests/unit/cmocka.hpp"

#include <vector>

#include "proto/masque_datagram.hpp"

using namespace dptun;
using dptun::test::from_hex;

namespace {

void reads_known_bytes(void**) {
  // Quarter stream ID 1 (stream 4), context ID 0, payload "hi".
  std::vector<uint8_t> d = from_hex("01006869");
  auto h = parse_h3_datagram(d);
  assert_true(h.has_value());
  assert_int_equal(h->stream_id, 4);
  assert_int_equal(h->udp.context_id, 0);
  assert_int_equal(h->udp.payload.size(), 2);
  assert_int_equal(h->udp.payload[0], 'h');
  // Two-byte quarter stream ID 0x1234 (stream 0x48d0), four-byte context ID 2, empty payload.
  d = from_hex("523480000002");
  h = parse_h3_datagram(d);
  assert_true(h.has_value());
  assert_int_equal(h->stream_id, 0x48d0);
  assert_int_equal(h->udp.context_id, 2);
  assert_int_equal(h->udp.payload.size(), 0);
}

void refuses_bad_input(void**) {
  HttpDatagramError why = HttpDatagramError::Count;
  std::vector<uint8_t> empty;
  assert_false(parse_h3_datagram(empty, &why).has_value());
  assert_int_equal(int(why), int(HttpDatagramError::Truncated));
  std::vector<uint8_t> only_stream = from_hex("04");  // no context ID
  assert_false(parse_h3_datagram(only_stream, &why).has_value());
  assert_int_equal(int(why), int(HttpDatagramError::Truncated));
  // A 2-byte context ID cut short after the stream ID 0.
  assert_false(parse_h3_datagram(std::vector<uint8_t>{0x00, 0x40}, &why).has_value());
  assert_int_equal(int(why), int(HttpDatagramError::Truncated));
  assert_false(parse_h3_datagram(std::vector<uint8_t>{0xc0, 0, 0, 0}, &why).has_value());  // 8-byte varint, 4 bytes
  assert_int_equal(int(why), int(HttpDatagramError::Truncated));
  // 2^60 - 1 is the last quarter stream ID; 2^60 is a connection error (RFC 9297 2.1).
  std::vector<uint8_t> last = from_hex("cfffffffffffffff00");
  auto h = parse_h3_datagram(last);
  assert_true(h.has_value());
  assert_int_equal(h->stream_id, kMaxQuarterStreamId * 4);
  std::vector<uint8_t> over = from_hex("d00000000000000000");
  assert_false(parse_h3_datagram(over, &why).has_value());
  assert_int_equal(int(why), int(HttpDatagramError::QuarterStreamIdTooBig));
  // The capsule form: no quarter stream ID, the context ID first.
  const std::vector<uint8_t> capsule_value = from_hex("00ff");
  auto p = parse_udp_proxying_payload(capsule_value);
  assert_true(p.has_value());
  assert_int_equal(p->context_id, 0);
  assert_int_equal(p->payload.size(), 1);
  assert_false(parse_udp_proxying_payload(std::vector<uint8_t>{}, &why).has_value());
}

void writes_and_reads_back(void**) {
  const uint64_t streams[] = {0, 4, 63 * 4, 64 * 4, 16383 * 4, 16384 * 4, (uint64_t(1) << 30) * 4, kMaxQuarterStreamId * 4};
  const uint64_t contexts[] = {0, 1, 63, 64, 16384, (uint64_t(1) << 62) - 1};
  for (uint64_t s : streams)
    for (uint64_t c : contexts) {
      uint8_t buf[32] = {};
      const size_t n = write_h3_datagram_header(buf, s, c);
      assert_int_equal(n, h3_datagram_header_len(s, c));
      buf[n] = 0xab;
      auto h = parse_h3_datagram(std::span<const uint8_t>(buf, n + 1));
      assert_true(h.has_value());
      assert_int_equal(h->stream_id, s);
      assert_int_equal(h->udp.context_id, c);
      assert_int_equal(h->udp.payload.size(), 1);
      assert_int_equal(h->udp.payload[0], 0xab);
      // One byte short: nothing written.
      assert_int_equal(write_h3_datagram_header(std::span<uint8_t>(buf, n - 1), s, c), 0);
    }
  uint8_t buf[16];
  assert_int_equal(write_h3_datagram_header(buf, 2, 0), 0);  // not a client-initiated bidirectional stream
  assert_int_equal(write_h3_datagram_header(buf, 7, 0), 0);
  assert_int_equal(write_h3_datagram_header(buf, (kMaxQuarterStreamId + 1) * 4, 0), 0);
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(reads_known_bytes),
      cmocka_unit_test(refuses_bad_input),
      cmocka_unit_test(writes_and_reads_back),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
