// Agent NAT: bindings are created once and found again, come from the pool (never the TUN's own address or
// broadcast, ports >= 1024), are found from the reply side, are deterministic across restarts, stay distinct
// under load and in tiny pools, and expire by UDP idle, TCP idle and closed limits.
#include "tests/unit/cmocka.hpp"

#include <set>
#include <utility>

#include "agent/nat_table.hpp"

using namespace dptun;

namespace {

constexpr uint8_t kTcp = 6, kUdp = 17;
constexpr uint64_t kSec = 1'000'000'000ull;

Ipv4Prefix prefix(const char* text) {
  auto p = Ipv4Prefix::parse(text);
  assert_true(p.has_value());
  return *p;
}

// Flow ids as the gateway makes them: generation << 32 | worker << 24 | slot.
uint64_t flow_id(uint32_t n) { return uint64_t(n / 7 + 1) << 32 | uint64_t(n % 4) << 24 | (n * 2654435761u & 0xffffff); }

NatBinding* bind(NatTable& t, uint32_t session, uint64_t id, uint8_t proto, uint64_t now, bool* created_out = nullptr) {
  bool created = false;
  NatBinding* b = t.bind(session, id, proto, 0x0a000000u | (uint32_t(id) & 0xffff), uint16_t(1024 + (id & 0x7fff)),
                         now, created);
  if (created_out) *created_out = created;
  return b;
}

uint64_t snat_of(const NatBinding& b) { return uint64_t(b.snat_ip) << 16 | b.snat_port; }

}  // namespace

static void bind_creates_then_reuses(void**) {
  NatTable t(prefix("100.64.0.1/24"));
  bool created = false;
  NatBinding* b = t.bind(3, 0x0000000500000042ull, kTcp, 0x0a000001, 40000, 100, created);
  assert_non_null(b);
  assert_true(created);
  assert_int_equal(t.size(), 1);
  assert_int_equal(b->session, 3);
  assert_int_equal(b->flow_id, 0x0000000500000042ull);
  assert_int_equal(b->proto, kTcp);
  assert_int_equal(b->client_ip, 0x0a000001);
  assert_int_equal(b->client_port, 40000);
  assert_int_equal(b->last_seen_ns, 100);
  const uint32_t ip = b->snat_ip;
  const uint16_t port = b->snat_port;

  created = true;
  NatBinding* again = t.bind(3, 0x0000000500000042ull, kTcp, 0x0a000001, 40000, 250, created);
  assert_ptr_equal(again, b);
  assert_false(created);
  assert_int_equal(t.size(), 1);
  assert_int_equal(again->snat_ip, ip);
  assert_int_equal(again->snat_port, port);
  assert_int_equal(again->last_seen_ns, 250);  // traffic refreshes the binding

  // Another session with the same flow id is another flow.
  NatBinding* other = t.bind(4, 0x0000000500000042ull, kTcp, 0x0a000001, 40000, 300, created);
  assert_non_null(other);
  assert_true(created);
  assert_ptr_not_equal(other, b);
  assert_int_equal(t.size(), 2);
  assert_true(snat_of(*other) != snat_of(*b));
}

static void snat_address_in_pool(void**) {
  const Ipv4Prefix pool = prefix("100.64.0.1/24");
  NatTable t(pool);
  const uint32_t base = 0x64400000;  // 100.64.0.0
  std::set<uint32_t> ips;
  for (uint32_t n = 0; n < 3000; ++n) {
    NatBinding* b = bind(t, 1 + n % 3, flow_id(n), n % 2 ? kTcp : kUdp, 0);
    assert_non_null(b);
    assert_int_equal(b->snat_ip & 0xffffff00u, base);
    assert_true(b->snat_ip != base);          // network address
    assert_true(b->snat_ip != base + 1);      // the TUN's own address
    assert_true(b->snat_ip != base + 255);    // broadcast
    assert_true(b->snat_port >= NatTable::kFirstPort);
    assert_true(t.in_pool(b->snat_ip));
    ips.insert(b->snat_ip);
  }
  assert_true(ips.size() > 200);  // spread over the pool, not a single address
  assert_false(t.in_pool(base + 1));
  assert_false(t.in_pool(base + 255));
  assert_false(t.in_pool(base));
  assert_false(t.in_pool(base + 256));
  assert_true(t.in_pool(base + 2));
  assert_true(t.in_pool(base + 254));

  // A /29: usable .2 .. .6; every one of them gets used, nothing else.
  NatTable small(prefix("10.9.8.1/29"));
  std::set<uint32_t> small_ips;
  for (uint32_t n = 0; n < 500; ++n) {
    NatBinding* b = bind(small, 9, flow_id(n), kUdp, 0);
    assert_non_null(b);
    assert_true(b->snat_ip >= 0x0a090802 && b->snat_ip <= 0x0a090806);
    small_ips.insert(b->snat_ip);
  }
  assert_int_equal(small_ips.size(), 5);
}

