// dpctld config: tunnels (allow lists, weight policy), entry points and ingress rules parse into the right
// values; every mistake is a ConfigError naming the file, the line and the key path. Also the weight policy
// itself and the hostname rule syntax shared with dpctl.
#include "tests/unit/config_fixture.hpp"

#include "control/dpctld_config.hpp"

using namespace dptun;
using namespace dptun::test;

namespace {

ConfigFixture g_fx;
const char* kWeb = "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f";
const char* kDb = "11111111-2222-3333-4444-555555555555";

std::string valid_config() {
  return std::string() +
         "dpctld = {\n"
         "  agent_listen = \"0.0.0.0:7443\";\n"
         "  tls = { ca = \"/etc/dptun/ca.pem\"; cert = \"/etc/dptun/d.pem\"; key = \"/etc/dptun/d.key\"; };\n"
         "  gateway_endpoint = \"10.99.2.1:51900\";\n"
         "  api_socket = \"/run/test/api.sock\";\n"
         "  state_file = \"/var/lib/test/state\";\n"
         "};\n"
         "tunnels = (\n"
         "  { id = \"" + kWeb + "\"; name = \"web\"; allow = [ \"CN=agent-1\", \"DNS:a1.example.com\" ]; max_weight = 100; },\n"
         "  { id = \"" + kDb + "\"; name = \"db\"; allow = [ \"*\" ]; weight = 7; }\n"
         ");\n"
         "entry_points = (\n"
         "  { proto = \"tcp\"; port = 443; tunnel = \"web\"; target = \"10.0.0.10:443\"; },\n"
         "  { proto = \"udp\"; port = 53; tunnel = \"" + kDb + "\"; target = \"10.0.0.11:53\"; ttl = 30; keepalive = true; },\n"
         "  { proto = \"udp\"; port = 443; route = \"quic\"; }\n"
         ");\n"
         "ingress = (\n"
         "  { hostname = \"App.Example.org\"; tunnel = \"web\"; },\n"
         "  { hostname = \"*.internal.example.org\"; tunnel = \"$" + kDb + "\"; },\n"
         "  { hostname = \".staff.example.org\"; tunnel = \"web\"; private = true; },\n"
         "  { hostname = \"~api-[0-9]+\\\\.example\\\\.net\"; tunnel = \"web\"; target = \"10.0.0.12:443\"; proxy_protocol = true; }\n"
         ");\n";
}

void expect_error(const std::string& text, int line, const std::string& key, const std::string& what = "") {
  g_fx.expect_error([](const std::string& path) { return load_dpctld_config(path); }, text, line, key, what);
}

void full_config(void**) {
  DpctldConfig c = load_dpctld_config(g_fx.write_config(valid_config()));
  assert_int_equal(c.agent_listen.port, 7443);
  assert_string_equal(c.api_socket.c_str(), "/run/test/api.sock");
  assert_string_equal(c.state_file.c_str(), "/var/lib/test/state");
  assert_string_equal(c.agent_address.c_str(), "10.99.2.1:7443");  // the gateway's address when listening on any
  assert_int_equal(c.tunnels.size(), 2);
  assert_int_equal(c.tunnels[0].allow.size(), 2);
  assert_false(c.tunnels[0].weights.fixed);
  assert_int_equal(c.tunnels[0].weights.max_weight, 100);
  assert_true(c.tunnels[1].weights.fixed);
  assert_int_equal(c.tunnels[1].weights.weight, 7);
  assert_int_equal(c.entry_points.size(), 3);
  assert_true(c.entry_points[2].route == EntryRoute::QuicSni);
  assert_true(c.entry_points[1].tunnel == c.tunnels[1].id);
  assert_true(c.entry_points[1].keepalive);
  assert_int_equal(c.entry_points[1].udp_ttl_ns, 30'000'000'000ull);
  assert_int_equal(c.ingress.size(), 4);
  assert_string_equal(c.ingress[3].hostname.c_str(), "~api-[0-9]+\\.example\\.net");
  assert_true(c.ingress[3].target && c.ingress[3].target->str() == "10.0.0.12:443");
  assert_true(c.ingress[3].proxy_protocol);
  assert_string_equal(c.ingress[0].hostname.c_str(), "app.example.org");
  assert_false(c.ingress[0].private_rule);
  assert_true(c.ingress[1].tunnel == c.tunnels[1].id);
  assert_true(c.ingress[1].private_rule);  // "$<uuid>"
  assert_true(c.ingress[2].private_rule);  // private = true
  assert_string_equal(c.ingress[2].hostname.c_str(), "*.staff.example.org");  // ".x" and "*.x" are one rule
}

void weight_policy(void**) {
  WeightPolicy agent;  // default: the agent chooses, 255 included
  assert_int_equal(agent.effective(1), 1);
  assert_int_equal(agent.effective(255), 255);
  assert_string_equal(agent.str().c_str(), "agent");
  WeightPolicy capped;
  capped.max_weight = 100;
  assert_int_equal(capped.effective(50), 50);
  assert_int_equal(capped.effective(255), 100);  // no agent makes itself "preferred" past the cap
  assert_string_equal(capped.str().c_str(), "agent, at most 100");
  WeightPolicy fixed;
  fixed.fixed = true;
  fixed.weight = 255;
  assert_int_equal(fixed.effective(1), 255);
  assert_string_equal(fixed.str().c_str(), "fixed 255");
}

void weight_errors(void**) {
  std::string t = replace(valid_config(), "max_weight = 100;", "max_weight = 0;");
  expect_error(t, line_of(t, "max_weight = 0"), "tunnels.[0].max_weight");
  t = replace(valid_config(), "weight = 7;", "weight = 256;");
  expect_error(t, line_of(t, "weight = 256"), "tunnels.[1].weight");
  t = replace(valid_config(), "weight = 7;", "weight = 7; max_weight = 9;");
  expect_error(t, line_of(t, "max_weight = 9"), "tunnels.[1].max_weight", "either weight");
}

void ingress_errors(void**) {
  std::string t = replace(valid_config(), "\"App.Example.org\"", "\"bad..name\"");
  expect_error(t, line_of(t, "bad..name"), "ingress.[0].hostname", "expected a hostname");
  t = replace(valid_config(), "hostname = \"App.Example.org\"; tunnel = \"web\";", "hostname = \"a.org\"; tunnel = \"nope\";");
  expect_error(t, line_of(t, "\"nope\""), "ingress.[0].tunnel", "no tunnel");
  t = replace(valid_config(), "\"*.internal.example.org\"", "\"app.EXAMPLE.org\"");
  expect_error(t, line_of(t, "app.EXAMPLE.org"), "ingress.[1].hostname", "defined twice");
  t = replace(valid_config(), "\"*.internal.example.org\"", "\".Staff.example.org\"");
  expect_error(t, line_of(t, "private = true"), "ingress.[2].hostname", "defined twice");
  t = replace(valid_config(), "~api-[0-9]+", "~api-[0-9+");
  expect_error(t, line_of(t, "~api-[0-9+"), "ingress.[3].hostname", "bad pattern");
  t = replace(valid_config(), "target = \"10.0.0.12:443\"", "target = \"nowhere\"");
  expect_error(t, line_of(t, "nowhere"), "ingress.[3].target", "ipv4:port");
  t = replace(valid_config(), "route = \"quic\"", "route = \"sni\"");
  expect_error(t, line_of(t, "route = \"sni\""), "entry_points.[2].route", "udp");
  t = replace(valid_config(), "private = true;", "privat = true;");
  expect_error(t, line_of(t, "privat = true"), "ingress.[2].privat", "unknown key");
}

void other_errors(void**) {
  std::string t = replace(valid_config(), "\"CN=agent-1\"", "\"agent-1\"");
  expect_error(t, line_of(t, "\"agent-1\""), "tunnels.[0].allow.[0]", "expected \"CN=");
  t = replace(valid_config(), "port = 443; tunnel = \"web\"", "port = 443; tunnel = \"mail\"");
  expect_error(t, line_of(t, "\"mail\""), "entry_points.[0].tunnel", "no tunnel");
  t = replace(valid_config(), "port = 53;", "port = 443; proto2 = 1;");
  expect_error(t, line_of(t, "proto2"), "entry_points.[1].proto2", "unknown key");
  t = replace(valid_config(), "agent_listen = \"0.0.0.0:7443\";", "agent_listen = \"0.0.0.0\";");
  expect_error(t, line_of(t, "agent_listen"), "dpctld.agent_listen", "ipv4:port");
  // The QUIC port: optional, ipv4:port, and no UDP entry point may take it.
  assert_false(load_dpctld_config(g_fx.write_config(valid_config())).agent_quic_listen.has_value());
  t = replace(valid_config(), "agent_listen = \"0.0.0.0:7443\";",
              "agent_listen = \"0.0.0.0:7443\";\n  agent_quic_listen = \"10.99.2.1:8443\";");
  DpctldConfig q = load_dpctld_config(g_fx.write_config(t));
  assert_true(q.agent_quic_listen.has_value());
  assert_string_equal(q.agent_quic_listen->str().c_str(), "10.99.2.1:8443");
  t = replace(valid_config(), "agent_listen = \"0.0.0.0:7443\";",
              "agent_listen = \"0.0.0.0:7443\";\n  agent_quic_listen = \"10.99.2.1\";");
  expect_error(t, line_of(t, "agent_quic_listen"), "dpctld.agent_quic_listen", "ipv4:port");
  t = replace(valid_config(), "agent_listen = \"0.0.0.0:7443\";",
              "agent_listen = \"0.0.0.0:7443\";\n  agent_quic_listen = \"0.0.0.0:443\";");
  expect_error(t, line_of(t, "route = \"quic\""), "entry_points.[2].port", "dpctld's QUIC port for agents");
  // The CONNECT-UDP TCP port: optional, ipv4:port, not agent_listen's port, and no TCP entry point may take it.
  assert_false(load_dpctld_config(g_fx.write_config(valid_config())).masque_tcp_listen.has_value());
  t = replace(valid_config(), "agent_listen = \"0.0.0.0:7443\";",
              "agent_listen = \"0.0.0.0:7443\";\n  masque_tcp_listen = \"10.99.2.1:8443\";");
  q = load_dpctld_config(g_fx.write_config(t));
  assert_true(q.masque_tcp_listen.has_value());
  assert_string_equal(q.masque_tcp_listen->str().c_str(), "10.99.2.1:8443");
  t = replace(valid_config(), "agent_listen = \"0.0.0.0:7443\";",
              "agent_listen = \"0.0.0.0:7443\";\n  masque_tcp_listen = \"8443\";");
  expect_error(t, line_of(t, "masque_tcp_listen"), "dpctld.masque_tcp_listen", "ipv4:port");
  t = replace(valid_config(), "agent_listen = \"0.0.0.0:7443\";",
              "agent_listen = \"0.0.0.0:7443\";\n  masque_tcp_listen = \"10.99.2.1:7443\";");
  expect_error(t, line_of(t, "masque_tcp_listen"), "dpctld.masque_tcp_listen", "agent_listen's port");
  t = replace(valid_config(), "agent_listen = \"0.0.0.0:7443\";",
              "agent_listen = \"0.0.0.0:7443\";\n  masque_tcp_listen = \"0.0.0.0:443\";");
  expect_error(t, line_of(t, "proto = \"tcp\"; port = 443"), "entry_points.[0].port", "CONNECT-UDP port for clients");
  t = replace(valid_config(), "name = \"db\";", "name = \"web\";");
  expect_error(t, line_of(t, "allow = [ \"*\" ]"), "tunnels.[1].name", "tunnel name 'web' used twice");
  t = replace(valid_config(), "name = \"db\";", "name = \"WEB\";");
  expect_error(t, line_of(t, "allow = [ \"*\" ]"), "tunnels.[1].name",
               "tunnel name 'WEB' used twice (as 'web' before: names are compared without regard to case)");
}

// metrics_listen and cipher are read as dpgw reads them (common/config_file.hpp): "" turns metrics off.
void metrics_and_cipher(void**) {
  DpctldConfig c = load_dpctld_config(g_fx.write_config(valid_config()));
  assert_true(c.metrics_listen.has_value());
  assert_string_equal(c.metrics_listen->str().c_str(), "127.0.0.1:9108");
  assert_int_equal(c.key_len, 16);
  const std::string more = "  state_file = \"/var/lib/test/state\";\n";
  c = load_dpctld_config(g_fx.write_config(
      replace(valid_config(), more, more + "  metrics_listen = \"\";\n  cipher = \"aes-256-gcm\";\n")));
  assert_false(c.metrics_listen.has_value());
  assert_int_equal(c.key_len, 32);
  std::string t = replace(valid_config(), more, more + "  metrics_listen = \"localhost\";\n");
  expect_error(t, line_of(t, "localhost"), "dpctld.metrics_listen", "to disable metrics");
  t = replace(valid_config(), more, more + "  cipher = \"chacha20\";\n");
  expect_error(t, line_of(t, "chacha20"), "dpctld.cipher", "aes-256-gcm");
}

// openssl_conf: absent by default (OpenSSL's own configuration); its line is kept for the error of a file OpenSSL
// cannot load (control/dpctld_main.cpp loads it).
void openssl_conf(void**) {
  DpctldConfig c = load_dpctld_config(g_fx.write_config(valid_config()));
  assert_true(c.openssl_conf.empty());
  const std::string more = "  state_file = \"/var/lib/test/state\";\n";
  std::string t = replace(valid_config(), more, more + "  openssl_conf = \"/etc/dptun/openssl.cnf\";\n");
  const std::string path = g_fx.write_config(t);
  c = load_dpctld_config(path);
  assert_string_equal(c.openssl_conf.c_str(), "/etc/dptun/openssl.cnf");
  const std::string where = path + ":" + std::to_string(line_of(t, "openssl_conf")) + ": key 'dpctld.openssl_conf'";
  assert_string_equal(c.openssl_conf_where.c_str(), where.c_str());
  t = replace(valid_config(), more, more + "  openssl_conf = \"\";\n");
  expect_error(t, line_of(t, "openssl_conf"), "dpctld.openssl_conf", "OpenSSL configuration file");
}

int setup(void**) { return g_fx.create("dptun-dpctldconf") ? 0 : -1; }
int teardown(void**) { return g_fx.remove() ? 0 : -1; }

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(full_config),   cmocka_unit_test(weight_policy), cmocka_unit_test(weight_errors),
      cmocka_unit_test(ingress_errors), cmocka_unit_test(other_errors), cmocka_unit_test(metrics_and_cipher),
      cmocka_unit_test(openssl_conf),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
