// Gateway config: a full valid file parses into the right values and defaults; every kind of mistake is a
// ConfigError naming the file, the line ("file:LINE:") and the key path. Also the EAL command line built
// from the config (memory mode, vdevs, PCI allow-list) and the PCI address / device name helpers.
#include <cctype>
#include <cstring>
#include <functional>

#include "tests/unit/config_fixture.hpp"

#include "dataplane/main_lcore/eal_args.hpp"
#include "dataplane/main_lcore/gateway_config.hpp"
#include "dataplane/main_lcore/socket_drops.hpp"

using namespace dptun;
using namespace dptun::test;

namespace {

ConfigFixture g_fx;

const char* kPsk1 = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const char* kPsk2 = "FFEEDDCCBBAA99887766554433221100ffeeddccbbaa99887766554433221100";
const char* kUuid1 = "3f2b8c1e-6a4d-4b7e-9f10-2c3d4e5f6a7b";
const char* kUuid2 = "11111111-2222-3333-4444-555555555555";

std::string write_file(const std::string& name, const std::string& text) { return g_fx.write_file(name, text); }
std::string write_config(const std::string& text) { return g_fx.write_config(text); }

std::string psk_file_path() { return g_fx.dir + "/peer2.psk"; }

std::string valid_config() {
  return std::string() +
         "# a full gateway config\n"
         "dpgw = {\n"
         "  workers = 2;\n"
         "  eal = { memory_mb = 256; file_prefix = \"gwtest\"; };\n"
         "  ports = (\n"
         "    { name = \"wan\";\n"
         "      device = \"net_af_packet0,iface=eth1\";\n"
         "      address = \"10.0.1.1/24\";\n"
         "      gateway = \"10.0.1.254\";\n"
         "      mtu = 1500;\n"
         "    },\n"
         "    { name = \"lan\";\n"
         "      device = \"0000:3b:00.0\";\n"
         "      address = \"192.168.7.1/16\";\n"
         "      rx_desc = 2048;\n"
         "    }\n"
         "  );\n"
         "  flows = { table_size = 4096; tcp_syn_timeout = 12.0; };\n"
         "  crypto = { rekey_interval = 60.0; };\n"
         "};\n"
         "tunnels = (\n"
         "  { id = \"" + kUuid1 + "\";\n"
         "    name = \"alpha\";\n"
         "    peers = ( { index = 7;\n"
         "                psk = \"" + kPsk1 + "\";\n"
         "                endpoint = \"10.0.2.2:51901\"; } );\n"
         "  },\n"
         "  { id = \"" + kUuid2 + "\";\n"
         "    peers = ( { index = 8;\n"
         "                psk_file = \"" + psk_file_path() + "\";\n"
         "                weight = 3; } );\n"
         "  }\n"
         ");\n"
         "entry_points = (\n"
         "  { proto = \"tcp\"; port = 5201; tunnel = \"alpha\"; target = \"10.0.2.2:5201\"; },\n"
         "  { proto = \"udp\"; port = 5353; tunnel = \"" + kUuid2 + "\"; target = \"10.0.2.3:53\";\n"
         "    keepalive = true; ttl = 30.0; listen = \"10.0.1.1\"; },\n"
         "  { proto = \"udp\"; port = 5354; tunnel = \"alpha\"; target = \"10.0.2.3:54\"; }\n"
         ");\n";
}

// Loads a config that must be valid. Any exception is a test failure (not an abort of the whole program).
GatewayConfig load_ok(const std::string& path) {
  try {
    return load_gateway_config(path);
  } catch (const std::exception& e) {
    fail_msg("loading %s: %s", path.c_str(), e.what());
  }
  return {};
}

void expect_error(const std::string& text, int line, const std::string& key, const std::string& what = "") {
  g_fx.expect_error([](const std::string& path) { return load_gateway_config(path); }, text, line, key, what);
}

int setup(void**) {
  if (!g_fx.create("dptun-gwconf")) return -1;
  std::ofstream(psk_file_path()) << kPsk2 << "\n";
  return 0;
}

int teardown(void**) { return g_fx.remove() ? 0 : -1; }

}  // namespace