static void find_reply(void**) {
  NatTable t(prefix("100.64.0.1/16"));
  NatBinding* tcp = bind(t, 1, flow_id(1), kTcp, 0);
  NatBinding* udp = bind(t, 1, flow_id(2), kUdp, 0);
  assert_non_null(tcp);
  assert_non_null(udp);
  assert_ptr_equal(t.find_reply(kTcp, tcp->snat_ip, tcp->snat_port), tcp);
  assert_ptr_equal(t.find_reply(kUdp, udp->snat_ip, udp->snat_port), udp);
  // The protocol is part of the reply key.
  assert_null(t.find_reply(kUdp, tcp->snat_ip, tcp->snat_port));
  assert_null(t.find_reply(kTcp, udp->snat_ip, udp->snat_port));
  // Neighbouring ports and addresses are not bound.
  assert_null(t.find_reply(kTcp, tcp->snat_ip, uint16_t(tcp->snat_port + 1)));
  assert_null(t.find_reply(kTcp, tcp->snat_ip + 1, tcp->snat_port));
  assert_null(t.find_reply(kTcp, 0, 0));
}

static void deterministic_across_restarts(void**) {
  const Ipv4Prefix pool = prefix("100.64.0.1/16");
  NatTable first(pool);
  std::vector<std::pair<uint32_t, uint16_t>> bound;
  for (uint32_t n = 0; n < 1000; ++n) {
    NatBinding* b = bind(first, 1 + n % 5, flow_id(n), n % 3 ? kTcp : kUdp, n);
    assert_non_null(b);
    bound.emplace_back(b->snat_ip, b->snat_port);
  }
  // The restarted agent sees the flows again in another order, at another time.
  NatTable second(pool);
  for (uint32_t i = 0; i < 1000; ++i) {
    uint32_t n = 999 - i;
    bool created = false;
    NatBinding* b = bind(second, 1 + n % 5, flow_id(n), n % 3 ? kTcp : kUdp, 1'000'000 + i, &created);
    assert_non_null(b);
    assert_true(created);
    assert_int_equal(b->snat_ip, bound[n].first);
    assert_int_equal(b->snat_port, bound[n].second);
  }
  // The binding depends on the session and the flow id, not only on one of them.
  // (Each in an empty table, so that probing past a collision cannot hide it.)
  NatTable t1(pool), t2(pool), t3(pool), t4(pool);
  NatBinding* a = bind(t1, 1, flow_id(5), kTcp, 0);
  NatBinding* b = bind(t2, 2, flow_id(5), kTcp, 0);
  NatBinding* c = bind(t3, 1, flow_id(6), kTcp, 0);
  NatBinding* d = bind(t4, 1, flow_id(5), kTcp, 0);
  assert_true(snat_of(*a) != snat_of(*b));
  assert_true(snat_of(*a) != snat_of(*c));
  assert_int_equal(snat_of(*a), snat_of(*d));
}

static void many_flows_distinct(void**) {
  NatTable t(prefix("192.168.50.1/24"));  // 253 usable hosts
  std::set<uint64_t> used[2];
  std::vector<NatBinding*> all;
  for (uint32_t n = 0; n < 10000; ++n) {
    uint8_t proto = n % 2 ? kTcp : kUdp;
    NatBinding* b = bind(t, 1 + n % 4, flow_id(n), proto, 0);
    assert_non_null(b);
    assert_true(t.in_pool(b->snat_ip));
    assert_true(used[n % 2].insert(snat_of(*b)).second);  // distinct within the protocol
    all.push_back(b);
  }
  assert_int_equal(t.size(), 10000);
  for (NatBinding* b : all) assert_ptr_equal(t.find_reply(b->proto, b->snat_ip, b->snat_port), b);
}

