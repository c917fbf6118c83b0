// dpgw's decoding of dpctld's messages (proto/gateway_messages.hpp): one line of JSON as it arrives on dpgw's
// control socket. Each decoder reads the object itself and every element of the lists a "sync" or
// "ingress_set" carries, and a "pair_set"'s list, as dataplane/main_lcore/control_commands.cpp does; dpgw answers
// any std::exception with an error reply, so only crashes, sanitizer reports and escaping non-std exceptions are
// findings. Property: what a decoder accepts encodes to a message that decodes to the same spec (dpctld and dpgw agree on the format).
// (dataplane/main_lcore/control_commands.cpp's own reads, session_del's index and entry_del's port, need a running
// dataplane and are not covered here.)
#include <string>
#include <vector>

#include "fuzz/fuzz.hpp"
#include "proto/gateway_messages.hpp"

using namespace dptun;
using nlohmann::json;

namespace {

// The object itself, and each element of its `list` member the way dpgw walks it (a member that is not an
// array is walked too: an object's values, or a single value).
template <typename Decode>
void each(const json& req, const char* list, Decode decode) {
  decode(req);
  for (const auto& e : req.value(list, json::array())) decode(e);
}

void tunnel(const json& j) {
  TunnelSpec t;
  try {
    t = decode_tunnel(j);
  } catch (const std::exception& e) {
    FUZZ_LOG("tunnel: %s\n", e.what());
    return;
  }
  FUZZ_LOG("tunnel: ok\n");
  const TunnelSpec u = decode_tunnel(encode_tunnel(t));
  FUZZ_CHECK(u.id == t.id && u.name == t.name);
}

void session(const json& j) {
  SessionSpec s;
  try {
    s = decode_session(j);
  } catch (const std::exception& e) {
    FUZZ_LOG("session: %s\n", e.what());
    return;
  }
  FUZZ_LOG("session: ok\n");
  FUZZ_CHECK(s.index >= kFirstControlSessionIndex && s.index <= 65535 && s.weight >= 1 && s.base_secret.size() == 32);
  const SessionSpec u = decode_session(encode_session(s));
  FUZZ_CHECK(u.index == s.index && u.tunnel == s.tunnel && u.weight == s.weight && u.base_secret == s.base_secret &&
             u.visitor == s.visitor);
}

void entry(const json& j) {
  EntrySpec e;
  try {
    e = decode_entry(j);
  } catch (const std::exception& ex) {
    FUZZ_LOG("entry: %s\n", ex.what());
    return;
  }
  FUZZ_LOG("entry: ok\n");
  FUZZ_CHECK((e.proto == 6 || e.proto == 17) && e.port >= 1);
  const EntrySpec u = decode_entry(encode_entry(e));
  FUZZ_CHECK(u.proto == e.proto && u.port == e.port && u.listen == e.listen && u.route == e.route &&
             u.keepalive == e.keepalive);
  if (e.route == EntryRoute::Fixed) FUZZ_CHECK(u.tunnel == e.tunnel && u.target == e.target);
  // The TTL travels as seconds in a double and is read to the nearest nanosecond: not one goes astray.
  FUZZ_CHECK(u.udp_ttl_ns == e.udp_ttl_ns);
}

void ingress_rule(const json& j) {
  IngressRuleSpec r;
  try {
    r = decode_ingress_rule(j);
  } catch (const std::exception& e) {
    FUZZ_LOG("ingress rule: %s\n", e.what());
    return;
  }
  FUZZ_LOG("ingress rule: ok\n");
  const IngressRuleSpec u = decode_ingress_rule(encode_ingress_rule(r));
  FUZZ_CHECK(u.hostname == r.hostname && u.tunnel == r.tunnel && u.target == r.target &&
             u.private_rule == r.private_rule && u.proxy_protocol == r.proxy_protocol);
}

// A pair_set's list (also a sync's "pairs"): ids never 0, two different indexes 1..65535, the list back the same.
void pair_set(const json& req) {
  std::vector<PairSpec> p;
  try {
    p = decode_pair_set(req);
  } catch (const std::exception& e) {
    FUZZ_LOG("pair_set: %s\n", e.what());
    return;
  }
  FUZZ_LOG("pair_set: %zu pairs\n", p.size());
  FUZZ_CHECK(p.size() <= kMaxPairs);
  for (const PairSpec& x : p) FUZZ_CHECK(x.pair != 0 && x.a >= 1 && x.a <= 65535 && x.b >= 1 && x.b <= 65535 && x.a != x.b);
  FUZZ_CHECK(decode_pair_set(pair_set_message(p)) == p);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const json req = json::parse(std::string(reinterpret_cast<const char*>(data), size), nullptr, false);
  if (req.is_discarded() || !req.is_object()) return 0;
  FUZZ_LOG("a JSON object of %zu members\n", req.size());
  each(req, "tunnels", tunnel);
  each(req, "sessions", session);
  each(req, "entry_points", entry);
  each(req, "ingress", ingress_rule);
  each(req, "rules", ingress_rule);
  pair_set(req);
  return 0;
}
