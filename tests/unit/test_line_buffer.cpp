// The line splitter every control connection reads through: lines split across reads and several in one read
// come out whole and in order, empty lines are lines, an unfinished line waits for the rest, a line of exactly
// max_line bytes passes and one byte more is refused (complete or not) while the lines before it survive.
#include <initializer_list>
#include <string>
#include <string_view>

#include "tests/unit/cmocka.hpp"

#include "common/line_buffer.hpp"

using namespace dptun;

namespace {

bool feed(LineBuffer& b, std::string_view s) { return b.append({s.data(), s.size()}); }

std::string take(LineBuffer& b) {
  std::optional<std::string> line = b.next();
  assert_true(line.has_value());
  return *line;
}

// The complete lines held, in order, are exactly `lines`.
void expect_lines(LineBuffer& b, std::initializer_list<std::string_view> lines) {
  for (std::string_view want : lines) assert_string_equal(take(b).c_str(), std::string(want).c_str());
  assert_false(b.has_line());
}

}  // namespace

static void split_across_appends(void**) {
  LineBuffer b(64);
  assert_true(feed(b, "{\"type\":"));
  assert_false(b.has_line());
  assert_false(b.next().has_value());
  assert_false(b.empty());
  assert_true(feed(b, "\"ping\"}"));
  assert_false(b.has_line());
  assert_true(feed(b, "\n{\"ty"));
  assert_string_equal(take(b).c_str(), "{\"type\":\"ping\"}");
  assert_false(b.has_line());
  assert_true(feed(b, "pe\":\"pong\"}\n"));
  assert_string_equal(take(b).c_str(), "{\"type\":\"pong\"}");
  assert_true(b.empty());
  // One byte at a time.
  for (char c : std::string_view("abc\n")) assert_true(b.append({&c, 1}));
  assert_string_equal(take(b).c_str(), "abc");
}

static void several_lines_in_one_append(void**) {
  LineBuffer b(16);
  assert_true(feed(b, "one\ntwo\nthree\nfou"));
  expect_lines(b, {"one", "two", "three"});
  assert_true(feed(b, "r\n"));
  assert_string_equal(take(b).c_str(), "four");
  // Many short lines through a small limit: the taken ones do not count against it.
  for (int i = 0; i < 1000; ++i) {
    assert_true(feed(b, "0123456789abcdef\nx"));
    assert_string_equal(take(b).c_str(), "0123456789abcdef");
    assert_true(feed(b, "\n"));
    assert_string_equal(take(b).c_str(), "x");
  }
  assert_true(b.empty());
}

static void empty_lines_are_lines(void**) {
  LineBuffer b(8);
  assert_true(feed(b, "\n\nA\n\n"));
  expect_lines(b, {"", "", "A", ""});
  assert_false(b.next().has_value());
  assert_true(b.empty());
}

static void exact_limit_passes(void**) {
  LineBuffer b(10);
  assert_true(feed(b, std::string(10, 'x')));  // unfinished, at the limit: still fine
  assert_false(b.too_long());
  assert_true(feed(b, "\n"));
  assert_string_equal(take(b).c_str(), std::string(10, 'x').c_str());
  assert_true(feed(b, std::string(10, 'y') + "\n" + std::string(10, 'z') + "\n"));
  expect_lines(b, {"yyyyyyyyyy", "zzzzzzzzzz"});
}

static void one_byte_over_is_refused(void**) {
  // Unfinished: refused as soon as the 11th byte arrives, without waiting for a newline.
  LineBuffer b(10);
  assert_true(feed(b, std::string(6, 'x')));
  assert_false(feed(b, std::string(5, 'x')));
  assert_true(b.too_long());
  assert_false(b.has_line());
  assert_true(b.empty());                // nothing of it is held
  assert_false(feed(b, "ok\n"));         // the stream stays unusable ...
  assert_false(b.has_line());
  b.clear();                             // ... until the owner starts a new one
  assert_false(b.too_long());
  assert_true(feed(b, "ok\n"));
  assert_string_equal(take(b).c_str(), "ok");
  // Complete in one append, and after good lines: those are still taken, nothing after the long one is.
  LineBuffer c(10);
  assert_false(feed(c, "good\n" + std::string(11, 'x') + "\nafter\n"));
  assert_true(c.too_long());
  assert_string_equal(take(c).c_str(), "good");
  assert_false(c.next().has_value());
  assert_true(c.empty());
}

static void no_newline_is_kept(void**) {
  LineBuffer b(1u << 20);
  const std::string half(300000, 'q');
  assert_true(feed(b, half));
  assert_true(feed(b, half));
  assert_false(b.has_line());
  assert_false(b.empty());
  assert_true(feed(b, "\n"));
  assert_int_equal(take(b).size(), 600000);
  assert_true(b.empty());
}

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(split_across_appends),   cmocka_unit_test(several_lines_in_one_append),
      cmocka_unit_test(empty_lines_are_lines),  cmocka_unit_test(exact_limit_passes),
      cmocka_unit_test(one_byte_over_is_refused), cmocka_unit_test(no_newline_is_kept),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
