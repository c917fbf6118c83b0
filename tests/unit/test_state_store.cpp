// dpctld's persisted state: what save_state writes, load_state reads back to the same values; a missing file is
// an empty state; a damaged file is an error naming the file, and a failed save leaves the old file as it was.
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <algorithm>
#include <string>

#include "tests/unit/cmocka.hpp"

#include "control/state_store.hpp"

using namespace dptun;

// A fresh directory, removed with everything in it when the test ends.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/dptun-state-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    path = tmpl;
  }
  ~TempDir() {
    nftw(path.c_str(), [](const char* p, const struct stat*, int, FTW*) { return remove(p); }, 16,
         FTW_DEPTH | FTW_PHYS);
  }
};

static PersistedState sample() {
  PersistedState s;
  TunnelDef t;
  t.id = *Uuid::parse("6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f");
  t.name = "web";
  t.allow = {"CN=agent-1", "DNS:agent1.example.com"};
  t.weights.max_weight = 100;
  s.tunnels.push_back(t);
  TunnelDef fixed;
  fixed.id = *Uuid::parse("11111111-2222-3333-4444-555555555555");
  fixed.name = "db";
  fixed.allow = {"*"};
  fixed.weights.fixed = true;
  fixed.weights.weight = 255;
  s.tunnels.push_back(fixed);
  EntrySpec e;
  e.proto = 17;
  e.port = 5353;
  e.tunnel = t.id;
  e.target = *Endpoint::parse("10.0.0.10:53");
  e.keepalive = true;
  e.udp_ttl_ns = 30'500'000'000ull;
  e.listen = *Ipv4::parse("10.99.1.1");
  s.entry_points.push_back(e);
  EntrySpec tcp;
  tcp.proto = 6;
  tcp.port = 8080;
  tcp.tunnel = t.id;
  tcp.target = *Endpoint::parse("10.0.0.10:80");
  s.entry_points.push_back(tcp);
  s.ingress.push_back(IngressRuleSpec{"app.example.org", t.id, Endpoint::parse("10.0.0.10:443"), false, true});
  s.ingress.push_back(IngressRuleSpec{"*.internal.example.org", t.id, std::nullopt, true, false});
  EntrySpec quic;
  quic.proto = 17;
  quic.port = 443;
  quic.route = EntryRoute::QuicSni;
  s.entry_points.push_back(quic);
  return s;
}

