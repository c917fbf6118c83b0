// A session's agent endpoint (dataplane/tables/session.hpp PeerEndpoint): an IPv6 endpoint does not fit one atomic
// word, so it is written under a sequence lock. One thread moves the endpoint between an IPv4 and an IPv6 address
// (as endpoint learning does on the session's RX worker) while another reads it (as every worker's encap does):
// every read is one of the two endpoints whole, never a mix.
#include <atomic>
#include <thread>

#include "dataplane/tables/session.hpp"

#include "tests/unit/cmocka.hpp"

using namespace dptun;

static void unknown_until_stored(void**) {
  PeerEndpoint p;
  assert_false(p.known());
  const Endpoint e{*IpAddr::parse("2001:db8::5"), 51900};
  p.store(e);
  assert_true(p.known());
  assert_true(p.load() == e);
  p.store(Endpoint{Ipv4{0x0a000002}, 4500});
  assert_true(p.load() == (Endpoint{Ipv4{0x0a000002}, 4500}));
}

static void reads_never_tear(void**) {
  const Endpoint a{Ipv4{0x0a000001}, 1111};
  const Endpoint b{*IpAddr::parse("2001:db8:ffff:ffff:ffff:ffff:ffff:fffe"), 2222};
  PeerEndpoint p;
  p.store(a);
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; i < 2'000'000; ++i) p.store(i & 1 ? b : a);
    done.store(true);
  });
  uint64_t reads = 0, torn = 0, seen_b = 0;
  while (!done.load() || reads < 1000) {
    const Endpoint e = p.load();
    ++reads;
    if (!(e == a) && !(e == b)) ++torn;
    if (e == b) ++seen_b;
  }
  writer.join();
  assert_int_equal(torn, 0);
  assert_true(reads >= 1000);
  (void)seen_b;  // (how often each was seen depends on scheduling; only torn reads matter)
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(unknown_until_stored),
      cmocka_unit_test(reads_never_tear),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
