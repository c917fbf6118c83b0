// HTTP Datagrams of UDP proxying (proto/masque_datagram.hpp, RFC 9297 2.1, RFC 9298 5): the input is a QUIC
// DATAGRAM frame's payload as a dpgw worker would get it, and read again as a DATAGRAM capsule's value.
// Properties: an accepted datagram's stream is a client-initiated bidirectional one (a multiple of 4, quarter ID
// at most 2^60 - 1) and its payload lies inside the input and ends with it; the header written back for that
// stream and context ID is no longer than what was read (the input's varints may be longer than needed) and reads
// back to the same values; a refusal has a reason.
#include <vector>

#include "fuzz/fuzz.hpp"
#include "proto/masque_datagram.hpp"

using namespace dptun;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> in(data, size);
  HttpDatagramError why = HttpDatagramError::Count;
  if (auto h = parse_h3_datagram(in, &why)) {
    FUZZ_CHECK(h->stream_id % 4 == 0 && h->stream_id / 4 <= kMaxQuarterStreamId);
    FUZZ_CHECK(h->udp.payload.data() >= data && h->udp.payload.data() + h->udp.payload.size() == data + size);
    const size_t consumed = size_t(h->udp.payload.data() - data);
    std::vector<uint8_t> out(h3_datagram_header_len(h->stream_id, h->udp.context_id) + h->udp.payload.size());
    const size_t n = write_h3_datagram_header(out, h->stream_id, h->udp.context_id);
    FUZZ_CHECK(n > 0 && n <= consumed);
    std::copy(h->udp.payload.begin(), h->udp.payload.end(), out.begin() + ptrdiff_t(n));
    auto back = parse_h3_datagram(out);
    FUZZ_CHECK(back && back->stream_id == h->stream_id && back->udp.context_id == h->udp.context_id &&
               back->udp.payload.size() == h->udp.payload.size());
  } else {
    FUZZ_CHECK(why != HttpDatagramError::Count);
  }
  why = HttpDatagramError::Count;
  if (auto p = parse_udp_proxying_payload(in, &why))
    FUZZ_CHECK(p->payload.data() + p->payload.size() == data + size && p->payload.data() > data);
  else
    FUZZ_CHECK(why == HttpDatagramError::Truncated);
  return 0;
}
