// openssl_errors() (common/openssl_errors.hpp), the reason in dpctld's and dpagent's TLS file errors: every queued
// error, oldest first, and the queue is empty afterwards; a failure that queued nothing still reads as a reason;
// with_data adds the text OpenSSL attached (a file name, a config line).
#include "tests/unit/cmocka.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>

#include <cstring>
#include <string>

#include "common/openssl_errors.hpp"

using namespace dptun;

static void every_queued_error_in_order_then_empty(void**) {
  ERR_clear_error();
  assert_null(BIO_new_file("/nonexistent-dptun/one.pem", "r"));
  const size_t first = openssl_errors().size();
  assert_true(first > 0);
  assert_int_equal(ERR_peek_error(), 0);  // cleared
  assert_null(BIO_new_file("/nonexistent-dptun/one.pem", "r"));
  assert_null(BIO_new_file("/nonexistent-dptun/two.pem", "r"));
  const std::string both = openssl_errors();
  assert_non_null(strstr(both.c_str(), "No such file or directory"));
  assert_non_null(strstr(both.c_str(), "; "));  // two failures, both named
  assert_true(both.size() > first);
  assert_int_equal(ERR_peek_error(), 0);
}

static void with_the_text_openssl_attached(void**) {
  // The file name OpenSSL attaches to a failed open is there only when asked for.
  ERR_clear_error();
  assert_null(BIO_new_file("/nonexistent-dptun/three.pem", "r"));
  const std::string with = openssl_errors(true);
  assert_non_null(strstr(with.c_str(), "(calling fopen(/nonexistent-dptun/three.pem, r))"));
  assert_null(BIO_new_file("/nonexistent-dptun/three.pem", "r"));
  assert_null(strstr(openssl_errors().c_str(), "three.pem"));
}

static void an_empty_queue_still_gives_a_reason(void**) {
  ERR_clear_error();
  assert_string_equal(openssl_errors().c_str(), "unknown error");
}

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(every_queued_error_in_order_then_empty),
      cmocka_unit_test(with_the_text_openssl_attached),
      cmocka_unit_test(an_empty_queue_still_gives_a_reason),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
