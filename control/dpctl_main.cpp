// dpctl: the operator's CLI for dpctld. Each command becomes one JSON request on dpctld's API socket; the
// reply prints as a table (or as JSON with --json). main only wires things: arguments in, request out.
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "common/unix_socket.hpp"
#include "control/dpctl_output.hpp"
#include "proto/control_names.hpp"
#include "version.hpp"

using namespace dptun;
using nlohmann::json;

namespace {

constexpr const char* kDefaultSocket = "/run/dptun/dpctld.sock";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// What one command line holds after the global options are taken out.
struct Args {
  std::vector<std::string> positional;
  std::vector<std::pair<std::string, std::string>> options;  // "--allow" -> value ("" for flags)
  bool has(const std::string& name) const {
    for (const auto& [k, v] : options)
      if (k == name) return true;
    return false;
  }
  std::string value(const std::string& name) const {
    for (const auto& [k, v] : options)
      if (k == name) return v;
    return {};
  }
  std::vector<std::string> values(const std::string& name) const {
    std::vector<std::string> out;
    for (const auto& [k, v] : options)
      if (k == name) out.push_back(v);
    return out;
  }
};

struct Command {
  DpctlCommand id;    // "tunnel.add": group "tunnel", verb "add" ("stats": a group without verbs)
  const char* synopsis;
  const char* help;
  std::vector<std::string> flags;          // options without a value
  std::vector<std::string> valued;         // options taking a value
  size_t min_args, max_args;               // positional arguments after the verb
  std::function<json(const Args&)> request;  // the request's members but "cmd"
  std::string_view group() const { return name_of(id).substr(0, name_of(id).find('.')); }
  std::string_view verb() const {
    const size_t dot = name_of(id).find('.');
    return dot == std::string_view::npos ? std::string_view() : name_of(id).substr(dot + 1);
  }
};

int port_number(const std::string& s) {
  char* end = nullptr;
  long v = strtol(s.c_str(), &end, 10);
  if (s.empty() || *end || v < 1 || v > 65535) throw UsageError("'" + s + "' is not a port (1..65535)");
  return int(v);
}

int weight_number(const char* option, const std::string& s) {
  char* end = nullptr;
  long v = strtol(s.c_str(), &end, 10);
  if (s.empty() || *end || v < 1 || v > 255) throw UsageError(std::string(option) + " '" + s + "' is not a weight (1..255)");
  return int(v);
}

std::string protocol(const std::string& s) {
  if (s != "tcp" && s != "udp") throw UsageError("'" + s + "' is not a protocol: tcp or udp");
  return s;
}

const std::vector<Command>& commands() {
  static const std::vector<Command> list = {
      {DpctlCommand::TunnelAdd,
       "dpctl tunnel add NAME --allow IDENTITY [--allow IDENTITY...] [--id UUID] [--weight N | --max-weight N]",
       "Adds a tunnel agents may register for and prints the dpagent command that registers one (and, when\n"
       "dpctld has agent_quic_listen, the one that registers over QUIC: dpagent --transport quic).\n"
       "  --allow IDENTITY  a certificate identity that may serve it: CN=<name>, DNS:<san>, URI:<san>, or '*'\n"
       "                    for any certificate the CA signed (repeat for several)\n"
       "  --id UUID         the tunnel id (generated when not given)\n"
       "  --weight N        every session of the tunnel gets weight N (1..255), whatever its agent asks for\n"
       "  --max-weight N    agents get the weight they ask for (dpagent --weight), at most N; without either\n"
       "                    option agents choose freely, and 255 (\"preferred\") is theirs to ask for\n",
       {}, {"--allow", "--id", "--weight", "--max-weight"}, 1, 1,
       [](const Args& a) {
         if (!a.has("--allow")) throw UsageError("--allow IDENTITY is required (CN=agent-name, DNS:..., or '*')");
         json j{{"name", a.positional[0]}, {"allow", a.values("--allow")}};
         if (a.has("--id")) j["id"] = a.value("--id");
         if (a.has("--weight")) j["weight"] = weight_number("--weight", a.value("--weight"));
         if (a.has("--max-weight")) j["max_weight"] = weight_number("--max-weight", a.value("--max-weight"));
         return j;
       }},
      {DpctlCommand::TunnelDel, "dpctl tunnel del TUNNEL [--force]",
       "Removes a tunnel (by name or id). While it has entry points, ingress rules or registered agents, dpctld\n"
       "refuses and says which; with --force they go with it (listed in the reply) and its agents are\n"
       "disconnected.\n"
       "  --force   remove the tunnel even though it is in use\n",
       {"--force"}, {}, 1, 1,
       [](const Args& a) {
         json j{{"tunnel", a.positional[0]}};
         if (a.has("--force")) j["force"] = true;
         return j;
       }},
      {DpctlCommand::TunnelList, "dpctl tunnel list", "Lists tunnels with their sessions, entry points and traffic.\n", {}, {},
       0, 0, [](const Args&) { return json::object(); }},
      {DpctlCommand::TunnelShow, "dpctl tunnel show TUNNEL",
       "Shows one tunnel (by name or id): allowed identities, sessions, entry points, ingress rules, traffic,\n"
       "and the dpagent command that registers an agent for it.\n",
       {}, {}, 1, 1, [](const Args& a) { return json{{"tunnel", a.positional[0]}}; }},
      {DpctlCommand::EntryAdd,
       "dpctl entry add tcp|udp PORT (TUNNEL TARGET | --route sni|http|quic) [--listen IP] [--ttl SECONDS] [--keepalive]",
       "Adds an entry point: clients reaching the gateway on PORT are carried through TUNNEL (name or id) to\n"
       "TARGET (ipv4:port, as the agent reaches it); or, with --route, to the tunnel and target of the hostname\n"
       "rule (dpctl ingress) the client's hostname matches.\n"
       "  --route sni     tcp: the server name of the TLS ClientHello (e.g. one :443 for many services)\n"
       "  --route http    tcp: the Host header of plain HTTP requests (e.g. one :80)\n"
       "  --route quic    udp: the server name in the QUIC Initial (HTTP/3 on :443)\n"
       "  --listen IP     only on this gateway address (default: all of the gateway's addresses)\n"
       "  --ttl SECONDS   UDP only: idle time before a flow ends (default 5)\n"
       "  --keepalive     UDP only: refresh the flow on traffic in both directions, not just from the client\n",
       {"--keepalive"}, {"--listen", "--ttl", "--route"}, 2, 4,
       [](const Args& a) {
         json j{{"proto", protocol(a.positional[0])}, {"port", port_number(a.positional[1])}};
         if (a.has("--route")) {
           if (a.positional.size() != 2) throw UsageError("with --route, give no TUNNEL or TARGET: the rules decide");
           j["route"] = a.value("--route");
         } else {
           if (a.positional.size() != 4) throw UsageError("give TUNNEL and TARGET, or --route sni|http|quic");
           j["tunnel"] = a.positional[2];
           j["target"] = a.positional[3];
         }
         if (a.has("--listen")) j["listen"] = a.value("--listen");
         if (a.has("--keepalive")) j["keepalive"] = true;
         if (a.has("--ttl")) {
           char* end = nullptr;
           std::string s = a.value("--ttl");
           double v = strtod(s.c_str(), &end);
           if (s.empty() || *end || !std::isfinite(v) || v <= 0)
             throw UsageError("--ttl '" + s + "' is not a number of seconds");
           j["ttl"] = v;
         }
         return j;
       }},
      {DpctlCommand::EntryDel, "dpctl entry del tcp|udp PORT", "Removes an entry point; its flows end.\n", {}, {}, 2, 2,
       [](const Args& a) {
         return json{{"proto", protocol(a.positional[0])}, {"port", port_number(a.positional[1])}};
       }},
      {DpctlCommand::EntryList, "dpctl entry list", "Lists entry points.\n", {}, {}, 0, 0,
       [](const Args&) { return json::object(); }},
      {DpctlCommand::IngressAdd, "dpctl ingress add HOSTNAME TUNNEL [--target IP[:PORT]] [--private] [--proxy-protocol]",
       "Adds a hostname rule for entry points routed by hostname (dpctl entry add ... --route): clients asking\n"
       "for HOSTNAME are carried through TUNNEL (name or id) to the target. HOSTNAME is example.org (exactly),\n"
       "*.example.com or .example.com (the same: the domain and every subdomain), or ~REGEX (the whole name\n"
       "must match, case-insensitive). The most specific rule wins: exact, then the longest wildcard, then the\n"
       "first pattern.\n"
       "  --target IP:PORT   where the agent sends the connections (as the agent reaches it); IP alone: to the\n"
       "                     port the client used (one rule for :80 and :443)\n"
       "  --private          never routed from public entry points (also: write the tunnel as $UUID)\n"
       "  --proxy-protocol   send the target a PROXY protocol v2 header with the client's address first\n",
       {"--private", "--proxy-protocol"}, {"--target"}, 2, 2,
       [](const Args& a) {
         std::string t = a.positional[1];
         if (a.has("--private") && (t.empty() || t[0] != '$')) t = "$" + t;
         json j{{"hostname", a.positional[0]}, {"tunnel", t}};
         if (a.has("--target")) j["target"] = a.value("--target");
         if (a.has("--proxy-protocol")) j["proxy_protocol"] = true;
         return j;
       }},
      {DpctlCommand::IngressDel, "dpctl ingress del HOSTNAME", "Removes a hostname rule.\n", {}, {}, 1, 1,
       [](const Args& a) { return json{{"hostname", a.positional[0]}}; }},
      {DpctlCommand::IngressList, "dpctl ingress list", "Lists hostname rules.\n", {}, {}, 0, 0,
       [](const Args&) { return json::object(); }},
      {DpctlCommand::RouteAdd,
       "dpctl route add udp+https://NAME:PORT --tunnel TUNNEL --to udp://HOST:PORT --allow IDENTITY [--allow ...] "
       "[--private]",
       "Adds a UDP route for clients that speak CONNECT-UDP (RFC 9298; docs/masque.md): a client asking for the\n"
       "target NAME:PORT gets its datagrams carried through TUNNEL (name or id) to HOST:PORT as the agent reaches\n"
       "it. NAME is the DNS name (or IPv4 address) clients name as their target; HOST a DNS name or an IPv4 address.\n"
       "The HTTP/3 front end that serves these requests is not built yet: routes are kept, listed and matched,\n"
       "and no client traffic flows yet (docs/masque.md, \"Plan\").\n"
       "  --tunnel TUNNEL     the tunnel whose agents reach HOST (also: $UUID for a private route)\n"
       "  --to udp://HOST:PORT  where the agent sends the datagrams\n"
       "  --allow IDENTITY    a client certificate identity the route allows: CN=<name>, DNS:<san>, URI:<san>, or\n"
       "                      '*' for any certificate the CA signed (repeat for several); others get 403\n"
       "  --private           never matched for requests through the public front end (they get 404, as for a\n"
       "                      target without a route)\n",
       {"--private"}, {"--tunnel", "--to", "--allow"}, 1, 1,
       [](const Args& a) {
         if (!a.has("--tunnel")) throw UsageError("--tunnel TUNNEL is required");
         if (!a.has("--to")) throw UsageError("--to udp://HOST:PORT is required");
         if (!a.has("--allow"))
           throw UsageError("--allow IDENTITY is required (CN=client-name, DNS:..., or '*')");
         std::string t = a.value("--tunnel");
         if (a.has("--private") && (t.empty() || t[0] != '$')) t = "$" + t;
         return json{{"from", a.positional[0]}, {"tunnel", t}, {"to", a.value("--to")}, {"allow", a.values("--allow")}};
       }},
      {DpctlCommand::RouteDel, "dpctl route del udp+https://NAME:PORT", "Removes a UDP route.\n", {}, {}, 1, 1,
       [](const Args& a) { return json{{"from", a.positional[0]}}; }},
      {DpctlCommand::RouteList, "dpctl route list", "Lists UDP routes (udp+https) with where they lead and whom they allow.\n",
       {}, {}, 0, 0, [](const Args&) { return json::object(); }},
      {DpctlCommand::SessionList, "dpctl session list",
       "Lists agent sessions: tunnel, certificate, weight, whether the gateway hears the agent (LIVE), its\n"
       "control connection and UDP endpoint, and the flows pinned to it.\n",
       {}, {}, 0, 0, [](const Args&) { return json::object(); }},
      {DpctlCommand::Stats, "dpctl stats",
       "Shows dpctld's counters: gateway link, sessions, registrations, TLS handshakes and failures by reason,\n"
       "UDP routes and CONNECT-UDP refusals by reason, and traffic per tunnel.\n",
       {}, {}, 0, 0, [](const Args&) { return json::object(); }},
  };
  return list;
}

std::string usage() {
  std::string u =
      "usage: dpctl [--socket PATH] [--json] COMMAND [ARGS]\n"
      "\n"
      "dpctl changes and inspects a running dpctld over its API socket. dpctld saves every change before it\n"
      "answers; tunnels and entry points also reach dpgw at once (refusals show in 'dpctl stats').\n"
      "\n"
      "commands:\n";
  for (const Command& c : commands()) u += "  " + std::string(c.synopsis).substr(6) + "\n";
  u += "\n"
       "options (anywhere on the line):\n"
       "  --socket PATH  dpctld's API socket (default $DPTUN_SOCKET, else " +
       std::string(kDefaultSocket) +
       ")\n"
       "  --json         print dpctld's reply as JSON, for scripts\n"
       "  --version      the version\n"
       "  --help         this text; 'dpctl COMMAND --help' explains one command\n"
       "\n"
       "Exit status: 0 on success, 1 when dpctld refuses or cannot be reached, 2 on a usage error.\n";
  return u;
}

std::string command_help(const Command& c) { return std::string("usage: ") + c.synopsis + "\n\n" + c.help; }

bool in(const std::vector<std::string>& v, const std::string& s) {
  for (const auto& x : v)
    if (x == s) return true;
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  std::string socket = getenv("DPTUN_SOCKET") ? getenv("DPTUN_SOCKET") : kDefaultSocket;
  bool as_json = false, help = false;
  std::vector<std::string> words;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--version") {
      printf("dpctl %s\n", DPTUN_VERSION);
      return 0;
    } else if (a == "--json") {
      as_json = true;
    } else if (a == "--help" || a == "-h" || (a == "help" && words.empty())) {
      help = true;
    } else if (a == "--socket") {
      if (i + 1 >= argc) {
        fprintf(stderr, "dpctl: --socket needs a path\n");
        return 2;
      }
      socket = argv[++i];
    } else if (a.rfind("--socket=", 0) == 0) {
      socket = a.substr(9);
    } else {
      words.push_back(a);
    }
  }
  if (words.empty()) {
    if (help) {
      fputs(usage().c_str(), stdout);
      return 0;
    }
    fprintf(stderr, "dpctl: no command given\n\n%s", usage().c_str());
    return 2;
  }
  // Find the command: "stats" stands alone, the rest are "GROUP VERB".
  const Command* cmd = nullptr;
  size_t used = 0;
  bool group_known = false;
  for (const Command& c : commands()) {
    if (words[0] != c.group()) continue;
    group_known = true;
    if (c.verb().empty()) {
      cmd = &c;
      used = 1;
    } else if (words.size() > 1 && words[1] == c.verb()) {
      cmd = &c;
      used = 2;
    }
  }
  if (!cmd) {
    if (!group_known) {
      fprintf(stderr, "dpctl: unknown command '%s'; see dpctl --help\n", words[0].c_str());
      return 2;
    }
    std::string verbs;
    for (const Command& c : commands())
      if (words[0] == c.group()) verbs += std::string(verbs.empty() ? "" : "|") + std::string(c.verb());
    if (help && words.size() == 1) {
      for (const Command& c : commands())
        if (words[0] == c.group()) printf("%s\n", command_help(c).c_str());
      return 0;
    }
    if (words.size() == 1)
      fprintf(stderr, "dpctl: '%s' needs a subcommand: %s\n", words[0].c_str(), verbs.c_str());
    else
      fprintf(stderr, "dpctl: unknown subcommand '%s %s': expected %s\n", words[0].c_str(), words[1].c_str(),
              verbs.c_str());
    return 2;
  }
  if (help) {
    fputs(command_help(*cmd).c_str(), stdout);
    return 0;
  }
  Args args;
  try {
    for (size_t i = used; i < words.size(); ++i) {
      const std::string& w = words[i];
      if (w.size() > 2 && w.rfind("--", 0) == 0) {
        std::string name = w, value;
        size_t eq = w.find('=');
        if (eq != std::string::npos) {
          name = w.substr(0, eq);
          value = w.substr(eq + 1);
        }
        if (in(cmd->flags, name)) {
          if (eq != std::string::npos) throw UsageError(name + " takes no value");
          args.options.push_back({name, ""});
        } else if (in(cmd->valued, name)) {
          if (eq == std::string::npos) {
            if (i + 1 >= words.size()) throw UsageError(name + " needs a value");
            value = words[++i];
          }
          args.options.push_back({name, value});
        } else {
          throw UsageError("unknown option '" + name + "'");
        }
      } else {
        args.positional.push_back(w);
      }
    }
    if (args.positional.size() < cmd->min_args) throw UsageError("missing arguments");
    if (args.positional.size() > cmd->max_args)
      throw UsageError("unexpected argument '" + args.positional[cmd->max_args] + "'");
    json request = cmd->request(args);
    request["cmd"] = name_of(cmd->id);
    std::string error;
    auto reply_text = unix_request(socket, request.dump(-1, ' ', false, json::error_handler_t::replace), error);
    if (!reply_text) {
      fprintf(stderr, "dpctl: %s (is dpctld running? --socket PATH or $DPTUN_SOCKET names its API socket)\n",
              error.c_str());
      return 1;
    }
    json reply = json::parse(*reply_text, nullptr, false);
    if (reply.is_discarded() || !reply.is_object()) {
      fprintf(stderr, "dpctl: %s: not a dpctld reply\n", socket.c_str());
      return 1;
    }
    if (!reply.value("ok", false)) {
      if (as_json) fputs((reply.dump(-1, ' ', false, json::error_handler_t::replace) + "\n").c_str(), stdout);
      fprintf(stderr, "dpctl: %s\n", reply.value("error", std::string("request refused")).c_str());
      return 1;
    }
    reply.erase("ok");
    const std::string out =
        as_json ? reply.dump(2, ' ', false, json::error_handler_t::replace) + "\n" : render_reply(cmd->id, reply);
    fputs(out.c_str(), stdout);
    return 0;
  } catch (const UsageError& e) {
    fprintf(stderr, "dpctl: %s\nusage: %s\n", e.what(), cmd->synopsis);
    return 2;
  } catch (const std::exception& e) {  // a reply this dpctl cannot read (another version?)
    fprintf(stderr, "dpctl: unexpected reply from %s: %s\n", socket.c_str(), e.what());
    return 1;
  }
}
