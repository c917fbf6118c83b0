#include "common/tunnel_names.hpp"

#include <cctype>
#include <map>
#include <set>

#include "common/config_file.hpp"  // libconfig

namespace dptun {

using libconfig::Setting;

std::string tunnel_name_problem(const std::string& name) {
  if (name.empty() || name.size() > 64) return "a tunnel name is 1..64 characters";
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-')
      return "a tunnel name may only hold letters, digits, '.', '_' and '-'";
  if (Uuid::parse(name)) return "a tunnel name must not be a UUID (it would shadow a tunnel id)";
  return "";
}

std::string tunnel_name_key(const std::string& name) {
  std::string key;
  for (char c : name) key += char(std::tolower(static_cast<unsigned char>(c)));
  return key;
}

bool tunnel_is(const Uuid& id, const std::string& name, const std::string& ref) {
  if (auto as_id = Uuid::parse(ref)) return *as_id == id;
  return tunnel_name_key(name) == tunnel_name_key(ref);
}

void config_tunnel_list(const Setting& root, std::initializer_list<const char*> keys,
                        const std::function<void(const Setting& entry, TunnelIdentity)>& read_rest) {
  const Setting* tunnels = config_child(root, "tunnels");
  if (!tunnels) return;
  if (!tunnels->isList()) config_fail(*tunnels, "expected a list ( { ... }, ... )");
  std::set<std::string> ids;
  std::map<std::string, std::string> names;  // key -> the name as first written
  for (int i = 0; i < tunnels->getLength(); ++i) {
    const Setting& s = (*tunnels)[i];
    config_allow_keys(s, keys);
    TunnelIdentity t;
    auto id = Uuid::parse(config_string(s, "id"));
    if (!id) config_fail(s["id"], "expected a UUID like 3f2b8c1e-6a4d-4b7e-9f10-2c3d4e5f6a7b");
    t.id = *id;
    if (!ids.insert(t.id.str()).second) config_fail(s["id"], "tunnel id used twice");
    t.name = config_string(s, "name", t.id.str());
    if (s.exists("name")) {
      if (const std::string problem = tunnel_name_problem(t.name); !problem.empty()) config_fail(s["name"], problem);
      const auto [first, fresh] = names.emplace(tunnel_name_key(t.name), t.name);
      if (!fresh)
        config_fail(s["name"], "tunnel name '" + t.name + "' used twice" +
                                   (first->second == t.name ? std::string()
                                                            : " (as '" + first->second +
                                                                  "' before: names are compared without regard to case)"));
    }
    read_rest(s, std::move(t));
  }
}

}  // namespace dptun
