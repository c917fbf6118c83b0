// Tunnels as operators name them -- by id (a UUID) or by name -- in dptun.conf, dpctld.conf, dpctl and the state
// file: one rule for dpgw and dpctld. Names are 1..64 of A-Z a-z 0-9 . _ -, never a UUID, and compared without
// regard to case ("Edge" and "edge" are one name).
#pragma once
#include <functional>
#include <initializer_list>
#include <string>

#include "common/uuid.hpp"

namespace libconfig {
class Setting;
}

namespace dptun {

// What is wrong with a tunnel name, or "" when it is fine.
std::string tunnel_name_problem(const std::string& name);
// The key names are compared and kept unique by (lower case).
std::string tunnel_name_key(const std::string& name);
// Whether `ref` names the tunnel: a UUID (any case) its id, anything else its name (without regard to case).
bool tunnel_is(const Uuid& id, const std::string& name, const std::string& ref);

struct TunnelIdentity {
  Uuid id;
  std::string name;  // the id's text when the entry has no name
};

// A config file's `tunnels = ( { id = "UUID"; name = "..."; ... }, ... )` (none when absent). For every entry,
// in order: only `keys` are allowed (id and name among them), its id and name are read and checked here, then
// `read_rest(entry, identity)` reads what the program adds. An id, or a name, used twice is a ConfigError at the
// second one (file:line: key 'tunnels.[i].id' or '.name').
void config_tunnel_list(const libconfig::Setting& root, std::initializer_list<const char*> keys,
                        const std::function<void(const libconfig::Setting& entry, TunnelIdentity)>& read_rest);

}  // namespace dptun
