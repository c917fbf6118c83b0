// A HEADERS frame's payload on a CONNECT-UDP request stream: QPACK decoding (proto/h3_fields.hpp, nghttp3, static
// table only), then the request and answer readers (proto/connect_udp.hpp). The input's first byte picks the field
// section bound (64 << its low 3 bits bytes); the rest is the payload.
// Properties: a decoded section is within the bound and encodes back to one that decodes the same; an accepted
// request's target is its :path's, and the request dpagent would send for it reads back as the same target; a
// refused request has a status of 400, 405 or 501 and a short detail, and the answer made of it (Proxy-Status with
// that detail) is printable ASCII that survives QPACK and reads back with that status.
#include <string>
#include <vector>

#include "fuzz/fuzz.hpp"
#include "proto/connect_udp.hpp"
#include "proto/h3_fields.hpp"

using namespace dptun;

namespace {

bool same(const std::vector<HttpField>& a, const std::vector<HttpField>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].name != b[i].name || a[i].value != b[i].value) return false;
  return true;
}

bool same_target(const ConnectUdpTarget& a, const ConnectUdpTarget& b) {
  return a.host == b.host && a.port == b.port && a.kind == b.kind;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t bound = size_t(64) << (data[0] & 7);
  const std::span<const uint8_t> payload(data + 1, size - 1);

  FieldSectionError why = FieldSectionError::Count;
  auto fields = decode_h3_field_section(payload, bound, &why);
  if (!fields) {
    FUZZ_CHECK(why == FieldSectionError::Malformed || why == FieldSectionError::TooLarge);
    FUZZ_LOG("bound %zu: section %s\n", bound, field_section_error_name(why));
    return 0;
  }
  size_t total = 0;
  for (const auto& f : *fields) total += f.name.size() + f.value.size() + 32;
  FUZZ_CHECK(total <= bound);
  std::vector<uint8_t> again;
  FUZZ_CHECK(encode_h3_field_section(*fields, again));
  auto fields2 = decode_h3_field_section(again, bound);
  FUZZ_CHECK(fields2 && same(*fields, *fields2));

  ConnectUdpRequestProblem problem;
  problem.error = ConnectUdpRequestError::Count;
  auto request = parse_connect_udp_request(*fields, &problem);
  if (request) {
    auto target = parse_connect_udp_path(request->path);
    FUZZ_CHECK(target && same_target(*target, request->target));
    const auto sent = connect_udp_request_fields(request->authority, request->target.host, request->target.port);
    auto back = parse_connect_udp_request(sent);
    FUZZ_CHECK(back && same_target(back->target, request->target) && back->authority == request->authority &&
               back->capsule_protocol);
    FUZZ_LOG("bound %zu: %zu fields, CONNECT-UDP to %s port %u\n", bound, fields->size(), request->target.host.c_str(),
             unsigned(request->target.port));
  } else {
    FUZZ_CHECK(problem.error < ConnectUdpRequestError::Count && !problem.detail.empty() && problem.detail.size() < 200);
    const uint16_t status = connect_udp_status(problem.error);
    FUZZ_CHECK(status == 400 || status == 405 || status == 501);
    const auto answer = connect_udp_response_fields(status, "http_request_error", problem.detail);
    for (const auto& f : answer)
      for (char c : f.value) FUZZ_CHECK(c >= 0x20 && c <= 0x7e);
    std::vector<uint8_t> section;
    FUZZ_CHECK(encode_h3_field_section(answer, section));
    auto read = decode_h3_field_section(section, 65536);
    FUZZ_CHECK(read && same(*read, answer));
    auto a = parse_connect_udp_response(*read);
    FUZZ_CHECK(a && a->status == status && !a->capsule_protocol && !a->proxy_status.empty());
    FUZZ_LOG("bound %zu: %zu fields, refused %s: %s\n", bound, fields->size(),
             connect_udp_request_error_name(problem.error), problem.detail.c_str());
  }

  // The same fields read as an answer.
  if (auto a = parse_connect_udp_response(*fields)) FUZZ_CHECK(a->status <= 999);
  return 0;
}
