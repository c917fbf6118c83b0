// Flow table: insert/find/erase, flow ids (generation | worker | slot) and their staleness, LRU eviction
// when full, the rotating expiry sweep, and a randomized model test of the open-addressing index against
// std::unordered_map (with keys crafted to collide in the low hash bits, so backward-shift deletion and
// wrap-around clusters are exercised).
#include "tests/unit/cmocka.hpp"

#include <algorithm>
#include <set>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include "dataplane/tables/flow_table.hpp"

using namespace dptun;

namespace {

FlowKey make_key(uint32_t n, uint8_t proto = 6) {
  FlowKey k;
  k.client = Ipv4{0x0a000000u | (n >> 8)};
  k.local = Ipv4{0xc0a80001u};
  k.client_port = uint16_t(1024 + (n & 0xff) * 7);
  k.local_port = 443;
  k.proto = proto;
  return k;
}

struct KeyHash {
  size_t operator()(const FlowKey& k) const { return FlowTable::hash(k); }
};

constexpr uint64_t kSlotMask = (uint64_t(1) << FlowTable::kSlotBits) - 1;

Flow* insert_key(FlowTable& t, const FlowKey& k, uint64_t now, bool* evicted_out = nullptr) {
  bool evicted = true;
  Flow* f = t.insert(k, FlowTable::hash(k), now, evicted);
  if (evicted_out) *evicted_out = evicted;
  return f;
}

Flow* find_key(FlowTable& t, const FlowKey& k) { return t.find(k, FlowTable::hash(k)); }

}  // namespace

