// dpctld's failure log (control/handshake_failure.hpp): one JSON line per failed agent TLS handshake, with what
// an unauthenticated client chose (SNI, offered versions, certificate names) and the string escaping under it
// (common/json_writer.hpp json_escape). Input: [u8 flags][u32 verify error][u8 version count][u16 versions...]
// [u8 SNI length][SNI][u8 length][subject][u8 length][issuer][u8 length][serial][rest: OpenSSL's reason], and the
// whole input once more as one string for json_escape. Properties: the line is a JSON object that a strict
// parser (nlohmann, which insists on UTF-8) reads, and its "sni" is the client's SNI when that is valid UTF-8
// of at most 256 bytes; an escaped string reads back as the original when that is valid UTF-8.
#include <string>

#include "common/json_writer.hpp"
#include "control/handshake_failure.hpp"
#include "fuzz/fuzz.hpp"

#include <nlohmann/json.hpp>

using namespace dptun;

namespace {

// RFC 3629 UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = s[i];
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      n = 2, cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 3, cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 4, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return false;
      cp = cp << 6 | (static_cast<unsigned char>(s[i + k]) & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += n;
  }
  return true;
}

std::string str(std::span<const uint8_t> b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); }

nlohmann::json parse_strict(const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) {
    std::fprintf(stderr, "not JSON: %s\n", text.c_str());
    FUZZ_CHECK(!j.is_discarded());
  }
  return j;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string whole(reinterpret_cast<const char*>(data), size);
  const nlohmann::json s = parse_strict("\"" + json_escape(whole) + "\"");
  FUZZ_CHECK(s.is_string());
  if (valid_utf8(whole)) FUZZ_CHECK(s.get<std::string>() == whole);

  fuzz::Input in({data, size});
  const uint8_t flags = in.u8();
  HandshakeEvidence e;
  e.client = Endpoint{Ipv4{0x0a630102}, 40000};
  e.verify_error = int(in.u32() % 100);
  for (uint8_t n = in.u8() % 16; n > 0; --n) e.offered_versions.push_back(in.u16());
  e.sni = str(in.bytes(in.u8()));
  if (flags & 1) e.certificate = PeerCertificate{str(in.bytes(in.u8())), str(in.bytes(in.u8())), str(in.bytes(in.u8())),
                                                 "2030-01-01T00:00:00Z"};
  e.first_byte = flags & 2 ? 0x16 : -1;
  e.timed_out = flags & 4;
  e.closed_early = flags & 8;
  e.shed = flags & 16;
  e.openssl_reason = str(in.rest());
  const HandshakeFailure category = classify_handshake(e);
  FUZZ_CHECK(category < HandshakeFailure::Count);
  const std::string line = handshake_failure_json(e, category, 1'700'000'000'000'000'000ull);
  FUZZ_CHECK(line.find('\n') == std::string::npos);
  const nlohmann::json j = parse_strict(line);
  FUZZ_CHECK(j.is_object() && j.contains("sni") && j.contains("reason"));
  if (!e.sni.empty() && e.sni.size() <= 256 && valid_utf8(e.sni)) FUZZ_CHECK(j["sni"] == e.sni);
  FUZZ_LOG("%s\n", line.c_str());
  return 0;
}
