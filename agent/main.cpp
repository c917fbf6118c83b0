// dpagent: the software agent. main parses options and wires the Agent; see docs/operations.md.
#include <sched.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "agent/agent.hpp"
#include "agent/control_client.hpp"
#include "agent/direct_paths.hpp"
#include "agent/endpoint_discovery.hpp"
#include "agent/process_signals.hpp"
#include "agent/udp_command.hpp"
#include "common/broken_pipes.hpp"
#include "common/clock.hpp"
#include "common/event_loop.hpp"
#include "common/hex.hpp"
#include "common/log.hpp"
#include "common/openssl_config.hpp"
#include "common/uuid.hpp"
#include "version.hpp"

using namespace dptun;

namespace {

const char* kUsage =
    "usage: dpagent --server HOST:PORT --cert FILE --key FILE --ca FILE --tunnel ID [options]\n"
    "       dpagent --gateway IP:PORT --session INDEX --psk-file FILE [options]\n"
    "       dpagent visit --server HOST:PORT --cert FILE --key FILE --ca FILE --tunnel UUID\n"
    "                     (--host NAME | --target IP:PORT) --local IP:PORT [options]\n"
    "       dpagent udp --via https://GATEWAY[:PORT] --target NAME:PORT --listen IP:PORT\n"
    "                   --cert FILE --key FILE --ca FILE [options]   (dpagent udp --help)\n"
    "\n"
    "Runs next to private services: exchanges encrypted relay frames (or QUIC DATAGRAM frames, --transport\n"
    "quic) with a dpgw gateway over UDP and delivers the tunnelled TCP/UDP flows to their targets through a TUN\n"
    "device. Needs CAP_NET_ADMIN.\n"
    "\n"
    "Registered with dpctld (sessions and keys come from the control plane):\n"
    "  --server HOST:PORT    dpctld's agent port (TLS 1.3), by name or IPv4 address (a name is resolved at\n"
    "                        every connection); it answers with the gateway to use\n"
    "  --cert FILE --key FILE  this agent's client certificate and key\n"
    "  --ca FILE             the CA that signed dpctld's certificate\n"
    "  --server-name NAME    the name (or IP) dpctld's certificate must carry (default: HOST)\n"
    "  --transport T         relay (default: TLS 1.3 over TCP to dpctld, relay frames to the gateway) or quic:\n"
    "                        the handshake and registration over QUIC v1 (UDP) to dpctld's agent_quic_listen,\n"
    "                        --server naming that port (ALPN dptun); dpctld then hands the connection to dpgw\n"
    "                        and the data goes on it as QUIC DATAGRAM frames (docs/protocol.md, \"QUIC framing\";\n"
    "                        a dpctld that does not hand it over gets relay frames). The data path then runs on\n"
    "                        the main thread (--threads 1); --mtu 1228 at least (QUIC's 1200-byte packets)\n"
    "  A registration that fails for good the first time -- dpctld refuses it, or TLS fails for a reason\n"
    "  retrying cannot mend (wrong --ca, a name dpctld's certificate lacks, a certificate dpctld refuses) --\n"
    "  ends dpagent with exit status 1 and says what to change; later failures are retried with backoff.\n"
    "  --tunnel ID           the tunnel (UUID or name) to serve\n"
    "  --weight N            1..255 (default 1); 255 = preferred: gets every new flow while it is live.\n"
    "                        The tunnel's weight policy may cap or fix it (dpctld says which weight it got)\n"
    "  --name NAME           how dpctld lists this agent\n"
    "Direct paths (registered agents and visitors; docs/nat-traversal.md):\n"
    "  --direct-port PORT    the UDP port of the socket kept for direct paths (default 0: the kernel picks);\n"
    "                        its endpoints (this host's addresses, and what STUN servers see of it, every 25 s)\n"
    "                        and the NAT's mapping behaviour are reported to dpctld\n"
    "  --stun IP:PORT        a STUN server to ask (repeat for more, at most 4; default: the gateway's STUN port\n"
    "                        and tunnel port). Two servers that see one mapping: an endpoint-independent NAT\n"
    "  --no-direct           no direct-path socket, STUN requests or report\n"
    "  Dpctld pairs visitors with agents; a visitor's flows that start while the pair's path is direct go\n"
    "  straight to the agent (the rest through the gateway). A visitor with direct paths runs one data-path\n"
    "  thread (with --threads 2 it has none); an agent's threads hand the pairs' packets to the main loop\n"
    "Visiting (dpagent visit): reach one of a tunnel's services from this host, private ones included:\n"
    "  --tunnel UUID         the tunnel's id (a visitor must hold it; any certificate of the CA will do)\n"
    "  --host NAME           the service's hostname (a hostname rule of that tunnel)\n"
    "  --target IP:PORT      or an address the tunnel's agents reach (needs the gateway's direct_mode)\n"
    "  --local IP:PORT       where programs here connect: an address in the TUN's subnet (default TUN dpv0,\n"
    "                        100.96.0.1/16)\n"
    "Static session (a key shared with the gateway's config):\n"
    "  --gateway IP:PORT     the gateway's tunnel address (dpgw: an underlay port address, tunnel_port)\n"
    "  --session INDEX       the session index in the gateway's config (1..32767)\n"
    "  --psk-file FILE       file holding the session's 32-byte key as 64 hex digits (same as the gateway's)\n"
    "Both:\n"
    "  --bind IP:PORT        local address/port of the UDP socket (default: chosen by the kernel)\n"
    "  --tun NAME            TUN interface name (default dpt0); agents on one host may share it\n"
    "  --tun-net CIDR        TUN address and subnet, a /16 or larger whose first address the TUN takes (default\n"
    "                        100.64.0.1/16; must not overlap your networks). Targets see flows coming from it\n"
    "                        (a visitor's on a direct path from 100.64.128.2 and up): the TUN's own address\n"
    "                        must be the first, or above the first 49154\n"
    "  --route NAME=IP[:PORT]  agent-side routing: connections for hostname NAME (exact, or *.domain) that the\n"
    "                        gateway routed by a rule without a target go to IP:PORT (IP alone: the port the\n"
    "                        client used); repeat for more names\n"
    "  --fallback IP[:PORT]  where such connections go when no --route names their host\n"
    "  --lan-nat             also reach targets elsewhere on this host's networks: enables IP forwarding and\n"
    "                        masquerades the TUN subnet with nftables (removed on exit)\n"
    "  --mtu N               underlay path MTU to the gateway (default 1500; the TUN gets N - 72)\n"
    "  --no-offload          no kernel offloads: by default the TUN passes TCP/UDP super-packets both ways\n"
    "                        (virtio-net headers: TSO/USO read and segmented here, segments coalesced into\n"
    "                        one write) and the socket to the gateway sends and receives frames in batches\n"
    "                        of one size (UDP_SEGMENT, UDP_GRO); each is probed at start and logged\n"
    "  --keepalive SECONDS   keepalive interval (default 2; dpctld's setting when registered); with QUIC\n"
    "                        framing a PING after that long without sending or receiving\n"
    "  --cipher NAME         aes-128-gcm (default) or aes-256-gcm, as the gateway (static session)\n"
    "  --aead ENGINE         who computes AES-GCM: ipsec-mb (Intel's library; needs AES-NI) or openssl;\n"
    "                        default: ipsec-mb where it runs, else openssl (the log says which)\n"
    "  --rekey-interval S    move to a fresh key at least this often (default 120, minimum 10)\n"
    "  --stats-interval S    print counters as a JSON line every S seconds (default: only on exit/SIGUSR1)\n"
    "  --threads N           data-path threads: 1 (both directions on the main event loop, beside the control\n"
    "                        connection) or 2 (gateway -> TUN and TUN -> gateway on a thread each); default:\n"
    "                        2 when this process may run on 4 CPUs or more (its CPU affinity), else 1 (logged);\n"
    "                        always 1 with --transport quic, and for a visitor with direct paths\n"
    "  --openssl-conf FILE   an OpenSSL configuration file to load at start (its providers, e.g. Intel's\n"
    "                        qatprovider; docs/operations.md); default: OpenSSL's own (OPENSSL_CONF)\n"
    "  --log-level LEVEL     debug, info (default), warn, error\n"
    "  --log-format FORMAT   text (default) or json (one object per line)\n"
    "  --version             the version\n"
    "  --help                this text\n";

[[noreturn]] void fail(const std::string& what) {
  fprintf(stderr, "dpagent: %s\n", what.c_str());
  exit(2);
}

double parse_seconds(const std::string& flag, const char* v, double min, double max) {
  char* end = nullptr;
  double d = strtod(v, &end);
  if (!end || *end || !(d >= min && d <= max))
    fail(flag + " expects a number of seconds between " + seconds_text(min) + " and " + seconds_text(max));
  return d;
}

}  // namespace

