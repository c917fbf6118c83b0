// What dpgw's control socket answers: one-shot stats ("json" / "text", used by `dpgw stats`) and dpctld's
// JSON messages -- hello, sync, tunnel/session/entry changes, status (docs/control-plane.md).
#pragma once
#include <string>

#include "proto/gateway_messages.hpp"

namespace dptun {

struct Dataplane;
class GatewayState;

std::string handle_control_line(const std::string& line, bool& close, Dataplane& dp, GatewayState& state);

}  // namespace dptun
