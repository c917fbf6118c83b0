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

// The field `key` of an object, or null: replies from another dpctld version may lack fields.
const json& at(const json& j, const char* key) {
  static const json null;
  if (!j.is_object()) return null;
  auto it = j.find(key);
  return it == j.end() ? null : *it;
}

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

// "or over QUIC ..." and its dpagent command, when dpctld listens for agents over QUIC too.
std::string quic_command_text(const json& r) {
  if (!r.contains("agent_quic_command")) return "";
  return "or over QUIC (UDP, data in QUIC DATAGRAM frames; for networks that pass only TCP/443 and UDP/443):\n  " +
         text(at(r, "agent_quic_command")) + "\n";
}

std::string entry_name(const json& e) { return text(at(e, "proto")) + "/" + text(at(e, "port")); }

std::string entry_options(const json& e) {
  std::string o;
  if (at(e, "route").is_string() && text(at(e, "route")) != "fixed") o += "route=" + text(at(e, "route"));
  if (at(e, "listen").is_string()) o += std::string(o.empty() ? "" : " ") + "listen=" + text(at(e, "listen"));
  if (e.contains("ttl")) o += std::string(o.empty() ? "" : " ") + "ttl=" + text(at(e, "ttl")) + "s";
  if (e.value("keepalive", false)) o += std::string(o.empty() ? "" : " ") + "keepalive";
  return o.empty() ? "-" : o;
}

std::string tunnels_table(const json& list) {
  TextTable t({"NAME", "ID", "SESSIONS", "LIVE", "ENTRIES", "TO_AGENT", "FROM_AGENT", "SOURCE"});
  for (const auto& x : list)
    t.add({text(at(x, "name")), text(at(x, "id")), text(at(x, "sessions")), text(at(x, "sessions_live")), text(at(x, "entry_points")),
           bytes(x.value("to_agent_bytes", json())), bytes(x.value("from_agent_bytes", json())), text(at(x, "source"))});
  return t.str();
}

std::string entries_table(const json& list) {
  TextTable t({"ENTRY", "TUNNEL", "TARGET", "OPTIONS", "SOURCE"});
  for (const auto& e : list)
    t.add({entry_name(e), e.value("tunnel_name", std::string()).empty() ? text(at(e, "tunnel")) : text(at(e, "tunnel_name")),
           text(at(e, "target")), entry_options(e), text(at(e, "source"))});
  return t.str();
}

// A session's direct-path pairs in a word or two: "-" (none), a pair's path (with the reason an end gave up, and
// the other end's address when direct), or for an agent with several pairs how many are direct.
std::string path_column(const json& pairs) {
  if (!pairs.is_array() || pairs.empty()) return "-";
  if (pairs.size() > 1) {
    size_t direct = 0;
    for (const auto& p : pairs) direct += p.value("path", std::string()) == "direct";
    return std::to_string(direct) + "/" + std::to_string(pairs.size()) + " direct";
  }
  const json& p = pairs[0];
  const std::string path = p.value("path", std::string());
  // (a pair whose visitor's flows all go through dpgw: dpctl session list --json says why, in no_data)
  const std::string data = p.value("data", true) ? "" : ", no data";
  if (path == "direct" && at(p, "this_end").is_object()) return "direct " + text(at(at(p, "this_end"), "remote")) + data;
  if (path == "relayed")
    for (const char* end : {"this_end", "peer_end"})
      if (at(p, end).is_object() && at(p, end).value("state", std::string()) == "relayed")
        return "relayed (" + text(at(at(p, end), "reason")) + ")" + data;
  return path + data;
}

