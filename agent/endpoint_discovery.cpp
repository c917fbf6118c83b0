#include "agent/endpoint_discovery.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "agent/udp_link.hpp"
#include "common/clock.hpp"
#include "common/json_writer.hpp"
#include "common/log.hpp"

namespace dptun {

CandidateReport make_candidate_report(std::span<const Endpoint> hosts, std::span<const StunObservation> seen) {
  CandidateReport r;
  std::vector<Endpoint> mapped;  // distinct, in the order seen
  size_t answers = 0;
  bool saw_host = false;
  for (const StunObservation& o : seen) {
    if (!o.mapped) continue;
    ++answers;
    if (std::find(hosts.begin(), hosts.end(), *o.mapped) != hosts.end()) saw_host = true;
    if (std::find(mapped.begin(), mapped.end(), *o.mapped) == mapped.end()) mapped.push_back(*o.mapped);
  }
  if (saw_host && mapped.size() == 1)
    r.nat = NatMapping::None;
  else if (answers >= 2)
    r.nat = mapped.size() == 1 ? NatMapping::EndpointIndependent : NatMapping::EndpointDependent;
  for (const Endpoint& m : mapped) {
    if (r.candidates.size() == kMaxCandidates) break;
    const bool is_host = std::find(hosts.begin(), hosts.end(), m) != hosts.end();
    if (!is_host && candidate_address_ok(m)) r.candidates.push_back({CandidateType::ServerReflexive, m});
  }
  for (const Endpoint& h : hosts) {
    if (r.candidates.size() == kMaxCandidates) break;
    if (candidate_address_ok(h)) r.candidates.push_back({CandidateType::Host, h});
  }
  return r;
}

std::vector<Endpoint> host_addresses(uint16_t port) {
  std::vector<Endpoint> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (const ifaddrs* a = list; a && out.size() < kMaxCandidates; a = a->ifa_next) {
    if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET) continue;
    // Point-to-point links are TUN devices (this agent's, other agents', VPNs'): a peer does not reach us there.
    if (!(a->ifa_flags & IFF_UP) || (a->ifa_flags & (IFF_LOOPBACK | IFF_POINTOPOINT))) continue;
    const auto* sin = reinterpret_cast<const sockaddr_in*>(a->ifa_addr);
    const Endpoint e{Ipv4{ntohl(sin->sin_addr.s_addr)}, port};
    if (candidate_address_ok(e) && std::find(out.begin(), out.end(), e) == out.end()) out.push_back(e);
  }
  freeifaddrs(list);
  return out;
}

EndpointDiscovery::EndpointDiscovery(EventLoop& loop, Options opt) : loop_(loop), opt_(std::move(opt)) {}

EndpointDiscovery::~EndpointDiscovery() {
  if (fd_) loop_.remove(fd_.get());
}

bool EndpointDiscovery::open(std::string& error) {
  Fd fd(socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    error = std::string("direct-path socket: ") + strerror(errno);
    return false;
  }
  sockaddr_in local{};
  local.sin_family = AF_INET;
  local.sin_addr.s_addr = htonl(opt_.bind ? opt_.bind->value : INADDR_ANY);
  local.sin_port = htons(opt_.port);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
    error = "cannot bind the direct-path socket to " + Endpoint{Ipv4{ntohl(local.sin_addr.s_addr)}, opt_.port}.str() +
            " (--direct-port): " + strerror(errno);
    return false;
  }
  socklen_t len = sizeof local;
  getsockname(fd.get(), reinterpret_cast<sockaddr*>(&local), &len);
  port_ = ntohs(local.sin_port);
  if (!loop_.add(fd.get(), EPOLLIN, [this](uint32_t) { readable(); })) {
    error = std::string("direct-path socket: epoll: ") + strerror(errno);
    return false;
  }
  fd_ = std::move(fd);
  batch_.use_socket(fd_.get());
  report_.candidates.clear();
  for (const Endpoint& h : host_addresses(port_)) report_.candidates.push_back({CandidateType::Host, h});
  ++generation_;
  return true;
}

Endpoint EndpointDiscovery::local() const {
  return Endpoint{Ipv4{opt_.bind ? opt_.bind->value : 0}, port_};
}

