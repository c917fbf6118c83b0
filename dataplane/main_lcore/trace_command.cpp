// `dpgw trace` on the main lcore: the control socket's "trace" request (arm, poll, stop, with ports, tunnels, stages
// and drop reasons named) and the client that asks for it and prints the packets (trace_command.hpp).
#include "dataplane/main_lcore/trace_command.hpp"

#include <signal.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <optional>

#include <nlohmann/json.hpp>

#include "common/cli.hpp"
#include "common/config_file.hpp"
#include "common/inet.hpp"
#include "common/json_fields.hpp"
#include "common/log.hpp"
#include "common/unix_socket.hpp"
#include "dataplane/main_lcore/gateway_config.hpp"
#include "dataplane/tables/counters.hpp"
#include "dataplane/tables/dataplane.hpp"
#include "packet/icmp_error.hpp"
#include "proto/gateway_messages.hpp"

namespace dptun {

using nlohmann::json;

namespace {

const char* const kClassNames[] = {"entry_point", "tunnel_frame", "local",     "fragment",
                                   "no_entry_point", "edge_frame", "edge_reply", "stun", "pair_frame"};
static_assert(sizeof kClassNames / sizeof kClassNames[0] == size_t(TraceClass::Count));
const char* const kAnswerNames[] = {"echo_reply", "rst", "port_unreachable", "frag_needed", "keepalive_reply", "stun_response"};
static_assert(sizeof kAnswerNames / sizeof kAnswerNames[0] == size_t(TraceAnswer::Count));
const char* const kBindingNames[] = {"none", "wait_hello", "wait_server", "spliced", "refused"};
const char* const kHandoffNames[] = {"?", "raw_frame", "inner_packet", "transmit", "reassembled", "quic_slow_path", "quic_send"};

template <size_t N>
const char* name_of(const char* const (&names)[N], unsigned i) {
  return i < N ? names[i] : "?";
}

const char* proto_name(uint8_t p) {
  switch (p) {
    case kIpProtoTcp: return "tcp";
    case kIpProtoUdp: return "udp";
    case kIpProtoIcmp: return "icmp";
    default: return nullptr;
  }
}

std::string tcp_flags_text(uint8_t f) {
  std::string s;
  if (f & kTcpSyn) s += 'S';
  if (f & kTcpAck) s += '.';
  if (f & kTcpFin) s += 'F';
  if (f & kTcpRst) s += 'R';
  if (f & kTcpPsh) s += 'P';
  return s;
}

std::string addr(uint32_t ip, uint16_t port) {
  return port ? Endpoint{Ipv4{ip}, port}.str() : Ipv4{ip}.str();
}

std::string hex_id(uint64_t v) {
  char b[24];
  snprintf(b, sizeof b, "0x%016" PRIx64, v);
  return b;
}

}  // namespace

// ---- the control socket's request

namespace {

std::string port_name(const Dataplane& dp, uint8_t p) { return p < dp.ports.size() ? dp.ports[p].name : "?"; }

std::string tunnel_name(const Dataplane& dp, uint16_t slot) {
  const TunnelPool* t = dp.tunnels.get(slot);
  return t ? t->name : "slot " + std::to_string(slot);
}

json step_json(const Dataplane& dp, const TraceRecord& r, uint64_t t0) {
  json j{{"us", std::round(double(r.ns - t0) / 100.0) / 10.0},
         {"worker", r.worker},
         {"stage", trace_stage_name(TraceStage(r.stage))}};
  if (r.port != 0xff) j["port"] = port_name(dp, r.port);
  switch (TraceStage(r.stage)) {
    case TraceStage::Rx:
      j["len"] = r.len;
      if (r.code == uint8_t(L3Kind::Ipv4) || r.code == uint8_t(L3Kind::Arp)) {
        j["src"] = addr(r.src_ip, r.src_port);
        j["dst"] = addr(r.dst_ip, r.dst_port);
        if (r.code == uint8_t(L3Kind::Arp)) j["proto"] = "arp";
        else if (const char* p = proto_name(r.proto)) j["proto"] = p;
        else j["proto"] = r.proto;
        if (r.proto == kIpProtoTcp) j["tcp_flags"] = tcp_flags_text(r.flags);
        if (r.proto == kIpProtoIcmp) j["icmp"] = std::to_string(r.aux >> 8) + "/" + std::to_string(r.aux & 0xff);
      } else {
        j["l3"] = r.code == uint8_t(L3Kind::Ipv6) ? "ipv6" : r.code == 0xff ? "unparsed" : "other";
      }
      break;
    case TraceStage::Classify:
      j["result"] = name_of(kClassNames, r.code);
      if (r.code == uint8_t(TraceClass::EntryPoint)) {
        j["entry_point"] = std::string(r.proto == kIpProtoTcp ? "tcp/" : "udp/") + std::to_string(r.dst_port);
        j["tunnel"] = tunnel_name(dp, r.tunnel);
      }
      break;
    case TraceStage::HandoffOut:
      j["to_worker"] = r.aux;
      j["handoff"] = name_of(kHandoffNames, r.code);
      break;
    case TraceStage::HandoffIn:
      j["handoff"] = name_of(kHandoffNames, r.code);
      break;
    case TraceStage::Flow:
      j["flow_id"] = hex_id(r.flow_id);
      j["new"] = bool(r.flags & 1);
      if (r.flags & 2) j["repinned"] = true;
      j["tunnel"] = tunnel_name(dp, r.tunnel);
      j["session"] = r.session;
      break;
    case TraceStage::Nat:
      j["target"] = addr(r.dst_ip, r.dst_port);
      break;
    case TraceStage::Encap:
      j["session"] = r.session;
      j["agent"] = addr(r.dst_ip, r.dst_port);
      j["len"] = r.len;
      if (r.code == 1) j["fragments"] = true;
      break;
    case TraceStage::Decap:
      j["session"] = r.session;
      j["frame"] = r.code == 1 ? "data" : r.code == 2 ? "keepalive" : "control";
      if (r.code == 1) {
        j["flow_id"] = hex_id(r.flow_id);
        j["len"] = r.len;
      }
      break;
    case TraceStage::Deliver:
      j["flow_id"] = hex_id(r.flow_id);
      j["client"] = addr(r.dst_ip, r.dst_port);
      j["from"] = addr(r.src_ip, r.src_port);
      break;
    case TraceStage::IcmpError:
      j["reason"] = icmp_error_reason_name(IcmpErrorReason(r.code));
      j["target"] = addr(r.dst_ip, r.dst_port);
      j["flow_id"] = hex_id(r.flow_id);
      break;
    case TraceStage::Answer:
      j["answer"] = name_of(kAnswerNames, r.code);
      break;
    case TraceStage::Hostname:
      j["binding"] = name_of(kBindingNames, r.code);
      break;
    case TraceStage::Held:
      j["what"] = "fragment";
      break;
    case TraceStage::Consumed:
      j["what"] = "keepalive_answer";
      break;
    case TraceStage::Tx:
      j["len"] = r.len;
      break;
    case TraceStage::Drop:
      j["reason"] = drop_reason_name(Drop(r.code));
      break;
    default:
      break;
  }
  return j;
}

json trace_result(const Dataplane& dp, Tracer& t, uint32_t gen, const std::vector<TraceRecord>& recs, uint64_t lost,
                  uint64_t now_ns) {
  json packets = json::array();
  for (size_t i = 0; i < recs.size();) {
    size_t k = i;
    json steps = json::array();
    bool complete = false;
    while (k < recs.size() && recs[k].packet == recs[i].packet) {
      steps.push_back(step_json(dp, recs[k], recs[i].ns));
      complete = complete || trace_stage_final(TraceStage(recs[k].stage), recs[k].code);
      ++k;
    }
    packets.push_back({{"packet", recs[i].packet}, {"complete", complete}, {"steps", std::move(steps)}});
    i = k;
  }
  return trace_message(TraceOp::Stop, {{"generation", gen},
                                       {"requested", t.requested()},
                                       {"taken", t.taken()},
                                       {"timed_out", t.taken() < t.requested() && now_ns >= t.deadline_ns()},
                                       {"lost_records", lost},
                                       {"packets", std::move(packets)}});
}

}  // namespace

json trace_request(Dataplane& dp, const json& req, uint64_t now_ns) {
  if (!dp.tracer) throw FieldError("this dpgw has no packet trace");
  Tracer& t = *dp.tracer;
  const std::optional<TraceOp> op = parse_name<TraceOp>(string_field(req, "op"));
  if (!op) throw FieldError("'op' must be \"start\", \"poll\" or \"stop\"");
  if (*op == TraceOp::Start) {
    const auto packets = uint32_t(int_field(req, "packets", 1, Tracer::kMaxPackets));
    const double timeout = number_field(req, "timeout", 0.1, 3600, 10.0);
    const std::string text = string_field(req, "filter", std::string());
    std::vector<std::string> names;
    for (const PortInfo& p : dp.ports) names.push_back(p.name);
    TraceFilter f;
    std::string error;
    if (!parse_trace_filter(text, names, f, error)) throw FieldError("filter: " + error);
    const uint32_t gen = t.arm(packets, f, now_ns, now_ns + uint64_t(timeout * 1e9));
    LOG_INFO("trace %u: the next %u packets%s%s, for at most %.1f s", gen, packets, text.empty() ? "" : " matching ",
             text.c_str(), timeout);
    return trace_message(TraceOp::Start, {{"generation", gen}, {"packets", packets}, {"timeout_s", timeout}});
  }
  const auto gen = uint32_t(int_field(req, "generation", 1, UINT32_MAX));
  if (gen != t.generation())
    throw FieldError("trace " + std::to_string(gen) + " is gone (another `dpgw trace` replaced it)");
  uint64_t lost = 0;
  std::vector<TraceRecord> recs = t.collect(gen, lost);
  if (*op == TraceOp::Poll) {
    const bool done = t.done(gen, recs, now_ns);
    return trace_message(TraceOp::Poll, {{"generation", gen}, {"requested", t.requested()}, {"taken", t.taken()},
                                         {"records", recs.size()}, {"done", done}});
  }
  t.disarm();
  return trace_result(dp, t, gen, recs, lost, now_ns);
}

// ---- the client: dpgw trace

std::string trace_text(const json& result) {
  std::string out;
  char line[512];
  const auto str = [](const json& j, const char* k) { return j.contains(k) ? j[k].get<std::string>() : std::string(); };
  const auto num = [](const json& j, const char* k) { return j.contains(k) ? j[k].get<uint64_t>() : uint64_t(0); };
  const json& packets = result.at("packets");
  snprintf(line, sizeof line, "%zu packet%s traced (of %" PRIu64 " asked for)%s%s\n", packets.size(),
           packets.size() == 1 ? "" : "s", num(result, "requested"),
           result.value("timed_out", false) ? "; the trace timed out waiting for more" : "",
           num(result, "lost_records") ? "; some steps did not fit a worker's buffer" : "");
  out += line;
  for (const json& p : packets) {
    snprintf(line, sizeof line, "\npacket %" PRIu64 "%s\n", num(p, "packet"),
             p.value("complete", false) ? "" : " (no final step recorded: still in flight, or consumed)");
    out += line;
    for (const json& s : p.at("steps")) {
      const std::string stage = str(s, "stage");
      std::string d;
      const auto add = [&](const std::string& text) {
        if (text.empty()) return;
        if (!d.empty()) d += ", ";
        d += text;
      };
      if (stage == "rx") {
        add(str(s, "port"));
        add(std::to_string(num(s, "len")) + " bytes");
        if (s.contains("src")) {
          std::string a = str(s, "src") + " -> " + str(s, "dst");
          a += " " + (s["proto"].is_string() ? str(s, "proto") : "proto " + std::to_string(num(s, "proto")));
          if (s.contains("tcp_flags")) a += " [" + str(s, "tcp_flags") + "]";
          if (s.contains("icmp")) a += " type/code " + str(s, "icmp");
          add(a);
        } else {
          add(str(s, "l3"));
        }
      } else if (stage == "classify") {
        add(str(s, "result"));
        if (s.contains("entry_point")) add(str(s, "entry_point") + " of tunnel " + str(s, "tunnel"));
      } else if (stage == "handoff_out") {
        add("to worker " + std::to_string(num(s, "to_worker")) + " (" + str(s, "handoff") + ")");
      } else if (stage == "handoff_in") {
        add(str(s, "handoff"));
      } else if (stage == "flow") {
        add(std::string(s.value("new", false) ? "new flow " : "flow ") + str(s, "flow_id"));
        add("tunnel " + str(s, "tunnel"));
        add("session " + std::to_string(num(s, "session")));
        if (s.value("repinned", false)) add("re-pinned");
      } else if (stage == "nat") {
        add("to target " + str(s, "target"));
      } else if (stage == "encap") {
        add("session " + std::to_string(num(s, "session")) + " to agent " + str(s, "agent"));
        add(std::to_string(num(s, "len")) + " bytes" + (s.value("fragments", false) ? " as inner fragments" : ""));
      } else if (stage == "decap") {
        add("session " + std::to_string(num(s, "session")));
        add(str(s, "frame") + " frame");
        if (s.contains("flow_id")) add("flow " + str(s, "flow_id"));
      } else if (stage == "deliver") {
        add("flow " + str(s, "flow_id") + " to client " + str(s, "client") + " from " + str(s, "from"));
      } else if (stage == "icmp_error") {
        add(str(s, "reason") + " about target " + str(s, "target") + " (flow " + str(s, "flow_id") + ")");
      } else if (stage == "answer") {
        add(str(s, "answer"));
      } else if (stage == "hostname") {
        add("delayed binding: " + str(s, "binding"));
      } else if (stage == "held" || stage == "consumed") {
        add(str(s, "what"));
      } else if (stage == "tx" || stage == "to_kernel") {
        add(str(s, "port"));
        if (s.contains("len")) add(std::to_string(num(s, "len")) + " bytes");
      } else if (stage == "drop") {
        add(str(s, "reason"));
      } else if (s.contains("port")) {
        add(str(s, "port"));
      }
      snprintf(line, sizeof line, "  %10.1f us  worker %-2" PRIu64 " %-12s %s\n", s.value("us", 0.0), num(s, "worker"),
               stage.c_str(), d.c_str());
      out += line;
    }
  }
  return out;
}

namespace {

volatile sig_atomic_t g_trace_interrupted = 0;
void on_trace_signal(int) { g_trace_interrupted = 1; }

const char* kTraceUsage =
    "usage: dpgw trace N [--config FILE | --socket PATH] [--filter EXPR] [--timeout S] [--json]\n"
    "  follows the next N packets (1..1000) a running dpgw receives through its pipeline and prints every step:\n"
    "  RX port and worker, classify result, entry point, flow and session, NAT, encap/decap, handoffs, answers,\n"
    "  and the TX port or the drop reason (docs/operations.md \"Packet trace\").\n"
    "  --config FILE    the control socket dpgw.control_socket names in this config\n"
    "  --socket PATH    or this socket (default /run/dptun/dpgw.sock)\n"
    "  --filter EXPR    only packets that match every term: tcp, udp, icmp, proto=N, port=N (source or\n"
    "                   destination), host=A.B.C.D (source or destination), rx=PORT (a port's name)\n"
    "  --timeout S      stop waiting after S seconds (default 10)\n"
    "  --json           machine-readable output\n";

std::optional<json> ask(const std::string& socket, const json& req, std::string& error) {
  auto reply = unix_request(socket, req.dump(), error);
  if (!reply) return std::nullopt;
  json j = json::parse(*reply, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    error = "unreadable reply from dpgw";
    return std::nullopt;
  }
  if (gateway_message_type(j) == GatewayMessageType::Error) {
    error = j.value("reason", std::string("dpgw refused the request"));
    return std::nullopt;
  }
  return j;
}

}  // namespace

int trace_main(int argc, char** argv) {
  std::string socket = "/run/dptun/dpgw.sock", filter;
  bool as_json = false;
  double timeout = 10;
  std::vector<std::string> words;
  Cli cli("dpgw trace", kTraceUsage);
  cli.flag("json", as_json).value("filter", filter).help();
  control_socket_options(cli, socket);
  cli.option("timeout", true, [&](const char* v) -> std::optional<int> {
    char* end = nullptr;
    timeout = strtod(v, &end);
    if (!end || *end || !(timeout >= 0.1 && timeout <= 3600)) return cli.value_error("--timeout takes seconds, 0.1..3600");
    return std::nullopt;
  });
  if (auto status = cli.parse(argc - 1, argv + 1, &words)) return *status;
  if (words.empty()) return cli.usage_error("how many packets? (1.." + std::to_string(Tracer::kMaxPackets) + ")");
  if (words.size() > 1) return cli.usage_error("unexpected argument '" + words[1] + "'");
  const std::optional<uint64_t> packets = parse_uint(words[0], Tracer::kMaxPackets);
  if (!packets || *packets == 0)
    return cli.value_error("N is a number of packets, 1.." + std::to_string(Tracer::kMaxPackets));
  std::string error;
  auto started = ask(socket,
                     trace_message(TraceOp::Start, {{"packets", *packets}, {"filter", filter}, {"timeout", timeout}}),
                     error);
  if (!started) {
    fprintf(stderr, "dpgw trace: %s\n", error.c_str());
    return 1;
  }
  const uint64_t gen = started->value("generation", uint64_t(0));
  struct sigaction sa {};
  sa.sa_handler = on_trace_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  fprintf(stderr, "tracing the next %" PRIu64 " packet%s%s%s (at most %.1f s; Ctrl-C ends it early)\n", *packets,
          *packets == 1 ? "" : "s", filter.empty() ? "" : " matching ", filter.c_str(), timeout);
  // dpgw ends the trace at its timeout itself; a little more here for the last poll.
  const int polls = int(timeout * 20) + 40;
  for (int i = 0; i < polls && !g_trace_interrupted; ++i) {
    timespec ts{0, 50'000'000};
    nanosleep(&ts, nullptr);
    auto st = ask(socket, trace_message(TraceOp::Poll, {{"generation", gen}}), error);
    if (!st) {
      fprintf(stderr, "dpgw trace: %s\n", error.c_str());
      return 1;
    }
    if (st->value("done", false)) break;
  }
  auto result = ask(socket, trace_message(TraceOp::Stop, {{"generation", gen}}), error);
  if (!result) {
    fprintf(stderr, "dpgw trace: %s\n", error.c_str());
    return 1;
  }
  if (as_json)
    printf("%s\n", result->dump().c_str());
  else
    fputs(trace_text(*result).c_str(), stdout);
  return 0;
}

}  // namespace dptun