static void round_trip(void**) {
  TempDir dir;
  const std::string path = dir.path + "/sub/dpctld.state";  // the parent directory is created
  std::string error;
  assert_true(save_state(path, sample(), error));
  auto back = load_state(path, error);
  assert_true(back.has_value());
  const PersistedState want = sample();
  assert_int_equal(back->tunnels.size(), 2);
  assert_true(back->tunnels[0].id == want.tunnels[0].id);
  assert_string_equal(back->tunnels[0].name.c_str(), "web");
  assert_true(back->tunnels[0].allow == want.tunnels[0].allow);
  assert_false(back->tunnels[0].weights.fixed);
  assert_int_equal(back->tunnels[0].weights.max_weight, 100);
  assert_true(back->tunnels[1].weights.fixed);
  assert_int_equal(back->tunnels[1].weights.weight, 255);
  assert_int_equal(back->tunnels[1].weights.max_weight, 255);
  assert_int_equal(back->entry_points.size(), 3);
  assert_true(back->entry_points[2].route == EntryRoute::QuicSni);
  const EntrySpec& u = back->entry_points[0];
  assert_int_equal(u.proto, 17);
  assert_int_equal(u.port, 5353);
  assert_true(u.tunnel == want.tunnels[0].id);
  assert_string_equal(u.target.str().c_str(), "10.0.0.10:53");
  assert_true(u.keepalive);
  assert_int_equal(u.udp_ttl_ns, 30'500'000'000ull);
  assert_true(u.listen.has_value());
  assert_string_equal(u.listen->str().c_str(), "10.99.1.1");
  assert_int_equal(back->entry_points[1].proto, 6);
  assert_false(back->entry_points[1].listen.has_value());
  assert_int_equal(back->ingress.size(), 2);
  assert_string_equal(back->ingress[1].hostname.c_str(), "*.internal.example.org");
  assert_true(back->ingress[1].private_rule);
  assert_false(back->ingress[0].private_rule);
  assert_true(back->ingress[0].target.has_value());
  assert_string_equal(back->ingress[0].target->str().c_str(), "10.0.0.10:443");
  assert_true(back->ingress[0].proxy_protocol);
  assert_false(back->ingress[1].target.has_value());
  // No temporary file is left behind, and the file is not world readable.
  assert_int_not_equal(access((path + ".tmp").c_str(), F_OK), 0);
  struct stat st;
  assert_int_equal(stat(path.c_str(), &st), 0);
  assert_int_equal(st.st_mode & 07, 0);
}

static void missing_file_is_empty(void**) {
  std::string error;
  TempDir dir;
  auto s = load_state(dir.path + "/none.state", error);
  assert_true(s.has_value());
  assert_true(s->tunnels.empty() && s->entry_points.empty() && s->ingress.empty());
}

static void damaged_file_is_an_error(void**) {
  TempDir dir;
  const std::string path = dir.path + "/dpctld.state";
  std::string error;
  std::ofstream(path) << "{\"version\": 1, \"tunnels\": [";  // cut short, as by a crash without write+rename
  assert_false(load_state(path, error).has_value());
  assert_non_null(strstr(error.c_str(), path.c_str()));
  std::ofstream(path) << R"({"version": 1, "tunnels": [{"id": "nope", "allow": ["*"]}]})";
  assert_false(load_state(path, error).has_value());
  assert_non_null(strstr(error.c_str(), "tunnels[0]"));
  assert_non_null(strstr(error.c_str(), "'id'"));
  std::ofstream(path) << R"({"version": 1, "tunnels": [{"id": "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f", "name": "a", "allow": ["*"], "weight": 0}]})";
  assert_false(load_state(path, error).has_value());
  assert_non_null(strstr(error.c_str(), "tunnels[0]: 'weight' must be an integer in 1..255"));
  std::ofstream(path) << R"({"version": 1, "tunnels": [{"id": "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f", "name": "a", "allow": ["*"]},
                                                {"id": "6F1C2D3E-4B5A-4C7D-8E9F-0A1B2C3D4E5F", "name": "b", "allow": ["*"]}]})";
  assert_false(load_state(path, error).has_value());
  assert_non_null(strstr(error.c_str(), "tunnels[1]: tunnel 6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f appears twice"));
  std::ofstream(path) << R"({"version": 1, "entry_points": [
    {"proto": "udp", "port": 53, "tunnel": "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f", "target": "10.0.0.1:53", "ttl": 1e300}]})";
  assert_false(load_state(path, error).has_value());
  assert_non_null(strstr(error.c_str(), "'ttl' must be"));
  std::ofstream(path) << R"({"version": 1, "ingress": [
    {"hostname": ".example.com", "tunnel": "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f"},
    {"hostname": "*.EXAMPLE.com", "tunnel": "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f"}]})";
  assert_false(load_state(path, error).has_value());
  assert_non_null(strstr(error.c_str(), "ingress[1]: hostname rule *.example.com appears twice"));
  // Numbers are range-checked before they are converted: 4294972697 is not udp/5401, 1e300 is not cast.
  for (const char* port : {"4294972697", "1e300", "-1", "0", "65536", "53.5", "\"53\"", "18446744073709551615"}) {
    std::ofstream(path) << R"({"version": 1, "entry_points": [{"proto": "udp", "port": )" << port
                        << R"(, "tunnel": "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f", "target": "10.0.0.1:53"}]})";
    assert_false(load_state(path, error).has_value());
    assert_non_null(strstr(error.c_str(), "entry_points[0]: 'port' must be an integer in 1..65535"));
  }
  // A tunnel needs a name, and one that is not a UUID; names are unique without regard to case.
  std::ofstream(path) << R"({"version": 1, "tunnels": [{"id": "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f", "allow": ["*"]}]})";
  assert_false(load_state(path, error).has_value());
  assert_non_null(strstr(error.c_str(), "tunnels[0]: 'name' is required"));
  std::ofstream(path) << R"({"version": 1, "tunnels": [{"id": "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f",
                                                        "name": "11111111-2222-3333-4444-555555555555", "allow": ["*"]}]})";
  assert_false(load_state(path, error).has_value());
  assert_non_null(strstr(error.c_str(), "tunnels[0]: 'name': a tunnel name must not be a UUID"));
  std::ofstream(path) << R"({"version": 1, "tunnels": [{"id": "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f", "name": "web", "allow": ["*"]},
                                                {"id": "11111111-2222-3333-4444-555555555555", "name": "WEB", "allow": ["*"]}]})";
  assert_false(load_state(path, error).has_value());
  assert_non_null(strstr(error.c_str(), "tunnels[1]: tunnel name 'WEB' appears twice"));
  std::ofstream(path) << R"({"version": 1, "tunnels": {"id": 1}})";
  assert_false(load_state(path, error).has_value());
  assert_non_null(strstr(error.c_str(), "'tunnels' must be a list"));
  std::ofstream(path) << R"({"version": 1, "tunnels": [7]})";
  assert_false(load_state(path, error).has_value());
  assert_non_null(strstr(error.c_str(), "tunnels[0]: expected an object"));
  std::ofstream(path) << R"({"version": 2})";
  assert_false(load_state(path, error).has_value());
  std::ofstream(path) << R"({"version": 1, "entry_points": [{"proto": "sctp", "port": 1}]})";
  assert_false(load_state(path, error).has_value());
  assert_non_null(strstr(error.c_str(), "entry_points[0]"));
}

