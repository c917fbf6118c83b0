// Agent-side routing: exact names before the longest wildcard before the fallback, case-insensitive, targets
// with and without a port, bad specs refused; remembered choices bounded; and the relay frame's name trailer.
#include <string>

#include "agent/service_routes.hpp"
#include "proto/relay_frame.hpp"

#include "tests/unit/cmocka.hpp"

using namespace dptun;

namespace {

std::string target_of(const ServiceRoutes& r, std::string_view name) {
  auto t = r.lookup(name);
  return t ? (t->port ? t->str() : t->ip.str()) : "-";
}

void lookups(void**) {
  ServiceRoutes r;
  std::string error;
  assert_true(r.add("App.Example.org=127.0.0.1:8080", error));
  assert_true(r.add("*.example.com=10.0.0.5", error));
  assert_true(r.add(".api.example.com=10.0.0.6:9000", error));
  assert_string_equal(target_of(r, "app.example.org").c_str(), "127.0.0.1:8080");
  assert_string_equal(target_of(r, "APP.example.ORG").c_str(), "127.0.0.1:8080");
  assert_string_equal(target_of(r, "x.example.com").c_str(), "10.0.0.5");
  assert_string_equal(target_of(r, "example.com").c_str(), "10.0.0.5");
  assert_string_equal(target_of(r, "v1.api.example.com").c_str(), "10.0.0.6:9000");  // the longer wildcard
  assert_string_equal(target_of(r, "badexample.com").c_str(), "-");
  assert_string_equal(target_of(r, "other.org").c_str(), "-");
  r.set_fallback(Endpoint{Ipv4{0x0a000009}, 0});
  assert_string_equal(target_of(r, "other.org").c_str(), "10.0.0.9");
  assert_false(r.add("noequals", error));
  assert_false(r.add("=1.2.3.4", error));
  assert_false(r.add("a.b=nowhere", error));
  assert_false(r.add("*.=1.2.3.4", error));
}

void remembered(void**) {
  RoutedFlows flows(3);
  for (uint32_t tag = 1; tag <= 4; ++tag) flows.remember(tag, Endpoint{Ipv4{tag}, 80});
  assert_int_equal(flows.size(), 3);
  assert_false(flows.find(1).has_value());  // the oldest went first
  assert_int_equal(flows.find(4)->ip.v4(), 4);
  flows.remember(4, Endpoint{Ipv4{44}, 80});  // a reused tag takes the new target
  assert_int_equal(flows.find(4)->ip.v4(), 44);
}

void name_trailer(void**) {
  uint8_t buf[300] = {1, 2, 3};
  const size_t n = write_name_trailer(buf + 3, "app.example.org");
  std::string_view name;
  size_t rest = 0;
  assert_true(read_name_trailer({buf, 3 + n}, name, rest));
  assert_int_equal(rest, 3);
  assert_true(name == "app.example.org");
  const uint8_t lying[4] = {'a', 'b', 'c', 9};  // says 9 bytes, holds 3
  assert_false(read_name_trailer({lying, 4}, name, rest));
  uint8_t long_name[300] = {};
  long_name[299] = 255;  // longer than any hostname: refused (receivers size their buffers for 253)
  assert_false(read_name_trailer({long_name, 300}, name, rest));
  const uint8_t zero[2] = {'a', 0};
  assert_false(read_name_trailer({zero, 2}, name, rest));
  assert_false(read_name_trailer({}, name, rest));
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(lookups),
      cmocka_unit_test(remembered),
      cmocka_unit_test(name_trailer),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
