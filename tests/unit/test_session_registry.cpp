// dpctld's session registry: indexes come from 32768..65535 and are never handed out twice while a session, the
// gateway or a QUIC connection (a reservation, from its first Initial) holds them; a reservation ends when a
// session of that index is added or when it is released; all 32768 taken means nullopt.
#include <set>

#include "control/session_registry.hpp"

#include "tests/unit/cmocka.hpp"

using namespace dptun;

namespace {

SessionRecord record(uint32_t index) {
  SessionRecord r;
  r.index = index;
  r.base_secret.assign(32, 0xab);
  return r;
}

void reserved_indexes_are_not_allocated(void**) {
  SessionRegistry reg;
  std::set<uint32_t> seen;
  for (int i = 0; i < 100; ++i) {
    auto r = reg.reserve_index();
    assert_true(r.has_value());
    assert_true(*r >= SessionRegistry::kFirstIndex && *r <= SessionRegistry::kLastIndex);
    assert_true(seen.insert(*r).second);
    assert_true(reg.reserved(*r));
  }
  assert_int_equal(reg.reservations(), 100);
  // Every index handed out afterwards differs from the reserved ones, over the whole range.
  for (uint32_t i = 0; i < SessionRegistry::kLastIndex - SessionRegistry::kFirstIndex + 1 - 100; ++i) {
    auto a = reg.allocate_index();
    assert_true(a.has_value());
    assert_false(seen.count(*a));
    reg.add(record(*a));
  }
  assert_false(reg.allocate_index().has_value());  // all 32768 taken
  assert_false(reg.reserve_index().has_value());
}

void a_session_ends_the_reservation(void**) {
  SessionRegistry reg;
  const uint32_t r = *reg.reserve_index();
  reg.add(record(r));
  assert_false(reg.reserved(r));
  assert_int_equal(reg.reservations(), 0);
  assert_non_null(reg.find(r));
  reg.release_index(r);  // a late release (the connection ends after registering) leaves the session alone
  assert_non_null(reg.find(r));
  reg.remove(r);
  assert_null(reg.find(r));
}

void released_indexes_come_back(void**) {
  SessionRegistry reg;
  std::set<uint32_t> held;
  for (uint32_t i = 0; i <= SessionRegistry::kLastIndex - SessionRegistry::kFirstIndex; ++i) held.insert(*reg.reserve_index());
  assert_int_equal(held.size(), 32768);
  assert_false(reg.reserve_index().has_value());
  const uint32_t one = *held.begin();
  reg.release_index(one);
  assert_false(reg.reserved(one));
  auto again = reg.allocate_index();
  assert_true(again.has_value());
  assert_int_equal(*again, one);
}

void gateway_held_indexes_are_not_reserved(void**) {
  SessionRegistry reg;
  std::set<uint32_t> held;
  for (uint32_t i = SessionRegistry::kFirstIndex; i < SessionRegistry::kLastIndex; ++i) held.insert(i);
  reg.set_gateway_held(held);
  auto r = reg.reserve_index();
  assert_true(r.has_value());
  assert_int_equal(*r, SessionRegistry::kLastIndex);
  assert_false(reg.reserve_index().has_value());
}

void quic_records_keep_their_spec(void**) {
  SessionRegistry reg;
  SessionRecord rec = record(*reg.reserve_index());
  QuicSessionSpec q;
  q.rx_secret.assign(32, 1);
  q.tx_secret.assign(32, 2);
  q.cid_tails = {{1, 2, 3, 4}};
  rec.quic = q;
  const uint32_t index = rec.index;
  reg.add(std::move(rec));
  assert_true(reg.find(index)->quic.has_value());
  assert_true(*reg.find(index)->quic == q);
  reg.remove(index);
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(reserved_indexes_are_not_allocated),
      cmocka_unit_test(a_session_ends_the_reservation),
      cmocka_unit_test(released_indexes_come_back),
      cmocka_unit_test(gateway_held_indexes_are_not_reserved),
      cmocka_unit_test(quic_records_keep_their_spec),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
