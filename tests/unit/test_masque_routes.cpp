// udp+https routes (control/masque_routes.hpp): read from a real dpctld.conf and from the state file's JSON, the
// route table built from them answers CONNECT-UDP targets with the route or the refusal (and its HTTP status and
// Proxy-Status error); private routes never match through the public front end; every mistake in the config is a
// ConfigError naming the file, the line and the key, and in the state file the field.
// dpctld.hpp before cmocka (config_fixture.hpp): cmocka's fail() macro would rewrite a method of that name.
#include "control/dpctld.hpp"
#include "tests/unit/config_fixture.hpp"

#include "control/dpctld_config.hpp"
#include "control/masque_routes.hpp"
#include "control/state_store.hpp"
#include "common/json_fields.hpp"

using namespace dptun;
using namespace dptun::test;

namespace {

ConfigFixture g_fx;
const char* kIntranet = "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f";

std::string valid_config() {
  return std::string() +
         "dpctld = {\n"
         "  tls = { ca = \"/etc/dptun/ca.pem\"; cert = \"/etc/dptun/d.pem\"; key = \"/etc/dptun/d.key\"; };\n"
         "  gateway_endpoint = \"10.99.2.1:51900\";\n"
         "};\n"
         "tunnels = (\n"
         "  { id = \"" + kIntranet + "\"; name = \"intranet\"; allow = [ \"*\" ]; }\n"
         ");\n"
         "routes = (\n"
         "  { from = \"udp+https://Time.Corp.Example.com:123\"; tunnel = \"intranet\"; to = \"udp://10.0.0.5:123\";\n"
         "    allow = [ \"CN=alice\", \"DNS:laptop.corp.example.com\" ]; },\n"
         "  { from = \"udp+https://dns.corp.example.com:53\"; tunnel = \"intranet\"; to = \"udp://resolver.internal:53/\";\n"
         "    allow = [ \"*\" ]; },\n"
         "  { from = \"udp+https://10.1.2.3:5353\"; tunnel = \"$" + kIntranet + "\"; to = \"udp://10.0.0.7:5353\";\n"
         "    allow = [ \"*\" ]; },\n"
         "  { from = \"udp+https://ops.corp.example.com:514\"; tunnel = \"intranet\"; to = \"udp://10.0.0.8:514\";\n"
         "    private = true; allow = [ \"URI:spiffe://corp/ops\" ]; }\n"
         ");\n";
}

void expect_error(const std::string& text, int line, const std::string& key, const std::string& what = "") {
  g_fx.expect_error([](const std::string& path) { return load_dpctld_config(path); }, text, line, key, what);
}

void config_routes(void**) {
  DpctldConfig c = load_dpctld_config(g_fx.write_config(valid_config()));
  assert_int_equal(c.routes.size(), 4);
  const MasqueRoute& time = c.routes[0];
  assert_string_equal(time.from_url().c_str(), "udp+https://time.corp.example.com:123");
  assert_string_equal(time.to_url().c_str(), "udp://10.0.0.5:123");
  assert_true(time.tunnel == c.tunnels[0].id);
  assert_false(time.private_route);
  assert_int_equal(time.allow.size(), 2);
  assert_string_equal(c.routes[1].to_url().c_str(), "udp://resolver.internal:53");  // a name; the '/' dropped
  assert_true(c.routes[2].private_route);  // "$<uuid>"
  assert_true(c.routes[3].private_route);  // private = true
}

void matcher(void**) {
  DpctldConfig c = load_dpctld_config(g_fx.write_config(valid_config()));
  MasqueRouteTable table(c.routes);
  assert_int_equal(table.size(), 4);
  const std::vector<std::string> alice = {"CN=alice"}, laptop = {"CN=bob", "DNS:LAPTOP.corp.example.com"},
                                 bob = {"CN=bob"}, ops = {"URI:spiffe://corp/ops"};
  auto m = table.match("time.corp.example.com", 123, alice, true);
  assert_true(bool(m));
  assert_string_equal(m.route->to_url().c_str(), "udp://10.0.0.5:123");
  assert_true(bool(table.match("TIME.corp.EXAMPLE.com", 123, laptop, true)));  // names and DNS: without case
  m = table.match("time.corp.example.com", 123, bob, true);
  assert_false(bool(m));
  assert_int_equal(int(m.refusal), int(MasqueRefusal::NotAllowed));
  assert_int_equal(masque_refusal_http_status(m.refusal), 403);
  assert_string_equal(masque_refusal_proxy_status(m.refusal), "http_request_denied");
  m = table.match("time.corp.example.com", 124, alice, true);  // the name, another port: no route
  assert_int_equal(int(m.refusal), int(MasqueRefusal::UnknownTarget));
  assert_int_equal(masque_refusal_http_status(m.refusal), 404);
  assert_string_equal(masque_refusal_proxy_status(m.refusal), "destination_not_found");
  assert_int_equal(int(table.match("other.example.com", 123, alice, true).refusal), int(MasqueRefusal::UnknownTarget));
  assert_int_equal(int(table.match("2001:db8::1", 53, alice, true).refusal), int(MasqueRefusal::UnknownTarget));
  // Private routes: never through the public front end, answered as an unknown target; privately they match.
  m = table.match("10.1.2.3", 5353, alice, true);
  assert_int_equal(int(m.refusal), int(MasqueRefusal::PrivateRoute));
  assert_int_equal(masque_refusal_http_status(m.refusal), 404);
  assert_true(bool(table.match("10.1.2.3", 5353, alice, false)));
  assert_int_equal(int(table.match("ops.corp.example.com", 514, ops, true).refusal), int(MasqueRefusal::PrivateRoute));
  assert_true(bool(table.match("ops.corp.example.com", 514, ops, false)));
  assert_int_equal(int(table.match("ops.corp.example.com", 514, alice, false).refusal), int(MasqueRefusal::NotAllowed));
  // "*": any certificate, none needed to name it.
  assert_true(bool(table.match("dns.corp.example.com", 53, {}, true)));
  // From the request's :path.
  m = table.match_path("/.well-known/masque/udp/dns.corp.example.com/53/", bob, true);
  assert_true(bool(m));
  assert_string_equal(m.route->to_url().c_str(), "udp://resolver.internal:53");
  m = table.match_path("/.well-known/masque/udp/dns.corp.example.com/53", bob, true);
  assert_int_equal(int(m.refusal), int(MasqueRefusal::BadRequest));
  assert_int_equal(masque_refusal_http_status(m.refusal), 400);
  assert_string_equal(masque_refusal_proxy_status(m.refusal), "http_request_error");
  m = table.match_path("/.well-known/masque/udp/10.1.2.3/5353/", bob, true);
  assert_int_equal(int(m.refusal), int(MasqueRefusal::PrivateRoute));
  // Every reason has a name, a status and a Proxy-Status error.
  for (size_t r = 0; r < size_t(MasqueRefusal::Count); ++r) {
    assert_string_not_equal(masque_refusal_name(MasqueRefusal(r)), "?");
    assert_true(masque_refusal_http_status(MasqueRefusal(r)) >= 400);
  }
  // A duplicate (host, port) in the input keeps the first.
  std::vector<MasqueRoute> twice = {c.routes[0], c.routes[0]};
  twice[1].to_port = 9;
  MasqueRouteTable t2(twice);
  assert_int_equal(t2.size(), 1);
  assert_int_equal(t2.match("time.corp.example.com", 123, alice, true).route->to_port, 123);
}

void config_errors(void**) {
  std::string t = replace(valid_config(), "udp+https://Time.Corp.Example.com:123", "https://time.example:123");
  expect_error(t, line_of(t, "https://time.example:123"), "routes.[0].from", "is not udp+https://HOST:PORT");
  t = replace(valid_config(), "udp+https://Time.Corp.Example.com:123", "udp+https://time.example:0");
  expect_error(t, line_of(t, "time.example:0"), "routes.[0].from", "not 1..65535");
  t = replace(valid_config(), "udp+https://Time.Corp.Example.com:123", "udp+https://time.example:65536");
  expect_error(t, line_of(t, "time.example:65536"), "routes.[0].from", "not 1..65535");
  t = replace(valid_config(), "udp+https://Time.Corp.Example.com:123", "udp+https://time.example");
  expect_error(t, line_of(t, "udp+https://time.example\""), "routes.[0].from", "has no port");
  t = replace(valid_config(), "udp+https://Time.Corp.Example.com:123", "udp+https://time_server.example:123");
  expect_error(t, line_of(t, "time_server"), "routes.[0].from", "not a DNS name or an IPv4 address");
  t = replace(valid_config(), "udp+https://Time.Corp.Example.com:123", "udp+https://[2001:db8::1]:123");
  expect_error(t, line_of(t, "2001:db8::1"), "routes.[0].from", "IPv6");
  t = replace(valid_config(), "udp://10.0.0.5:123", "tcp://10.0.0.5:123");
  expect_error(t, line_of(t, "tcp://10.0.0.5:123"), "routes.[0].to", "is not udp://HOST:PORT");
  t = replace(valid_config(), "udp://10.0.0.5:123", "udp://10.0.0.500:123");
  expect_error(t, line_of(t, "10.0.0.500"), "routes.[0].to", "not a DNS name or an IPv4 address");
  t = replace(valid_config(), "to = \"udp://10.0.0.5:123\";", "to = \"udp://10.0.0.5:123\"; tunnel2 = 1;");
  expect_error(t, line_of(t, "tunnel2"), "routes.[0].tunnel2", "unknown key");
  t = replace(valid_config(), "tunnel = \"intranet\"; to = \"udp://10.0.0.5:123\"", "tunnel = \"nope\"; to = \"udp://10.0.0.5:123\"");
  expect_error(t, line_of(t, "\"nope\""), "routes.[0].tunnel", "no tunnel");
  t = replace(valid_config(), "allow = [ \"CN=alice\", \"DNS:laptop.corp.example.com\" ];", "allow = [ ];");
  expect_error(t, line_of(t, "allow = [ ];"), "routes.[0].allow", "needs allow");
  t = replace(valid_config(), "\"CN=alice\"", "\"alice\"");
  expect_error(t, line_of(t, "\"alice\""), "routes.[0].allow.[0]", "expected \"CN=");
  t = replace(valid_config(), "udp+https://dns.corp.example.com:53", "udp+https://TIME.corp.example.com:123");
  expect_error(t, line_of(t, "TIME.corp"), "routes.[1].from", "defined twice");
}

void state_file(void**) {
  DpctldConfig c = load_dpctld_config(g_fx.write_config(valid_config()));
  PersistedState s;
  s.routes = c.routes;
  PersistedState back = decode_state(encode_state(s));
  assert_int_equal(back.routes.size(), 4);
  for (size_t i = 0; i < 4; ++i) {
    assert_string_equal(back.routes[i].from_url().c_str(), c.routes[i].from_url().c_str());
    assert_string_equal(back.routes[i].to_url().c_str(), c.routes[i].to_url().c_str());
    assert_true(back.routes[i].tunnel == c.routes[i].tunnel);
    assert_int_equal(back.routes[i].private_route, c.routes[i].private_route);
    assert_true(back.routes[i].allow == c.routes[i].allow);
  }
  // A state file written before routes existed has none.
  nlohmann::json old = encode_state(PersistedState{});
  old.erase("routes");
  assert_int_equal(decode_state(old).routes.size(), 0);
  // Damage names the route and the field.
  auto expect_bad = [](nlohmann::json j, const char* what) {
    try {
      decode_state(j);
      fail_msg("accepted: %s", j.dump().c_str());
    } catch (const std::exception& e) {
      if (std::string(e.what()).find(what) == std::string::npos) fail_msg("'%s' does not say '%s'", e.what(), what);
    }
  };
  nlohmann::json j = encode_state(s);
  j["routes"][1]["from"] = "udp+https://dns.example:99999";
  expect_bad(j, "routes[1]: 'from': 'udp+https://dns.example:99999': the port '99999' is not 1..65535");
  j = encode_state(s);
  j["routes"][0]["allow"] = nlohmann::json::array();
  expect_bad(j, "routes[0]: 'allow' is empty");
  j = encode_state(s);
  j["routes"][2]["to"] = 5;
  expect_bad(j, "routes[2]");
  j = encode_state(s);
  j["routes"].push_back(j["routes"][0]);
  expect_bad(j, "routes[4]: route udp+https://time.corp.example.com:123 appears twice");
}

// dpctld's own table (config routes, then dpctl's) and its refusal counters, as dpctl stats and the metrics show
// them; route.add checked against it (a dry run: prepared, never saved).
void dpctld_table_and_counters(void**) {
  Dpctld d(load_dpctld_config(g_fx.write_config(
      replace(valid_config(), "dpctld = {\n", "dpctld = {\n  state_file = \"" + g_fx.dir + "/none.state\";\n"))));
  std::string error;
  assert_true(d.load_persisted(false, error));
  const MasqueRouteTable table = d.masque_route_table();
  assert_int_equal(table.size(), 4);
  auto m = table.match_path("/.well-known/masque/udp/time.corp.example.com/123/", {"CN=bob"}, true);
  assert_int_equal(int(m.refusal), int(MasqueRefusal::NotAllowed));
  d.count_masque_refusal(m.refusal);
  d.count_masque_refusal(table.match_path("/.well-known/masque/udp/x.example/1/", {"CN=bob"}, true).refusal);
  d.count_masque_refusal(table.match_path("/.well-known/masque/udp/x.example/2/", {"CN=bob"}, true).refusal);
  const std::string metrics = d.metrics_text();
  for (const char* line : {"dptun_masque_routes 4\n", "dptun_masque_refusals_total{reason=\"not_allowed\"} 1\n",
                           "dptun_masque_refusals_total{reason=\"unknown_target\"} 2\n",
                           "dptun_masque_refusals_total{reason=\"bad_request\"} 0\n",
                           "dptun_masque_refusals_total{reason=\"private_route\"} 0\n"})
    if (metrics.find(line) == std::string::npos) fail_msg("metrics lack '%s'", line);
  const nlohmann::json stats = nlohmann::json::parse(d.api_dry_run(R"({"cmd":"stats"})"));
  assert_int_equal(stats["routes"].get<int>(), 4);
  assert_int_equal(stats["masque_refusals_by_reason"]["not_allowed"].get<int>(), 1);
  assert_int_equal(stats["masque_refusals_by_reason"]["unknown_target"].get<int>(), 2);
  const nlohmann::json list = nlohmann::json::parse(d.api_dry_run(R"({"cmd":"route.list"})"));
  assert_int_equal(list["routes"].size(), 4);
  assert_string_equal(list["routes"][0]["source"].get<std::string>().c_str(), "config");
  assert_string_equal(list["routes"][0]["tunnel_name"].get<std::string>().c_str(), "intranet");
  nlohmann::json r = nlohmann::json::parse(d.api_dry_run(
      R"({"cmd":"route.add","from":"udp+https://TIME.corp.example.com:123","tunnel":"intranet","to":"udp://10.0.0.9:1","allow":["*"]})"));
  assert_false(r["ok"].get<bool>());
  assert_string_equal(r["error"].get<std::string>().c_str(), "a route for udp+https://time.corp.example.com:123 exists already");
  r = nlohmann::json::parse(d.api_dry_run(
      R"({"cmd":"route.add","from":"udp+https://syslog.corp.example.com:514","tunnel":"intranet","to":"udp://10.0.0.9:514"})"));
  assert_string_equal(r["error"].get<std::string>().c_str(),
                      "give the client certificate identities the route allows: --allow CN=client-name (or --allow '*')");
  r = nlohmann::json::parse(d.api_dry_run(
      R"({"cmd":"route.add","from":"udp+https://syslog.corp.example.com:514","tunnel":"$intranet","to":"udp://10.0.0.9:514","allow":["CN=ops"]})"));
  assert_true(r["ok"].get<bool>());
  assert_int_equal(r["routes"].get<int>(), 1);  // the state it would save: dpctl's routes, not the config's
  r = nlohmann::json::parse(d.api_dry_run(R"({"cmd":"route.del","from":"udp+https://time.corp.example.com:123"})"));
  assert_true(r["error"].get<std::string>().find("comes from " + g_fx.dir) != std::string::npos);
}

int setup(void**) { return g_fx.create("dptun-masque-routes") ? 0 : -1; }
int teardown(void**) { return g_fx.remove() ? 0 : -1; }

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(config_routes),
      cmocka_unit_test(matcher),
      cmocka_unit_test(config_errors),
      cmocka_unit_test(state_file),
      cmocka_unit_test(dpctld_table_and_counters),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
