// HTTP/3 framing (RFC 9114 7): frames read back the same whether a stream arrives whole, byte by byte or split at
// any point; DATA passed on in pieces without buffering; frames over the bound (H3_EXCESSIVE_LOAD) and HTTP/2's
// reserved frame types (H3_FRAME_UNEXPECTED) refused; at_boundary only between frames. SETTINGS (RFC 9114 7.2.4)
// written and read back, with the errors RFC 9114 7.2.4.1, RFC 9220 3 and RFC 9297 2.1.1 require.
#include "proto/h3_frame.hpp"

#include <string>
#include <vector>

#include "tests/unit/cmocka.hpp"

using namespace dptun;
using dptun::test::from_hex;

namespace {

using Bytes = std::vector<uint8_t>;

struct Seen {
  std::vector<std::pair<uint64_t, Bytes>> frames;  // non-DATA frames
  std::vector<Bytes> data;                         // DATA payloads, pieces joined
  size_t data_pieces = 0;
  Bytes partial;
};

H3FrameReader::Handlers handlers(Seen& s) {
  return {
      [&s](uint64_t type, std::span<const uint8_t> payload) {
        s.frames.emplace_back(type, Bytes(payload.begin(), payload.end()));
        return true;
      },
      [&s](std::span<const uint8_t> piece, bool end) {
        ++s.data_pieces;
        s.partial.insert(s.partial.end(), piece.begin(), piece.end());
        if (end) {
          s.data.push_back(s.partial);
          s.partial.clear();
        }
        return true;
      },
  };
}

void add_frame(Bytes& out, uint64_t type, const Bytes& payload) {
  append_h3_frame_header(out, type, payload.size());
  out.insert(out.end(), payload.begin(), payload.end());
}

// A request stream's worth of frames: HEADERS, an unknown (reserved, 0x1f * 3 + 0x21) type, DATA, empty DATA,
// DATA of 300 bytes (two-byte length), an empty unknown frame, HEADERS (trailers).
Bytes sample_stream() {
  Bytes s;
  add_frame(s, kH3FrameHeaders, Bytes{0x00, 0x00, 0xd1, 0xd7});
  add_frame(s, 0x1f * 3 + 0x21, Bytes(70, 0x00));  // zeros that would read as frames if not skipped whole
  add_frame(s, kH3FrameData, Bytes{'a', 'b', 'c'});
  add_frame(s, kH3FrameData, Bytes{});
  add_frame(s, kH3FrameData, Bytes(300, 'x'));
  add_frame(s, 0x21, Bytes{});
  add_frame(s, kH3FrameHeaders, Bytes{0x00, 0x00});
  return s;
}

void known_bytes(void**) {
  Bytes out;
  append_h3_frame_header(out, kH3FrameHeaders, 300);
  assert_true(out == from_hex("01412c"));
  out.clear();
  append_h3_varint(out, kH3StreamControl);
  H3Settings s;
  s.enable_connect_protocol = true;
  s.h3_datagram = true;
  append_h3_settings(out, s);
  // Stream type 0, SETTINGS (4) of 4 bytes: ENABLE_CONNECT_PROTOCOL (8) = 1, H3_DATAGRAM (0x33) = 1.
  assert_true(out == from_hex("00" "0404" "0801" "3301"));
  out.clear();
  s.max_field_section_size = 16384;  // needs a 4-byte varint
  s.qpack_max_table_capacity = 0;
  append_h3_settings(out, s);
  assert_true(out == from_hex("0409" "0680004000" "0801" "3301"));
  out.clear();
  append_h3_settings(out, H3Settings{});
  assert_true(out == from_hex("0400"));  // nothing but defaults: an empty SETTINGS frame
}

void whole_stream(void**) {
  const Bytes stream = sample_stream();
  H3FrameReader r(1024);
  Seen s;
  assert_true(r.feed(stream, handlers(s)));
  assert_int_equal(r.error(), 0);
  assert_true(r.at_boundary());
  // The two unknown frames are skipped (RFC 9114 9), their payload never taken for frames.
  assert_int_equal(s.frames.size(), 2);
  assert_int_equal(r.skipped(), 2);
  assert_int_equal(s.frames[0].first, kH3FrameHeaders);
  assert_true(s.frames[0].second == (Bytes{0x00, 0x00, 0xd1, 0xd7}));
  assert_int_equal(s.frames[1].first, kH3FrameHeaders);
  assert_int_equal(s.data.size(), 3);
  assert_true(s.data[0] == (Bytes{'a', 'b', 'c'}));
  assert_true(s.data[1].empty());
  assert_true(s.data[2] == Bytes(300, 'x'));
}

// One byte at a time, and cut in two at every position: the same frames as one feed, and at_boundary exactly where
// a frame ends.
void every_split(void**) {
  const Bytes stream = sample_stream();
  Seen whole;
  H3FrameReader w(1024);
  assert_true(w.feed(stream, handlers(whole)));

  // Where frames end in the stream.
  std::vector<bool> boundary(stream.size() + 1, false);
  {
    const uint8_t* p = stream.data();
    boundary[0] = true;
    while (p < stream.data() + stream.size()) {
      size_t len = (size_t(1) << (p[0] >> 6));
      p += len;
      const size_t llen = size_t(1) << (p[0] >> 6);
      uint64_t v = p[0] & 0x3f;
      for (size_t i = 1; i < llen; ++i) v = v << 8 | p[i];
      p += llen + v;
      boundary[size_t(p - stream.data())] = true;
    }
  }

  Seen bytewise;
  H3FrameReader b(1024);
  for (size_t i = 0; i < stream.size(); ++i) {
    assert_int_equal(b.at_boundary(), boundary[i]);
    assert_true(b.feed(std::span<const uint8_t>(stream.data() + i, 1), handlers(bytewise)));
  }
  assert_true(b.at_boundary());
  assert_true(bytewise.frames == whole.frames);
  assert_true(bytewise.data == whole.data);
  assert_true(bytewise.data_pieces > whole.data_pieces);  // DATA came through in pieces, not buffered

  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    Seen two;
    H3FrameReader r(1024);
    const std::span<const uint8_t> all(stream);
    assert_true(r.feed(all.first(cut), handlers(two)));
    assert_int_equal(r.at_boundary(), boundary[cut]);
    assert_true(r.feed(all.subspan(cut), handlers(two)));
    assert_true(r.at_boundary());
    assert_true(two.frames == whole.frames);
    assert_true(two.data == whole.data);
  }
}

