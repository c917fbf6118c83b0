// dpctld's answer to an accepted registration (control/control_protocol.hpp): registered_message writes it (dpctld),
// parse_registered_reply reads it (dpagent). What one writes the other reads back field by field; an answer of
// an older dpctld (no weight, no cipher) takes the defaults; every wrongly typed or out-of-range field the agent
// uses makes the reply unusable with the field named (what it only shows, tunnel and role, never does), and
// nothing throws (a wrongly typed field once threw out of dpagent's event
// loop: nlohmann's value() throws type_error).
#include <nlohmann/json.hpp>

#include <cstring>
#include <string>

#include "control/control_protocol.hpp"
#include "tests/unit/cmocka.hpp"

using namespace dptun;
using nlohmann::json;

namespace {

RegisteredReply sample() {
  RegisteredReply r;
  r.session = 4000000001u;
  r.tunnel = "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f";
  r.weight = 255;
  r.visitor = true;
  r.gateway = *Endpoint::parse("10.99.2.1:51900");
  r.key_len = 32;
  r.rekey_interval_ns = 30'500'000'000;
  r.keepalive_ns = 250'000'000;
  r.quic_framing = true;
  r.stun_port = 3478;
  return r;
}

void round_trip(void**) {
  const RegisteredReply w = sample();
  const std::string line = registered_message(w);
  const RegisteredReply r = parse_registered_reply(json::parse(line), 1);
  assert_string_equal(r.error.c_str(), "");
  assert_true(r.session == w.session && r.tunnel == w.tunnel && r.weight == w.weight && r.visitor == w.visitor);
  assert_true(r.gateway == w.gateway && r.key_len == w.key_len && r.stun_port == w.stun_port);
  assert_true(r.rekey_interval_ns == w.rekey_interval_ns && r.keepalive_ns == w.keepalive_ns && r.quic_framing);
  // No STUN port: the field is left out and reads back as none.
  RegisteredReply plain = sample();
  plain.stun_port = 0;
  plain.quic_framing = false;
  plain.visitor = false;
  const std::string plain_line = registered_message(plain);
  assert_null(strstr(plain_line.c_str(), "stun_port"));
  const RegisteredReply p = parse_registered_reply(json::parse(plain_line), 1);
  assert_true(p.error.empty() && p.stun_port == 0 && !p.quic_framing && !p.visitor);
}

void defaults_of_a_short_reply(void**) {
  const RegisteredReply r =
      parse_registered_reply(json::parse(R"({"type":"registered","session":7,"gateway":"192.0.2.1:51900"})"), 9);
  assert_string_equal(r.error.c_str(), "");
  assert_int_equal(r.weight, 9);  // what the agent asked for
  assert_int_equal(r.key_len, 16);
  assert_true(r.rekey_interval_ns == 120'000'000'000ull && r.keepalive_ns == 2'000'000'000ull);
  assert_false(r.quic_framing);
}

void wrong_fields_are_named(void**) {
  const std::string base = R"({"type":"registered","version":1,"tunnel":"t","gateway":"192.0.2.1:51900",)";
  const struct {
    const char* fields;
    const char* named;
  } cases[] = {
      {R"("session":"7")", "'session'"},
      {R"("session":0)", "'session'"},
      {R"("session":4294967296)", "'session'"},
      {R"("session":7.5)", "'session'"},
      {R"("session":null)", "'session'"},  // null is absent, and the session is required
      {R"("session":7,"weight":0)", "'weight'"},
      {R"("session":7,"weight":256)", "'weight'"},
      {R"("session":7,"weight":"1")", "'weight'"},
      {R"("session":7,"cipher":"chacha20-poly1305")", "'cipher'"},
      {R"("session":7,"cipher":16)", "'cipher'"},
      {R"("session":7,"keepalive":-1)", "'keepalive'"},
      {R"("session":7,"keepalive":1e300)", "'keepalive'"},
      {R"("session":7,"keepalive":"2")", "'keepalive'"},
      {R"("session":7,"rekey_interval":0)", "'rekey_interval'"},
      {R"("session":7,"framing":"tcp")", "'framing'"},
      {R"("session":7,"stun_port":65536)", "'stun_port'"},
      {R"("session":7,"stun_port":-1)", "'stun_port'"},
  };
  for (const auto& c : cases) {
    const RegisteredReply r = parse_registered_reply(json::parse(base + c.fields + "}"), 1);
    if (!strstr(r.error.c_str(), c.named))
      fail_msg("%s: error '%s' does not name %s", c.fields, r.error.c_str(), c.named);
  }
  for (const char* gw : {R"("gateway":"dpgw.example:51900")", R"("gateway":"10.0.0.1")", R"("gateway":5)"}) {
    const RegisteredReply r =
        parse_registered_reply(json::parse(std::string(R"({"type":"registered","session":7,)") + gw + "}"), 1);
    if (!strstr(r.error.c_str(), "'gateway'")) fail_msg("%s: error '%s'", gw, r.error.c_str());
  }
  const RegisteredReply none = parse_registered_reply(json::parse(R"({"type":"registered","session":7})"), 1);
  assert_non_null(strstr(none.error.c_str(), "'gateway'"));
  // What the agent only shows is never a reason to refuse.
  const RegisteredReply shown = parse_registered_reply(
      json::parse(R"({"type":"registered","session":7,"gateway":"192.0.2.1:51900","tunnel":[],"role":1})"), 1);
  assert_string_equal(shown.error.c_str(), "");
  assert_false(shown.visitor);
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(round_trip),
      cmocka_unit_test(defaults_of_a_short_reply),
      cmocka_unit_test(wrong_fields_are_named),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
