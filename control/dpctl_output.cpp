#include "control/dpctl_output.hpp"

#include <cstdio>

namespace dptun {

using nlohmann::json;

std::string TextTable::str() const {
  std::vector<size_t> width(header_.size());
  for (size_t c = 0; c < header_.size(); ++c) width[c] = header_[c].size();
  for (const auto& r : rows_)
    for (size_t c = 0; c < r.size() && c < width.size(); ++c) width[c] = std::max(width[c], r[c].size());
  std::string out;
  auto line = [&](const std::vector<std::string>& cells) {
    std::string l;
    for (size_t c = 0; c < width.size(); ++c) {
      const std::string cell = c < cells.size() ? cells[c] : "";
      l += cell;
      if (c + 1 < width.size()) l += std::string(width[c] - cell.size() + 2, ' ');
    }
    while (!l.empty() && l.back() == ' ') l.pop_back();
    out += l + "\n";
  };
  line(header_);
  for (const auto& r : rows_) line(r);
  return out;
}

namespace {

std::string text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "-";
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  if (v.is_number_float()) {
    char b[32];
    snprintf(b, sizeof b, "%.1f", v.get<double>());
    return b;
  }
  return v.dump();
}

std::string bytes(const json& v) {
  if (!v.is_number()) return "-";
  double b = v.get<double>();
  const char* unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  char out[32];
  snprintf(out, sizeof out, u ? "%.1f %s" : "%.0f %s", b, unit[u]);
  return out;
}

std::string join(const json& list, const char* sep = ",") {
  std::string s;
  for (const auto& v : list) s += (s.empty() ? "" : sep) + text(v);
  return s;
}

std::string entry_name(const json& e) { return text(e["proto"]) + "/" + text(e["port"]); }

std::string entry_options(const json& e) {
  std::string o;
  if (e.contains("listen") && e["listen"].is_string()) o += "listen=" + text(e["listen"]);
  if (e.contains("ttl")) o += std::string(o.empty() ? "" : " ") + "ttl=" + text(e["ttl"]) + "s";
  if (e.value("keepalive", false)) o += std::string(o.empty() ? "" : " ") + "keepalive";
  return o.empty() ? "-" : o;
}

std::string tunnels_table(const json& list) {
  TextTable t({"NAME", "ID", "SESSIONS", "LIVE", "ENTRIES", "TO_AGENT", "FROM_AGENT", "SOURCE"});
  for (const auto& x : list)
    t.add({text(x["name"]), text(x["id"]), text(x["sessions"]), text(x["sessions_live"]), text(x["entry_points"]),
           bytes(x.value("to_agent_bytes", json())), bytes(x.value("from_agent_bytes", json())), text(x["source"])});
  return t.str();
}

std::string entries_table(const json& list) {
  TextTable t({"ENTRY", "TUNNEL", "TARGET", "OPTIONS", "SOURCE"});
  for (const auto& e : list)
    t.add({entry_name(e), e.value("tunnel_name", std::string()).empty() ? text(e["tunnel"]) : text(e["tunnel_name"]),
           text(e["target"]), entry_options(e), text(e["source"])});
  return t.str();
}

std::string tunnel_show(const json& x) {
  std::string out;
  auto kv = [&](const char* k, const std::string& v) { out += std::string(k) + std::string(14 - std::string(k).size(), ' ') + v + "\n"; };
  kv("name:", text(x["name"]));
  kv("id:", text(x["id"]));
  kv("source:", text(x["source"]));
  kv("allow:", join(x["allow"], " "));
  kv("weights:", text(x["weights"]));
  kv("to agent:", bytes(x.value("to_agent_bytes", json())));
  kv("from agent:", bytes(x.value("from_agent_bytes", json())));
  kv("flows:", text(x.value("flows_created", json())));
  kv("auth fail:", text(x.value("auth_fail", json())));
  out += "\nsessions:\n";
  if (x["session_list"].empty()) {
    out += "  (none: no agent registered)\n";
  } else {
    TextTable t({"  INDEX", "AGENT", "WEIGHT", "LIVE"});
    for (const auto& s : x["session_list"])
      t.add({"  " + text(s["index"]), text(s["certificate"]), text(s["weight"]), text(s["live"])});
    out += t.str();
  }
  out += "\nentry points:\n";
  if (x["entry_point_list"].empty()) {
    out += "  (none)\n";
  } else {
    TextTable t({"  ENTRY", "TARGET", "OPTIONS"});
    for (const auto& e : x["entry_point_list"]) t.add({"  " + entry_name(e), text(e["target"]), entry_options(e)});
    out += t.str();
  }
  if (!x["ingress"].empty()) {
    out += "\ningress rules:\n";
    for (const auto& r : x["ingress"])
      out += "  " + text(r["hostname"]) + (r.value("private", false) ? " (private)" : "") + "\n";
  }
  out += "\nregister an agent:\n  " + text(x["agent_command"]) + "\n";
  return out;
}

}  // namespace