static void failed_save_keeps_the_old_file(void**) {
  TempDir dir;
  const std::string path = dir.path + "/dpctld.state";
  std::string error;
  assert_true(save_state(path, sample(), error));
  // The temporary name is taken by a directory: the write fails, the old state stays whole.
  assert_int_equal(mkdir((path + ".tmp").c_str(), 0700), 0);
  PersistedState empty;
  assert_false(save_state(path, empty, error));
  assert_false(error.empty());
  auto back = load_state(path, error);
  assert_true(back.has_value());
  assert_int_equal(back->tunnels.size(), 2);
  assert_int_equal(back->entry_points.size(), 3);
}

static void hostname_rules(void**) {
  assert_string_equal(normalize_hostname_rule("App.Example.ORG")->c_str(), "app.example.org");
  assert_string_equal(normalize_hostname_rule(".example.com")->c_str(), "*.example.com");  // one spelling
  assert_string_equal(normalize_hostname_rule("*.Example.com")->c_str(), "*.example.com");
  assert_string_equal(normalize_hostname_rule("localhost")->c_str(), "localhost");
  assert_string_equal(normalize_hostname_rule("xn--bcher-kva.example")->c_str(), "xn--bcher-kva.example");
  for (const char* bad : {"", ".", "*.", "*", "a..b", "-a.com", "a-.com", "a b.com", "a_b.com", "*.*.com",
                          "foo.*.com", "example.com.", "ex/ample.com"})
    assert_false(normalize_hostname_rule(bad).has_value());
  assert_false(normalize_hostname_rule(std::string(64, 'a') + ".com").has_value());  // label > 63
  assert_true(normalize_hostname_rule(std::string(63, 'a') + ".com").has_value());
  std::string long_name;
  for (int i = 0; i < 64; ++i) long_name += "abc.";
  long_name += "com";  // 259 characters
  assert_false(normalize_hostname_rule(long_name).has_value());
}


