// The parsers dpctld's QUIC port runs on what a client sends in its ClientHello (control/quic_handshake.hpp): the
// ALPN, supported_versions and server_name extension bodies and a TLS 1.3 Certificate message body, as GnuTLS
// hands them over, plus the connection-ID layout and the alert mapping. Input: one body, fed to every parser (the
// first byte also picks an alert). Properties: an ALPN list that parses encodes back to the same bytes and has no
// empty name; supported_versions yields at most one version per two bytes and no GREASE value; a server name is
// never longer than the body allows; a Certificate body judged well-formed has exactly the lengths it declares;
// an 8-byte connection ID's index is its first four bytes, big-endian.
#include <string>
#include <vector>

#include "control/quic_handshake.hpp"
#include "fuzz/fuzz.hpp"

using namespace dptun;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> body(data, size);

  if (const auto names = parse_alpn_list(body)) {
    std::vector<uint8_t> again(2);
    for (const std::string& n : *names) {
      FUZZ_CHECK(!n.empty() && n.size() < 256);
      again.push_back(uint8_t(n.size()));
      again.insert(again.end(), n.begin(), n.end());
    }
    again[0] = uint8_t((again.size() - 2) >> 8);
    again[1] = uint8_t(again.size() - 2);
    FUZZ_CHECK(again.size() == size && std::equal(again.begin(), again.end(), data));
  }

  const std::vector<uint16_t> versions = parse_supported_versions(body);
  FUZZ_CHECK(size == 0 ? versions.empty() : versions.size() <= (size - 1) / 2);
  for (uint16_t v : versions) FUZZ_CHECK((v & 0x0f0f) != 0x0a0a);

  const std::string name = parse_server_name(body);
  FUZZ_CHECK(name.empty() || name.size() + 5 <= size);

  if (const auto empty = tls13_certificate_is_empty(body)) {
    const size_t ctx = data[0];
    const size_t list = size_t(data[1 + ctx]) << 16 | size_t(data[2 + ctx]) << 8 | data[3 + ctx];
    FUZZ_CHECK(size == 4 + ctx + list);
    FUZZ_CHECK(*empty == (list == 0));
  }

  const auto index = quic_cid_index(body);
  FUZZ_CHECK(index.has_value() == (size == kQuicCidLen));
  if (index) FUZZ_CHECK(*index == (uint32_t(data[0]) << 24 | uint32_t(data[1]) << 16 | uint32_t(data[2]) << 8 | data[3]));

  if (size >= 1) {
    FUZZ_CHECK(!alert_reason_text(data[0], size > 1 && (data[1] & 1)).empty());
    (void)openssl_error_for_alert(data[0], size > 1 && (data[1] & 1));
  }
  return 0;
}