static void constructor_limits(void**) {
  bool threw = false;
  try {
    FlowTable t(0, 0);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  assert_true(threw);
  threw = false;
  try {
    FlowTable t((1u << FlowTable::kSlotBits) + 1, 0);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  assert_true(threw);
  FlowTable one(1, 0);
  assert_int_equal(one.capacity(), 1);
  assert_int_equal(one.size(), 0);
}

static void insert_find_erase(void**) {
  FlowTable t(16, 2);
  assert_int_equal(t.capacity(), 16);
  FlowKey a = make_key(1), b = make_key(2), c = make_key(3, 17);
  bool evicted = true;
  Flow* fa = t.insert(a, FlowTable::hash(a), 100, evicted);
  assert_non_null(fa);
  assert_false(evicted);
  assert_true(fa->in_use);
  assert_true(fa->key == a);
  assert_int_equal(fa->hash, FlowTable::hash(a));
  assert_int_equal(fa->last_seen_ns, 100);
  assert_int_equal(t.size(), 1);
  Flow* fb = insert_key(t, b, 200);
  assert_non_null(fb);
  assert_ptr_not_equal(fa, fb);
  assert_int_equal(t.size(), 2);

  assert_ptr_equal(find_key(t, a), fa);
  assert_ptr_equal(find_key(t, b), fb);
  assert_null(find_key(t, c));
  // A key that differs in any single field is a different flow.
  FlowKey a2 = a;
  a2.proto = 17;
  assert_null(find_key(t, a2));
  a2 = a;
  a2.local_port = 444;
  assert_null(find_key(t, a2));
  a2 = a;
  a2.client = Ipv4{a2.client.v4() ^ 1};
  assert_null(find_key(t, a2));

  t.erase(*fa);
  assert_int_equal(t.size(), 1);
  assert_null(find_key(t, a));
  assert_ptr_equal(find_key(t, b), fb);
  t.erase(*fa);  // erasing a free slot again changes nothing
  assert_int_equal(t.size(), 1);
  assert_ptr_equal(find_key(t, b), fb);

  // Re-inserting the erased key works and it is found again.
  Flow* fa2 = insert_key(t, a, 300);
  assert_non_null(fa2);
  assert_ptr_equal(find_key(t, a), fa2);
  assert_int_equal(fa2->last_seen_ns, 300);
  assert_int_equal(t.size(), 2);
}

static void insert_resets_flow_fields(void**) {
  FlowTable t(1, 0);
  FlowKey a = make_key(1);
  Flow* f = insert_key(t, a, 1);
  f->tcp_state = TcpState::Established;
  f->fin_seen = 3;
  f->keepalive = true;
  f->session_index = 77;
  f->deadline_ns = 12345;
  t.erase(*f);
  FlowKey b = make_key(2);
  Flow* g = insert_key(t, b, 2);
  assert_ptr_equal(f, g);  // the only slot
  assert_int_equal(g->tcp_state, TcpState::None);
  assert_int_equal(g->fin_seen, 0);
  assert_false(g->keepalive);
  assert_int_equal(g->session_index, 0);
  assert_int_equal(g->deadline_ns, 0);
  assert_true(g->key == b);
}

static void id_round_trip(void**) {
  FlowTable t(100, 5);
  std::vector<Flow*> flows;
  std::vector<uint64_t> ids;
  for (uint32_t i = 0; i < 100; ++i) {
    Flow* f = insert_key(t, make_key(i), i);
    assert_non_null(f);
    flows.push_back(f);
    ids.push_back(t.id_of(*f));
  }
  std::unordered_set<uint64_t> distinct(ids.begin(), ids.end());
  assert_int_equal(distinct.size(), 100);
  for (uint32_t i = 0; i < 100; ++i) {
    assert_ptr_equal(t.find_by_id(ids[i]), flows[i]);
    assert_int_equal(FlowTable::worker_of(ids[i]), 5);
    assert_true((ids[i] & kSlotMask) < 100);
    assert_int_equal(ids[i] >> 32, flows[i]->generation);
  }
}

static void stale_ids(void**) {
  FlowTable t(8, 1);
  FlowKey a = make_key(10), b = make_key(11);
  Flow* fa = insert_key(t, a, 0);
  const uint64_t id_a = t.id_of(*fa);
  assert_ptr_equal(t.find_by_id(id_a), fa);
  t.erase(*fa);
  assert_null(t.find_by_id(id_a));  // slot free
  // Free slots are reused first in, first out: the freed slot comes back only after the 7 never-used ones.
  for (uint32_t i = 0; i < 7; ++i) {
    Flow* other = insert_key(t, make_key(100 + i), 1);
    assert_ptr_not_equal(other, fa);
  }
  Flow* fb = insert_key(t, b, 1);
  assert_ptr_equal(fb, fa);
  const uint64_t id_b = t.id_of(*fb);
  assert_int_equal(id_b & kSlotMask, id_a & kSlotMask);
  assert_int_not_equal(id_b >> 32, id_a >> 32);  // generation differs
  assert_null(t.find_by_id(id_a));                // reused slot: the old id names a flow that has gone
  assert_ptr_equal(t.find_by_id(id_b), fb);
  // A generation that never existed on this slot.
  assert_null(t.find_by_id(id_b + (uint64_t(1) << 32)));
}

// Agents name flows by tag (worker | slot) only: a tag finds whatever flow uses that slot now.
static void tags(void**) {
  FlowTable t(8, 3);
  Flow* f = insert_key(t, make_key(1), 0);
  const uint64_t id = t.id_of(*f);
  assert_ptr_equal(t.find_by_tag(uint32_t(id)), f);
  assert_int_equal(FlowTable::worker_of(uint32_t(id)), 3);
  assert_null(t.find_by_tag(uint32_t(id) ^ (1u << FlowTable::kSlotBits)));  // another worker's tag
  assert_null(t.find_by_tag((uint32_t(id) & ~((1u << FlowTable::kSlotBits) - 1)) | 7));  // an unused slot
  assert_null(t.find_by_tag((uint32_t(id) & ~((1u << FlowTable::kSlotBits) - 1)) | 100));  // beyond capacity
  t.erase(*f);
  assert_null(t.find_by_tag(uint32_t(id)));
}

static void ids_of_other_workers(void**) {
  FlowTable t(8, 3);
  Flow* f = insert_key(t, make_key(1), 0);
  uint64_t id = t.id_of(*f);
  assert_int_equal(FlowTable::worker_of(id), 3);
  assert_ptr_equal(t.find_by_id(id), f);
  for (uint64_t w : {0ull, 2ull, 4ull, 255ull}) {
    uint64_t other = (id & ~(uint64_t(0xff) << FlowTable::kSlotBits)) | w << FlowTable::kSlotBits;
    assert_int_equal(FlowTable::worker_of(other), w);
    assert_null(t.find_by_id(other));
  }
  // A slot beyond the capacity, with the right worker and generation.
  uint64_t beyond = (id & ~kSlotMask) | 8;
  assert_null(t.find_by_id(beyond));
  beyond = (id & ~kSlotMask) | kSlotMask;
  assert_null(t.find_by_id(beyond));

  FlowTable t255(4, 255);
  Flow* g = insert_key(t255, make_key(2), 0);
  assert_int_equal(FlowTable::worker_of(t255.id_of(*g)), 255);
  assert_ptr_equal(t255.find_by_id(t255.id_of(*g)), g);
  assert_null(t.find_by_id(t255.id_of(*g)));
}

static void full_table_without_idle_flows(void**) {
  constexpr uint32_t kCap = 64;
  FlowTable t(kCap, 0);
  for (uint32_t i = 0; i < kCap; ++i) assert_non_null(insert_key(t, make_key(i), 1000 + i));
  assert_int_equal(t.size(), kCap);
  FlowKey extra = make_key(9999);
  // The oldest flow was last seen at 1000: just under the idle limit, nothing may be evicted.
  for (int tries = 0; tries < 50; ++tries) {
    bool evicted = true;
    assert_null(insert_key(t, extra, 1000 + FlowTable::kIdleBeforeEviction - 1, &evicted));
    assert_false(evicted);
  }
  assert_int_equal(t.size(), kCap);
  assert_null(find_key(t, extra));
  for (uint32_t i = 0; i < kCap; ++i) assert_non_null(find_key(t, make_key(i)));

  // Traffic refreshes last_seen: later, with every flow recently active, still no eviction.
  const uint64_t later = 10 * FlowTable::kIdleBeforeEviction;
  for (uint32_t i = 0; i < kCap; ++i) find_key(t, make_key(i))->last_seen_ns = later - 5;
  for (int tries = 0; tries < 50; ++tries) {
    bool evicted = true;
    assert_null(insert_key(t, extra, later, &evicted));
    assert_false(evicted);
  }
  assert_int_equal(t.size(), kCap);
}

static void full_table_evicts_idle_flow(void**) {
  constexpr uint32_t kCap = 64;
  FlowTable t(kCap, 7);
  std::vector<uint64_t> ids;
  for (uint32_t i = 0; i < kCap; ++i) {
    Flow* f = insert_key(t, make_key(i), 1000 + i);
    ids.push_back(t.id_of(*f));
  }
  const uint64_t now = 1000 + kCap + FlowTable::kIdleBeforeEviction + 1;
  FlowKey extra = make_key(9999);
  bool evicted = false;
  Flow* f = insert_key(t, extra, now, &evicted);
  assert_non_null(f);
  assert_true(evicted);
  assert_int_equal(t.size(), kCap);
  assert_ptr_equal(find_key(t, extra), f);
  assert_int_equal(f->last_seen_ns, now);
  assert_true(f->in_use);
  // Exactly one of the old flows is gone, and it is the one whose slot the new flow took.
  int missing = -1, missing_count = 0;
  for (uint32_t i = 0; i < kCap; ++i) {
    if (!find_key(t, make_key(i))) {
      missing = int(i);
      ++missing_count;
    }
  }
  assert_int_equal(missing_count, 1);
  assert_int_equal(ids[size_t(missing)] & kSlotMask, t.id_of(*f) & kSlotMask);
  assert_null(t.find_by_id(ids[size_t(missing)]));
  for (uint32_t i = 0; i < kCap; ++i)
    if (int(i) != missing) assert_non_null(t.find_by_id(ids[i]));

  // Keep going: an insert either evicts an idle flow (one inserted before `now`) or, when the sample held
  // only recent flows, refuses; the size stays at capacity and recent flows are never the victims.
  std::vector<FlowKey> added{extra};
  for (uint32_t i = 0; i < 32; ++i) {
    FlowKey k = make_key(20000 + i);
    Flow* g = insert_key(t, k, now + i, &evicted);
    if (g) {
      assert_true(evicted);
      added.push_back(k);
    } else {
      assert_false(evicted);
    }
    assert_int_equal(t.size(), kCap);
  }
  assert_true(added.size() > 16);
  for (const auto& k : added) assert_non_null(find_key(t, k));
}

static void expire_sweeps_with_budget(void**) {
  constexpr uint32_t kCap = 64;
  FlowTable t(kCap, 0);
  std::vector<FlowKey> keys;
  std::vector<uint64_t> deadline;
  for (uint32_t i = 0; i < 40; ++i) {
    FlowKey k = make_key(i * 3 + 1);
    Flow* f = insert_key(t, k, 0);
    f->deadline_ns = (i * 37 % 40) * 10 + 5;  // 5, 15, ..., 395 in scrambled slot order
    keys.push_back(k);
    deadline.push_back(f->deadline_ns);
  }
  auto slot_of = [&](const FlowKey& k) { return uint32_t(t.id_of(*find_key(t, k)) & kSlotMask); };
  std::vector<uint32_t> slots;
  for (auto& k : keys) slots.push_back(slot_of(k));

  // First call: only slots 0..6 are looked at.
  uint64_t now = 200;
  uint32_t removed = t.expire(now, 7);
  uint32_t expected = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    bool gone = slots[i] < 7 && deadline[i] <= now;
    expected += gone;
    if (gone)
      assert_null(find_key(t, keys[i]));
    else
      assert_non_null(find_key(t, keys[i]));
  }
  assert_int_equal(removed, expected);
  assert_true(expected > 0);
  // The rest of one full sweep (64 slots in 7-slot steps, the cursor wraps around).
  uint32_t total = removed;
  for (int call = 1; call < 10; ++call) total += t.expire(now, 7);
  uint32_t due = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (deadline[i] <= now) {
      ++due;
      assert_null(find_key(t, keys[i]));
    } else {
      assert_non_null(find_key(t, keys[i]));
    }
  }
  assert_int_equal(total, due);
  assert_int_equal(t.size(), 40 - due);

  // Nothing more is due at the same time, however often we sweep.
  for (int call = 0; call < 20; ++call) assert_int_equal(t.expire(now, 7), 0);
  assert_int_equal(t.size(), 40 - due);

  // Later: the cursor is now mid-table; another full sweep (with wrap-around) removes the rest that is due.
  now = 300;
  total = 0;
  for (int call = 0; call < 10; ++call) total += t.expire(now, 7);
  uint32_t due2 = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (deadline[i] <= now) {
      due2 += deadline[i] > 200;
      assert_null(find_key(t, keys[i]));
    } else {
      assert_non_null(find_key(t, keys[i]));
    }
  }
  assert_int_equal(total, due2);
  assert_true(due2 > 0);

  // A budget larger than the table is one full sweep.
  now = 1000;
  const uint32_t left = t.size();
  assert_int_equal(left, 40 - due - due2);
  assert_int_equal(t.expire(now, 1000000), left);
  assert_int_equal(t.size(), 0);
}