static void full_valid_config(void**) {
  std::string path = write_config(valid_config());
  GatewayConfig c = load_ok(path);
  assert_string_equal(c.path.c_str(), path.c_str());
  assert_int_equal(c.workers, 2);
  assert_int_equal(c.eal.memory_mb, 256);
  assert_string_equal(c.eal.file_prefix.c_str(), "gwtest");
  assert_false(c.eal.hugepages);
  assert_true(c.eal.lcores.empty());

  assert_int_equal(c.ports.size(), 2);
  assert_string_equal(c.ports[0].name.c_str(), "wan");
  assert_string_equal(c.ports[0].device.c_str(), "net_af_packet0,iface=eth1");
  assert_int_equal(c.ports[0].address.addr.value, 0x0a000101);
  assert_int_equal(c.ports[0].address.len, 24);
  assert_true(c.ports[0].gateway.has_value());
  assert_int_equal(c.ports[0].gateway->value, 0x0a0001fe);
  assert_int_equal(c.ports[0].mtu, 1500);
  assert_int_equal(c.ports[0].rx_desc, 1024);
  assert_string_equal(c.ports[1].name.c_str(), "lan");
  assert_string_equal(c.ports[1].device.c_str(), "0000:3b:00.0");
  assert_int_equal(c.ports[1].address.addr.value, 0xc0a80701);
  assert_int_equal(c.ports[1].address.len, 16);
  assert_false(c.ports[1].gateway.has_value());
  assert_int_equal(c.ports[1].mtu, 0);
  assert_int_equal(c.ports[1].rx_desc, 2048);
  assert_int_equal(c.ports[1].tx_desc, 1024);

  // Defaults.
  assert_int_equal(c.tunnel_port, 51900);
  assert_int_equal(c.quic_port, 443);
  assert_int_equal(c.stun_port, 3478);
  assert_int_equal(c.mbufs, 16383);
  assert_false(c.idle.backoff);
  assert_int_equal(c.idle.pause_polls, 0);
  assert_string_equal(c.crypto.engine.c_str(), "ipsec-mb");
  assert_string_equal(c.crypto.device.c_str(), "crypto_aesni_gcm0");
  assert_int_equal(c.crypto.key_len, 16);
  assert_int_equal(c.crypto.rekey_interval_ns, 60'000'000'000ull);
  assert_int_equal(c.flow.table_size, 4096);
  assert_int_equal(c.flow.udp_ttl_ns, 5'000'000'000ull);
  assert_int_equal(c.flow.tcp_syn_timeout_ns, 12'000'000'000ull);
  assert_int_equal(c.flow.tcp_established_timeout_ns, 7200'000'000'000ull);
  assert_int_equal(c.flow.tcp_closed_timeout_ns, 5'000'000'000ull);
  assert_string_equal(c.control_socket.c_str(), "/run/dptun/dpgw.sock");

  assert_int_equal(c.tunnels.size(), 2);
  assert_string_equal(c.tunnels[0].id.str().c_str(), kUuid1);
  assert_string_equal(c.tunnels[0].name.c_str(), "alpha");
  assert_int_equal(c.tunnels[0].peers.size(), 1);
  const StaticPeerConfig& p1 = c.tunnels[0].peers[0];
  assert_int_equal(p1.index, 7);
  assert_int_equal(p1.psk.size(), 32);
  for (size_t i = 0; i < 32; ++i) assert_int_equal(p1.psk[i], i);
  assert_true(p1.endpoint.has_value());
  assert_int_equal(p1.endpoint->ip.v4(), 0x0a000202);
  assert_int_equal(p1.endpoint->port, 51901);
  assert_int_equal(p1.weight, 1);
  // No name: the tunnel is named by its id.
  assert_string_equal(c.tunnels[1].name.c_str(), kUuid2);
  const StaticPeerConfig& p2 = c.tunnels[1].peers[0];
  assert_int_equal(p2.index, 8);
  assert_int_equal(p2.psk.size(), 32);
  assert_int_equal(p2.psk[0], 0xff);
  assert_int_equal(p2.psk[1], 0xee);
  assert_int_equal(p2.psk[16], 0xff);
  assert_int_equal(p2.psk[31], 0x00);
  assert_false(p2.endpoint.has_value());
  assert_int_equal(p2.weight, 3);

  assert_int_equal(c.entry_points.size(), 3);
  const EntryPointConfig& e0 = c.entry_points[0];
  assert_int_equal(e0.proto, 6);
  assert_int_equal(e0.port, 5201);
  assert_int_equal(e0.tunnel, 0);
  assert_int_equal(e0.target.ip.v4(), 0x0a000202);
  assert_int_equal(e0.target.port, 5201);
  assert_false(e0.keepalive);
  assert_false(e0.listen.has_value());
  const EntryPointConfig& e1 = c.entry_points[1];
  assert_int_equal(e1.proto, 17);
  assert_int_equal(e1.tunnel, 1);  // found by its id
  assert_true(e1.keepalive);
  assert_int_equal(e1.udp_ttl_ns, 30'000'000'000ull);
  assert_true(e1.listen.has_value());
  assert_int_equal(e1.listen->value, 0x0a000101);
  assert_int_equal(e1.target.port, 53);
  const EntryPointConfig& e2 = c.entry_points[2];
  assert_false(e2.keepalive);
  assert_int_equal(e2.udp_ttl_ns, 5'000'000'000ull);  // the flows' default
  assert_int_equal(e2.tunnel, 0);
}

static void overridden_defaults(void**) {
  std::string text = replace(valid_config(), "  crypto = { rekey_interval = 60.0; };\n",
                             "  crypto = { engine = \"openssl\"; cipher = \"aes-256-gcm\"; };\n"
                             "  idle = { backoff = true; max_sleep_us = 50; };\n"
                             "  tunnel_port = 4789;\n"
                             "  eal = { hugepages = true; lcores = \"0@0,1@2\"; };\n");
  text = replace(text, "  eal = { memory_mb = 256; file_prefix = \"gwtest\"; };\n", "");
  text = replace(text, "  flows = { table_size = 4096; tcp_syn_timeout = 12.0; };\n",
                 "  flows = { udp_ttl = 2.5; };\n");
  // 51900 is no longer the tunnel port: a UDP entry point may use it.
  text = replace(text, "port = 5354;", "port = 51900;");
  GatewayConfig c = load_ok(write_config(text));
  assert_string_equal(c.crypto.engine.c_str(), "openssl");
  assert_int_equal(c.crypto.key_len, 32);
  assert_int_equal(c.crypto.rekey_interval_ns, 120'000'000'000ull);
  assert_true(c.idle.backoff);
  assert_int_equal(c.idle.max_sleep_us, 50);
  assert_int_equal(c.tunnel_port, 4789);
  assert_true(c.eal.hugepages);
  assert_string_equal(c.eal.lcores.c_str(), "0@0,1@2");
  assert_int_equal(c.eal.memory_mb, 512);
  assert_int_equal(c.flow.udp_ttl_ns, 2'500'000'000ull);
  assert_int_equal(c.flow.table_size, 65536);
  assert_int_equal(c.entry_points[2].port, 51900);
  assert_int_equal(c.entry_points[2].udp_ttl_ns, 2'500'000'000ull);  // follows flows.udp_ttl
  assert_int_equal(c.entry_points[1].udp_ttl_ns, 30'000'000'000ull);
}

static void reassembly_bounds(void**) {
  // Defaults: both sides of every worker hold at most half of the mbufs.
  GatewayConfig c = load_ok(write_config(valid_config()));
  assert_int_equal(c.reassembly.datagrams, 1024);
  assert_int_equal(c.reassembly.fragments, std::min<uint32_t>(2048, c.mbufs / (4 * c.workers)));
  assert_int_equal(c.reassembly.max_size, 65535);
  assert_int_equal(c.reassembly.timeout_ns, 2'000'000'000ull);
  assert_int_equal(c.reassembly.fragments_per_datagram, 128);
  const std::string anchor = "  crypto = { rekey_interval = 60.0; };\n";
  std::string text = replace(valid_config(), anchor,
                             anchor + "  reassembly = { datagrams = 64; fragments = 100; max_size = 9000; timeout = 0.5; };\n");
  c = load_ok(write_config(text));
  assert_int_equal(c.reassembly.datagrams, 64);
  assert_int_equal(c.reassembly.fragments, 100);
  assert_int_equal(c.reassembly.fragments_per_datagram, 100);
  assert_int_equal(c.reassembly.max_size, 9000);
  assert_int_equal(c.reassembly.timeout_ns, 500'000'000ull);
  text = replace(valid_config(), anchor, anchor + "  reassembly = { fragments = 1000000; };\n");
  expect_error(text, line_of(text, "fragments = 1000000"), "dpgw.reassembly.fragments", "half of the");
  text = replace(valid_config(), anchor, anchor + "  reassembly = { max_size = 70000; };\n");
  expect_error(text, line_of(text, "max_size = 70000"), "dpgw.reassembly.max_size");
  text = replace(valid_config(), anchor, anchor + "  reassembly = { timeuot = 1; };\n");
  expect_error(text, line_of(text, "timeuot"), "dpgw.reassembly.timeuot", "unknown key");
}

static void crypto_engines(void**) {
  // Default: ipsec-mb's GCM API; the device's location is kept for errors found once EAL runs (the group's
  // line when the key is absent).
  const std::string anchor = "  crypto = { rekey_interval = 60.0; };\n";
  std::string text = valid_config();
  GatewayConfig c = load_ok(write_config(text));
  assert_string_equal(c.crypto.engine.c_str(), "ipsec-mb");
  std::string where = ":" + std::to_string(line_of(text, "crypto = {")) + ": key 'dpgw.crypto.device'";
  if (c.crypto.device_where.find(where) == std::string::npos) fail_msg("device_where: %s", c.crypto.device_where.c_str());
  // The op-API engine with a QAT device named by its PCI address.
  text = replace(valid_config(), anchor,
                 "  crypto = {\n    engine = \"cryptodev-async\";\n    device = \"0000:3d:01.0\";\n  };\n");
  std::string path = write_config(text);
  c = load_ok(path);
  assert_string_equal(c.crypto.engine.c_str(), "cryptodev-async");
  assert_string_equal(c.crypto.device.c_str(), "0000:3d:01.0");
  where = path + ":" + std::to_string(line_of(text, "device = \"0000:3d")) + ": key 'dpgw.crypto.device'";
  assert_string_equal(c.crypto.device_where.c_str(), where.c_str());
  // No crypto group at all.
  text = replace(valid_config(), anchor, "");
  c = load_ok(write_config(text));
  if (c.crypto.device_where.find(": key 'dpgw.crypto.device'") == std::string::npos)
    fail_msg("device_where: %s", c.crypto.device_where.c_str());
  // The engines by name.
  for (const char* e : {"ipsec-mb", "cryptodev", "cryptodev-async", "openssl"}) {
    c = load_ok(write_config(replace(valid_config(), anchor, std::string("  crypto = { engine = \"") + e + "\"; };\n")));
    assert_string_equal(c.crypto.engine.c_str(), e);
  }
  // Unknown engines and an empty device.
  text = replace(valid_config(), anchor, "  crypto = { engine = \"qat\"; };\n");
  expect_error(text, line_of(text, "engine = \"qat\""), "dpgw.crypto.engine", "\"cryptodev-async\"");
  text = replace(valid_config(), anchor, "  crypto = { device = \"\"; };\n");
  expect_error(text, line_of(text, "device = \"\""), "dpgw.crypto.device", "crypto device name");
}

static void syntax_error(void**) {
  std::string text = replace(valid_config(), "      mtu = 1500;\n", "      mtu = = 1500;\n");
  expect_error(text, line_of(text, "mtu = = 1500"), "", "syntax error");
  // An unquoted address.
  text = replace(valid_config(), "address = \"192.168.7.1/16\";", "address = 192.168.7.1/16;");
  expect_error(text, line_of(text, "address = 192.168"), "", "syntax error");
  // An unterminated group: found where the parser gives up, the end of the file.
  text = replace(valid_config(), "  crypto = { rekey_interval = 60.0; };\n", "  crypto = { rekey_interval = 60.0;\n");
  std::string path = write_config(text);
  try {
    (void)load_gateway_config(path);
    fail_msg("an unterminated group must be a syntax error");
  } catch (const ConfigError& e) {
    std::string msg = e.what();
    assert_true(msg.find(path + ":") != std::string::npos);
    assert_true(msg.find("syntax error") != std::string::npos);
  }
}

static void unreadable_file(void**) {
  std::string path = g_fx.dir + "/does-not-exist.conf";
  try {
    (void)load_gateway_config(path);
    fail_msg("a missing file must throw");
  } catch (const ConfigError& e) {
    assert_non_null(strstr(e.what(), path.c_str()));
  }
}

static void unknown_key(void**) {
  std::string text = replace(valid_config(), "      address = \"10.0.1.1/24\";\n", "      adress = \"10.0.1.1/24\";\n");
  expect_error(text, line_of(text, "adress"), "dpgw.ports.[0].adress", "unknown key");
  text = replace(valid_config(), "dpgw = {\n", "dpgw = {\n  wrokers = 3;\n");
  expect_error(text, line_of(text, "wrokers"), "dpgw.wrokers", "unknown key");
  text = replace(valid_config(), "weight = 3;", "wieght = 3;");
  expect_error(text, line_of(text, "wieght"), "tunnels.[1].peers.[0].wieght", "unknown key");
}

static void missing_required_key(void**) {
  std::string text = replace(valid_config(), "      device = \"0000:3b:00.0\";\n", "");
  // Reported at the port's group (which starts on the "name" line) with the missing key's full path.
  expect_error(text, line_of(text, "{ name = \"lan\";"), "dpgw.ports.[1].device", "required");
  text = replace(valid_config(), "target = \"10.0.2.3:54\"; ", "");
  expect_error(text, line_of(text, "port = 5354;"), "entry_points.[2].target", "required");
}

static void bad_prefix(void**) {
  for (const char* bad : {"10.0.1.1/33", "10.0.1/24", "10.0.1.1/", "10.0.1.1/0", "10.0.256.1/24", "wan"}) {
    std::string text = replace(valid_config(), "\"10.0.1.1/24\"", std::string("\"") + bad + "\"");
    expect_error(text, line_of(text, "address = \"" + std::string(bad)), "dpgw.ports.[0].address");
  }
}

static void gateway_outside_subnet(void**) {
  std::string text = replace(valid_config(), "\"10.0.1.254\"", "\"10.0.2.254\"");
  expect_error(text, line_of(text, "10.0.2.254"), "dpgw.ports.[0].gateway", "outside");
  text = replace(valid_config(), "\"10.0.1.254\"", "\"10.0.1.300\"");
  expect_error(text, line_of(text, "10.0.1.300"), "dpgw.ports.[0].gateway");
}

static void kernel_interface(void**) {
  std::string text = replace(valid_config(), "      mtu = 1500;\n", "      mtu = 1500;\n      kernel_interface = \"dpgw-wan\";\n");
  GatewayConfig c = load_ok(write_config(text));
  assert_string_equal(c.ports[0].kernel_interface.c_str(), "dpgw-wan");
  assert_string_equal(c.ports[1].kernel_interface.c_str(), "");  // off unless asked for
  for (const char* bad : {"", "a-name-too-long-16", "has space", "a/b"}) {
    std::string t = replace(valid_config(), "      mtu = 1500;\n",
                            std::string("      mtu = 1500;\n      kernel_interface = \"") + bad + "\";\n");
    expect_error(t, line_of(t, "kernel_interface"), "dpgw.ports.[0].kernel_interface", "interface name");
  }
  std::string twice = replace(replace(valid_config(), "      mtu = 1500;\n", "      mtu = 1500;\n      kernel_interface = \"k0\";\n"),
                              "      rx_desc = 2048;\n", "      rx_desc = 2048;\n      kernel_interface = \"k0\";\n");
  expect_error(twice, line_of(twice, "rx_desc = 2048;") + 1, "dpgw.ports.[1].kernel_interface", "two ports");
  assert_int_equal(c.ports[0].kernel_rate, 20000);
  std::string rate = replace(valid_config(), "      rx_desc = 2048;\n", "      rx_desc = 2048; kernel_rate = 500;\n");
  expect_error(rate, line_of(rate, "kernel_rate"), "dpgw.ports.[1].kernel_rate", "needs a kernel_interface");
}

static void psk_wrong_length(void**) {
  std::string short_psk = std::string(kPsk1).substr(0, 62);
  std::string text = replace(valid_config(), kPsk1, short_psk);
  expect_error(text, line_of(text, short_psk), "tunnels.[0].peers.[0].psk", "32-byte");
  std::string long_psk = std::string(kPsk1) + "00";
  text = replace(valid_config(), kPsk1, long_psk);
  expect_error(text, line_of(text, long_psk), "tunnels.[0].peers.[0].psk");
  std::string bad_digit = "x" + std::string(kPsk1).substr(1);
  text = replace(valid_config(), kPsk1, bad_digit);
  expect_error(text, line_of(text, bad_digit), "tunnels.[0].peers.[0].psk");
  // A psk file with a short key: reported at psk_file.
  std::string short_file = write_file("short.psk", short_psk + "\n");
  text = replace(valid_config(), psk_file_path(), short_file);
  expect_error(text, line_of(text, short_file), "tunnels.[1].peers.[0].psk_file", "32-byte");
  // A psk file that cannot be read.
  std::string missing = g_fx.dir + "/missing.psk";
  text = replace(valid_config(), psk_file_path(), missing);
  expect_error(text, line_of(text, missing), "tunnels.[1].peers.[0].psk_file", "cannot read");
  // The same key for two peers (here: the file holds tunnel 0's inline key): one key, one sender.
  std::string same_file = write_file("same.psk", std::string(kPsk1) + "\n");
  text = replace(valid_config(), psk_file_path(), same_file);
  expect_error(text, line_of(text, same_file), "tunnels.[1].peers.[0].psk_file", "already used by another peer");
}

static void psk_and_psk_file(void**) {
  std::string text = replace(valid_config(), "weight = 3;", "weight = 3; psk = \"" + std::string(kPsk1) + "\";");
  // Reported at the peer's group, which starts on the "index = 8" line.
  expect_error(text, line_of(text, "index = 8;"), "tunnels.[1].peers.[0]", "exactly one");
  text = replace(valid_config(), "                psk = \"" + std::string(kPsk1) + "\";\n", "");
  expect_error(text, line_of(text, "index = 7;"), "tunnels.[0].peers.[0]", "exactly one");
}

static void entry_unknown_tunnel(void**) {
  std::string text = replace(valid_config(), "port = 5201; tunnel = \"alpha\"", "port = 5201; tunnel = \"alpah\"");
  expect_error(text, line_of(text, "alpah"), "entry_points.[0].tunnel", "alpah");
}

// Tunnel names follow dpctld's rule (common/tunnel_names.hpp): an entry point's "edge" finds the tunnel named
// "Edge", a tunnel id may be written in upper case, and "Edge" and "edge" cannot both be names.
static void tunnel_names_without_regard_to_case(void**) {
  std::string text = replace(valid_config(), "name = \"alpha\";", "name = \"Edge\";");
  text = replace(text, "port = 5201; tunnel = \"alpha\"", "port = 5201; tunnel = \"edge\"");
  std::string upper_id = kUuid1;
  for (char& ch : upper_id) ch = char(std::toupper(static_cast<unsigned char>(ch)));
  text = replace(text, "port = 5354; tunnel = \"alpha\"", "port = 5354; tunnel = \"" + upper_id + "\"");
  GatewayConfig c = load_ok(write_config(text));
  assert_string_equal(c.tunnels[0].name.c_str(), "Edge");
  assert_int_equal(c.entry_points[0].tunnel, 0);
  assert_int_equal(c.entry_points[2].tunnel, 0);

  text = replace(valid_config(), "name = \"alpha\";", "name = \"Edge\";");
  text = replace(text, "  { id = \"" + std::string(kUuid2) + "\";\n", "  { id = \"" + std::string(kUuid2) + "\"; name = \"edge\";\n");
  expect_error(text, line_of(text, "name = \"edge\""), "tunnels.[1].name",
               "tunnel name 'edge' used twice (as 'Edge' before: names are compared without regard to case)");
  // The names dpctld refuses, dpgw refuses too.
  text = replace(valid_config(), "name = \"alpha\";", "name = \"my tunnel\";");
  expect_error(text, line_of(text, "my tunnel"), "tunnels.[0].name", "may only hold");
  text = replace(valid_config(), "name = \"alpha\";", "name = \"" + std::string(kUuid2) + "\";");
  expect_error(text, line_of(text, "name = \"" + std::string(kUuid2)), "tunnels.[0].name", "must not be a UUID");
}

static void duplicate_entry_point(void**) {
  std::string text = replace(valid_config(), "port = 5354;", "port = 5353;");
  expect_error(text, line_of(text, "target = \"10.0.2.3:54\""), "entry_points.[2].port", "twice");
  // Same port number with another protocol is fine.
  text = replace(valid_config(), "port = 5354;", "port = 5201;");
  GatewayConfig c = load_ok(write_config(text));
  assert_int_equal(c.entry_points[2].port, 5201);
  assert_int_equal(c.entry_points[2].proto, 17);
}

static void udp_entry_on_tunnel_port(void**) {
  std::string text = replace(valid_config(), "port = 5354;", "port = 51900;");
  expect_error(text, line_of(text, "port = 51900;"), "entry_points.[2].port", "tunnel port");
  // TCP on the tunnel port number is not a conflict.
  text = replace(valid_config(), "port = 5201;", "port = 51900;");
  GatewayConfig c = load_ok(write_config(text));
  assert_int_equal(c.entry_points[0].port, 51900);
}

static void quic_port(void**) {
  std::string text = replace(valid_config(), "  crypto = { rekey_interval = 60.0; };\n",
                             "  crypto = { rekey_interval = 60.0; };\n  quic_port = 8443;\n");
  assert_int_equal(load_ok(write_config(text)).quic_port, 8443);
  text = replace(valid_config(), "  crypto = { rekey_interval = 60.0; };\n",
                 "  crypto = { rekey_interval = 60.0; };\n  quic_port = 51900;\n");
  expect_error(text, line_of(text, "quic_port = 51900;"), "dpgw.quic_port", "must differ");
  // The default QUIC port given to the tunnel: the error names tunnel_port.
  text = replace(valid_config(), "  crypto = { rekey_interval = 60.0; };\n",
                 "  crypto = { rekey_interval = 60.0; };\n  tunnel_port = 443;\n");
  expect_error(text, line_of(text, "tunnel_port = 443;"), "dpgw.tunnel_port", "must differ");
}

// dpgw.stun_port: its own port (0: no STUN server), never the tunnel or QUIC port, never a UDP entry point's.
static void stun_port(void**) {
  const std::string crypto = "  crypto = { rekey_interval = 60.0; };\n";
  std::string text = replace(valid_config(), crypto, crypto + "  stun_port = 3479;\n");
  assert_int_equal(load_ok(write_config(text)).stun_port, 3479);
  text = replace(valid_config(), crypto, crypto + "  stun_port = 0;\n");
  assert_int_equal(load_ok(write_config(text)).stun_port, 0);
  text = replace(valid_config(), crypto, crypto + "  stun_port = 51900;\n");
  expect_error(text, line_of(text, "stun_port = 51900;"), "dpgw.stun_port", "dpgw.tunnel_port must differ");
  text = replace(valid_config(), crypto, crypto + "  stun_port = 443;\n");
  expect_error(text, line_of(text, "stun_port = 443;"), "dpgw.stun_port", "dpgw.quic_port must differ");
  text = replace(valid_config(), crypto, crypto + "  stun_port = 70000;\n");
  expect_error(text, line_of(text, "stun_port = 70000;"), "dpgw.stun_port");
  // The default STUN port given to the QUIC port: the error names quic_port.
  text = replace(valid_config(), crypto, crypto + "  quic_port = 3478;\n");
  expect_error(text, line_of(text, "quic_port = 3478;"), "dpgw.quic_port", "STUN port");
  // A UDP entry point on the STUN port is refused; TCP on that number is not a conflict; with stun_port = 0 the
  // port is an ordinary one.
  text = replace(valid_config(), "port = 5354;", "port = 3478;");
  expect_error(text, line_of(text, "port = 3478;"), "entry_points.[2].port", "STUN port");
  text = replace(valid_config(), "port = 5201;", "port = 3478;");
  assert_int_equal(load_ok(write_config(text)).entry_points[0].port, 3478);
  text = replace(replace(valid_config(), "port = 5354;", "port = 3478;"), crypto, crypto + "  stun_port = 0;\n");
  assert_int_equal(load_ok(write_config(text)).entry_points[2].port, 3478);
}

static void keepalive_on_tcp(void**) {
  std::string text = replace(valid_config(), "target = \"10.0.2.2:5201\";", "target = \"10.0.2.2:5201\"; keepalive = true;");
  expect_error(text, line_of(text, "keepalive = true; }"), "entry_points.[0].keepalive", "UDP");
  text = replace(valid_config(), "target = \"10.0.2.2:5201\";", "target = \"10.0.2.2:5201\";\n    ttl = 9.0;");
  expect_error(text, line_of(text, "ttl = 9.0;"), "entry_points.[0].ttl", "UDP");
}

static void duplicate_session_index(void**) {
  // Index 7 again in the second tunnel: the error names the second use.
  std::string text = replace(valid_config(), "index = 8;", "index = 7;");
  expect_error(text, line_of(text, "index = 7;\n                psk_file"), "tunnels.[1].peers.[0].index",
               "used twice");
  // ... and twice within one tunnel.
  text = replace(valid_config(), "weight = 3; } );", "weight = 3; },\n              { index = 8; psk = \"" +
                                                       std::string(kPsk1) + "\"; } );");
  expect_error(text, line_of(text, "{ index = 8; psk ="), "tunnels.[1].peers.[1].index", "used twice");
}

static void bad_uuid(void**) {
  for (const char* bad : {"3f2b8c1e-6a4d-4b7e-9f10-2c3d4e5f6a7", "3f2b8c1e6a4d-4b7e-9f10-2c3d4e5f6a7b0",
                          "3f2b8c1e-6a4d-4b7e-9f10-2c3d4e5f6a7g", "not-a-uuid"}) {
    std::string text = replace(valid_config(), "id = \"" + std::string(kUuid1) + "\"", "id = \"" + std::string(bad) + "\"");
    expect_error(text, line_of(text, bad), "tunnels.[0].id", "UUID");
  }
}

// Durations are "seconds as an integer or float" (common/config_file.hpp): a plain integer must work too.
static void integer_durations(void**) {
  std::string text = replace(valid_config(), "rekey_interval = 60.0;", "rekey_interval = 60;");
  text = replace(text, "ttl = 30.0;", "ttl = 30;");
  text = replace(text, "tcp_syn_timeout = 12.0;", "tcp_syn_timeout = 12; udp_ttl = 3;");
  std::string path = write_config(text);
  try {
    GatewayConfig c = load_gateway_config(path);
    assert_int_equal(c.crypto.rekey_interval_ns, 60'000'000'000ull);
    assert_int_equal(c.entry_points[1].udp_ttl_ns, 30'000'000'000ull);
    assert_int_equal(c.flow.tcp_syn_timeout_ns, 12'000'000'000ull);
    assert_int_equal(c.flow.udp_ttl_ns, 3'000'000'000ull);
  } catch (const std::exception& e) {
    fail_msg("integer durations in %s: %s", path.c_str(), e.what());
  }
  // An integer out of range is a ConfigError like any other.
  text = replace(valid_config(), "rekey_interval = 60.0;", "rekey_interval = 5;");
  try {
    expect_error(text, line_of(text, "rekey_interval"), "dpgw.crypto.rekey_interval", "out of range");
  } catch (const std::exception& e) {
    fail_msg("integer rekey_interval below 10 s: %s instead of a ConfigError", e.what());
  }
}

static void rekey_interval_too_short(void**) {
  std::string text = replace(valid_config(), "rekey_interval = 60.0;", "rekey_interval = 9.5;");
  expect_error(text, line_of(text, "rekey_interval"), "dpgw.crypto.rekey_interval", "out of range");
  text = replace(valid_config(), "rekey_interval = 60.0;", "rekey_interval = 10.0;");
  assert_int_equal(load_ok(write_config(text)).crypto.rekey_interval_ns, 10'000'000'000ull);
}

static void workers_out_of_range(void**) {
  for (const char* bad : {"0", "65", "-1"}) {
    std::string text = replace(valid_config(), "workers = 2;", "workers = " + std::string(bad) + ";");
    expect_error(text, line_of(text, "workers ="), "dpgw.workers", "out of range");
  }
  std::string text = replace(valid_config(), "workers = 2;", "workers = 64;");
  assert_int_equal(load_ok(write_config(text)).workers, 64);
  text = replace(valid_config(), "workers = 2;", "workers = \"2\";");
  expect_error(text, line_of(text, "workers ="), "dpgw.workers", "integer");
}

// The edge role: a section naming the concentrator, the session and its key, the two ports and the translated
// subnet; every mistake names its key and line.
static void edge_role(void**) {
  const std::string key3 = "2021222324252627282920212223242526272829202122232425262728292021";
  const std::string edge = "edge = {\n"
                           "  concentrator = \"203.0.113.9:51900\";\n"
                           "  session = 12;\n"
                           "  psk = \"" + key3 + "\";\n"
                           "  underlay_port = \"wan\";\n"
                           "  lan_port = \"lan\";\n"
                           "  snat_net = \"100.64.0.0/16\";\n"
                           "};\n";
  GatewayConfig c = load_ok(write_config(valid_config() + edge));
  assert_true(c.edge.has_value());
  assert_true(c.edge->concentrator == *Endpoint::parse("203.0.113.9:51900"));  // beyond wan: through its gateway
  assert_int_equal(c.edge->session, 12);
  assert_int_equal(c.edge->psk.size(), 32);
  assert_int_equal(c.edge->psk[0], 0x20);
  assert_int_equal(c.edge->key_len, 16);  // dpgw.crypto's cipher
  assert_int_equal(c.edge->underlay_port, 0);
  assert_int_equal(c.edge->lan_port, 1);
  assert_true(c.edge->snat_net == *Ipv4Prefix::parse("100.64.0.0/16"));
  assert_int_equal(c.edge->keepalive_ns, 2'000'000'000ull);
  assert_int_equal(c.edge->local_port, 51900);  // dpgw.tunnel_port
  assert_false(load_ok(write_config(valid_config())).edge.has_value());

  std::string text = replace(valid_config() + edge, "  snat_net = \"100.64.0.0/16\";\n",
                 "  snat_net = \"100.64.0.0/16\";\n  cipher = \"aes-256-gcm\";\n  keepalive = 0.5;\n  local_port = 4500;\n");
  c = load_ok(write_config(text));
  assert_int_equal(c.edge->key_len, 32);
  assert_int_equal(c.edge->keepalive_ns, 500'000'000ull);
  assert_int_equal(c.edge->local_port, 4500);

  struct Bad {
    const char* from;
    const char* to;
    const char* key;
    const char* what;
  };
  const Bad bad[] = {
      {"underlay_port = \"wan\"", "underlay_port = \"wam\"", "edge.underlay_port", "no port named 'wam'"},
      {"lan_port = \"lan\"", "lan_port = \"wan\"", "edge.lan_port", "another port"},
      {"session = 12", "session = 0", "edge.session", "out of range"},
      {"session = 12", "session = 32768", "edge.session", "out of range"},
      {"203.0.113.9:51900", "203.0.113.9", "edge.concentrator", "ipv4:port"},
      {"underlay_port = \"wan\";\n  lan_port = \"lan\"", "underlay_port = \"lan\";\n  lan_port = \"wan\"",
       "edge.concentrator", "no gateway"},
      {"100.64.0.0/16", "100.64.0.0/17", "edge.snat_net", "/16 or larger"},
      {"100.64.0.0/16", "100.64.0.0", "edge.snat_net", "subnet like"},
      {"100.64.0.0/16", "192.168.0.0/16", "edge.snat_net", "overlaps port 'lan'"},
      {"100.64.0.0/16", "10.0.0.0/8", "edge.snat_net", "overlaps port 'wan'"},
      {key3.c_str(), kPsk1, "edge.psk", "already used by a static peer"},
      {"session = 12", "session = 12;\n  cipher = \"chacha\"", "edge.cipher", "aes-128-gcm"},
      {"session = 12", "session = 12;\n  keepalive = 0.01", "edge.keepalive", "out of range"},
      {"session = 12", "session = 12;\n  sesion = 3", "edge.sesion", "unknown key"},
  };
  for (const Bad& b : bad) {
    text = replace(valid_config() + edge, b.from, b.to);
    // The line the message names: the key's own, in the edge section.
    const size_t at = text.find("edge = {");
    const std::string key = std::string(b.key).substr(5);
    expect_error(text, line_of(text, "edge = {") + line_of(text.substr(at), key + " =") - 1, b.key, b.what);
  }
  text = replace(valid_config() + edge, "  concentrator = \"203.0.113.9:51900\";\n", "");
  expect_error(text, line_of(text, "edge = {"), "edge.concentrator", "required but missing");
}

static GatewayConfig eal_test_config() {
  GatewayConfig c;
  c.workers = 2;
  c.eal.lcores = "0@1,1@2,2@3";
  PortConfig vdev;
  vdev.name = "wan";
  vdev.device = "net_af_packet0,iface=eth1";
  c.ports.push_back(vdev);
  return c;
}

static bool has_arg(const std::vector<std::string>& a, const std::string& x) {
  return std::find(a.begin(), a.end(), x) != a.end();
}

// True when `flag` is immediately followed by `value` somewhere in `a`.
static bool has_pair(const std::vector<std::string>& a, const std::string& flag, const std::string& value) {
  for (size_t i = 0; i + 1 < a.size(); ++i)
    if (a[i] == flag && a[i + 1] == value) return true;
  return false;
}

// What a reload names as needing a restart: every restart-only part of the config by its key, nothing for what is
// applied live, and the crypto device only for the engines that use one.
static void reload_names_restart_only_changes(void**) {
  const GatewayConfig now;
  auto named = [&](const std::function<void(GatewayConfig&)>& change) {
    GatewayConfig next = now;
    change(next);
    std::string all;
    for (const std::string& k : restart_only_changes(now, next)) all += (all.empty() ? "" : ",") + k;
    return all;
  };
  assert_string_equal(named([](GatewayConfig&) {}).c_str(), "");
  assert_string_equal(named([](GatewayConfig& c) { c.tunnels.emplace_back(); }).c_str(), "");
  assert_string_equal(named([](GatewayConfig& c) { c.entry_points.emplace_back(); }).c_str(), "");
  assert_string_equal(named([](GatewayConfig& c) { c.workers = 2; }).c_str(), "workers");
  assert_string_equal(named([](GatewayConfig& c) { c.eal.extra_args.push_back("--no-telemetry"); }).c_str(), "eal");
  assert_string_equal(named([](GatewayConfig& c) { c.ports.emplace_back(); }).c_str(), "ports");
  assert_string_equal(named([](GatewayConfig& c) { c.idle.max_sleep_us = 50; }).c_str(), "idle");
  assert_string_equal(named([](GatewayConfig& c) { c.reassembly.timeout_ns = 1; }).c_str(), "reassembly");
  assert_string_equal(named([](GatewayConfig& c) { c.flow.tcp_closing_timeout_ns = 1; }).c_str(), "flows");
  assert_string_equal(named([](GatewayConfig& c) { c.flow.tcp_closed_timeout_ns = 1; }).c_str(), "flows");
  assert_string_equal(named([](GatewayConfig& c) { c.edge = EdgeConfig{}; }).c_str(), "edge");
  assert_string_equal(named([](GatewayConfig& c) { c.session_timeout_ns = 1; }).c_str(), "session_timeout");
  assert_string_equal(named([](GatewayConfig& c) {
                        c.workers = 4;
                        c.mbufs = 1023;
                      }).c_str(),
                      "workers,mbufs");
  // The crypto device: a change matters to the engines on a device, not to ipsec-mb (the default) or openssl.
  assert_string_equal(named([](GatewayConfig& c) { c.crypto.device = "crypto_aesni_gcm1"; }).c_str(), "");
  assert_string_equal(named([](GatewayConfig& c) { c.crypto.device_where = "elsewhere:9"; }).c_str(), "");
  assert_string_equal(named([](GatewayConfig& c) {
                        c.crypto.engine = "cryptodev";
                      }).c_str(),
                      "crypto");
  GatewayConfig on_device = now;
  on_device.crypto.engine = "cryptodev-async";
  GatewayConfig other_device = on_device;
  other_device.crypto.device = "crypto_qat";
  assert_int_equal(restart_only_changes(on_device, other_device).size(), 1);
  assert_int_equal(restart_only_changes(on_device, on_device).size(), 0);
}

static void eal_args(void**) {
  GatewayConfig c = eal_test_config();
  auto a = build_eal_args(c, "dpgw");
  assert_string_equal(a[0].c_str(), "dpgw");
  assert_true(has_arg(a, "--no-huge"));
  assert_true(has_pair(a, "--vdev", "net_af_packet0,iface=eth1"));
  assert_false(has_arg(a, "-a"));
  assert_true(has_arg(a, "--no-pci"));
  assert_true(has_pair(a, "--lcores", "0@1,1@2,2@3"));
  assert_true(has_pair(a, "-m", "512"));
  assert_true(has_pair(a, "--file-prefix", "dpgw"));
  assert_false(has_arg(a, "--log-level"));

  c.eal.hugepages = true;
  c.eal.memory_mb = 1024;
  c.eal.log_level = "notice";
  c.eal.extra_args = {"--huge-dir", "/mnt/huge"};
  PortConfig pci;
  pci.name = "lan";
  pci.device = "0000:3b:00.1";
  c.ports.push_back(pci);
  a = build_eal_args(c, "dpgw");
  assert_false(has_arg(a, "--no-huge"));
  assert_true(has_pair(a, "-m", "1024"));
  assert_true(has_pair(a, "--vdev", "net_af_packet0,iface=eth1"));
  assert_true(has_pair(a, "-a", "0000:3b:00.1"));
  assert_false(has_pair(a, "--vdev", "0000:3b:00.1"));
  assert_false(has_arg(a, "--no-pci"));
  assert_true(has_pair(a, "--log-level", "notice"));
  assert_true(a.size() >= 2);
  assert_string_equal(a[a.size() - 2].c_str(), "--huge-dir");
  assert_string_equal(a.back().c_str(), "/mnt/huge");

  // Only PCI devices.
  c.ports.erase(c.ports.begin());
  a = build_eal_args(c, "x");
  assert_false(has_arg(a, "--vdev"));
  assert_true(has_pair(a, "-a", "0000:3b:00.1"));
  assert_false(has_arg(a, "--no-pci"));
}

static void eal_args_crypto_device(void**) {
  // A crypto device on PCI (QAT) is allow-listed, by its address or its cryptodev name; a vdev is not.
  GatewayConfig c = eal_test_config();
  c.crypto.engine = "cryptodev-async";
  c.crypto.device = "0000:3d:01.0";
  auto a = build_eal_args(c, "dpgw");
  assert_true(has_pair(a, "-a", "0000:3d:01.0"));
  assert_false(has_arg(a, "--no-pci"));
  c.crypto.device = "0000:3d:01.0_qat_sym";
  a = build_eal_args(c, "dpgw");
  assert_true(has_pair(a, "-a", "0000:3d:01.0"));
  assert_false(has_arg(a, "--no-pci"));
  c.crypto.device = "crypto_aesni_gcm1,max_nb_queue_pairs=4";
  a = build_eal_args(c, "dpgw");
  assert_false(has_arg(a, "-a"));
  assert_true(has_arg(a, "--no-pci"));
  // The OpenSSL and ipsec-mb engines use no device, whatever `device` says.
  for (const char* e : {"openssl", "ipsec-mb"}) {
    c.crypto.engine = e;
    c.crypto.device = "0000:3d:01.0";
    a = build_eal_args(c, "dpgw");
    assert_false(has_arg(a, "-a"));
    assert_true(has_arg(a, "--no-pci"));
  }
  c.crypto.engine = "cryptodev";
  a = build_eal_args(c, "dpgw");
  assert_true(has_pair(a, "-a", "0000:3d:01.0"));
  // An allow-list in eal.args (here for the QAT device) needs the PCI bus: no --no-pci.
  c.crypto.engine = "cryptodev-async";
  c.crypto.device = "crypto_aesni_gcm0";
  for (std::vector<std::string> extra : {std::vector<std::string>{"-a", "0000:3d:01.0"},
                                         std::vector<std::string>{"-a0000:3d:01.0"},
                                         std::vector<std::string>{"--allow=0000:3d:01.0"}}) {
    c.eal.extra_args = extra;
    a = build_eal_args(c, "dpgw");
    assert_false(has_arg(a, "--no-pci"));
  }
  c.eal.extra_args = {"--huge-dir", "/mnt/huge"};
  assert_true(has_arg(build_eal_args(c, "dpgw"), "--no-pci"));
}

static void eal_default_lcores(void**) {
  GatewayConfig c = eal_test_config();
  c.eal.lcores.clear();
  c.workers = 3;
  auto a = build_eal_args(c, "dpgw");
  auto it = std::find(a.begin(), a.end(), "--lcores");
  assert_true(it != a.end() && it + 1 != a.end());
  const std::string& l = *(it + 1);
  // main lcore + 3 workers: "0@a,1@b,2@c,3@d"
  assert_int_equal(std::count(l.begin(), l.end(), ','), 3);
  assert_int_equal(l.rfind("0@", 0), 0);
  assert_true(l.find(",1@") != std::string::npos);
  assert_true(l.find(",3@") != std::string::npos);
}

static void pci_address_and_device_name(void**) {
  assert_true(is_pci_address("0000:3b:00.0"));
  assert_true(is_pci_address("3b:00.0"));
  assert_true(is_pci_address("0000:AF:1f.7"));
  assert_true(is_pci_address("0000:3b:00.0,rxq_cqe_comp_en=0"));  // PCI with devargs
  assert_false(is_pci_address("0000:3b:00.8"));
  assert_false(is_pci_address("000:3b:00.0"));
  assert_false(is_pci_address("0000:3g:00.0"));
  assert_false(is_pci_address("0000:3b:00"));
  assert_false(is_pci_address("0000:3b:00.0x"));
  assert_false(is_pci_address(""));
  assert_false(is_pci_address("net_af_packet0,iface=eth1"));
  assert_false(is_pci_address("net_tap0"));

  assert_string_equal(port_device_name("net_af_packet0,iface=eth1").c_str(), "net_af_packet0");
  assert_string_equal(port_device_name("net_tap0").c_str(), "net_tap0");
  assert_string_equal(port_device_name("0000:3b:00.0").c_str(), "0000:3b:00.0");
  assert_string_equal(port_device_name("0000:3b:00.0,a=1,b=2").c_str(), "0000:3b:00.0");
  assert_string_equal(port_device_name("").c_str(), "");

  // The interface whose socket's drops dpgw counts (main_lcore/socket_drops.hpp): socket vdevs only.
  assert_string_equal(SocketDrops::socket_interface("net_af_packet0,iface=eth1").c_str(), "eth1");
  assert_string_equal(SocketDrops::socket_interface("net_af_packet1,iface=ga,framecnt=2048,qpairs=2").c_str(), "ga");
  assert_string_equal(SocketDrops::socket_interface("net_af_xdp0,iface=gc,start_queue=0,busy_budget=0").c_str(), "gc");
  assert_string_equal(SocketDrops::socket_interface("net_tap0,iface=dptap").c_str(), "");
  assert_string_equal(SocketDrops::socket_interface("0000:3b:00.0").c_str(), "");
  assert_string_equal(SocketDrops::socket_interface("net_af_packet0").c_str(), "");
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(full_valid_config),
      cmocka_unit_test(overridden_defaults),
      cmocka_unit_test(syntax_error),
      cmocka_unit_test(unreadable_file),
      cmocka_unit_test(unknown_key),
      cmocka_unit_test(missing_required_key),
      cmocka_unit_test(bad_prefix),
      cmocka_unit_test(gateway_outside_subnet),
      cmocka_unit_test(psk_wrong_length),
      cmocka_unit_test(psk_and_psk_file),
      cmocka_unit_test(entry_unknown_tunnel),
      cmocka_unit_test(tunnel_names_without_regard_to_case),
      cmocka_unit_test(duplicate_entry_point),
      cmocka_unit_test(udp_entry_on_tunnel_port),
      cmocka_unit_test(quic_port),
      cmocka_unit_test(stun_port),
      cmocka_unit_test(keepalive_on_tcp),
      cmocka_unit_test(duplicate_session_index),
      cmocka_unit_test(bad_uuid),
      cmocka_unit_test(integer_durations),
      cmocka_unit_test(rekey_interval_too_short),
      cmocka_unit_test(workers_out_of_range),
      cmocka_unit_test(kernel_interface),
      cmocka_unit_test(reassembly_bounds),
      cmocka_unit_test(crypto_engines),
      cmocka_unit_test(edge_role),
      cmocka_unit_test(reload_names_restart_only_changes),
      cmocka_unit_test(eal_args),
      cmocka_unit_test(eal_args_crypto_device),
      cmocka_unit_test(eal_default_lcores),
      cmocka_unit_test(pci_address_and_device_name),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
