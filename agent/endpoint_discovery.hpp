// dpagent's endpoint discovery (docs/nat-traversal.md): a UDP socket of its own for direct paths -- not the relay
// link's, whose NAT mapping points at the gateway only -- and what STUN servers say of it. Every kRefreshNs (and
// when a registration names a new gateway) it sends a Binding request (proto/stun.hpp) to each server: --stun
// servers, or else the gateway's STUN port and tunnel port (dpgw answers on both). From the answers it makes a
// CandidateReport (control/control_protocol.hpp): the server-reflexive candidates, the host candidates (this host's
// IPv4 addresses with the socket's port; TUN devices left out) and the NAT's mapping behaviour (RFC 4787 4.1):
// the same mapped address from two servers is endpoint-independent, different ones endpoint-dependent. Requests are
// sent again after 0.5, 1 and 2 s (RFC 8489 6.2.1's doubling, four tries); a server silent after 5.5 s counts a
// timeout, and for up to kRememberRounds rounds its last answer stands in. Answers are matched to their server's address and transaction ID; anything else is counted and dropped.
// Runs on the main loop; tick() about every 100 ms. No credentials: a candidate is only a hint, checked later by
// authenticated probes.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "agent/udp_link.hpp"
#include "common/event_loop.hpp"
#include "common/inet.hpp"
#include "common/unix_socket.hpp"
#include "control/control_protocol.hpp"
#include "proto/stun.hpp"

namespace dptun {

// What one server said this round: its mapped address, or nothing (no answer, or none usable).
struct StunObservation {
  Endpoint server;
  std::optional<Endpoint> mapped;
};

// The report a round's answers make: host candidates first (as given), then each distinct mapped address that is
// not one of them as srflx; the mapping behaviour as control_protocol.hpp describes it. At most kMaxCandidates,
// srflx ones kept before hosts when there are more.
CandidateReport make_candidate_report(std::span<const Endpoint> hosts, std::span<const StunObservation> seen);

// This host's IPv4 unicast addresses (up; not loopback, not point-to-point such as TUN devices) with `port`, at most
// kMaxCandidates.
std::vector<Endpoint> host_addresses(uint16_t port);

class EndpointDiscovery {
 public:
  static constexpr uint64_t kRefreshNs = 25'000'000'000ull;  // a round; also keeps a NAT's mapping (UDP: >= 30 s)
  static constexpr uint64_t kFirstRtoNs = 500'000'000ull;    // RFC 8489 6.2.1's initial RTO
  static constexpr unsigned kTries = 4;                      // sends at 0, 0.5, 1.5, 3.5 s
  static constexpr uint64_t kLastWaitNs = 2'000'000'000ull;  // after the last send: a timeout at 5.5 s
  static constexpr size_t kMaxServers = 4;

  struct Options {
    std::optional<Ipv4> bind;          // the address to bind (--bind's), else any
    uint16_t port = 0;                 // --direct-port (0: the kernel picks)
    std::vector<Endpoint> servers;     // --stun; empty: the gateway's ports
  };
  struct Stats {
    uint64_t rounds = 0, requests = 0, answers = 0, timeouts = 0, reports_changed = 0;
    std::array<uint64_t, size_t(StunAnswerError::Count)> bad{};  // answers from a server that did not fit, by reason
    uint64_t stray = 0;  // datagrams from an address no request went to (and no direct path takes)
  };

  EndpointDiscovery(EventLoop& loop, Options opt);
  ~EndpointDiscovery();
  EndpointDiscovery(const EndpointDiscovery&) = delete;
  EndpointDiscovery& operator=(const EndpointDiscovery&) = delete;

  // Opens and binds the socket and watches it on the loop.
  bool open(std::string& error);
  Endpoint local() const;
  // A registration's gateway (its tunnel port) and dpgw's STUN port (0: none): asked when no --stun was given; a
  // change starts a round at once.
  void set_gateway(Endpoint gateway, uint16_t stun_port, uint64_t now_ns);
  void tick(uint64_t now_ns);
  // The latest round's report (Unknown and hosts only before any round ends), and a number that changes with it.
  // ready(): a round has ended (reporting earlier would make dpctld pair on host candidates, then again).
  const CandidateReport& report() const { return report_; }
  bool ready() const { return rounds_ended_ != 0; }
  uint64_t generation() const { return generation_; }
  const Stats& stats() const { return stats_; }
  std::string stats_json() const;
  // The socket is the direct paths' too (agent/direct_paths.hpp): datagrams that are no STUN server's answer go to
  // `handler` (else count as stray), and send_to() sends from it.
  using PeerHandler = std::function<void(Endpoint from, std::span<const uint8_t> data, uint64_t now_ns)>;
  void on_peer_datagram(PeerHandler handler) { peer_handler_ = std::move(handler); }
  // Called once a wakeup's datagrams are all handled, when the handler had any (the receiver's batch ends).
  void on_peer_batch_end(std::function<void()> f) { peer_batch_end_ = std::move(f); }
  bool send_to(Endpoint to, std::span<const uint8_t> data);
  // Batched sends (pair frames): queued, and sent with the next flush_queued() (at once when the batch is full), in
  // sendmmsg batches with UDP_SEGMENT runs. False when the socket is not open.
  bool queue_to(Endpoint to, std::span<const uint8_t> data);
  void flush_queued();
  const UdpLinkStats& queued_stats() const { return batch_.stats(); }

 private:
  struct Query {
    Endpoint server;
    StunTransactionId id{};
    unsigned sent = 0;
    uint64_t next_ns = 0;  // the next send, or after the last one the timeout
    bool done = false;
    std::optional<Endpoint> mapped;
  };
  std::vector<Endpoint> servers() const;
  void start_round(uint64_t now_ns);
  void send(Query& q, uint64_t now_ns);
  void readable();
  void answer(Endpoint from, std::span<const uint8_t> data, uint64_t now_ns);
  void end_round();

  EventLoop& loop_;
  Options opt_;
  Fd fd_;
  uint16_t port_ = 0;
  std::optional<Endpoint> gateway_;
  uint16_t stun_port_ = 0;
  std::vector<Query> queries_;  // this round's
  bool in_round_ = false;
  uint64_t next_round_ns_ = 0;
  CandidateReport report_;
  uint64_t generation_ = 0;
  bool warned_silent_ = false;
  uint64_t rounds_ended_ = 0;
  // Each server's last answer and the round it came in: a server silent for a round or two (a lost datagram) is
  // taken to say what it said before, so that one loss does not change the report and remake the pairs.
  struct Seen {
    Endpoint server, mapped;
    uint64_t round = 0;
  };
  static constexpr uint64_t kRememberRounds = 3;
  std::vector<Seen> last_seen_;
  Stats stats_;
  PeerHandler peer_handler_;
  UdpLink batch_;  // batched receives and sends on fd_
  std::function<void()> peer_batch_end_;
  bool peer_in_batch_ = false;
};

}  // namespace dptun
