// The names of control messages and commands (proto/control_names.hpp): each family spells exactly the names
// that were on the wire before the tables existed (old dpctl, dpctld, dpgw and dpagent still understand the new
// ones), every name reads back to its value, no name is there twice, and nothing else reads as a name.
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "tests/unit/cmocka.hpp"

#include "proto/control_names.hpp"

using namespace dptun;

// The wire spellings of E in enum order: E's table must be exactly this list.
template <typename E>
static void spelled(const std::vector<std::string_view>& wire) {
  assert_int_equal(name_count<E>(), wire.size());
  std::set<std::string_view> seen;
  for (size_t i = 0; i < wire.size(); ++i) {
    const E value = E(i);
    if (name_of(value) != wire[i])
      fail_msg("value %zu is spelled '%.*s', the wire says '%.*s'", i, int(name_of(value).size()), name_of(value).data(),
               int(wire[i].size()), wire[i].data());
    const std::optional<E> back = parse_name<E>(wire[i]);
    assert_true(back.has_value());
    assert_int_equal(int(*back), int(i));
    assert_true(seen.insert(name_of(value)).second);  // unique
    // Near misses are not names: other case, padding, a prefix, a longer word.
    const std::string name(wire[i]);
    std::string upper = name;
    for (char& c : upper) c = char(c - ('a' <= c && c <= 'z' ? 32 : 0));
    for (const std::string& near : {upper, " " + name, name + " ", name + "\n", name.substr(0, name.size() - 1),
                                    name + "s", name + std::string(1, '\0')})
      assert_false(parse_name<E>(near).has_value());
  }
  assert_true(name_of(E(wire.size())).empty());  // the table ends where the enum does
  assert_false(parse_name<E>("").has_value());
  static_assert(names_well_formed<E>());
}

static void gateway_message_types(void**) {
  spelled<GatewayMessageType>({"hello", "sync", "tunnel_set", "tunnel_del", "session_add", "session_del", "entry_set",
                               "entry_del", "ingress_set", "pair_set", "status", "trace", "ok", "error",
                               "masque_datagrams"});
  // Only the controller changes dpgw: these, and no others, need the controller's connection and epoch (and
  // masque_datagrams, which changes nothing: dataplane/main_lcore/control_commands.cpp).
  std::set<std::string_view> changes;
  for (size_t i = 0; i < name_count<GatewayMessageType>(); ++i)
    if (changes_gateway_state(GatewayMessageType(i))) changes.insert(name_of(GatewayMessageType(i)));
  assert_true(changes == std::set<std::string_view>({"sync", "tunnel_set", "tunnel_del", "session_add", "session_del",
                                                     "entry_set", "entry_del", "ingress_set", "pair_set"}));
}

static void gateway_error_codes(void**) {
  spelled<GatewayErrorCode>({"controller_busy", "not_controller", "fenced", "index_in_use"});
}

static void trace_ops(void**) { spelled<TraceOp>({"start", "poll", "stop"}); }

static void stats_requests(void**) { spelled<StatsRequest>({"json", "text", "stats"}); }

static void dpctl_commands(void**) {
  spelled<DpctlCommand>({"tunnel.add", "tunnel.del", "tunnel.list", "tunnel.show", "entry.add", "entry.del",
                         "entry.list", "ingress.add", "ingress.del", "ingress.list", "route.add", "route.del",
                         "route.list", "session.list", "stats"});
  // The commands dpctld queues and persists: every add and del, nothing that only reads.
  for (size_t i = 0; i < name_count<DpctlCommand>(); ++i) {
    const std::string_view name = name_of(DpctlCommand(i));
    const bool writes = name.ends_with(".add") || name.ends_with(".del");
    assert_int_equal(changes_dpctld_state(DpctlCommand(i)), writes);
  }
}

static void agent_message_types(void**) {
  spelled<AgentMessageType>({"register", "registered", "refused", "ping", "pong", "candidates", "peer", "peer_gone", "path"});
}

static void session_roles(void**) {
  spelled<SessionRole>({"agent", "visitor"});
  assert_true(role_name(false) == "agent");
  assert_true(role_name(true) == "visitor");
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(gateway_message_types), cmocka_unit_test(gateway_error_codes), cmocka_unit_test(trace_ops),
      cmocka_unit_test(stats_requests),        cmocka_unit_test(dpctl_commands),      cmocka_unit_test(agent_message_types),
      cmocka_unit_test(session_roles),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
