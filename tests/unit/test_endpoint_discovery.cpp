// dpagent's endpoint discovery (agent/endpoint_discovery.hpp) over real UDP sockets on the loopback: two STUN
// responders made of proto/stun.hpp's server side answer (or not) from 127.0.0.1, the discovery's socket runs on a
// real EventLoop, and its clock is the test's (each tick half a second later), so retries, timeouts and rounds come
// in order without waiting for them. Checked: both servers seeing one mapping make it endpoint-independent (the
// loopback mapping itself is no candidate), lost requests are sent again and still answered, a server silent for a
// round leaves the mapping unknown, one silent after having answered keeps its last answer (the report does not
// change), answers to another transaction are counted as such, and a datagram from elsewhere goes to the peer
// handler (direct paths) or counts as stray.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <functional>
#include <vector>

#include "agent/endpoint_discovery.hpp"
#include "agent/udp_link.hpp"
#include "common/event_loop.hpp"
#include "tests/unit/cmocka.hpp"

using namespace dptun;

namespace {

constexpr uint32_t kLoopback = 0x7f000001;

// A STUN server on 127.0.0.1 answering Binding requests with what it saw, unless told to stay silent; `wrong_id`
// makes it answer with another transaction ID.
struct Responder {
  Fd fd{socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0)};
  Endpoint at;
  int drop_next = 0;  // requests to ignore
  bool silent = false, wrong_id = false;
  uint64_t requests = 0;
  Responder() {
    sockaddr_in a = to_sockaddr(Endpoint{Ipv4{kLoopback}, 0});
    assert_int_equal(bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len);
    at = Endpoint{Ipv4{kLoopback}, ntohs(a.sin_port)};
  }
  void poll() {
    uint8_t buf[1500];
    for (;;) {
      sockaddr_in from{};
      socklen_t len = sizeof from;
      const ssize_t n = recvfrom(fd.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n <= 0) return;
      ++requests;
      if (silent || drop_next > 0) {
        if (drop_next > 0) --drop_next;
        continue;
      }
      auto req = parse_stun({buf, size_t(n)}, false);
      assert_true(req && req->is_binding_request());
      if (wrong_id) req->id[15] ^= 1;
      uint8_t out[kStunMaxResponseLen];
      const size_t m = write_stun_response(out, *req, ntohl(from.sin_addr.s_addr), ntohs(from.sin_port));
      sendto(fd.get(), out, m, 0, reinterpret_cast<sockaddr*>(&from), len);
    }
  }
};

struct Rig {
  EventLoop loop;
  Responder a, b;
  std::unique_ptr<EndpointDiscovery> d;
  uint64_t now = 1'000'000'000ull;
  Rig() {
    std::string error;
    assert_true(loop.init(error));
    EndpointDiscovery::Options o;
    o.bind = Ipv4{kLoopback};
    o.servers = {a.at, b.at};
    d = std::make_unique<EndpointDiscovery>(loop, o);
    assert_true(d->open(error));
  }
  // Ticks (each 0.5 s of the discovery's clock) until `done` or `ticks` ran out. The loop's ticks alternate: the
  // responders answer, the loop hands the answers to the discovery, then its clock moves on.
  void run(int ticks, const std::function<bool()>& done = [] { return false; }) {
    std::atomic<bool> stop{false};
    int left = ticks;
    bool answer_phase = true;
    loop.run(stop, 5, [&] {
      if (answer_phase) {
        a.poll();
        b.poll();
      } else {
        if (done() || left-- <= 0) {
          stop = true;
          return;
        }
        now += 500'000'000ull;
        d->tick(now);
      }
      answer_phase = !answer_phase;
    });
  }
  bool round_done(uint64_t rounds) const {
    const auto& s = d->stats();
    return s.rounds >= rounds && d->ready() && s.answers + s.timeouts >= 2 * rounds;
  }
};

bool has_srflx(const CandidateReport& r) {
  for (const Candidate& c : r.candidates)
    if (c.type == CandidateType::ServerReflexive) return true;
  return false;
}