// DATA pieces are the bytes as they arrive: a 1000-byte DATA frame fed in 100-byte pieces reaches on_data as ten
// pieces (the first after the 2-byte header), the last with `end`; the bound does not apply to DATA.
void data_streamed(void**) {
  Bytes stream;
  add_frame(stream, kH3FrameData, Bytes(1000, 'd'));
  assert_int_equal(stream.size(), 1003);  // type 1 byte, length 2 bytes
  H3FrameReader r(16);
  std::vector<size_t> sizes;
  std::vector<bool> ends;
  H3FrameReader::Handlers h{nullptr, [&](std::span<const uint8_t> piece, bool end) {
                              sizes.push_back(piece.size());
                              ends.push_back(end);
                              return true;
                            }};
  for (size_t i = 0; i < stream.size(); i += 100)
    assert_true(r.feed(std::span<const uint8_t>(stream).subspan(i, std::min<size_t>(100, stream.size() - i)), h));
  assert_int_equal(sizes.size(), 11);
  assert_int_equal(sizes.front(), 97);
  assert_int_equal(sizes.back(), 3);
  size_t total = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    total += sizes[i];
    assert_int_equal(ends[i], i + 1 == sizes.size());
  }
  assert_int_equal(total, 1000);
  assert_true(r.at_boundary());
}