int main(int argc, char** argv) {
  ignore_broken_pipes();
  log_set_program("dpagent");
  // A client of a gateway's UDP route (MASQUE CONNECT-UDP), not an agent: its own options (agent/udp_command.cpp).
  if (argc > 1 && std::strcmp(argv[1], "udp") == 0) return dpagent_udp_main(argc - 1, argv + 1);
  AgentOptions opt;
  ControlOptions ctl;
  std::string psk_file, openssl_conf;
  bool have_gateway = false;
  std::optional<unsigned> threads;
  const bool visiting = argc > 1 && std::strcmp(argv[1], "visit") == 0;
  std::string visit_host;
  std::optional<Endpoint> visit_target, visit_local;
  bool direct = true;
  EndpointDiscovery::Options discovery_opt;
  bool direct_flags = false;  // --stun or --direct-port given
  if (visiting) {
    opt.tun_name = "dpv0";
    opt.tun_net = Ipv4Prefix{Ipv4{0x64600001}, 16};  // 100.96.0.1/16
    ctl.visitor = true;
  }
  for (int i = visiting ? 2 : 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      fputs(kUsage, stdout);
      return 0;
    }
    if (a == "--version") {
      printf("dpagent %s\n", DPTUN_VERSION);
      return 0;
    }
    if (a == "--lan-nat") {
      opt.lan_nat = true;
      continue;
    }
    if (a == "--no-offload") {
      opt.offloads = false;
      continue;
    }
    if (a == "--no-direct") {
      direct = false;
      continue;
    }
    if (i + 1 >= argc) fail("unknown or incomplete argument '" + a + "' (see --help)");
    const char* v = argv[++i];
    if (a == "--gateway") {
      auto ep = Endpoint::parse(v);
      if (!ep) fail("--gateway expects IP:PORT, got '" + std::string(v) + "'");
      opt.gateway = *ep;
      have_gateway = true;
    } else if (a == "--bind") {
      auto ep = Endpoint::parse(v);
      if (!ep) fail("--bind expects IP:PORT, got '" + std::string(v) + "'");
      opt.bind = *ep;
    } else if (a == "--stun") {
      auto ep = Endpoint::parse(v);
      if (!ep) fail("--stun expects IP:PORT (a STUN server's IPv4 address and port), got '" + std::string(v) + "'");
      if (discovery_opt.servers.size() == EndpointDiscovery::kMaxServers)
        fail("--stun: at most " + std::to_string(EndpointDiscovery::kMaxServers) + " servers");
      discovery_opt.servers.push_back(*ep);
      direct_flags = true;
    } else if (a == "--direct-port") {
      auto n = parse_uint(v, 65535);
      if (!n) fail("--direct-port expects 0..65535, got '" + std::string(v) + "'");
      discovery_opt.port = uint16_t(*n);
      direct_flags = true;
    } else if (a == "--session") {
      auto n = parse_uint(v, 32767);
      if (!n || *n == 0) fail("--session expects 1..32767, got '" + std::string(v) + "'");
      opt.session = uint32_t(*n);
    } else if (a == "--psk-file") {
      psk_file = v;
    } else if (a == "--server") {
      auto hp = parse_host_port(v);
      if (!hp) fail("--server expects HOST:PORT (a name or an IPv4 address, and a port), got '" + std::string(v) + "'");
      ctl.server_host = hp->first;
      ctl.server_port = hp->second;
    } else if (a == "--server-name") {
      ctl.server_name = v;
    } else if (a == "--transport") {
      if (v != std::string_view("relay") && v != std::string_view("quic"))
        fail("--transport expects relay or quic, got '" + std::string(v) + "'");
      ctl.quic = v == std::string_view("quic");
    } else if (a == "--cert") {
      ctl.cert = v;
    } else if (a == "--key") {
      ctl.key = v;
    } else if (a == "--ca") {
      ctl.ca = v;
    } else if (a == "--tunnel") {
      ctl.tunnel = v;
    } else if (a == "--name") {
      ctl.agent_name = v;
    } else if (a == "--weight") {
      auto n = parse_uint(v, 255);
      if (!n || *n == 0) fail("--weight expects 1..255, got '" + std::string(v) + "'");
      ctl.weight = uint8_t(*n);
    } else if (visiting && a == "--host") {
      visit_host = v;
    } else if (visiting && a == "--target") {
      visit_target = Endpoint::parse(v);
      if (!visit_target) fail("--target expects IP:PORT, got '" + std::string(v) + "'");
    } else if (visiting && a == "--local") {
      visit_local = Endpoint::parse(v);
      if (!visit_local) fail("--local expects IP:PORT, got '" + std::string(v) + "'");
    } else if (a == "--route") {
      std::string error;
      if (!opt.routes.add(v, error)) fail("--route " + error);
    } else if (a == "--fallback") {
      auto t = parse_local_target(v);
      if (!t) fail("--fallback expects IP[:PORT], got '" + std::string(v) + "'");
      opt.routes.set_fallback(*t);
    } else if (a == "--tun") {
      opt.tun_name = v;
    } else if (a == "--tun-net") {
      auto p = Ipv4Prefix::parse(v);
      if (!p || p->len < 8 || p->len > 16) fail("--tun-net expects an address/prefix between /8 and /16");
      opt.tun_net = *p;
    } else if (a == "--mtu") {
      auto n = parse_uint(v, 9000);
      if (!n || *n < 576 + kUnderlayOverhead) fail("--mtu expects " + std::to_string(576 + kUnderlayOverhead) + "..9000");
      opt.underlay_mtu = uint16_t(*n);
    } else if (a == "--keepalive") {
      opt.keepalive_ns = uint64_t(parse_seconds(a, v, 0.1, 3600) * 1e9);
    } else if (a == "--aead") {
      if (std::strcmp(v, "ipsec-mb") != 0 && std::strcmp(v, "openssl") != 0)
        fail("--aead expects ipsec-mb or openssl, got '" + std::string(v) + "'");
      opt.aead = v;
    } else if (a == "--cipher") {
      if (std::strcmp(v, "aes-128-gcm") == 0) opt.key_len = 16;
      else if (std::strcmp(v, "aes-256-gcm") == 0) opt.key_len = 32;
      else fail("--cipher expects aes-128-gcm or aes-256-gcm");
    } else if (a == "--rekey-interval") {
      opt.rekey_interval_ns = uint64_t(parse_seconds(a, v, 10, 86400) * 1e9);
    } else if (a == "--stats-interval") {
      opt.stats_interval_ns = uint64_t(parse_seconds(a, v, 0.1, 86400) * 1e9);
    } else if (a == "--threads") {
      auto n = parse_uint(v, 1000);
      if (!n || *n < 1 || *n > 2)
        fail("--threads expects 1 or 2 (data-path threads: one per direction at most), got '" + std::string(v) + "'");
      threads = unsigned(*n);
    } else if (a == "--openssl-conf") {
      openssl_conf = v;
    } else if (a == "--log-level") {
      auto l = log_parse_level(v);
      if (!l) fail("--log-level expects debug, info, warn or error");
      log_set_level(*l);
    } else if (a == "--log-format") {
      auto f = log_parse_format(v);
      if (!f) fail("--log-format expects text or json");
      log_set_format(*f);
    } else {
      fail("unknown argument '" + a + "' (see --help)");
    }
  }
  if (visiting) {
    if (ctl.server_host.empty() || have_gateway) fail("dpagent visit registers with dpctld: --server HOST:PORT (see --help)");
    if (visit_host.empty() == !visit_target) fail("dpagent visit needs exactly one of --host NAME and --target IP:PORT");
    if (!visit_local) fail("dpagent visit needs --local IP:PORT (an address in the TUN's subnet)");
    if (!opt.tun_net.contains(Ipv4{visit_local->ip.v4()}) || visit_local->ip == opt.tun_net.addr)
      fail("--local " + visit_local->str() + " must be in " + opt.tun_net.str() + " and not the TUN's own address");
    if (!Uuid::parse(ctl.tunnel)) fail("dpagent visit needs --tunnel UUID (a visitor names its tunnel by id)");
    if (visit_host.size() > 253) fail("--host: a hostname is at most 253 characters");
    opt.visit = AgentOptions::Visit{*visit_local, visit_host, visit_target};
    ctl.service = visit_host;  // (dpctld finds the rule a direct path's data goes by)
  }
  const bool registered = !ctl.server_host.empty();
  if (registered) {
    if (have_gateway || opt.session || !psk_file.empty())
      fail("--server (registration with dpctld) and --gateway/--session/--psk-file (a static session) exclude "
           "each other");
    if (ctl.cert.empty() || ctl.key.empty() || ctl.ca.empty())
      fail("--server needs --cert, --key and --ca (see --help)");
    if (ctl.tunnel.empty()) fail("--server needs --tunnel ID (see --help)");
    if (ctl.quic && opt.underlay_mtu < 1200 + 28)
      fail("--transport quic needs --mtu 1228 or more: QUIC needs UDP payloads of 1200 bytes (RFC 9000 section 14)");
    ctl.underlay_mtu = opt.underlay_mtu;
    if (!direct && direct_flags) fail("--no-direct excludes --stun and --direct-port");
    if (opt.bind && discovery_opt.port && discovery_opt.port == opt.bind->port)
      fail("--direct-port " + std::to_string(discovery_opt.port) + " is --bind's port: the direct-path socket is "
           "another one");
  } else {
    if (direct_flags) fail("--stun and --direct-port are for agents registered with dpctld (--server)");
    if (ctl.quic) fail("--transport quic is the connection to dpctld and dpgw: it needs --server HOST:PORT");
    if (!have_gateway) fail("--gateway IP:PORT (static session) or --server HOST:PORT (dpctld) is required (see --help)");
    if (!opt.session) fail("--session INDEX is required (see --help)");
    if (psk_file.empty()) fail("--psk-file FILE is required (see --help)");
    std::ifstream in(psk_file);
    if (!in) fail("cannot read " + psk_file + ": " + strerror(errno));
    std::string text;
    in >> text;
    auto key = hex_decode(text);
    if (!key || key->size() != 32) fail(psk_file + ": expected a 32-byte key as 64 hex digits");
    opt.psk = std::move(*key);
  }

  // OpenSSL's configuration (providers) before anything uses OpenSSL (it is read once per process); the options
  // above use none.
  if (!openssl_conf.empty()) {
    std::string error;
    if (!openssl_load_config(openssl_conf, error)) fail("--openssl-conf " + error);
  }
  const std::string from = openssl_conf.empty() ? "" : " (" + openssl_conf + ")";
  LOG_INFO("OpenSSL %s, providers: %s%s", OpenSSL_version(OPENSSL_VERSION_STRING), openssl_providers().c_str(),
           from.c_str());

  // Data-path threads: a second one pays off when it has a CPU of its own next to the first, the main thread (control
  // connection, timers) and the kernel's work for the traffic (the TUN's and the socket's: the targets' TCP receive
  // runs inside dpagent's TUN writes).
  cpu_set_t cpus;
  const int ncpus = sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
  if (ctl.quic) {
    // One thread owns the QUIC connection, and the data path uses it: the main loop runs both.
    if (threads && *threads != 1)
      fail("--transport quic runs the data path on the thread that owns the QUIC connection: --threads 1 only");
    opt.threads = 1;
    opt.quic_framing = true;
    LOG_INFO("1 data-path thread: --transport quic (the QUIC connection and the data path share the main loop)");
  } else if (opt.visit && registered && direct && !threads) {
    // A visitor picks the way of each flow on the main loop beside its direct paths (agent/visitor_flows.hpp).
    opt.threads = 1;
    LOG_INFO("1 data-path thread: a visitor's direct paths run on the main loop (--threads 2 for two, without them)");
  } else if (threads) {
    opt.threads = *threads;
    LOG_INFO("%u data-path thread%s (--threads; this process may run on %d CPU%s)", opt.threads,
             opt.threads == 1 ? "" : "s", ncpus, ncpus == 1 ? "" : "s");
  } else {
    opt.threads = ncpus >= 4 ? 2 : 1;
    LOG_INFO("%u data-path thread%s: this process may run on %d CPU%s (CPU affinity), %s", opt.threads,
             opt.threads == 1 ? "" : "s", ncpus, ncpus == 1 ? "" : "s",
             opt.threads == 1 ? "a second thread needs 4 or more (--threads 2 to have it anyway)"
                              : "4 or more: gateway -> TUN and TUN -> gateway on a thread each (--threads 1 for one)");
  }
  // Direct paths carry data on the main loop, beside the checks: an agent's data-path threads hand it the pairs'
  // packets; a visitor decides each flow's way there, so with a second thread it has none (nat-traversal.md).
  if (opt.visit && registered && direct && opt.threads > 1) {
    if (direct_flags) fail("--stun and --direct-port are for a visitor's direct paths, which need --threads 1");
    LOG_INFO("no direct paths: a visitor has them with one data-path thread (--threads 1)");
    direct = false;
  }
  ctl.pair_data = registered && direct;  // (dpctld gives a pair data only when both ends say so)
  opt.pair_data = ctl.pair_data;
  // The main thread's event loop: the control connection, the timers, SIGUSR1, and with one data-path thread the
  // data path too.
  EventLoop loop;
  std::string error;
  if (!loop.init(error)) {
    fprintf(stderr, "dpagent: %s\n", error.c_str());
    return 1;
  }
  Agent agent(loop, opt);
  // Direct paths (registered agents and visitors): the socket and its candidates, and the pairs dpctld makes.
  std::unique_ptr<EndpointDiscovery> discovery;
  std::unique_ptr<DirectPaths> paths;
  std::vector<std::string> path_reports;  // for dpctld, sent from the tick
  if (registered && direct) {
    if (opt.bind) discovery_opt.bind = Ipv4{opt.bind->ip.v4()};
    discovery = std::make_unique<EndpointDiscovery>(loop, discovery_opt);
    paths = std::make_unique<DirectPaths>(
        [&discovery](Endpoint to, std::span<const uint8_t> data) { return discovery->send_to(to, data); },
        [&path_reports](const PathReport& r) { path_reports.push_back(path_message(r)); });
    // The direct-path socket brings the peer's checks (STUN: the magic cookie at 4..7; dpctld never makes it a pair
    // id) and its pair frames (relay frames with the PAIR flag).
    discovery->on_peer_datagram([&paths, &agent](Endpoint from, std::span<const uint8_t> data, uint64_t now) {
      if (data.size() > 2 && data[0] == kRelayVersion && (data[2] & kFlagPair) && !stun_has_cookie(data))
        agent.pair_datagram(data, now);
      else
        paths->datagram(from, data, now);
    });
    discovery->on_peer_batch_end([&agent] { agent.pair_batch_end(); });
  }
  std::unique_ptr<ControlClient> control;
  bool refused = false;
  std::string fatal_reason;
  if (registered) {
    // The certificate files first: a mistake there is reported before anything (the TUN) is set up.
    control = std::make_unique<ControlClient>(
        loop, ctl,
        [&](SessionGrant g) {
          if (discovery) discovery->set_gateway(g.gateway, g.stun_port, monotonic_ns());
          if (paths) {  // a new session: dpctld pairs it afresh
            paths->clear();
            path_reports.clear();
            agent.pairs_clear();
          }
          agent.offer(std::move(g));
        },
        [&](const std::string& reason) {
          refused = true;
          fatal_reason = reason;
          ProcessSignals::stop_flag() = true;
        });
    control->on_withdraw([&agent] { agent.withdraw_quic(); });
    if (paths)
      control->on_message([&paths, &agent](const std::string& line, uint64_t now) {
        const ControllerMessage m = parse_controller_message(line);
        switch (m.kind) {
          case ControllerMessage::Kind::Peer:
            paths->offer(m.peer, now);
            agent.pair_offer(m.peer);
            break;
          case ControllerMessage::Kind::PeerGone:
            paths->gone(m.pair);
            agent.pair_gone(m.pair);
            break;
          case ControllerMessage::Kind::Invalid:
            LOG_WARN("dpctld: a direct-path message this dpagent cannot read: %s", m.error.c_str());
            break;
          case ControllerMessage::Kind::Other: break;
        }
      });
    if (!control->load(error)) {
      fprintf(stderr, "dpagent: %s\n", error.c_str());
      return 1;
    }
  }
  if (!agent.start(!registered, error) || (discovery && !discovery->open(error)) ||
      (control && !control->start(error))) {
    fprintf(stderr, "dpagent: %s\n", error.c_str());
    return 1;
  }
  if (paths)
    agent.enable_pairs([&discovery](Endpoint to, std::span<const uint8_t> f) { return discovery->queue_to(to, f); },
                       [&paths](uint32_t pair) { return paths->direct_remote(pair); },
                       [&discovery] { discovery->flush_queued(); });
  ProcessSignals signals;
  if (discovery)
    agent.show_direct_stats([&] {
      std::string j = discovery->stats_json();  // with the pairs beside the socket's counters
      j.insert(j.size() - 1, ",\"checks\":" + paths->stats_json());
      return j;
    });
  if (!signals.install(loop, [&] {
        printf("%s\n", agent.stats_json().c_str());
        fflush(stdout);
      })) {
    fprintf(stderr, "dpagent: signals: %s\n", strerror(errno));
    return 1;
  }
  std::pair<uint64_t, uint64_t> reported{0, 0};  // the registration and report generation dpctld has
  // A signal ends the wait at once; the timed work runs every 100 ms.
  loop.run(ProcessSignals::stop_flag(), 100, [&] {
    const uint64_t now = monotonic_ns();
    agent.tick(now);
    if (control) control->tick(now);
    if (discovery) {
      discovery->tick(now);
      paths->tick(now);
      for (const std::string& line : path_reports) control->send_message(line, now);  // lost with the connection
      path_reports.clear();
      // The report goes after each registration and whenever it changes, once a round has ended (not over a
      // handed-over QUIC connection).
      if (discovery->ready() &&
          (control->registrations() != reported.first || discovery->generation() != reported.second)) {
        if (control->send_message(candidates_message(discovery->report()), now))
          reported = {control->registrations(), discovery->generation()};
      }
    }
  });
  agent.stop();  // the data-path threads end first: the last counters are final
  printf("%s\n", agent.stats_json().c_str());
  if (refused) {
    fprintf(stderr, "dpagent: cannot register with dpctld %s:%u: %s\n", ctl.server_host.c_str(), unsigned(ctl.server_port),
            fatal_reason.c_str());
    return 1;
  }
  return 0;
}
