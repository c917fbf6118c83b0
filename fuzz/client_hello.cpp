// The TLS ClientHello reader (ingress/client_hello.hpp) on any bytes, as the start of a TCP stream (records)
// and as a bare handshake message (QUIC's CRYPTO stream). dpgw reads a connection's first bytes again each time
// more arrive, so besides memory safety the properties are about prefixes:
// - a name it finds is plausible_hostname() and points into the input (or the caller's buffer);
// - once a prefix of the stream gives a verdict other than NeedMore, the whole stream gives the same one (dpgw
//   acts on the first verdict: a later one must not disagree), with one exception by design: a verdict read
//   from the server_name extension before the ClientHello is complete (Found, or NoName for a name it cannot
//   use) may become Malformed when the rest of the ClientHello breaks the rules;
// - tls_hello_complete(), which dpgw calls as bytes arrive (keeping its progress between calls), says the same
//   on each prefix as a fresh call would, stays true once true, and when true the reader gives a verdict
//   (not NeedMore): dpgw must not wait for more of a ClientHello that is all there.
#include <algorithm>
#include <array>
#include <vector>

#include "fuzz/fuzz.hpp"
#include "ingress/client_hello.hpp"

using namespace dptun;

namespace {

// As large as dpgw's (dataplane/loop/worker.hpp hello_scratch_).
std::array<uint8_t, kMaxClientHello + 4> g_buffer, g_prefix_buffer;

// Where the input is cut into prefixes, in increasing order: every byte for short inputs; otherwise the first
// 16 bytes and 48 cuts spread over the rest.
std::vector<size_t> cuts_of(size_t size) {
  std::vector<size_t> cuts;
  if (size <= 256) {
    for (size_t i = 0; i < size; ++i) cuts.push_back(i);
  } else {
    for (size_t i = 0; i < 16; ++i) cuts.push_back(i);
    for (size_t k = 1; k < 48; ++k) cuts.push_back(size * k / 48);
  }
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  return cuts;
}

template <typename Read>
void check_prefixes(std::span<const uint8_t> in, const SniResult& whole, Read read) {
  const std::vector<size_t> cuts = cuts_of(in.size());
  const std::string whole_name(whole.name);
  for (size_t cut : cuts) {
    const SniResult p = read(in.first(cut));
    if (p.status == SniStatus::NeedMore) continue;
    if (p.status != whole.status)
      std::fprintf(stderr, "the first %zu of %zu bytes: %s %.*s; all of them: %s %s\n", cut, in.size(),
                   sni_status_name(p.status), int(p.name.size()), p.name.data(), sni_status_name(whole.status),
                   whole_name.c_str());
    if ((p.status == SniStatus::Found || p.status == SniStatus::NoName) && whole.status == SniStatus::Malformed)
      continue;
    FUZZ_CHECK(p.status == whole.status);
    FUZZ_CHECK(p.name == whole_name);
  }
}

void check_complete(std::span<const uint8_t> in) {
  std::vector<size_t> cuts = cuts_of(in.size());
  cuts.push_back(in.size());
  uint32_t next_record = 0, hello_bytes = 0;  // dpgw's progress, kept between calls
  bool was_complete = false;
  for (size_t cut : cuts) {
    const auto prefix = in.first(cut);
    const bool incremental = tls_hello_complete(prefix, next_record, hello_bytes);
    uint32_t r0 = 0, b0 = 0;
    const bool fresh = tls_hello_complete(prefix, r0, b0);
    FUZZ_CHECK(incremental == fresh);
    FUZZ_CHECK(fresh || !was_complete);
    was_complete = fresh;
    if (fresh) {
      const SniResult r = sni_from_tls_stream(prefix, g_prefix_buffer);
      if (r.status == SniStatus::NeedMore)
        std::fprintf(stderr, "complete after %zu of %zu bytes, and the reader wants more\n", cut, in.size());
      FUZZ_CHECK(r.status != SniStatus::NeedMore);
    }
  }
}

void check_result(const SniResult& r, std::span<const uint8_t> where) {
  FUZZ_CHECK(sni_status_name(r.status) != nullptr);
  if (r.status == SniStatus::Found) {
    FUZZ_CHECK(plausible_hostname(r.name));
    FUZZ_CHECK(fuzz::within(r.name, where));
  } else {
    FUZZ_CHECK(r.name.empty());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> in(data, size);

  const SniResult stream = sni_from_tls_stream(in, g_buffer);
  check_result(stream, g_buffer);
  check_prefixes(in, stream, [](std::span<const uint8_t> p) { return sni_from_tls_stream(p, g_prefix_buffer); });
  check_complete(in);
  FUZZ_LOG("stream: %s %.*s\n", sni_status_name(stream.status), int(stream.name.size()), stream.name.data());

  const SniResult msg = sni_from_handshake(in);
  check_result(msg, in);
  check_prefixes(in, msg, [](std::span<const uint8_t> p) { return sni_from_handshake(p); });
  FUZZ_LOG("handshake: %s %.*s\n", sni_status_name(msg.status), int(msg.name.size()), msg.name.data());
  return 0;
}
