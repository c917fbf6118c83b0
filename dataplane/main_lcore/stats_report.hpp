// Renders dpgw's counters (ports, workers, tunnels, sessions, drops) as JSON or as a human-readable table.
#pragma once
#include <string>

namespace dptun {

struct Dataplane;

std::string stats_json(const Dataplane& dp);
std::string stats_text(const Dataplane& dp);
// Prometheus text (docs/operations.md, "Metrics"): what stats_json says, as dptun_gw_* families.
std::string stats_prometheus(const Dataplane& dp, uint64_t controller_epoch);

}  // namespace dptun
