// What dpctl changes (tunnels, entry points, ingress rules, udp+https routes) persisted in dpctld's state file: one JSON document,
// replaced atomically (written to a temporary file, flushed, renamed over the old one). Sessions are not
// persisted: their secrets live only in memory, and agents register again after a restart.
#pragma once
#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "control/dpctld_config.hpp"

namespace dptun {

struct PersistedState {
  std::vector<TunnelDef> tunnels;
  std::vector<EntrySpec> entry_points;
  std::vector<IngressRuleSpec> ingress;
  std::vector<MasqueRoute> routes;  // absent from files written before routes existed: none
};

nlohmann::json encode_state(const PersistedState& s);
// Throws std::runtime_error naming what is wrong.
PersistedState decode_state(const nlohmann::json& j);

// A missing file is an empty state; anything unreadable is an error naming the file.
std::optional<PersistedState> load_state(const std::string& path, std::string& error);
bool save_state(const std::string& path, const PersistedState& s, std::string& error);

}  // namespace dptun
