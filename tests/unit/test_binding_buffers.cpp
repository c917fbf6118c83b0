// Delayed binding's buffers: fixed pools handed out and back; HeadBuffers' two tiers (a connection moves from a
// small buffer to a large one with its bytes, bytes waiting beyond a gap, owner and Meta; none free: refused, the
// small one kept), handles of both tiers, and writes that do not fit refused without touching anything.
#include <string>
#include <vector>

#include "tests/unit/cmocka.hpp"

#include "dataplane/hostname/binding_buffers.hpp"

using namespace dptun;

namespace {

std::span<const uint8_t> bytes_of(const std::string& s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }
std::string text(std::span<const uint8_t> b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); }

void fixed_pool(void**) {
  BindingBuffers pool(2, 8);
  const uint32_t a = pool.acquire(11), b = pool.acquire(12);
  assert_int_not_equal(a, BindingBuffers::kNone);
  assert_int_not_equal(b, BindingBuffers::kNone);
  assert_int_equal(pool.acquire(13), BindingBuffers::kNone);
  assert_true(pool.append(a, bytes_of("abcd")));
  assert_false(pool.append(a, bytes_of("efghi")));  // 9 > 8: nothing appended
  assert_string_equal(text(pool.bytes(a)).c_str(), "abcd");
  assert_true(pool.write_at(a, 6, bytes_of("xy")));
  assert_false(pool.write_at(a, 7, bytes_of("xy")));
  pool.extend_to(a, 8);
  assert_int_equal(pool.bytes(a).size(), 8);
  pool.extend_to(a, 9);  // beyond the buffer: ignored
  assert_int_equal(pool.bytes(a).size(), 8);
  assert_int_equal(pool.owner(b), 12);
  pool.release(a);
  pool.release(a);  // twice: harmless
  assert_int_equal(pool.in_use(), 1);
  const uint32_t c = pool.acquire(14);
  assert_int_equal(c, a);
  assert_int_equal(pool.bytes(c).size(), 0);  // a fresh buffer is empty
}

struct Meta {
  int value = 0;
};

void two_tiers(void**) {
  HeadBuffers<Meta> hb(2, 8, 1, 32);
  const uint32_t h = hb.acquire(7);
  assert_int_not_equal(h, HeadBuffers<Meta>::kNone);
  assert_false(h & HeadBuffers<Meta>::kLarge);
  assert_int_equal(hb.capacity(h), 8);
  hb.meta(h).value = 42;
  assert_true(hb.write_at(h, 0, bytes_of("hello")));
  hb.extend_to(h, 5);
  assert_true(hb.write_at(h, 6, bytes_of("ab")));  // beyond a gap (offset 5 missing)
  assert_false(hb.write_at(h, 7, bytes_of("abc")));
  const uint32_t big = hb.grow(h);
  assert_true(big & HeadBuffers<Meta>::kLarge);
  assert_false(hb.used(h));  // the small one is free again
  assert_true(hb.used(big));
  assert_int_equal(hb.capacity(big), 32);
  assert_int_equal(hb.owner(big), 7);
  assert_int_equal(hb.meta(big).value, 42);
  assert_string_equal(text(hb.bytes(big)).c_str(), "hello");
  hb.write_at(big, 5, bytes_of("_"));
  hb.extend_to(big, 8);
  assert_string_equal(text(hb.bytes(big)).c_str(), "hello_ab");  // the piece beyond the gap came along
  assert_true(hb.write_at(big, 8, bytes_of(std::string(24, 'z'))));
  assert_false(hb.write_at(big, 9, bytes_of(std::string(24, 'z'))));
  // No second large buffer: grow refuses, the small buffer stays as it was.
  const uint32_t h2 = hb.acquire(8);
  hb.write_at(h2, 0, bytes_of("x"));
  hb.extend_to(h2, 1);
  assert_int_equal(hb.grow(h2), HeadBuffers<Meta>::kNone);
  assert_true(hb.used(h2));
  assert_string_equal(text(hb.bytes(h2)).c_str(), "x");
  assert_int_equal(hb.grow(big), HeadBuffers<Meta>::kNone);  // already large
  // Handles of both tiers, small ones first.
  assert_int_equal(hb.count(), 3);
  assert_int_equal(hb.handle_at(0), 0);
  assert_int_equal(hb.handle_at(2), 0 | HeadBuffers<Meta>::kLarge);
  assert_int_equal(hb.large_in_use(), 1);
  hb.release(big);
  assert_int_equal(hb.large_free(), 1);
  assert_false(hb.used(HeadBuffers<Meta>::kNone));
  // A new connection starts with a fresh Meta.
  hb.release(h2);
  const uint32_t h3 = hb.acquire(9);
  assert_int_equal(hb.meta(h3).value, 0);
  assert_int_equal(hb.bytes(h3).size(), 0);
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(fixed_pool),
      cmocka_unit_test(two_tiers),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