void two_servers_one_mapping(void**) {
  Rig r;
  r.d->set_gateway(Endpoint{Ipv4{0xc0000201}, 51900}, 3478, r.now);  // --stun servers: the gateway is not asked
  r.run(40, [&] { return r.d->stats().answers == 2; });
  assert_int_equal(r.d->stats().answers, 2);
  assert_int_equal(r.d->stats().requests, 2);
  r.run(10, [&] { return r.d->ready(); });
  assert_true(r.d->ready());
  assert_int_equal(int(r.d->report().nat), int(NatMapping::EndpointIndependent));
  assert_false(has_srflx(r.d->report()));  // 127.0.0.1: no address a peer may be sent to
}

void lost_requests_are_sent_again(void**) {
  Rig r;
  r.b.drop_next = 2;
  r.d->set_gateway(Endpoint{Ipv4{0xc0000201}, 51900}, 0, r.now);
  r.run(40, [&] { return r.d->stats().answers == 2; });
  assert_int_equal(r.d->stats().answers, 2);
  assert_int_equal(r.b.requests, 3);
  assert_int_equal(r.d->stats().requests, 4);
  assert_int_equal(r.d->stats().timeouts, 0);
}

void a_silent_server_then_one_remembered(void**) {
  Rig r;
  r.b.silent = true;
  r.d->set_gateway(Endpoint{Ipv4{0xc0000201}, 51900}, 0, r.now);
  r.run(40, [&] { return r.d->stats().timeouts == 1; });
  assert_int_equal(r.d->stats().timeouts, 1);
  assert_int_equal(r.b.requests, EndpointDiscovery::kTries);
  assert_true(r.d->ready());
  assert_int_equal(int(r.d->report().nat), int(NatMapping::Unknown));  // one answer tells no behaviour
  // The next round both answer: endpoint-independent.
  r.b.silent = false;
  r.run(80, [&] { return r.d->stats().answers == 3; });
  r.run(4);
  assert_int_equal(int(r.d->report().nat), int(NatMapping::EndpointIndependent));
  const uint64_t gen = r.d->generation();
  // Then b is silent again: its last answer stands in, the report stays as it was.
  r.b.silent = true;
  r.run(80, [&] { return r.d->stats().timeouts == 2; });
  r.run(4);
  assert_int_equal(r.d->stats().timeouts, 2);
  assert_int_equal(int(r.d->report().nat), int(NatMapping::EndpointIndependent));
  assert_int_equal(r.d->generation(), gen);
}

void answers_to_another_transaction(void**) {
  Rig r;
  r.b.wrong_id = true;
  r.d->set_gateway(Endpoint{Ipv4{0xc0000201}, 51900}, 0, r.now);
  r.run(40, [&] { return r.d->stats().timeouts == 1; });
  assert_int_equal(r.d->stats().answers, 1);
  assert_true(r.d->stats().bad[size_t(StunAnswerError::OtherTransaction)] >= 1);
}

void datagrams_from_elsewhere(void**) {
  Rig r;
  r.d->set_gateway(Endpoint{Ipv4{0xc0000201}, 51900}, 0, r.now);
  Responder other;
  const uint8_t junk[] = {1, 2, 3, 4};
  const sockaddr_in to = to_sockaddr(Endpoint{Ipv4{kLoopback}, r.d->local().port});
  sendto(other.fd.get(), junk, sizeof junk, 0, reinterpret_cast<const sockaddr*>(&to), sizeof to);
  r.run(10, [&] { return r.d->stats().stray == 1; });
  assert_int_equal(r.d->stats().stray, 1);
  std::vector<Endpoint> seen;
  r.d->on_peer_datagram([&](Endpoint from, std::span<const uint8_t> data, uint64_t) {
    assert_int_equal(data.size(), sizeof junk);
    seen.push_back(from);
  });
  sendto(other.fd.get(), junk, sizeof junk, 0, reinterpret_cast<const sockaddr*>(&to), sizeof to);
  r.run(10, [&] { return !seen.empty(); });
  assert_int_equal(seen.size(), 1);
  assert_true(seen[0] == other.at);
  assert_int_equal(r.d->stats().stray, 1);
  // send_to reaches a peer from the same socket.
  assert_true(r.d->send_to(other.at, junk));
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(two_servers_one_mapping),
      cmocka_unit_test(lost_requests_are_sent_again),
      cmocka_unit_test(a_silent_server_then_one_remembered),
      cmocka_unit_test(answers_to_another_transaction),
      cmocka_unit_test(datagrams_from_elsewhere),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
