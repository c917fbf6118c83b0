// QUIC v1 client Initials: the Initial keys and header-protection mask against RFC 9001 Appendix A; then
// Initials built around a real ClientHello (OpenSSL's client, in memory) and protected by the tests' sealer
// (tests/support/quic_initial_sealer.hpp): one CRYPTO frame, several out of order between PINGs and PADDING, a ClientHello
// cut before and after its server_name; and what must not be read: tampered, too short, other versions and
// types, unknown frames, random bytes.
#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "ingress/quic_initial.hpp"
#include "tests/support/quic_initial_sealer.hpp"

#include "tests/unit/cmocka.hpp"  // after the headers that need <ios>: cmocka defines fail()

using namespace dptun;
using namespace dptun::test;

namespace {

const std::vector<uint8_t> kDcid = kRfc9001Dcid;

// A protected Initial carrying `payload` (padded so the datagram is 1200 bytes), packet number 2, 4-byte pn.
std::vector<uint8_t> protect(const std::vector<uint8_t>& payload, uint32_t version = 1, uint8_t type_bits = 0,
                             size_t token_len = 0, const std::vector<uint8_t>& dcid = kDcid) {
  static InitialSealer sealer;
  InitialSpec spec;
  spec.dcid = dcid;
  spec.version = version;
  spec.type_bits = type_bits;
  for (size_t i = 0; i < token_len; ++i) spec.token.push_back(uint8_t(i * 7));
  return sealer.seal(spec, payload);
}

std::string read_name(const std::vector<uint8_t>& dgram) {
  static QuicInitialReader reader;
  QuicResult r = reader.read(dgram);
  return r.status == QuicStatus::Found ? std::string(r.name) : std::string("<") + quic_status_name(r.status) + ">";
}

void rfc9001_keys(void**) {
  QuicInitialReader r;
  assert_true(r.ok());
  QuicInitialKeys k;
  assert_true(r.client_keys(kDcid, k));
  assert_memory_equal(k.key.data(), from_hex("1f369613dd76d5467730efcbe3b1a22d").data(), 16);
  assert_memory_equal(k.iv.data(), from_hex("fa044b2f42a3fd3b46fb255c").data(), 12);
  assert_memory_equal(k.hp.data(), from_hex("9f50449e04a0e810283a1e9933adedd2").data(), 16);
  uint8_t mask[16];
  assert_true(r.header_mask(k.hp, from_hex("d1b1c98dd7689fb8ec11d242b123dc9b").data(), mask));
  assert_memory_equal(mask, from_hex("437b9aec36").data(), 5);
}

void one_crypto_frame(void**) {
  const auto hello = client_hello_message("quic.example.org");
  std::vector<uint8_t> payload;
  crypto_frame(payload, hello, 0, hello.size());
  assert_string_equal(read_name(protect(payload)).c_str(), "quic.example.org");
}

void frames_out_of_order(void**) {
  // Like browsers that scatter the ClientHello: pieces in reverse order, PINGs and PADDING between them.
  const auto hello = client_hello_message("scattered.example.net");
  const size_t a = hello.size() / 3, b = 2 * hello.size() / 3;
  std::vector<uint8_t> payload = {0x01};
  crypto_frame(payload, hello, b, hello.size() - b);
  payload.insert(payload.end(), {0x00, 0x00, 0x01});
  crypto_frame(payload, hello, a, b - a);
  payload.push_back(0x01);
  crypto_frame(payload, hello, 0, a);
  assert_string_equal(read_name(protect(payload)).c_str(), "scattered.example.net");
  // Chrome's chaos protection: a dozen CRYPTO frames, out of order.
  std::vector<uint8_t> many;
  const size_t piece = hello.size() / 12 + 1;
  for (size_t k = 12; k-- > 0;) {
    const size_t off = k * piece;
    if (off < hello.size()) crypto_frame(many, hello, off, std::min(piece, hello.size() - off));
    many.push_back(0x01);
  }
  assert_string_equal(read_name(protect(many)).c_str(), "scattered.example.net");
  // A client coming back with a long NEW_TOKEN token.
  std::vector<uint8_t> one;
  crypto_frame(one, hello, 0, hello.size());
  assert_string_equal(read_name(protect(one, 1, 0, 150)).c_str(), "scattered.example.net");
  // An ACK frame (a later Initial may carry one) is skipped.
  std::vector<uint8_t> with_ack = {0x02, 0x05, 0x00, 0x00, 0x00};
  crypto_frame(with_ack, hello, 0, hello.size());
  assert_string_equal(read_name(protect(with_ack)).c_str(), "scattered.example.net");
}

void partial_hello(void**) {
  const auto hello = client_hello_message("partial.example.com");
  std::vector<uint8_t> head;
  crypto_frame(head, hello, 0, 40);  // before any extension
  assert_string_equal(read_name(protect(head)).c_str(), "<need_more>");
  // Only the second half: nothing from offset 0.
  std::vector<uint8_t> tail;
  crypto_frame(tail, hello, hello.size() / 2, hello.size() - hello.size() / 2);
  assert_string_equal(read_name(protect(tail)).c_str(), "<need_more>");
  // Up to just past the server name: enough, even though the ClientHello goes on in the next packet.
  const std::string sni = "partial.example.com";
  auto it = std::search(hello.begin(), hello.end(), sni.begin(), sni.end());
  assert_true(it != hello.end());
  std::vector<uint8_t> upto;
  crypto_frame(upto, hello, 0, size_t(it - hello.begin()) + sni.size());
  assert_string_equal(read_name(protect(upto)).c_str(), "partial.example.com");
}

std::string status_of(const QuicResult& r) {
  return r.status == QuicStatus::Found ? std::string(r.name) : std::string("<") + quic_status_name(r.status) + ">";
}

void hello_over_two_initials(void**) {
  // The server name only in the second Initial (a post-quantum key share before it): neither packet names the
  // host alone; read together, in either order, they do.
  const std::string sni = "two.packets.example";
  const auto hello = client_hello_message(sni.c_str());
  auto it = std::search(hello.begin(), hello.end(), sni.begin(), sni.end());
  assert_true(it != hello.end());
  const size_t cut = size_t(it - hello.begin()) - 2;  // inside the server_name extension
  std::vector<uint8_t> p1, p2;
  crypto_frame(p1, hello, 0, cut);
  crypto_frame(p2, hello, cut, hello.size() - cut);
  const auto first = protect(p1), second = protect(p2);
  QuicInitialReader r;
  assert_string_equal(status_of(r.read(first)).c_str(), "<need_more>");
  assert_string_equal(status_of(r.read(second)).c_str(), "<need_more>");
  r.begin();
  assert_string_equal(status_of(r.add(first)).c_str(), "<need_more>");
  assert_string_equal(status_of(r.add(second)).c_str(), sni.c_str());
  r.begin();
  assert_string_equal(status_of(r.add(second)).c_str(), "<need_more>");
  assert_string_equal(status_of(r.add(first)).c_str(), sni.c_str());
  // A datagram that cannot be read in between (junk, another connection's Initial) leaves what was read.
  r.begin();
  assert_string_equal(status_of(r.add(first)).c_str(), "<need_more>");
  std::vector<uint8_t> junk(1250, 0x5a);
  assert_string_equal(status_of(r.add(junk)).c_str(), "<not_initial>");
  const auto other = protect(p2, 1, 0, 0, from_hex("0011223344556677"));
  assert_string_equal(status_of(r.add(other)).c_str(), "<malformed>");  // another Destination Connection ID
  auto tampered = second;
  tampered[300] ^= 0x80;
  assert_string_equal(status_of(r.add(tampered)).c_str(), "<decrypt_failed>");
  assert_string_equal(status_of(r.result()).c_str(), "<need_more>");
  assert_string_equal(status_of(r.add(second)).c_str(), sni.c_str());
  // A client that resends its first Initial many times (lost answers): the same pieces are noted once.
  r.begin();
  for (int i = 0; i < 200; ++i) assert_string_equal(status_of(r.add(first)).c_str(), "<need_more>");
  assert_string_equal(status_of(r.add(second)).c_str(), sni.c_str());
  // The cheap check before a held datagram is read: a v1 client Initial of >= 1200 bytes, and its DCID.
  const auto d = quic_initial_dcid(first);
  assert_int_equal(d.size(), kDcid.size());
  assert_memory_equal(d.data(), kDcid.data(), kDcid.size());
  assert_true(quic_initial_dcid(junk).empty());
  assert_true(quic_initial_dcid(std::span<const uint8_t>(first.data(), 1199)).empty());
  assert_true(quic_initial_dcid(protect(p2, 1, 2)).empty());  // a Handshake packet
  // begin() forgets: the second packet alone is not enough again.
  r.begin();
  assert_string_equal(status_of(r.add(second)).c_str(), "<need_more>");
  // Chrome-like scatter over both packets: every piece out of order, the name split between them.
  std::vector<uint8_t> s1, s2;
  const size_t piece = hello.size() / 8 + 1;
  for (size_t k = 8; k-- > 0;) {
    const size_t off = k * piece;
    if (off < hello.size()) crypto_frame(k % 2 ? s1 : s2, hello, off, std::min(piece, hello.size() - off));
  }
  r.begin();
  assert_string_equal(status_of(r.add(protect(s1))).c_str(), "<need_more>");
  assert_string_equal(status_of(r.add(protect(s2))).c_str(), sni.c_str());
}

void refused(void**) {
  const auto hello = client_hello_message("x.example");
  std::vector<uint8_t> payload;
  crypto_frame(payload, hello, 0, hello.size());
  auto good = protect(payload);
  auto tampered = good;
  tampered[200] ^= 0x01;
  assert_string_equal(read_name(tampered).c_str(), "<decrypt_failed>");
  assert_string_equal(read_name(std::vector<uint8_t>(good.begin(), good.begin() + 1199)).c_str(), "<not_initial>");
  assert_string_equal(read_name(protect(payload, 0x6b3343cf)).c_str(), "<not_initial>");  // QUIC v2
  assert_string_equal(read_name(protect(payload, 1, 2)).c_str(), "<not_initial>");        // Handshake packet
  auto short_header = good;
  short_header[0] = 0x43;
  assert_string_equal(read_name(short_header).c_str(), "<not_initial>");
  std::vector<uint8_t> stream_frame = {0x08, 0x00, 0x01, 'x'};  // STREAM in an Initial: not allowed
  assert_string_equal(read_name(protect(stream_frame)).c_str(), "<malformed>");
  auto long_dcid = good;
  long_dcid[5] = 21;
  assert_string_equal(read_name(long_dcid).c_str(), "<malformed>");
  std::mt19937 rng(11);
  QuicInitialReader r;
  for (int i = 0; i < 3000; ++i) {
    std::vector<uint8_t> junk(1200 + rng() % 300);
    for (auto& b : junk) b = uint8_t(rng());
    junk[0] = uint8_t(0xc0 | (junk[0] & 0x0f));
    junk[1] = junk[2] = junk[3] = 0;
    junk[4] = 1;
    junk[5] = uint8_t(rng() % 21);
    QuicResult res = r.read(junk);
    assert_true(res.status != QuicStatus::Found);
  }
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(rfc9001_keys),   cmocka_unit_test(one_crypto_frame), cmocka_unit_test(frames_out_of_order),
      cmocka_unit_test(partial_hello),  cmocka_unit_test(hello_over_two_initials), cmocka_unit_test(refused),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
