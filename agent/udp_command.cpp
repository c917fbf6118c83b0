// `dpagent udp`: the options, then the UdpProxy on an event loop until SIGINT/SIGTERM (or a first request that fails
// for good: exit status 1 with what to change).
#include "agent/udp_command.hpp"

#include <cstdio>
#include <cstring>
#include <string>

#include "agent/process_signals.hpp"
#include "agent/udp_proxy.hpp"
#include "common/cli.hpp"
#include "common/clock.hpp"
#include "common/event_loop.hpp"
#include "common/inet.hpp"
#include "common/log.hpp"

namespace dptun {

namespace {

const char* kUdpUsage =
    "usage: dpagent udp --via https://GATEWAY[:PORT] --target NAME:PORT --listen IP:PORT\n"
    "                   --cert FILE --key FILE --ca FILE [options]\n"
    "\n"
    "A local UDP socket whose datagrams reach a UDP service behind the gateway through MASQUE CONNECT-UDP\n"
    "(RFC 9298): over HTTP/3, each datagram travels whole in an HTTP Datagram (RFC 9297) in a QUIC DATAGRAM\n"
    "frame, never fragmented; over HTTP/2 (the fallback where UDP to the gateway is blocked), in a DATAGRAM\n"
    "capsule on the request stream, over TLS on TCP to the same host and port. The gateway must have a route\n"
    "udp+https://NAME:PORT (dpctl route add) that allows this certificate.\n"
    "\n"
    "  --via https://GATEWAY[:PORT]  the gateway's address (dpctld's QUIC listener for HTTP/3, its TCP listener\n"
    "                        masque_tcp_listen for HTTP/2), a name or IPv4 address resolved once at start;\n"
    "                        PORT default 443\n"
    "  --target NAME:PORT    the route's name (or IPv4 address) and port, as in udp+https://NAME:PORT\n"
    "  --listen IP:PORT      the local UDP address programs here send to (IPv4)\n"
    "  --cert FILE --key FILE  the client certificate and key (the route's allow list names its identities)\n"
    "  --ca FILE             the CA that signed the gateway's certificate\n"
    "  --server-name NAME    the name (or IP) the gateway's certificate must carry (default: GATEWAY)\n"
    "  --http auto|3|2       auto (default): HTTP/3 first; when the gateway's UDP port gives no answer within\n"
    "                        3 s (or ICMP says it is closed), HTTP/2 over TCP from then on (logged once:\n"
    "                        \"gateway unreachable over HTTP/3 (UDP): using HTTP/2 over TCP\"; HTTP/3 again\n"
    "                        only if TCP fails too); a refusal over HTTP/3 is an answer, not a reason to\n"
    "                        fall back. 3: HTTP/3 only. 2: HTTP/2 over TCP only\n"
    "  --max-clients N       local source addresses served at once (default 64); each gets its own\n"
    "                        connection and request (QUIC or TCP), so the gateway sees one flow per source;\n"
    "                        datagrams from more sources are dropped and counted (clients_full)\n"
    "  --idle-timeout S      a source silent both ways this long is forgotten and its connection closed\n"
    "                        (default 60)\n"
    "  --mtu N               path MTU to the gateway (default 1500): QUIC packets up to N - 28 bytes; a local\n"
    "                        datagram bigger than the room left is dropped and counted (too_large); over\n"
    "                        HTTP/2 datagrams up to 65507 bytes go in capsules\n"
    "  --log-level LEVEL     debug, info (default), warn, error\n"
    "  --log-format FORMAT   text (default) or json\n"
    "  --help                this text\n"
    "\n"
    "At start dpagent makes one connection and request before any local traffic and logs the answer. When\n"
    "that first request fails for a reason retrying cannot mend -- the gateway refuses it (404: no such\n"
    "route; 403: the route does not allow this certificate; 400: a target it cannot read), TLS fails (wrong\n"
    "--ca, a name the gateway's certificate lacks, a certificate the gateway refuses), or the gateway does\n"
    "not offer CONNECT-UDP over that HTTP version -- dpagent exits with status 1 and says what to change.\n"
    "Otherwise (no answer, an unreachable gateway, 5xx) it logs and retries with backoff (0.5 s doubling to\n"
    "30 s); so do later failures. Datagrams a source sends before its request is answered wait (at most 16;\n"
    "more are dropped and counted as held_full); over HTTP/3 at most 128 wait for QUIC's pacing and congestion\n"
    "window, over HTTP/2 at most 256 KiB of capsules for the TCP connection; more are dropped and counted\n"
    "(congested). Counters as a JSON line on SIGUSR1 and at exit,\n"
    "with the connections each HTTP version made (connections_h3, connections_h2) and has open.\n";

// https://HOST[:PORT][/]: host and port, and HOST[:PORT] as written for :authority.
bool parse_via(std::string_view v, UdpProxyOptions& opt) {
  constexpr std::string_view kScheme = "https://";
  if (v.substr(0, kScheme.size()) != kScheme) return false;
  v.remove_prefix(kScheme.size());
  if (!v.empty() && v.back() == '/') v.remove_suffix(1);
  if (v.empty() || v.find('/') != std::string_view::npos) return false;
  const bool has_port = v.find(':') != std::string_view::npos;
  auto hp = parse_host_port(has_port ? std::string(v) : std::string(v) + ":443");
  if (!hp) return false;
  opt.via_host = hp->first;
  opt.via_port = hp->second;
  opt.authority = std::string(v);
  return true;
}

}  // namespace

int dpagent_udp_main(int argc, char** argv) {
  UdpProxyOptions opt;
  bool have_listen = false;
  Cli cli("dpagent udp", kUdpUsage);
  auto bad = [&](const std::string& what) -> std::optional<int> { return cli.value_error(what); };
  cli.help();
  cli.option("via", true, [&](const char* v) -> std::optional<int> {
    if (!parse_via(v, opt)) return bad("--via expects https://GATEWAY[:PORT] (a name or IPv4 address), got '" + std::string(v) + "'");
    return std::nullopt;
  });
  cli.option("target", true, [&](const char* v) -> std::optional<int> {
    auto hp = parse_host_port(v);
    if (!hp) return bad("--target expects NAME:PORT (a DNS name or IPv4 address, and a port), got '" + std::string(v) + "'");
    opt.target_host = hp->first;
    opt.target_port = hp->second;
    return std::nullopt;
  });
  cli.option("listen", true, [&](const char* v) -> std::optional<int> {
    auto ep = Endpoint::parse(v);
    if (!ep) return bad("--listen expects IPv4:PORT, got '" + std::string(v) + "'");
    opt.listen = *ep;
    have_listen = true;
    return std::nullopt;
  });
  cli.value("cert", opt.cert).value("key", opt.key).value("ca", opt.ca).value("server-name", opt.server_name);
  cli.option("http", true, [&](const char* v) -> std::optional<int> {
    const std::string h = v;
    if (h == "auto") opt.http = UdpHttp::Auto;
    else if (h == "3") opt.http = UdpHttp::H3;
    else if (h == "2") opt.http = UdpHttp::H2;
    else return bad("--http expects auto, 3 or 2, got '" + h + "'");
    return std::nullopt;
  });
  cli.option("max-clients", true, [&](const char* v) -> std::optional<int> {
    auto n = parse_uint(v, 4096);
    if (!n || *n == 0) return bad("--max-clients expects 1..4096, got '" + std::string(v) + "'");
    opt.max_clients = unsigned(*n);
    return std::nullopt;
  });
  cli.option("idle-timeout", true, [&](const char* v) -> std::optional<int> {
    char* end = nullptr;
    const double sec = strtod(v, &end);
    if (!end || *end || !(sec >= 1 && sec <= 86400)) return bad("--idle-timeout expects seconds between 1 and 86400");
    opt.idle_ns = uint64_t(sec * 1e9);
    return std::nullopt;
  });
  cli.option("mtu", true, [&](const char* v) -> std::optional<int> {
    auto n = parse_uint(v, 9000);
    if (!n || *n < 1228) return bad("--mtu expects 1228..9000 (QUIC needs UDP payloads of 1200 bytes, RFC 9000 14)");
    opt.mtu = uint16_t(*n);
    return std::nullopt;
  });
  cli.option("log-level", true, [&](const char* v) -> std::optional<int> {
    auto l = log_parse_level(v);
    if (!l) return bad("--log-level expects debug, info, warn or error");
    log_set_level(*l);
    return std::nullopt;
  });
  cli.option("log-format", true, [&](const char* v) -> std::optional<int> {
    auto f = log_parse_format(v);
    if (!f) return bad("--log-format expects text or json");
    log_set_format(*f);
    return std::nullopt;
  });
  if (std::optional<int> done = cli.parse(argc, argv)) return *done;
  if (opt.via_host.empty()) return cli.usage_error("--via https://GATEWAY[:PORT] is required");
  if (opt.target_host.empty()) return cli.usage_error("--target NAME:PORT is required");
  if (!have_listen) return cli.usage_error("--listen IP:PORT is required");
  if (opt.cert.empty() || opt.key.empty() || opt.ca.empty()) return cli.usage_error("--cert, --key and --ca are required");

  EventLoop loop;
  std::string error;
  if (!loop.init(error)) {
    fprintf(stderr, "dpagent: %s\n", error.c_str());
    return 1;
  }
  std::string fatal;
  UdpProxy proxy(loop, opt, [&](const std::string& what) {
    fatal = what;
    ProcessSignals::stop_flag() = true;
  });
  if (!proxy.load(error) || !proxy.start(error)) {
    fprintf(stderr, "dpagent: %s\n", error.c_str());
    return 1;
  }
  ProcessSignals signals;
  if (!signals.install(loop, [&] {
        printf("%s\n", proxy.stats_json().c_str());
        fflush(stdout);
      })) {
    fprintf(stderr, "dpagent: signals: %s\n", strerror(errno));
    return 1;
  }
  loop.run(ProcessSignals::stop_flag(), 100, [&] { proxy.tick(monotonic_ns()); });
  printf("%s\n", proxy.stats_json().c_str());
  fflush(stdout);
  if (!fatal.empty()) {
    fprintf(stderr, "dpagent: %s\n", fatal.c_str());
    return 1;
  }
  return 0;
}

}  // namespace dptun
