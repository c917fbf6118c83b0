// `dpagent udp`: the options, then the UdpProxy on an event loop until SIGINT/SIGTERM (or a first request that fails
// for good: exit status 1 with what to change).
#include "agent/udp_command.hpp"

#include <cstdio>
#include <cstring>
#include <string>

#include "agent/process_signals.hpp"
#include "agent/udp_proxy.hpp"
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
    "(RFC 9298) over HTTP/3: each datagram travels whole in an HTTP Datagram (RFC 9297) in a QUIC DATAGRAM\n"
    "frame, never fragmented. The gateway must have a route udp+https://NAME:PORT (dpctl route add) that\n"
    "allows this certificate. HTTP/3 only for now: the HTTP/2 fallback (capsules over TCP/443, where UDP\n"
    "is blocked) is a later slice.\n"
    "\n"
    "  --via https://GATEWAY[:PORT]  the gateway's HTTP/3 address (dpctld's QUIC listener), a name or IPv4\n"
    "                        address resolved once at start; PORT default 443\n"
    "  --target NAME:PORT    the route's name (or IPv4 address) and port, as in udp+https://NAME:PORT\n"
    "  --listen IP:PORT      the local UDP address programs here send to (IPv4)\n"
    "  --cert FILE --key FILE  the client certificate and key (the route's allow list names its identities)\n"
    "  --ca FILE             the CA that signed the gateway's certificate\n"
    "  --server-name NAME    the name (or IP) the gateway's certificate must carry (default: GATEWAY)\n"
    "  --max-clients N       local source addresses served at once (default 64); each gets its own QUIC\n"
    "                        connection and request, so the gateway sees one flow per source; datagrams\n"
    "                        from more sources are dropped and counted (clients_full)\n"
    "  --idle-timeout S      a source silent both ways this long is forgotten and its connection closed\n"
    "                        (default 60)\n"
    "  --mtu N               path MTU to the gateway (default 1500): QUIC packets up to N - 28 bytes; a local\n"
    "                        datagram bigger than the room left is dropped and counted (too_large)\n"
    "  --log-level LEVEL     debug, info (default), warn, error\n"
    "  --log-format FORMAT   text (default) or json\n"
    "  --help                this text\n"
    "\n"
    "At start dpagent makes one connection and request before any local traffic and logs the answer. When\n"
    "that first request fails for a reason retrying cannot mend -- the gateway refuses it (404: no such\n"
    "route; 403: the route does not allow this certificate; 400: a target it cannot read), TLS fails (wrong\n"
    "--ca, a name the gateway's certificate lacks, a certificate the gateway refuses), or the gateway does\n"
    "not offer CONNECT-UDP over HTTP/3 -- dpagent exits with status 1 and says what to change. Otherwise\n"
    "(no answer, an unreachable gateway, 5xx) it logs and retries with backoff (0.5 s doubling to 30 s); so\n"
    "do later failures. Datagrams a source sends before its request is answered wait (at most 16; more are\n"
    "dropped and counted as held_full). Counters as a JSON line on SIGUSR1 and at exit.\n";

[[noreturn]] void fail(const std::string& what) {
  fprintf(stderr, "dpagent udp: %s\n", what.c_str());
  exit(2);
}

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
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      fputs(kUdpUsage, stdout);
      return 0;
    }
    if (i + 1 >= argc) fail("unknown or incomplete argument '" + a + "' (see dpagent udp --help)");
    const char* v = argv[++i];
    if (a == "--via") {
      if (!parse_via(v, opt)) fail("--via expects https://GATEWAY[:PORT] (a name or IPv4 address), got '" + std::string(v) + "'");
    } else if (a == "--target") {
      auto hp = parse_host_port(v);
      if (!hp) fail("--target expects NAME:PORT (a DNS name or IPv4 address, and a port), got '" + std::string(v) + "'");
      opt.target_host = hp->first;
      opt.target_port = hp->second;
    } else if (a == "--listen") {
      auto ep = Endpoint::parse(v);
      if (!ep) fail("--listen expects IPv4:PORT, got '" + std::string(v) + "'");
      opt.listen = *ep;
      have_listen = true;
    } else if (a == "--cert") {
      opt.cert = v;
    } else if (a == "--key") {
      opt.key = v;
    } else if (a == "--ca") {
      opt.ca = v;
    } else if (a == "--server-name") {
      opt.server_name = v;
    } else if (a == "--max-clients") {
      auto n = parse_uint(v, 4096);
      if (!n || *n == 0) fail("--max-clients expects 1..4096, got '" + std::string(v) + "'");
      opt.max_clients = unsigned(*n);
    } else if (a == "--idle-timeout") {
      char* end = nullptr;
      const double s = strtod(v, &end);
      if (!end || *end || !(s >= 1 && s <= 86400)) fail("--idle-timeout expects seconds between 1 and 86400");
      opt.idle_ns = uint64_t(s * 1e9);
    } else if (a == "--mtu") {
      auto n = parse_uint(v, 9000);
      if (!n || *n < 1228) fail("--mtu expects 1228..9000 (QUIC needs UDP payloads of 1200 bytes, RFC 9000 14)");
      opt.mtu = uint16_t(*n);
    } else if (a == "--log-level") {
      auto l = log_parse_level(v);
      if (!l) fail("--log-level expects debug, info, warn or error");
      log_set_level(*l);
    } else if (a == "--log-format") {
      auto f = log_parse_format(v);
      if (!f) fail("--log-format expects text or json");
      log_set_format(*f);
    } else {
      fail("unknown argument '" + a + "' (see dpagent udp --help)");
    }
  }
  if (opt.via_host.empty()) fail("--via https://GATEWAY[:PORT] is required (see dpagent udp --help)");
  if (opt.target_host.empty()) fail("--target NAME:PORT is required");
  if (!have_listen) fail("--listen IP:PORT is required");
  if (opt.cert.empty() || opt.key.empty() || opt.ca.empty()) fail("--cert, --key and --ca are required");

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