std::string tunnel_show(const json& x) {
  std::string out;
  auto kv = [&](const char* k, const std::string& v) { out += std::string(k) + std::string(14 - std::string(k).size(), ' ') + v + "\n"; };
  kv("name:", text(at(x, "name")));
  kv("id:", text(at(x, "id")));
  kv("source:", text(at(x, "source")));
  kv("allow:", join(at(x, "allow"), " "));
  kv("weights:", text(at(x, "weights")));
  kv("to agent:", bytes(x.value("to_agent_bytes", json())));
  kv("from agent:", bytes(x.value("from_agent_bytes", json())));
  kv("flows:", text(x.value("flows_created", json())));
  kv("auth fail:", text(x.value("auth_fail", json())));
  out += "\nsessions:\n";
  if (at(x, "session_list").empty()) {
    out += "  (none: no agent registered)\n";
  } else {
    TextTable t({"  INDEX", "AGENT", "WEIGHT", "LIVE"});
    for (const auto& s : at(x, "session_list"))
      t.add({"  " + text(at(s, "index")), text(at(s, "certificate")), text(at(s, "weight")), text(at(s, "live"))});
    out += t.str();
  }
  out += "\nentry points:\n";
  if (at(x, "entry_point_list").empty()) {
    out += "  (none)\n";
  } else {
    TextTable t({"  ENTRY", "TARGET", "OPTIONS"});
    for (const auto& e : at(x, "entry_point_list")) t.add({"  " + entry_name(e), text(at(e, "target")), entry_options(e)});
    out += t.str();
  }
  if (!at(x, "ingress").empty()) {
    out += "\ningress rules:\n";
    for (const auto& r : at(x, "ingress"))
      out += "  " + text(at(r, "hostname")) + (r.value("private", false) ? " (private)" : "") + "\n";
  }
  if (x.contains("routes") && !at(x, "routes").empty()) {
    out += "\nroutes:\n";
    for (const auto& r : at(x, "routes"))
      out += "  " + text(at(r, "from")) + " -> " + text(at(r, "to")) + (r.value("private", false) ? " (private)" : "") +
             "\n";
  }
  out += "\nregister an agent:\n  " + text(at(x, "agent_command")) + "\n" + quic_command_text(x);
  return out;
}

}  // namespace