std::string render_reply(const std::string& cmd, const json& r) {
  if (cmd == "tunnel.add") {
    const json& t = r["tunnel"];
    return "tunnel " + text(t["name"]) + " added, id " + text(t["id"]) +
           "\n\nregister an agent for it (with a certificate the CA signed, allowed by " + join(t["allow"], " ") +
           "):\n  " + text(r["agent_command"]) + "\n";
  }
  if (cmd == "tunnel.del") return "tunnel " + text(r["removed"]) + " removed\n";
  if (cmd == "tunnel.list") return tunnels_table(r["tunnels"]);
  if (cmd == "tunnel.show") return tunnel_show(r["tunnel"]);
  if (cmd == "entry.add") {
    const json& e = r["entry_point"];
    return "entry point " + entry_name(e) + " -> " + text(e["tunnel_name"]) + " -> " + text(e["target"]) + " added\n";
  }
  if (cmd == "entry.del") return "entry point " + text(r["removed"]) + " removed\n";
  if (cmd == "entry.list") return entries_table(r["entry_points"]);
  if (cmd == "ingress.add") {
    const json& x = r["rule"];
    return "ingress rule " + text(x["hostname"]) + " -> " + text(x["tunnel_name"]) +
           (x.value("private", false) ? " (private)" : "") + " added\n";
  }
  if (cmd == "ingress.del") return "ingress rule " + text(r["removed"]) + " removed\n";
  if (cmd == "ingress.list") {
    TextTable t({"HOSTNAME", "TUNNEL", "ID", "PRIVATE", "SOURCE"});
    for (const auto& x : r["rules"])
      t.add({text(x["hostname"]), text(x["tunnel_name"]), text(x["tunnel"]), text(x["private"]), text(x["source"])});
    return t.str();
  }
  if (cmd == "session.list") {
    TextTable t({"INDEX", "TUNNEL", "AGENT", "WEIGHT", "LIVE", "CONTROL", "DATA_ENDPOINT", "FLOWS", "AGE"});
    for (const auto& s : r["sessions"])
      t.add({text(s["index"]), text(s["tunnel_name"]), text(s["certificate"]), text(s["weight"]), text(s["live"]),
             s.value("control_connected", false) ? text(s["control_peer"]) : "closed",
             s.value("data_endpoint", std::string()).empty() ? "-" : text(s["data_endpoint"]), text(s["flows"]),
             text(s["age_s"]) + "s"});
    return t.str();
  }
  if (cmd == "stats") {
    std::string out;
    out += "gateway:       " + std::string(r.value("gateway_connected", false) ? "connected" : "NOT connected") + "\n";
    out += "sessions:      " + text(r["sessions"]) + " (" + text(r["sessions_live"]) + " live, " +
           text(r["sessions_expired"]) + " expired so far)\n";
    out += "registrations: " + text(r["registrations_ok"]) + " ok, " + text(r["registrations_refused"]) + " refused\n";
    out += "handshakes:    " + text(r["handshakes_ok"]) + " ok";
    for (const auto& [k, v] : r["handshake_failures"].items())
      if (v.get<uint64_t>()) out += ", " + v.dump() + " " + k;
    out += "\n\n" + tunnels_table(r["tunnels"]);
    return out;
  }
  return r.dump(2) + "\n";
}

}  // namespace dptun