std::vector<Endpoint> EndpointDiscovery::servers() const {
  if (!opt_.servers.empty()) return opt_.servers;
  std::vector<Endpoint> s;
  if (!gateway_) return s;
  if (stun_port_) s.push_back(Endpoint{gateway_->ip, stun_port_});
  if (stun_port_ != gateway_->port) s.push_back(*gateway_);
  return s;
}

void EndpointDiscovery::set_gateway(Endpoint gateway, uint16_t stun_port, uint64_t now_ns) {
  const bool changed = !gateway_ || *gateway_ != gateway || stun_port_ != stun_port;
  gateway_ = gateway;
  stun_port_ = stun_port;
  if (changed && opt_.servers.empty()) start_round(now_ns);
  else if (!in_round_ && next_round_ns_ == 0) start_round(now_ns);  // --stun servers: the first round
}

void EndpointDiscovery::start_round(uint64_t now_ns) {
  if (!fd_) return;
  queries_.clear();
  for (const Endpoint& s : servers()) {
    Query q;
    q.server = s;
    if (getrandom(q.id.data(), q.id.size(), 0) != ssize_t(q.id.size())) continue;  // (never for 12 bytes)
    queries_.push_back(q);
  }
  in_round_ = !queries_.empty();
  next_round_ns_ = now_ns + kRefreshNs;
  if (!in_round_) return;
  ++stats_.rounds;
  for (Query& q : queries_) send(q, now_ns);
}

void EndpointDiscovery::send(Query& q, uint64_t now_ns) {
  uint8_t msg[kStunRequestLen];
  const size_t n = write_stun_binding_request(msg, q.id);
  const sockaddr_in to = to_sockaddr(q.server);
  // A lost send is a lost datagram: the next try or the timeout covers it.
  if (sendto(fd_.get(), msg, n, 0, reinterpret_cast<const sockaddr*>(&to), sizeof to) == ssize_t(n)) ++stats_.requests;
  ++q.sent;
  q.next_ns = now_ns + (q.sent < kTries ? kFirstRtoNs << (q.sent - 1) : kLastWaitNs);
}

void EndpointDiscovery::tick(uint64_t now_ns) {
  if (!fd_) return;
  if (in_round_) {
    bool pending = false;
    for (Query& q : queries_) {
      if (q.done) continue;
      if (now_ns >= q.next_ns) {
        if (q.sent < kTries) {
          send(q, now_ns);
        } else {
          q.done = true;
          ++stats_.timeouts;
          continue;
        }
      }
      pending = true;
    }
    if (!pending) end_round();
  }
  if (!in_round_ && next_round_ns_ && now_ns >= next_round_ns_) start_round(now_ns);
}

// Up to 64 datagrams per wakeup in recvmmsg batches (with UDP_GRO a buffer may hold several of one length from one
// sender, cut apart here), then back to the loop; what is left wakes it again.
void EndpointDiscovery::readable() {
  peer_in_batch_ = false;
  const uint64_t now = monotonic_ns();
  for (int batches = 0; batches < 2; ++batches) {
    const int n = batch_.receive_batch();
    if (n <= 0) break;  // nothing waiting, or an ICMP error reported on the socket (the timeouts cover it)
    for (int i = 0; i < n; ++i) {
      const Endpoint from = batch_.rx_from(unsigned(i));
      batch_.each_frame(unsigned(i), [&](std::span<uint8_t> frame) { answer(from, frame, now); });
    }
    if (n < int(UdpLink::kBatch)) break;
  }
  if (peer_in_batch_ && peer_batch_end_) peer_batch_end_();
}

bool EndpointDiscovery::send_to(Endpoint to, std::span<const uint8_t> data) {
  if (!fd_) return false;
  const sockaddr_in sin = to_sockaddr(to);
  return sendto(fd_.get(), data.data(), data.size(), 0, reinterpret_cast<const sockaddr*>(&sin), sizeof sin) ==
         ssize_t(data.size());
}

bool EndpointDiscovery::queue_to(Endpoint to, std::span<const uint8_t> data) {
  if (!fd_ || data.size() > UdpLink::kMaxDatagram) return false;
  std::memcpy(batch_.tx_slot(), data.data(), data.size());
  batch_.queue_to(data.size(), to);
  if (batch_.full()) flush_queued();
  return true;
}

