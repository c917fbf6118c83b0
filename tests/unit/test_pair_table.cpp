// dpgw's pair table (dataplane/tables/pair_table.hpp): every pair it was made from is found with its sessions, and
// nothing else is -- ids next to the stored ones, ids that share their home slot, 0 -- from an empty table to the most
// a pair_set holds; of an id listed twice the last counts; id 0 is never stored.
#include <cstdint>
#include <random>
#include <set>
#include <vector>

#include "dataplane/tables/pair_table.hpp"

#include "tests/unit/cmocka.hpp"

using namespace dptun;

namespace {

void check_all(const std::vector<PairSpec>& pairs, const PairTable& t) {
  assert_int_equal(t.size(), pairs.size());
  std::set<uint32_t> ids;
  for (const PairSpec& p : pairs) {
    ids.insert(p.pair);
    const PairSpec* f = t.find(p.pair);
    assert_non_null(f);
    assert_true(*f == p);
  }
  for (const PairSpec& p : pairs)
    for (uint32_t other : {p.pair - 1, p.pair + 1, p.pair ^ 0x80000000u, p.pair ^ 1u})
      if (!ids.count(other)) assert_null(t.find(other));
  assert_null(t.find(0));
}

void empty(void**) {
  const PairTable t({});
  assert_int_equal(t.size(), 0);
  for (uint32_t id : {0u, 1u, 123u, 0xffffffffu}) assert_null(t.find(id));
}

void few(void**) {
  const std::vector<PairSpec> pairs = {{123, 40000, 32768}, {0xffffffffu, 65535, 1}, {1, 40001, 32768}};
  check_all(pairs, PairTable(pairs));
}

// Random ids from the smallest table to the largest, each table at most half full (lookups of absent ids end).
void random_sizes(void**) {
  std::mt19937 rng(7);
  for (size_t n : {size_t(1), size_t(7), size_t(8), size_t(9), size_t(1000), kMaxPairs}) {
    std::set<uint32_t> ids;
    std::vector<PairSpec> pairs;
    while (pairs.size() < n) {
      const uint32_t id = uint32_t(rng());
      if (id && ids.insert(id).second)
        pairs.push_back(PairSpec{id, 32768 + uint32_t(rng() % 32768), 1 + uint32_t(rng() % 65535)});
    }
    const PairTable t(pairs);
    check_all(pairs, t);
    uint32_t absent = 0;
    for (int i = 0; i < 100000; ++i) {
      const uint32_t id = uint32_t(rng());
      if (!ids.count(id)) {
        assert_null(t.find(id));
        ++absent;
      }
    }
    assert_true(absent > 99000);
  }
}

// Ids that all hash to one slot (multiples of 2^28 times the inverse of the hash constant share their top bits) and
// consecutive ids: long probe runs, still every one found and nothing else.
void collisions(void**) {
  std::vector<PairSpec> pairs;
  const uint32_t inv = 0x144cbc89u;  // 0x9e3779b9 * 0x144cbc89 == 1 (mod 2^32)
  for (uint32_t k = 1; k <= 12; ++k) pairs.push_back(PairSpec{k * inv, 40000 + k, 32768});
  for (uint32_t k = 1; k <= 12; ++k) pairs.push_back(PairSpec{1000 + k, 41000 + k, 32769});
  const PairTable t(pairs);
  check_all(pairs, t);
  for (uint32_t k = 13; k < 40; ++k) assert_null(t.find(k * inv));
}

// Ids twice (decode_pairs refuses it; the table keeps the last) and id 0 (never a pair).
void duplicates_and_zero(void**) {
  const std::vector<PairSpec> pairs = {{5, 40000, 32768}, {0, 40001, 32768}, {5, 40002, 32769}, {6, 40003, 32768}};
  const PairTable t(pairs);
  assert_int_equal(t.size(), 2);
  assert_true(*t.find(5) == (PairSpec{5, 40002, 32769}));
  assert_true(*t.find(6) == (PairSpec{6, 40003, 32768}));
  assert_null(t.find(0));
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(empty),
      cmocka_unit_test(few),
      cmocka_unit_test(random_sizes),
      cmocka_unit_test(collisions),
      cmocka_unit_test(duplicates_and_zero),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
