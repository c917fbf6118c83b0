// The QUIC Initial reader (ingress/quic_initial.hpp). Random bytes never get past the AEAD, so the input picks
// one of two modes (its first byte, low bit):
// - raw (0): up to 8 datagrams, each [u16 length][bytes], added to one connection as they are: the header
//   checks, the DCID rule and decryption failures;
// - sealed (1): up to 4 Initials around fuzzed plaintext (CRYPTO, ACK, PADDING frames and whatever else the
//   fuzzer writes), protected with the client Initial keys as RFC 9001 5 says (the tests' sealer,
//   tests/support/quic_initial_sealer.hpp), each [u8 flags][u32 packet number][u8 token length][u16 payload
//   length][payload]: the frame parser, the CRYPTO stream's reassembly and the ClientHello inside.
// Properties: a name found is plausible_hostname(); quic_initial_dcid() of a datagram agrees with the reader.
#include <vector>

#include "fuzz/fuzz.hpp"
#include "ingress/client_hello.hpp"
#include "ingress/quic_initial.hpp"
#include "tests/support/quic_initial_sealer.hpp"

using namespace dptun;

namespace {

QuicInitialReader g_reader;

void check(const QuicResult& r) {
  FUZZ_CHECK(quic_status_name(r.status) != nullptr);
  if (r.status == QuicStatus::Found)
    FUZZ_CHECK(plausible_hostname(r.name));
  else
    FUZZ_CHECK(r.name.empty());
}

// The Destination Connection IDs a sealed Initial may carry (flags bits 3-4): RFC 9001 Appendix A's, another
// one, an empty one and the longest (20 bytes).
const std::vector<uint8_t> kDcids[4] = {
    dptun::test::kRfc9001Dcid,
    {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08},
    {},
    std::vector<uint8_t>(20, 0xa5),
};

// flags: bits 0-1 packet number length - 1, bits 3-4 DCID, bit 5 no padding to 1200 bytes, bit 6 a flipped tag
// bit, bit 7 an 8-byte Source Connection ID.
std::vector<uint8_t> seal(uint8_t flags, uint32_t pn, std::span<const uint8_t> token, std::span<const uint8_t> frames) {
  static dptun::test::InitialSealer sealer;
  dptun::test::InitialSpec spec;
  spec.pn_len = uint8_t((flags & 3) + 1);
  spec.pn = pn;
  spec.dcid = kDcids[(flags >> 3) & 3];
  if (flags & 0x80) spec.scid.assign(8, 0x5c);
  spec.token.assign(token.begin(), token.end());
  spec.pad = !(flags & 0x20);
  spec.flip_tag = flags & 0x40;
  return sealer.seal(spec, frames);
}

void add(std::span<const uint8_t> dgram) {
  const std::span<const uint8_t> dcid = quic_initial_dcid(dgram);
  FUZZ_CHECK(dcid.size() <= 20);
  if (!dcid.empty()) FUZZ_CHECK(dcid.data() == dgram.data() + 6 && dgram.size() >= 1200);
  const QuicResult r = g_reader.add(dgram);
  check(r);
  FUZZ_LOG("datagram of %zu bytes: %s %.*s\n", dgram.size(), quic_status_name(r.status), int(r.name.size()),
           r.name.data());
  // A datagram quic_initial_dcid() refuses is not an Initial for the reader either.
  if (dgram.size() < 1200 || (dgram[0] & 0xf0) != 0xc0) FUZZ_CHECK(r.status == QuicStatus::NotInitial);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FUZZ_CHECK(g_reader.ok());
  fuzz::Input in({data, size});
  const uint8_t mode = in.u8();
  g_reader.begin();
  if (!(mode & 1)) {
    for (int i = 0; i < 8 && in.left(); ++i) add(in.bytes(in.u16()));
  } else {
    for (int i = 0; i < 4 && in.left(); ++i) {
      const uint8_t flags = in.u8();
      const uint32_t pn = in.u32();
      const auto token = in.bytes(in.u8());
      const auto frames = in.bytes(in.u16() % 2100);
      const std::vector<uint8_t> dgram = seal(flags, pn, token, frames);
      add(dgram);
    }
  }
  check(g_reader.result());
  return 0;
}
