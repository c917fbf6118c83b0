// The capsule stream reader (proto/masque_capsule.hpp, RFC 9297 3.2) on a CONNECT-UDP request stream. The
// input's first byte picks the read size (1..256 bytes) and the DATAGRAM bound (16 << its low 3 bits bytes);
// the rest is the stream, fed once in pieces of that size and once whole.
// Properties: both readers deliver the same DATAGRAM values and the same counts (a capsule split across reads
// reads as one); no value is over the bound; delivered + skipped + oversized capsules and at_boundary agree with
// a plain walk of the stream; every delivered value re-encoded as a capsule reads back the same.
#include <string>
#include <vector>

#include "fuzz/fuzz.hpp"
#include "proto/masque_capsule.hpp"
#include "proto/quic_varint.hpp"

using namespace dptun;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t step = size_t(data[0]) + 1;
  const size_t bound = size_t(16) << (data[0] & 7);
  const std::span<const uint8_t> stream(data + 1, size - 1);

  std::vector<std::vector<uint8_t>> split, whole;
  CapsuleReader a(bound), b(bound);
  for (size_t i = 0; i < stream.size(); i += step)
    a.feed(stream.subspan(i, std::min(step, stream.size() - i)), [&](std::span<const uint8_t> v) {
      FUZZ_CHECK(v.size() <= bound);
      split.emplace_back(v.begin(), v.end());
    });
  b.feed(stream, [&](std::span<const uint8_t> v) { whole.emplace_back(v.begin(), v.end()); });
  FUZZ_CHECK(split == whole);
  FUZZ_CHECK(a.datagrams() == b.datagrams() && a.skipped() == b.skipped() && a.oversized() == b.oversized());
  FUZZ_CHECK(a.at_boundary() == b.at_boundary());

  // A plain walk: each capsule's type, length and value in turn.
  const uint8_t* p = stream.data();
  const uint8_t* end = p + stream.size();
  uint64_t datagrams = 0, skipped = 0, oversized = 0;
  bool boundary = true;
  while (p < end) {
    uint64_t type = 0, len = 0;
    if (!quic_read_varint(p, end, type) || !quic_read_varint(p, end, len)) {
      boundary = false;
      break;
    }
    if (type != kDatagramCapsuleType) ++skipped;
    else if (len > bound) ++oversized;
    if (uint64_t(end - p) < len) {
      boundary = false;
      break;
    }
    if (type == kDatagramCapsuleType && len <= bound) ++datagrams;
    p += len;
  }
  FUZZ_CHECK(a.datagrams() == datagrams && a.skipped() == skipped && a.oversized() == oversized);
  FUZZ_CHECK(a.at_boundary() == boundary);

  // Written back: the same values.
  std::vector<uint8_t> out;
  for (const auto& v : split) {
    append_capsule_header(out, kDatagramCapsuleType, v.size());
    out.insert(out.end(), v.begin(), v.end());
  }
  std::vector<std::vector<uint8_t>> again;
  CapsuleReader c(bound);
  c.feed(out, [&](std::span<const uint8_t> v) { again.emplace_back(v.begin(), v.end()); });
  FUZZ_CHECK(again == split && c.at_boundary());
  return 0;
}