static void expire_leaves_future_deadlines(void**) {
  FlowTable t(16, 0);
  Flow* a = insert_key(t, make_key(1), 0);
  Flow* b = insert_key(t, make_key(2), 0);
  a->deadline_ns = 1000;
  b->deadline_ns = 1001;
  assert_int_equal(t.expire(999, 16), 0);
  assert_int_equal(t.size(), 2);
  assert_int_equal(t.expire(1000, 16), 1);
  assert_null(find_key(t, make_key(1)));
  assert_non_null(find_key(t, make_key(2)));
  assert_int_equal(t.expire(5000, 16), 1);
  assert_int_equal(t.size(), 0);
}

// The sweep shows each flow it removes, once, before it goes (dpgw counts the unanswered ones).
static void expire_shows_each_flow_it_removes(void**) {
  FlowTable t(64, 0);
  for (uint32_t k = 1; k <= 20; ++k) insert_key(t, make_key(k), 0)->deadline_ns = k <= 12 ? 100 : 900;
  std::vector<uint32_t> seen;
  uint32_t removed = 0;
  for (int call = 0; call < 20; ++call)
    removed += t.expire(500, 5, [&](const Flow& f) {
      assert_true(f.in_use);
      assert_non_null(find_key(t, f.key));  // still in the table while it is shown
      seen.push_back(f.key.client_port);
    });
  assert_int_equal(removed, 12);
  assert_int_equal(seen.size(), 12);
  std::sort(seen.begin(), seen.end());
  assert_true(std::unique(seen.begin(), seen.end()) == seen.end());
  assert_int_equal(t.size(), 8);
}