// Property: whatever dpctld holds, what it writes loads back to the same document. Random states (names of
// every allowed character and case, identities, weights, entry points, rules, targets) go through
// save_state -> load_state -> encode_state unchanged.
static void what_is_written_loads_back(void**) {
  TempDir dir;
  const std::string path = dir.path + "/dpctld.state";
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  auto rnd = [&](uint64_t n) {
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return seed % n;
  };
  const std::string name_chars = "abcXYZ019._-";
  for (int round = 0; round < 300; ++round) {
    PersistedState s;
    const int tunnels = 1 + int(rnd(4));
    for (int t = 0; t < tunnels; ++t) {
      TunnelDef d;
      d.id = Uuid::random_v4();
      d.name = "t" + std::to_string(t);
      for (uint64_t i = rnd(20); i > 0; --i) d.name += name_chars[rnd(name_chars.size())];
      const char* kinds[] = {"CN=", "DNS:", "URI:spiffe://x/"};
      for (uint64_t i = 1 + rnd(3); i > 0; --i) d.allow.push_back(kinds[rnd(3)] + std::string("agent ") + std::to_string(rnd(1000)));
      if (rnd(5) == 0) d.allow.push_back("*");
      switch (rnd(3)) {
        case 0: break;
        case 1: d.weights.fixed = true; d.weights.weight = uint8_t(1 + rnd(255)); d.weights.max_weight = uint8_t(1 + rnd(255)); break;
        case 2: d.weights.max_weight = uint8_t(1 + rnd(255)); break;
      }
      s.tunnels.push_back(d);
    }
    for (uint64_t i = rnd(6); i > 0; --i) {
      EntrySpec e;
      e.proto = rnd(2) ? 6 : 17;
      e.port = uint16_t(1 + (i * 7919 + rnd(100)) % 65535);
      if (std::any_of(s.entry_points.begin(), s.entry_points.end(),
                      [&](const EntrySpec& o) { return o.proto == e.proto && o.port == e.port; }))
        continue;
      if (rnd(3) == 0) {
        e.route = e.proto == 17 ? EntryRoute::QuicSni : (rnd(2) ? EntryRoute::TlsSni : EntryRoute::HttpHost);
      } else {
        e.tunnel = s.tunnels[rnd(s.tunnels.size())].id;
        e.target = Endpoint{Ipv4{uint32_t(rnd(0xffffffff))}, uint16_t(1 + rnd(65535))};
      }
      e.keepalive = rnd(2);
      e.udp_ttl_ns = 100'000'000ull + rnd(86'399'900'000'000ull);  // 0.1..86400 s, any nanosecond
      if (rnd(2)) e.listen = Ipv4{uint32_t(rnd(0xffffffff))};
      s.entry_points.push_back(e);
    }
    for (uint64_t i = rnd(5); i > 0; --i) {
      const std::string forms[] = {"app" + std::to_string(i) + ".example.org", "*.d" + std::to_string(i) + ".example",
                                   "~a" + std::to_string(i) + "[0-9]+\\.example"};
      IngressRuleSpec r{forms[rnd(3)], s.tunnels[rnd(s.tunnels.size())].id, std::nullopt, bool(rnd(2)), bool(rnd(2))};
      if (rnd(2)) r.target = Endpoint{Ipv4{uint32_t(rnd(0xffffffff))}, uint16_t(rnd(2) ? 0 : 1 + rnd(65535))};
      s.ingress.push_back(r);
    }
    std::string error;
    assert_true(save_state(path, s, error));
    auto back = load_state(path, error);
    if (!back) fail_msg("round %d: what was written does not load: %s", round, error.c_str());
    assert_string_equal(encode_state(*back).dump().c_str(), encode_state(s).dump().c_str());
  }
}

// Property: a damaged document (every value of a valid one replaced by values of other types, huge and
// fractional numbers) is either read or refused with a message; nothing else escapes decode_state.
static void damaged_documents_are_refused_cleanly(void**) {
  const nlohmann::json good = encode_state(sample());
  const nlohmann::json odd[] = {nullptr, true, -1, 0, 65536, 4294973497ull, 18446744073709551615ull, 1e300, 2.5,
                                "", "x", nlohmann::json::array(), nlohmann::json::object(), nlohmann::json::array({1})};
  size_t refused = 0, read = 0;
  for (const auto& path : {"/tunnels/0/id", "/tunnels/0/name", "/tunnels/0/allow", "/tunnels/0/allow/0",
                           "/tunnels/1/weight", "/tunnels/0/max_weight", "/entry_points/0/proto", "/entry_points/0/port",
                           "/entry_points/0/tunnel", "/entry_points/0/target", "/entry_points/0/keepalive",
                           "/entry_points/0/ttl", "/entry_points/0/listen", "/entry_points/2/route", "/ingress/0/hostname",
                           "/ingress/0/tunnel", "/ingress/0/private", "/ingress/0/target", "/ingress/0/proxy_protocol",
                           "/version", "/tunnels", "/entry_points", "/ingress"}) {
    for (const auto& v : odd) {
      nlohmann::json doc = good;
      doc[nlohmann::json::json_pointer(path)] = v;
      try {
        PersistedState s = decode_state(doc);
        ++read;
        assert_string_equal(encode_state(decode_state(encode_state(s))).dump().c_str(), encode_state(s).dump().c_str());
      } catch (const std::runtime_error& e) {
        ++refused;
        assert_true(strlen(e.what()) > 0);
      }
    }
  }
  assert_true(refused > 200);
  assert_true(read > 0);
}

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(round_trip),
      cmocka_unit_test(missing_file_is_empty),
      cmocka_unit_test(damaged_file_is_an_error),
      cmocka_unit_test(failed_save_keeps_the_old_file),
      cmocka_unit_test(hostname_rules),
      cmocka_unit_test(what_is_written_loads_back),
      cmocka_unit_test(damaged_documents_are_refused_cleanly),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
