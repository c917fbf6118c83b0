// HTTP/3 field sections with QPACK (RFC 9204) through nghttp3, static table only: requests and answers encoded
// and decoded back; static table indices checked against RFC 9204 Appendix A both ways (what nghttp3 writes, and
// sections written here by hand, including RFC 7541's Huffman example C.4.1); references to the dynamic table
// (capacity 0) and broken sections are Malformed; RFC 9114 4.2.2's size (name + value + 32 per field) over
// max_size is TooLarge.
#include "proto/h3_fields.hpp"

#include <string>
#include <vector>

#include "tests/unit/cmocka.hpp"

using namespace dptun;
using dptun::test::from_hex;

namespace {

using Bytes = std::vector<uint8_t>;
using Fields = std::vector<HttpField>;

bool same(const Fields& a, const Fields& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].name != b[i].name || a[i].value != b[i].value) return false;
  return true;
}

Bytes text(const std::string& s) { return Bytes(s.begin(), s.end()); }

Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

size_t section_size(const Fields& f) {
  size_t n = 0;
  for (const auto& x : f) n += x.name.size() + x.value.size() + 32;
  return n;
}

const Fields kRequest = {
    {":method", "CONNECT"},
    {":protocol", "connect-udp"},
    {":scheme", "https"},
    {":authority", "gw.example.net:443"},
    {":path", "/.well-known/masque/udp/192.0.2.6/443/"},
    {"capsule-protocol", "?1"},
};

void round_trip(void**) {
  const Fields answers[] = {
      {{":status", "200"}, {"capsule-protocol", "?1"}},
      {{":status", "404"}, {"proxy-status", "dptun; error=destination_not_found; details=\"no route\""}},
      {{":status", "431"}},
      {{":status", "299"}, {"x-empty", ""}, {"x-long", std::string(3000, 'v')}},
  };
  for (const Fields& f : {kRequest, answers[0], answers[1], answers[2], answers[3]}) {
    Bytes out = {0xee};  // appended after what is there
    assert_true(encode_h3_field_section(f, out));
    assert_int_equal(out[0], 0xee);
    FieldSectionError why = FieldSectionError::Count;
    auto got = decode_h3_field_section(std::span<const uint8_t>(out).subspan(1), 65536, &why);
    assert_true(got.has_value());
    assert_true(same(*got, f));
    assert_int_equal(int(why), int(FieldSectionError::Count));  // untouched on success
  }
  // No fields at all: the two-byte prefix alone.
  Bytes out;
  assert_true(encode_h3_field_section({}, out));
  assert_true(out == from_hex("0000"));
  auto got = decode_h3_field_section(out, 100);
  assert_true(got.has_value() && got->empty());
}

// What nghttp3 writes for fields that are whole static entries (RFC 9204 Appendix A): prefix 00 00 (Required
// Insert Count 0, Base 0), then an indexed field line 11xxxxxx (T=1: static) with the 6-bit index.
void static_indices_written(void**) {
  struct Case {
    HttpField f;
    const char* hex;
  } cases[] = {
      {{":method", "CONNECT"}, "0000cf"},  // 15
      {{":method", "GET"}, "0000d1"},      // 17
      {{":scheme", "https"}, "0000d7"},    // 23
      {{":status", "200"}, "0000d9"},      // 25
      {{":status", "404"}, "0000db"},      // 27
      {{":status", "403"}, "0000ff05"},    // 68: 63 in the prefix, 5 in the next byte
  };
  for (const auto& c : cases) {
    Bytes out;
    assert_true(encode_h3_field_section(std::span<const HttpField>(&c.f, 1), out));
    assert_true(out == from_hex(c.hex));
  }
}

// A CONNECT-UDP request written here byte by byte (RFC 9204 4.5), read by nghttp3's decoder.
void hand_written(void**) {
  const std::string path = "/.well-known/masque/udp/192.0.2.6/443/";
  const Bytes section = cat({
      from_hex("0000"),                                             // Required Insert Count 0, Base 0
      from_hex("cf"),                                               // indexed, static 15: :method CONNECT
      from_hex("d7"),                                               // indexed, static 23: :scheme https
      from_hex("50" "8c" "f1e3c2e5f23a6ba0ab90f4ff"),               // static name 0 (:authority), Huffman value
      cat({from_hex("51"), Bytes{uint8_t(path.size())}, text(path)}),  // static name 1 (:path), literal value
      cat({from_hex("2702"), text(":protocol"), from_hex("0b"), text("connect-udp")}),  // literal name (7 + 2)
      cat({from_hex("2709"), text("capsule-protocol"), from_hex("02"), text("?1")}),     // literal name (7 + 9)
      cat({from_hex("5f0a" "03"), text("299")}),  // static name 25 (:status, 15 + 10), value "299"
  });
  auto got = decode_h3_field_section(section, 4096);
  assert_true(got.has_value());
  const Fields want = {
      {":method", "CONNECT"},
      {":scheme", "https"},
      {":authority", "www.example.com"},  // RFC 7541 C.4.1's Huffman code
      {":path", path},
      {":protocol", "connect-udp"},
      {"capsule-protocol", "?1"},
      {":status", "299"},
  };
  assert_true(same(*got, want));
}