// Keys whose home position (hash & index mask) falls in [lo, lo + width): they pile up into one cluster.
static std::vector<FlowKey> colliding_keys(uint32_t mask, uint32_t lo, uint32_t width, size_t count,
                                           uint32_t& seed) {
  std::vector<FlowKey> out;
  while (out.size() < count) {
    seed = seed * 1664525u + 1013904223u;
    FlowKey k;
    k.client = Ipv4{seed};
    k.local = Ipv4{0xc0a80001u};
    k.client_port = uint16_t(seed >> 7);
    k.local_port = 80;
    k.proto = 17;
    uint32_t home = FlowTable::hash(k) & mask;
    if (home - lo < width) out.push_back(k);
  }
  return out;
}

static void randomized_model(void**) {
  constexpr uint32_t kCap = 1024;
  constexpr uint32_t kMask = 2047;  // the index is sized 2 x capacity, rounded to a power of two
  FlowTable t(kCap, 9);
  uint32_t seed = 0xdecafbad;
  std::vector<FlowKey> universe;
  for (uint32_t i = 0; i < 900; ++i) universe.push_back(make_key(i * 13 + 5));
  // A cluster that wraps around the end of the index, and one in the middle.
  auto wrap = colliding_keys(kMask, kMask - 5, 8, 500, seed);  // homes 2042..2047, 0, 1
  auto mid = colliding_keys(kMask, 600, 4, 400, seed);
  universe.insert(universe.end(), wrap.begin(), wrap.end());
  universe.insert(universe.end(), mid.begin(), mid.end());
  {
    std::unordered_set<FlowKey, KeyHash> distinct(universe.begin(), universe.end());
    assert_int_equal(distinct.size(), universe.size());
  }

  struct Model {
    uint32_t value;
    uint64_t id;
  };
  std::unordered_map<FlowKey, Model, KeyHash> model;
  uint32_t inserts = 0, erases = 0, full = 0;
  for (uint32_t op = 0; op < 100000; ++op) {
    seed = seed * 1664525u + 1013904223u;
    const FlowKey& k = universe[(seed >> 8) % universe.size()];
    const uint32_t h = FlowTable::hash(k);
    seed = seed * 1664525u + 1013904223u;
    const uint32_t kind = (seed >> 24) % 4;  // 0, 1: insert; 2: erase; 3: lookup only
    auto it = model.find(k);
    Flow* f = t.find(k, h);
    if (it == model.end()) {
      assert_null(f);
    } else {
      assert_non_null(f);
      assert_true(f->key == k);
      assert_int_equal(f->session_index, it->second.value);
      assert_ptr_equal(t.find_by_id(it->second.id), f);
    }
    if (kind <= 1 && it == model.end()) {
      bool evicted = true;
      Flow* n = t.insert(k, h, 0, evicted);  // time never advances: a full table refuses, never evicts
      assert_false(evicted);
      if (model.size() == kCap) {
        assert_null(n);
        ++full;
      } else {
        assert_non_null(n);
        n->session_index = op;
        model.emplace(k, Model{op, t.id_of(*n)});
        ++inserts;
      }
    } else if (kind == 2 && it != model.end()) {
      t.erase(*f);
      assert_null(t.find(k, h));
      assert_null(t.find_by_id(it->second.id));
      model.erase(it);
      ++erases;
    }
    assert_int_equal(t.size(), model.size());
    if (op % 2500 == 0) {
      for (const auto& [mk, mv] : model) {
        Flow* g = t.find(mk, FlowTable::hash(mk));
        assert_non_null(g);
        assert_int_equal(g->session_index, mv.value);
      }
    }
  }
  // Make sure the run exercised what it is meant to.
  assert_true(inserts > 10000);
  assert_true(erases > 10000);
  assert_true(full > 0);
  for (const auto& k : universe) {
    auto it = model.find(k);
    Flow* g = t.find(k, FlowTable::hash(k));
    if (it == model.end())
      assert_null(g);
    else
      assert_non_null(g);
  }
  // Drain the table completely; the index must end up empty too.
  std::vector<FlowKey> remaining;
  for (const auto& [mk, mv] : model) remaining.push_back(mk);
  for (const auto& k : remaining) {
    Flow* g = t.find(k, FlowTable::hash(k));
    assert_non_null(g);
    t.erase(*g);
  }
  assert_int_equal(t.size(), 0);
  for (const auto& k : universe) assert_null(t.find(k, FlowTable::hash(k)));
}

