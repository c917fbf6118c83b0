// The capsule protocol (RFC 9297 3.2): DATAGRAM capsules written and read back whether the stream arrives whole,
// byte by byte or in any split; capsules of other types skipped whole (RFC 9297 3.2), DATAGRAM capsules over the
// bound skipped and counted without being buffered; a stream ending inside a capsule is not at a boundary.
#include "tests/unit/cmocka.hpp"

#include <string>
#include <vector>

#include "proto/masque_capsule.hpp"
#include "proto/masque_datagram.hpp"

using namespace dptun;
using dptun::test::from_hex;

namespace {

using Bytes = std::vector<uint8_t>;

Bytes bytes_of(const std::string& s) { return Bytes(s.begin(), s.end()); }

// The UDP payloads (context ID 0) of the DATAGRAM capsules read from `stream` fed in pieces of `step` bytes.
std::vector<std::string> read_all(const Bytes& stream, size_t step, CapsuleReader& r) {
  std::vector<std::string> out;
  for (size_t i = 0; i < stream.size(); i += step) {
    const size_t n = std::min(step, stream.size() - i);
    r.feed(std::span<const uint8_t>(stream.data() + i, n), [&](std::span<const uint8_t> value) {
      auto p = parse_udp_proxying_payload(value);
      assert_true(p.has_value());
      assert_int_equal(p->context_id, 0);
      out.emplace_back(p->payload.begin(), p->payload.end());
    });
  }
  return out;
}

void known_bytes(void**) {
  Bytes out;
  append_datagram_capsule(out, 0, bytes_of("hi"));
  assert_true(out == from_hex("0003006869"));  // type 0, length 3, context ID 0, "hi"
  out.clear();
  append_capsule_header(out, 0x4242, 300);
  assert_true(out == from_hex("80004242412c"));  // 4-byte type, 2-byte length
}

void any_split(void**) {
  Bytes stream;
  const std::vector<std::string> sent = {"first", "", std::string(1500, 'x'), "last"};
  for (size_t i = 0; i < sent.size(); ++i) {
    append_datagram_capsule(stream, 0, bytes_of(sent[i]));
    if (i == 1) {  // an unknown capsule type between them, 70 bytes of value: skipped whole
      append_capsule_header(stream, 0x2f00, 70);
      stream.insert(stream.end(), 70, 0x00);  // zeros that would read as DATAGRAM capsules if not skipped
    }
  }
  for (size_t step : {size_t(1), size_t(2), size_t(3), size_t(7), size_t(64), size_t(1499), stream.size()}) {
    CapsuleReader r(2048);
    std::vector<std::string> got = read_all(stream, step, r);
    assert_true(got == sent);
    assert_true(r.at_boundary());
    assert_int_equal(r.datagrams(), 4);
    assert_int_equal(r.skipped(), 1);
    assert_int_equal(r.oversized(), 0);
  }
}

void bounds(void**) {
  Bytes stream;
  append_datagram_capsule(stream, 0, Bytes(4000, 0x00));  // over the bound: skipped, counted
  append_datagram_capsule(stream, 0, bytes_of("after"));
  // An unknown capsule claiming 2^62 - 1 bytes: skipped as it comes, never buffered.
  append_capsule_header(stream, 0x77, (uint64_t(1) << 62) - 1);
  stream.insert(stream.end(), 100000, 0xee);
  CapsuleReader r(1024);
  std::vector<std::string> got = read_all(stream, 333, r);
  assert_int_equal(got.size(), 1);
  assert_string_equal(got[0].c_str(), "after");
  assert_int_equal(r.oversized(), 1);
  assert_int_equal(r.skipped(), 1);
  assert_false(r.at_boundary());  // the stream ends inside the unknown capsule: malformed (RFC 9297 3.2)

  // Ends inside a header, and inside a DATAGRAM capsule's value.
  CapsuleReader h(1024);
  h.feed(from_hex("00"), [](std::span<const uint8_t>) { fail(); });
  assert_false(h.at_boundary());
  CapsuleReader v(1024);
  v.feed(from_hex("000500"), [](std::span<const uint8_t>) { fail(); });
  assert_false(v.at_boundary());
  v.feed(from_hex("01020304"), [](std::span<const uint8_t> value) { assert_int_equal(value.size(), 5); });
  assert_true(v.at_boundary());
  // An empty DATAGRAM capsule is delivered (empty: its reader finds no context ID).
  CapsuleReader e(1024);
  size_t calls = 0;
  e.feed(from_hex("0000"), [&](std::span<const uint8_t> value) {
    ++calls;
    assert_int_equal(value.size(), 0);
  });
  assert_int_equal(calls, 1);
  assert_true(e.at_boundary());
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(known_bytes),
      cmocka_unit_test(any_split),
      cmocka_unit_test(bounds),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