void dynamic_table_refused(void**) {
  const char* sections[] = {
      "0200" "d1",    // Required Insert Count 1 (encoded 2): needs an entry a capacity-0 table cannot have
      "0100" "d1",    // the same with encoded count 1
      "0000" "80",    // indexed field line, dynamic (T=0), relative index 0
      "0000" "10",    // indexed field line with post-base index 0
      "0000" "4003" "616263",  // literal with a dynamic name reference
      "0000" "0003" "616263",  // literal with a post-base name reference
  };
  for (const char* hex : sections) {
    FieldSectionError why = FieldSectionError::Count;
    assert_false(decode_h3_field_section(from_hex(hex), 4096, &why).has_value());
    assert_int_equal(int(why), int(FieldSectionError::Malformed));
  }
}

void malformed(void**) {
  const char* sections[] = {
      "",                  // no prefix
      "00",                // half a prefix
      "0000" "5005" "6162",  // a value shorter than its length
      "0000" "ff24",       // static index 99: past the table's end (0..98)
      "0000" "27",         // a literal name's length and nothing more
      "0000" "508c" "f1e3c2e5f23a6ba0ab90f4",  // a Huffman value cut short
      "0000" "5081" "00",  // Huffman: 8 zero bits are a whole symbol's start but no padding of ones
  };
  for (const char* hex : sections) {
    FieldSectionError why = FieldSectionError::Count;
    assert_false(decode_h3_field_section(from_hex(hex), 4096, &why).has_value());
    assert_int_equal(int(why), int(FieldSectionError::Malformed));
  }
  assert_string_equal(field_section_error_name(FieldSectionError::Malformed), "malformed");
  assert_string_equal(field_section_error_name(FieldSectionError::TooLarge), "too_large");
}

void too_large(void**) {
  Bytes out;
  assert_true(encode_h3_field_section(kRequest, out));
  const size_t size = section_size(kRequest);
  assert_int_equal(size, 7 + 7 + 9 + 11 + 7 + 5 + 10 + 18 + 5 + 38 + 16 + 2 + 6 * 32);
  assert_true(decode_h3_field_section(out, size).has_value());  // exactly the bound
  FieldSectionError why = FieldSectionError::Count;
  assert_false(decode_h3_field_section(out, size - 1, &why).has_value());
  assert_int_equal(int(why), int(FieldSectionError::TooLarge));
  // Small bounds stop at the first field: 7 + 7 + 32 = 46.
  assert_true(decode_h3_field_section(from_hex("0000cf"), 46).has_value());
  assert_false(decode_h3_field_section(from_hex("0000cf"), 45, &why).has_value());
  assert_int_equal(int(why), int(FieldSectionError::TooLarge));
  // A bound is checked before what follows is read: a too-large field, then garbage, is TooLarge.
  assert_false(decode_h3_field_section(from_hex("0000cf" "ff"), 10, &why).has_value());
  assert_int_equal(int(why), int(FieldSectionError::TooLarge));
  // Many small fields: each counts 32 more than its bytes.
  Fields many(100, HttpField{"a", "b"});
  out.clear();
  assert_true(encode_h3_field_section(many, out));
  assert_true(decode_h3_field_section(out, 100 * 34).has_value());
  assert_false(decode_h3_field_section(out, 100 * 34 - 1, &why).has_value());
  assert_int_equal(int(why), int(FieldSectionError::TooLarge));
  // One value over nghttp3's own bound for a single string (between 70000 and 200000 bytes in 0.8): TooLarge
  // whatever max_size says.
  const Fields huge = {{"x-huge", std::string(200000, 'h')}};
  out.clear();
  assert_true(encode_h3_field_section(huge, out));
  assert_false(decode_h3_field_section(out, size_t(1) << 30, &why).has_value());
  assert_int_equal(int(why), int(FieldSectionError::TooLarge));
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(round_trip),   cmocka_unit_test(static_indices_written), cmocka_unit_test(hand_written),
      cmocka_unit_test(dynamic_table_refused), cmocka_unit_test(malformed),     cmocka_unit_test(too_large),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