void oversize(void**) {
  Bytes stream;
  add_frame(stream, kH3FrameHeaders, Bytes(64, 0));
  {
    H3FrameReader r(64);  // exactly the bound: read
    Seen s;
    assert_true(r.feed(stream, handlers(s)));
    assert_int_equal(s.frames.size(), 1);
  }
  H3FrameReader r(63);
  Seen s;
  // Refused from the header alone (type 1 byte, length 64 in 2 bytes), before any of the payload arrives.
  assert_false(r.feed(std::span<const uint8_t>(stream).first(3), handlers(s)));
  assert_int_equal(r.error(), kH3ExcessiveLoad);
  assert_true(s.frames.empty());
  // A huge declared length (8-byte varint) on an unknown type: skipped as it comes, nothing buffered; a known type
  // as big is refused from its header.
  H3FrameReader u(1 << 20);
  Bytes huge = from_hex("21" "c0000000ffffffff");
  huge.resize(huge.size() + 5000, 0x01);
  assert_true(u.feed(huge, handlers(s)));
  assert_false(u.at_boundary());
  assert_int_equal(u.skipped(), 1);
  H3FrameReader k(1 << 20);
  assert_false(k.feed(from_hex("01" "c0000000ffffffff"), handlers(s)));
  assert_int_equal(k.error(), kH3ExcessiveLoad);
  assert_false(k.feed(Bytes{0x00}, handlers(s)));  // stays failed
}

void http2_types(void**) {
  for (uint64_t type : {0x02, 0x06, 0x08, 0x09}) {
    Bytes stream;
    add_frame(stream, kH3FrameHeaders, Bytes{0x00, 0x00});
    add_frame(stream, type, Bytes{0x01});
    H3FrameReader r(1024);
    Seen s;
    assert_false(r.feed(stream, handlers(s)));
    assert_int_equal(r.error(), kH3FrameUnexpected);
    assert_int_equal(s.frames.size(), 1);  // the frame before it was read
  }
  // The types around them are ordinary: CANCEL_PUSH 0x03 and GOAWAY 0x07 passed on, 0x0a (unknown) skipped.
  for (uint64_t type : {0x03, 0x07, 0x0a}) {
    Bytes stream;
    add_frame(stream, type, Bytes{0x01});
    H3FrameReader r(1024);
    Seen s;
    assert_true(r.feed(stream, handlers(s)));
    assert_int_equal(s.frames.size(), type == 0x0a ? 0 : 1);
    assert_int_equal(r.skipped(), type == 0x0a ? 1 : 0);
    if (type != 0x0a) assert_int_equal(s.frames[0].first, type);
  }
}

void handler_stops(void**) {
  const Bytes stream = sample_stream();
  H3FrameReader r(1024);
  size_t frames = 0;
  H3FrameReader::Handlers h{[&](uint64_t, std::span<const uint8_t>) { return ++frames < 2; },
                            [](std::span<const uint8_t>, bool) { return true; }};
  assert_false(r.feed(stream, h));
  assert_int_equal(r.error(), 0);
  assert_int_equal(frames, 2);
}

void cut_stream(void**) {
  H3FrameReader r(1024);
  Seen s;
  assert_true(r.at_boundary());
  assert_true(r.feed(from_hex("01"), handlers(s)));  // a type alone
  assert_false(r.at_boundary());
  assert_true(r.feed(from_hex("4003"), handlers(s)));  // a two-byte length: 3
  assert_false(r.at_boundary());
  assert_true(r.feed(from_hex("0000d1"), handlers(s)));
  assert_true(r.at_boundary());
  assert_int_equal(s.frames.size(), 1);
  assert_true(r.feed(from_hex("0005ab"), handlers(s)));  // DATA cut after its first byte
  assert_false(r.at_boundary());
}