void EndpointDiscovery::flush_queued() {
  if (fd_) batch_.flush();  // (a send error loses the batch: counted in queued_stats().tx_dropped)
}

void EndpointDiscovery::answer(Endpoint src, std::span<const uint8_t> data, uint64_t now_ns) {
  Query* q = nullptr;
  for (Query& c : queries_)
    if (c.server == src) q = &c;
  if (!q) {
    if (peer_handler_) {
      peer_handler_(src, data, now_ns);
      peer_in_batch_ = true;
    } else {
      ++stats_.stray;
    }
    return;
  }
  StunAnswerError why{};
  const std::optional<StunMapped> m = parse_stun_binding_answer(data, q->id, &why);
  if (!m) {
    ++stats_.bad[size_t(why)];
    return;
  }
  if (q->done) return;  // the answer to a resend, or after the timeout: the first one counts
  ++stats_.answers;
  q->done = true;
  q->mapped = Endpoint{Ipv4{m->ip}, m->port};
  if (std::all_of(queries_.begin(), queries_.end(), [](const Query& c) { return c.done; })) end_round();
}

void EndpointDiscovery::end_round() {
  in_round_ = false;
  ++rounds_ended_;
  std::vector<StunObservation> seen;
  for (const Query& q : queries_) {
    auto last = std::find_if(last_seen_.begin(), last_seen_.end(), [&](const Seen& s) { return s.server == q.server; });
    if (q.mapped) {
      if (last == last_seen_.end()) last = last_seen_.insert(last_seen_.end(), Seen{q.server, *q.mapped, 0});
      last->mapped = *q.mapped;
      last->round = rounds_ended_;
      seen.push_back({q.server, q.mapped});
    } else if (last != last_seen_.end() && rounds_ended_ - last->round <= kRememberRounds) {
      seen.push_back({q.server, last->mapped});
    } else {
      seen.push_back({q.server, std::nullopt});
    }
  }
  const std::vector<Endpoint> hosts = host_addresses(port_);
  CandidateReport r = make_candidate_report(hosts, seen);
  const bool any = std::any_of(queries_.begin(), queries_.end(), [](const Query& q) { return q.mapped.has_value(); });
  if (!any && !warned_silent_) {
    std::string list;
    for (const StunObservation& o : seen) list += (list.empty() ? "" : ", ") + o.server.str();
    LOG_WARN("direct paths: no STUN server answered (%s) from %s: no server-reflexive candidate", list.c_str(),
             local().str().c_str());
  }
  warned_silent_ = !any;
  if (r == report_) return;
  report_ = std::move(r);
  ++generation_;
  ++stats_.reports_changed;
  LOG_INFO("direct paths: NAT mapping %s; candidates: %s", nat_mapping_name(report_.nat),
           candidates_text(report_.candidates).c_str());
}

std::string EndpointDiscovery::stats_json() const {
  JsonWriter j;
  j.begin_object()
      .field("local", local().str())
      .field("nat", nat_mapping_name(report_.nat))
      .field("rounds", stats_.rounds)
      .field("requests", stats_.requests)
      .field("answers", stats_.answers)
      .field("timeouts", stats_.timeouts)
      .field("reports_changed", stats_.reports_changed)
      .field("stray", stats_.stray)
      // pair frames sent from this socket: frames, sendmmsg entries, frames lost to send errors
      .field("frames_sent", batch_.stats().tx_frames.get())
      .field("frame_sends", batch_.stats().tx_sends.get())
      .field("frames_send_dropped", batch_.stats().tx_dropped.get());
  j.key("bad").begin_object();
  for (size_t e = 0; e < stats_.bad.size(); ++e) j.field(stun_answer_error_name(StunAnswerError(e)), stats_.bad[e]);
  j.end_object();
  j.key("candidates").begin_array();
  for (const Candidate& c : report_.candidates)
    j.begin_object().field("type", candidate_type_name(c.type)).field("address", c.address.str()).end_object();
  j.end_array();
  j.end_object();
  return j.str();
}

}  // namespace dptun
