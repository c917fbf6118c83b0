// The HTTP/3 frame reader (proto/h3_frame.hpp, RFC 9114 7.1) on one stream, and the SETTINGS frames it reads
// (RFC 9114 7.2.4). The input's first byte picks the frame bound (16 << its low 3 bits bytes), the second where the
// stream (the rest) is cut in two; it is read once whole and once in those two pieces.
// Properties: both reads give the same frames, DATA bytes, DATA ends, error and at_boundary; no frame is over the
// bound; every SETTINGS frame that parses writes back (append_h3_settings) to one that reads the same values, and
// one that does not parse gives H3_SETTINGS_ERROR or H3_FRAME_ERROR.
#include <string>
#include <vector>

#include "fuzz/fuzz.hpp"
#include "proto/h3_frame.hpp"

using namespace dptun;

namespace {

struct Read {
  std::vector<std::pair<uint64_t, std::vector<uint8_t>>> frames;
  std::vector<uint8_t> data;
  size_t data_ends = 0;
  bool ok = true;
  uint64_t error = 0;
  bool boundary = true;
};

bool same(const H3Settings& a, const H3Settings& b) {
  return a.qpack_max_table_capacity == b.qpack_max_table_capacity && a.max_field_section_size == b.max_field_section_size &&
         a.qpack_blocked_streams == b.qpack_blocked_streams && a.enable_connect_protocol == b.enable_connect_protocol &&
         a.h3_datagram == b.h3_datagram;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t bound = size_t(16) << (data[0] & 7);
  const std::span<const uint8_t> stream(data + 2, size - 2);
  const size_t cut = stream.empty() ? 0 : size_t(data[1]) * stream.size() / 255;

  auto read = [&](std::initializer_list<std::span<const uint8_t>> pieces) {
    Read r;
    H3FrameReader reader(bound);
    H3FrameReader::Handlers h{[&](uint64_t type, std::span<const uint8_t> payload) {
                                FUZZ_CHECK(type != kH3FrameData && payload.size() <= bound);
                                r.frames.emplace_back(type, std::vector<uint8_t>(payload.begin(), payload.end()));
                                return true;
                              },
                              [&](std::span<const uint8_t> piece, bool end) {
                                r.data.insert(r.data.end(), piece.begin(), piece.end());
                                r.data_ends += end;
                                return true;
                              }};
    for (auto p : pieces)
      if (r.ok) r.ok = reader.feed(p, h);
    r.error = reader.error();
    r.boundary = reader.at_boundary();
    FUZZ_CHECK(r.ok == (r.error == 0));
    return r;
  };
  const Read whole = read({stream});
  const Read split = read({stream.first(cut), stream.subspan(cut)});
  FUZZ_CHECK(whole.frames == split.frames && whole.data == split.data && whole.data_ends == split.data_ends);
  FUZZ_CHECK(whole.error == split.error);
  if (whole.ok) FUZZ_CHECK(whole.boundary == split.boundary);
  FUZZ_CHECK(whole.error == 0 || whole.error == kH3ExcessiveLoad || whole.error == kH3FrameUnexpected);

  size_t settings = 0, bad = 0;
  for (const auto& [type, payload] : whole.frames) {
    if (type != kH3FrameSettings) continue;
    ++settings;
    uint64_t err = 0;
    auto s = parse_h3_settings(payload, &err);
    if (!s) {
      ++bad;
      FUZZ_CHECK(err == kH3SettingsError || err == kH3FrameError);
      continue;
    }
    std::vector<uint8_t> out;
    append_h3_settings(out, *s);
    H3FrameReader again(out.size());
    bool read_back = false;
    FUZZ_CHECK(again.feed(out, {[&](uint64_t type2, std::span<const uint8_t> p2) {
                                  FUZZ_CHECK(type2 == kH3FrameSettings);
                                  auto s2 = parse_h3_settings(p2);
                                  FUZZ_CHECK(s2 && same(*s, *s2));
                                  read_back = true;
                                  return true;
                                },
                                nullptr}));
    FUZZ_CHECK(read_back && again.at_boundary());
  }
  FUZZ_LOG("bound %zu cut %zu: %zu frames, %zu DATA bytes, error 0x%llx, %zu SETTINGS (%zu refused)\n", bound, cut,
           whole.frames.size(), whole.data.size(), (unsigned long long)whole.error, settings, bad);
  return 0;
}
