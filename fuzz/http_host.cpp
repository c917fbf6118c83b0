// The HTTP Host reader (ingress/http_host.hpp) on any bytes as the start of a TCP stream. Properties: a host it
// finds is plausible_hostname() and points into the input; and since dpgw reads a connection's first bytes
// again each time more arrive and acts on the first verdict, every prefix of the input gives NeedMore or the
// verdict (and host) of the whole input. http_head_complete(), which dpgw calls as bytes arrive (keeping its
// progress between calls), says the same on each prefix as a fresh call would, stays true once true, and when
// true the reader gives a verdict (not NeedMore): dpgw must not wait for more of a head that is all there.
#include <algorithm>
#include <string>
#include <vector>

#include "fuzz/fuzz.hpp"
#include "ingress/client_hello.hpp"
#include "ingress/http_host.hpp"

using namespace dptun;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> in(data, size);
  const HostResult whole = host_from_http_request(in);
  FUZZ_CHECK(host_status_name(whole.status) != nullptr);
  FUZZ_LOG("%s %.*s\n", host_status_name(whole.status), int(whole.host.size()), whole.host.data());
  if (whole.status == HostStatus::Found) {
    FUZZ_CHECK(plausible_hostname(whole.host));
    FUZZ_CHECK(fuzz::within(whole.host, in));
  } else {
    FUZZ_CHECK(whole.host.empty());
  }

  std::vector<size_t> cuts;
  if (size <= 256) {
    for (size_t i = 0; i < size; ++i) cuts.push_back(i);
  } else {
    for (size_t i = 0; i < 24; ++i) cuts.push_back(i);
    for (size_t k = 1; k < 32; ++k) cuts.push_back(size * k / 32);
  }
  cuts.push_back(size);
  std::sort(cuts.begin(), cuts.end());  // increasing, as bytes arrive
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  const std::string whole_host(whole.host);
  uint32_t scanned = 0;  // dpgw's progress, kept between calls
  bool was_complete = false;
  for (size_t cut : cuts) {
    const bool incremental = http_head_complete(in.first(cut), scanned);
    uint32_t s0 = 0;
    const bool fresh = http_head_complete(in.first(cut), s0);
    FUZZ_CHECK(incremental == fresh);
    FUZZ_CHECK(fresh || !was_complete);
    was_complete = fresh;
    if (fresh && host_from_http_request(in.first(cut)).status == HostStatus::NeedMore) {
      std::fprintf(stderr, "complete after %zu of %zu bytes, and the reader wants more\n", cut, size);
      FUZZ_CHECK(!"a complete head gets a verdict");
    }
  }
  for (size_t cut : cuts) {
    const HostResult p = host_from_http_request(in.first(cut));
    if (p.status == HostStatus::NeedMore) continue;
    if (p.status != whole.status || p.host != whole_host)
      std::fprintf(stderr, "the first %zu of %zu bytes: %s %.*s; all of them: %s %s\n", cut, size,
                   host_status_name(p.status), int(p.host.size()), p.host.data(), host_status_name(whole.status),
                   whole_host.c_str());
    FUZZ_CHECK(p.status == whole.status);
    FUZZ_CHECK(p.host == whole_host);
  }
  return 0;
}