// Keys carry either family (common/inet.hpp IpAddr): IPv6 flows are their own flows, distinct from each other by
// any byte and from the IPv4 flow with the same last 32 bits, and their hash spreads them like IPv4's.
static void ipv6_keys(void**) {
  FlowTable t(1024, 0);
  FlowKey v6;
  v6.client = *IpAddr::parse("2001:db8::a:1");
  v6.local = *IpAddr::parse("2001:db8::1");
  v6.client_port = 40000;
  v6.local_port = 443;
  v6.proto = 6;
  FlowKey v4 = v6;
  v4.client = Ipv4{v6.client.v4()};  // the same last 32 bits
  v4.local = Ipv4{v6.local.v4()};
  Flow* a = insert_key(t, v6, 1);
  Flow* b = insert_key(t, v4, 1);
  assert_non_null(a);
  assert_non_null(b);
  assert_ptr_not_equal(a, b);
  assert_ptr_equal(find_key(t, v6), a);
  assert_ptr_equal(find_key(t, v4), b);
  FlowKey other = v6;
  other.client.bytes[0] ^= 0x80;  // differs in the first byte only
  assert_null(find_key(t, other));
  // 512 IPv6 clients that differ in one 16-bit group hash to many buckets.
  std::set<uint32_t> buckets;
  for (uint32_t i = 0; i < 512; ++i) {
    FlowKey k = v6;
    k.client.bytes[6] = uint8_t(i >> 8);
    k.client.bytes[7] = uint8_t(i);
    buckets.insert(FlowTable::hash(k) % 1024);
  }
  assert_true(buckets.size() > 300);
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(constructor_limits),
      cmocka_unit_test(ipv6_keys),
      cmocka_unit_test(insert_find_erase),
      cmocka_unit_test(insert_resets_flow_fields),
      cmocka_unit_test(id_round_trip),
      cmocka_unit_test(stale_ids),
      cmocka_unit_test(tags),
      cmocka_unit_test(ids_of_other_workers),
      cmocka_unit_test(full_table_without_idle_flows),
      cmocka_unit_test(full_table_evicts_idle_flow),
      cmocka_unit_test(expire_sweeps_with_budget),
      cmocka_unit_test(expire_leaves_future_deadlines),
      cmocka_unit_test(expire_shows_each_flow_it_removes),
      cmocka_unit_test(randomized_model),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