static void tiny_pool_collisions(void**) {
  // 100.64.0.0/30: .1 is the TUN, .3 broadcast: one usable address, .2.
  NatTable t(prefix("100.64.0.1/30"));
  std::set<uint16_t> ports;
  std::vector<uint64_t> ids;
  uint32_t n = 0;
  bool exhausted = false;
  for (; n < 65536; ++n) {
    bool created = false;
    NatBinding* b = bind(t, 1, flow_id(n), kTcp, 0, &created);
    if (!b) {
      assert_false(created);
      exhausted = true;
      break;
    }
    assert_true(created);
    assert_int_equal(b->snat_ip, 0x64400002);
    assert_true(ports.insert(b->snat_port).second);
    ids.push_back(flow_id(n));
  }
  assert_true(exhausted);
  // Probing resolved many collisions before running out: a single address serves tens of thousands of flows.
  assert_true(ports.size() > 10000);
  assert_true(ports.size() <= 65536 - NatTable::kFirstPort);
  assert_int_equal(t.size(), ports.size());
  // Existing flows are still found when no new binding can be made.
  bool created = true;
  NatBinding* old = bind(t, 1, ids[0], kTcp, 100 * kSec - 1, &created);
  assert_non_null(old);
  assert_false(created);
  // Expiring frees the space again (all but `old`, which just saw traffic).
  assert_int_equal(t.expire(100 * kSec, kSec, kSec, kSec), ports.size() - 1);
  assert_int_equal(t.size(), 1);
  assert_ptr_equal(t.find_reply(kTcp, old->snat_ip, old->snat_port), old);
  NatBinding* again = bind(t, 1, flow_id(n), kTcp, 100 * kSec, &created);
  assert_non_null(again);
  assert_true(created);
  assert_int_equal(again->snat_ip, 0x64400002);
}

static void expire_limits(void**) {
  NatTable t(prefix("100.64.0.1/16"));
  const uint64_t udp_idle = 30 * kSec, tcp_idle = 600 * kSec, closed = 10 * kSec;
  NatBinding* udp = bind(t, 1, flow_id(1), kUdp, 0);
  NatBinding* tcp = bind(t, 1, flow_id(2), kTcp, 0);
  NatBinding* fin_both = bind(t, 1, flow_id(3), kTcp, 0);
  NatBinding* fin_one = bind(t, 1, flow_id(4), kTcp, 0);
  NatBinding* rst = bind(t, 1, flow_id(5), kTcp, 0);
  fin_both->fin_seen = 3;
  fin_one->fin_seen = 1;
  rst->reset = true;
  struct Reply {
    uint8_t proto;
    uint32_t ip;
    uint16_t port;
  };
  auto reply_of = [](const NatBinding* b) { return Reply{b->proto, b->snat_ip, b->snat_port}; };
  const Reply r_udp = reply_of(udp), r_tcp = reply_of(tcp), r_both = reply_of(fin_both), r_one = reply_of(fin_one),
              r_rst = reply_of(rst);
  auto found = [&](const Reply& r) { return t.find_reply(r.proto, r.ip, r.port) != nullptr; };

  assert_int_equal(t.expire(closed - 1, udp_idle, tcp_idle, closed), 0);
  assert_int_equal(t.size(), 5);
  // Closed flows (both FINs, or a reset) go after the closed limit.
  assert_int_equal(t.expire(closed, udp_idle, tcp_idle, closed), 2);
  assert_false(found(r_both));
  assert_false(found(r_rst));
  assert_true(found(r_udp));
  assert_true(found(r_tcp));
  assert_true(found(r_one));  // one FIN is not closed
  assert_int_equal(t.size(), 3);
  // UDP after its idle limit; traffic (bind) keeps a flow alive.
  bind(t, 1, flow_id(1), kUdp, 20 * kSec);  // refresh the UDP flow
  assert_int_equal(t.expire(udp_idle, udp_idle, tcp_idle, closed), 0);
  assert_true(found(r_udp));
  assert_int_equal(t.expire(20 * kSec + udp_idle, udp_idle, tcp_idle, closed), 1);
  assert_false(found(r_udp));
  assert_true(found(r_tcp));
  assert_true(found(r_one));
  // TCP after its idle limit.
  assert_int_equal(t.expire(tcp_idle - 1, udp_idle, tcp_idle, closed), 0);
  assert_int_equal(t.expire(tcp_idle, udp_idle, tcp_idle, closed), 2);
  assert_false(found(r_tcp));
  assert_false(found(r_one));
  assert_int_equal(t.size(), 0);

  // An expired flow that comes back gets a new binding, at the same address (deterministic).
  bool created = false;
  NatBinding* back = bind(t, 1, flow_id(2), kTcp, tcp_idle + 1, &created);
  assert_non_null(back);
  assert_true(created);
  assert_int_equal(back->snat_ip, r_tcp.ip);
  assert_int_equal(back->snat_port, r_tcp.port);
  assert_int_equal(back->fin_seen, 0);
  assert_false(back->reset);
}