void settings_round_trip(void**) {
  H3Settings s;
  s.qpack_max_table_capacity = 4096;
  s.max_field_section_size = 16384;
  s.qpack_blocked_streams = 100;
  s.enable_connect_protocol = true;
  s.h3_datagram = true;
  Bytes out;
  append_h3_settings(out, s);
  H3FrameReader r(256);
  Seen seen;
  assert_true(r.feed(out, handlers(seen)));
  assert_int_equal(seen.frames.size(), 1);
  assert_int_equal(seen.frames[0].first, kH3FrameSettings);
  uint64_t err = 0;
  auto got = parse_h3_settings(seen.frames[0].second, &err);
  assert_true(got.has_value());
  assert_int_equal(got->qpack_max_table_capacity, 4096);
  assert_int_equal(got->max_field_section_size, 16384);
  assert_int_equal(got->qpack_blocked_streams, 100);
  assert_true(got->enable_connect_protocol);
  assert_true(got->h3_datagram);

  // Empty: the defaults.
  got = parse_h3_settings({}, &err);
  assert_true(got.has_value());
  assert_int_equal(got->max_field_section_size, UINT64_MAX);
  assert_false(got->h3_datagram);

  // Unknown and GREASE identifiers ignored; 0 for the booleans is false.
  got = parse_h3_settings(from_hex("2105" "0800" "3300" "7f7f4000"), &err);
  assert_true(got.has_value());
  assert_false(got->enable_connect_protocol);
  assert_false(got->h3_datagram);
}

void settings_errors(void**) {
  struct Case {
    const char* hex;
    uint64_t error;
  } cases[] = {
      {"0801" "0801", kH3SettingsError},        // ENABLE_CONNECT_PROTOCOL twice
      {"3301" "0800" "3300", kH3SettingsError},  // H3_DATAGRAM twice, apart
      {"2105" "2106", kH3SettingsError},         // an unknown identifier twice
      {"0600" "4006" "00", kH3SettingsError},    // MAX_FIELD_SECTION_SIZE twice, the second in two bytes
      {"0200", kH3SettingsError},                // HTTP/2's ENABLE_PUSH
      {"0300", kH3SettingsError},                // MAX_CONCURRENT_STREAMS
      {"0400", kH3SettingsError},                // INITIAL_WINDOW_SIZE
      {"0501", kH3SettingsError},                // MAX_FRAME_SIZE
      {"0802", kH3SettingsError},                // ENABLE_CONNECT_PROTOCOL = 2
      {"3302", kH3SettingsError},                // H3_DATAGRAM = 2
      {"33c000000000000001" "01", kH3FrameError},  // H3_DATAGRAM = 1 (8-byte varint), then an identifier alone
      {"08", kH3FrameError},                     // identifier without a value
      {"0840", kH3FrameError},                   // value cut inside its varint
      {"0801" "c0", kH3FrameError},              // identifier cut inside its varint
  };
  for (const auto& c : cases) {
    uint64_t err = 0;
    auto got = parse_h3_settings(from_hex(c.hex), &err);
    assert_false(got.has_value());
    assert_int_equal(err, c.error);
  }
  // The long varint without the identifier after it: accepted.
  auto got = parse_h3_settings(from_hex("33c000000000000001"));
  assert_true(got.has_value() && got->h3_datagram);
  // 0x01, 0x06 and 0x07 are HTTP/3's own (QPACK and field section size), not reserved.
  assert_true(parse_h3_settings(from_hex("0100" "0600" "0700")).has_value());
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(known_bytes),    cmocka_unit_test(whole_stream),        cmocka_unit_test(every_split),
      cmocka_unit_test(data_streamed),  cmocka_unit_test(oversize),            cmocka_unit_test(http2_types),
      cmocka_unit_test(handler_stops),  cmocka_unit_test(cut_stream),          cmocka_unit_test(settings_round_trip),
      cmocka_unit_test(settings_errors),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