std::string render_reply(DpctlCommand cmd, const json& r) {
  switch (cmd) {
    case DpctlCommand::TunnelAdd: {
      const json& t = at(r, "tunnel");
      return "tunnel " + text(at(t, "name")) + " added, id " + text(at(t, "id")) +
             "\n\nregister an agent for it (with a certificate the CA signed, allowed by " + join(at(t, "allow"), " ") +
             "):\n  " + text(at(r, "agent_command")) + "\n" + quic_command_text(r);
    }
    case DpctlCommand::TunnelDel: {
      std::string out = "tunnel " + text(at(r, "name")) + " (" + text(at(r, "removed")) + ") removed\n";
      if (!at(r, "entry_points").empty()) out += "  with its entry points: " + join(at(r, "entry_points"), " ") + "\n";
      if (!at(r, "ingress").empty()) out += "  with its ingress rules: " + join(at(r, "ingress"), " ") + "\n";
      if (r.contains("routes") && !at(r, "routes").empty()) out += "  with its routes: " + join(at(r, "routes"), " ") + "\n";
      if (!at(r, "sessions").empty()) {
        std::string who;
        for (const auto& s : at(r, "sessions"))
          who += (who.empty() ? "" : ", ") + text(at(s, "index")) + " (" + text(at(s, "certificate")) + ")";
        out += "  agents disconnected: " + who + "\n";
      }
      return out;
    }
    case DpctlCommand::TunnelList: return tunnels_table(at(r, "tunnels"));
    case DpctlCommand::TunnelShow: return tunnel_show(at(r, "tunnel"));
    case DpctlCommand::EntryAdd: {
      const json& e = at(r, "entry_point");
      if (at(e, "route").is_string() && text(at(e, "route")) != "fixed")
        return "entry point " + entry_name(e) + " added, routed by " + text(at(e, "route")) +
               " to the hostname rules (dpctl ingress list)\n";
      return "entry point " + entry_name(e) + " -> " + text(at(e, "tunnel_name")) + " -> " + text(at(e, "target")) +
             " added\n";
    }
    case DpctlCommand::EntryDel: return "entry point " + text(at(r, "removed")) + " removed\n";
    case DpctlCommand::EntryList: return entries_table(at(r, "entry_points"));
    case DpctlCommand::IngressAdd: {
      const json& x = at(r, "rule");
      return "ingress rule " + text(at(x, "hostname")) + " -> " + text(at(x, "tunnel_name")) + " -> " +
             text(at(x, "target")) + (x.value("private", false) ? " (private)" : "") + " added\n";
    }
    case DpctlCommand::IngressDel: return "ingress rule " + text(at(r, "removed")) + " removed\n";
    case DpctlCommand::IngressList: {
      TextTable t({"HOSTNAME", "TUNNEL", "TARGET", "PRIVATE", "PROXY", "SOURCE"});
      for (const auto& x : at(r, "rules"))
        t.add({text(at(x, "hostname")), text(at(x, "tunnel_name")), text(at(x, "target")), text(at(x, "private")),
               text(at(x, "proxy_protocol")), text(at(x, "source"))});
      return t.str();
    }
    case DpctlCommand::RouteAdd: {
      const json& x = at(r, "route");
      return "route " + text(at(x, "from")) + " -> " + text(at(x, "tunnel_name")) + " -> " + text(at(x, "to")) +
             (x.value("private", false) ? " (private)" : "") + " added, allowed: " + join(at(x, "allow"), " ") + "\n";
    }
    case DpctlCommand::RouteDel: return "route " + text(at(r, "removed")) + " removed\n";
    case DpctlCommand::RouteList: {
      TextTable t({"FROM", "TUNNEL", "TO", "PRIVATE", "ALLOW", "SOURCE"});
      for (const auto& x : at(r, "routes"))
        t.add({text(at(x, "from")), text(at(x, "tunnel_name")), text(at(x, "to")), text(at(x, "private")),
               join(at(x, "allow"), " "), text(at(x, "source"))});
      return t.str();
    }
    case DpctlCommand::SessionList: {
      TextTable t({"INDEX", "TUNNEL", "ROLE", "AGENT", "WEIGHT", "LIVE", "CONTROL", "DATA_ENDPOINT", "NAT", "PATH", "FLOWS",
                   "AGE"});
      for (const auto& s : at(r, "sessions"))
        t.add({text(at(s, "index")), text(at(s, "tunnel_name")), text(at(s, "role")), text(at(s, "certificate")),
               text(at(s, "weight")), text(at(s, "live")),
               s.value("control_connected", false)
                   ? text(at(s, "control_peer")) + (s.value("control_transport", std::string("tcp")) == "quic" ? " (quic)" : "")
                   : s.value("handed_over", false) ? "handed over to dpgw (quic)"
                                                   : "closed",
               s.value("data_endpoint", std::string()).empty() ? "-" : text(at(s, "data_endpoint")),
               at(s, "nat").is_object() ? text(at(at(s, "nat"), "mapping")) : "-", path_column(at(s, "direct")),
               text(at(s, "flows")), text(at(s, "age_s")) + "s"});
      return t.str();
    }
    case DpctlCommand::Stats: {
      std::string out;
      out += "gateway:       " + std::string(r.value("gateway_connected", false) ? "connected" : "NOT connected") + "\n";
      if (at(r, "gateway_conflict").is_string() && !text(at(r, "gateway_conflict")).empty())
        out += "               this dpctld does not control it: " + text(at(r, "gateway_conflict")) + "\n";
      out += "sessions:      " + text(at(r, "sessions")) + " (" + text(at(r, "sessions_live")) + " live, " +
             text(at(r, "sessions_expired")) + " expired so far)\n";
      out += "registrations: " + text(at(r, "registrations_ok")) + " ok, " + text(at(r, "registrations_refused")) +
             " refused\n";
      if (r.value("gateway_refusals", uint64_t(0)))
        out += "gateway refused " + text(at(r, "gateway_refusals")) + " change(s); last: " +
               text(at(r, "last_gateway_refusal")) + "\n";
      out += "handshakes:    " + text(at(r, "handshakes_ok")) + " ok";
      for (const auto& [k, v] : at(r, "handshake_failures").items())
        if (v.is_number() && v.get<double>() > 0) out += ", " + text(v) + " " + k;
      if (r.contains("masque_refusals_by_reason")) {
        out += "\nudp routes:    " + text(at(r, "routes")) + "; CONNECT-UDP accepted " +
               text(r.value("masque_accepted", json(0))) + ", refused:";
        for (const auto& [k, v] : at(r, "masque_refusals_by_reason").items()) out += " " + k + " " + text(v);
      }
      if (r.contains("masque_tcp") && r["masque_tcp"].is_object()) {  // masque_tcp_listen (HTTP/2, HTTP/1.1)
        const json& t = r["masque_tcp"];
        out += "\nudp over tcp:  " + text(t.value("connections", json(0))) + " connection(s) (h2 " +
               text(t.value("h2", json(0))) + ", http/1.1 " + text(t.value("http/1.1", json(0))) +
               " so far); datagrams from clients " + text(t.value("datagrams_from_client", json(0))) + ", to dpgw " +
               text(t.value("datagrams_to_gateway", json(0))) + ", to clients " +
               text(t.value("datagrams_to_client", json(0))) + "; dropped:";
        if (t.contains("drops") && t.at("drops").is_object())
          for (const auto& [k, v] : t.at("drops").items()) out += " " + k + " " + text(v);
      }
      out += "\n\n" + tunnels_table(at(r, "tunnels"));
      return out;
    }
  }
  return r.dump(2) + "\n";
}

}  // namespace dptun