// The TUN's own address need not be the subnet's first host; it is never handed out wherever it is.
static void own_address_anywhere(void**) {
  NatTable t(prefix("10.9.0.5/29"));  // hosts .1 - .6, the TUN is .5
  std::set<uint32_t> seen;
  for (uint32_t n = 0; n < 5000; ++n) {
    NatBinding* b = bind(t, 1, flow_id(n), kUdp, 0);
    assert_non_null(b);
    assert_int_not_equal(b->snat_ip, 0x0a090005);
    assert_true(b->snat_ip >= 0x0a090001 && b->snat_ip <= 0x0a090006);
    assert_true(t.in_pool(b->snat_ip));
    seen.insert(b->snat_ip);
  }
  assert_int_equal(seen.size(), 5);  // every other host is used
  assert_false(t.in_pool(0x0a090005));
  assert_false(t.in_pool(0x0a090000));
  assert_false(t.in_pool(0x0a090007));
}

// A bounded table: a flood of new flows cannot grow it past its capacity, and flows the target never
// answered go first.
static void capacity_and_unconfirmed_expiry(void**) {
  NatTable t(prefix("100.64.0.1/16"), 100);
  for (uint32_t n = 0; n < 100; ++n) assert_non_null(bind(t, 1, flow_id(n), kUdp, 0));
  bool created = true;
  assert_null(t.bind(1, flow_id(100), kUdp, 0x0a000001, 5000, 0, created));
  assert_false(created);
  assert_int_equal(t.size(), 100);
  assert_int_equal(t.capacity(), 100);
  // Existing flows still resolve when full.
  assert_non_null(bind(t, 1, flow_id(5), kUdp, 0));
  // Half of the flows got an answer from the target.
  for (uint32_t n = 0; n < 50; ++n) {
    NatBinding* b = bind(t, 1, flow_id(n), kUdp, 0);
    b->confirmed = true;
  }
  const uint64_t s = 1'000'000'000ull;
  assert_int_equal(t.expire(5 * s, 120 * s, 7200 * s, 10 * s, 30 * s), 0);
  assert_int_equal(t.expire(31 * s, 120 * s, 7200 * s, 10 * s, 30 * s), 50);  // the unanswered half
  assert_int_equal(t.size(), 50);
  assert_non_null(t.bind(1, flow_id(100), kUdp, 0x0a000001, 5000, 31 * s, created));
  assert_true(created);
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(own_address_anywhere),
      cmocka_unit_test(capacity_and_unconfirmed_expiry),
      cmocka_unit_test(bind_creates_then_reuses),
      cmocka_unit_test(snat_address_in_pool),
      cmocka_unit_test(find_reply),
      cmocka_unit_test(deterministic_across_restarts),
      cmocka_unit_test(many_flows_distinct),
      cmocka_unit_test(tiny_pool_collisions),
      cmocka_unit_test(expire_limits),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
