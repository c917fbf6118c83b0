// `dpgw trace` on the main lcore (the packet trace itself: loop/trace.hpp). The control socket speaks it as
// {"type":"trace","op":"start"|"poll"|"stop",...}; docs/operations.md "Packet trace".
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace dptun {

struct Dataplane;

// The control socket's "trace" request: {"op":"start","packets":N,"filter":"...","timeout":S} arms a trace,
// {"op":"poll","generation":G} says how far it is, {"op":"stop","generation":G} ends it and returns its packets
// (names resolved: ports, tunnels, stages, drop reasons). Throws std::exception (a FieldError) on a bad request.
nlohmann::json trace_request(Dataplane& dp, const nlohmann::json& req, uint64_t now_ns);

// `dpgw trace N [--config FILE | --socket PATH] [--filter EXPR] [--timeout S] [--json]` (argv[1] is "trace"): an
// exit code.
int trace_main(int argc, char** argv);
// The text `dpgw trace` prints for a stop reply.
std::string trace_text(const nlohmann::json& result);

}  // namespace dptun
