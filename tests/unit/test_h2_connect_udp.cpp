// dpagent udp's HTTP/2 client of one CONNECT-UDP request (agent/h2_connect_udp.hpp) against an independent peer:
// nghttp2's SERVER session in the same process, fed the client's bytes and answering as a gateway would. The request
// waits for SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 3) and carries the extended CONNECT fields (RFC 9298 3.4);
// 200 opens it, 404 with Proxy-Status refuses it; DATAGRAM capsules go both ways on the request stream (RFC 9297
// 3.5), read across DATA frames cut at any byte; other context IDs are dropped and counted, other capsule types
// skipped; the send buffer is bounded.
#include <nghttp2/nghttp2.h>

#include <cstring>
#include <memory>
#include <string>

#include "agent/h2_connect_udp.hpp"
#include "proto/masque_capsule.hpp"
#include "proto/masque_datagram.hpp"

#include "tests/unit/cmocka.hpp"

using namespace dptun;

namespace {

using Bytes = std::vector<uint8_t>;
using State = H2ConnectUdpClient::State;
using Drop = H2ConnectUdpClient::Drop;

std::string text(std::span<const uint8_t> s) { return std::string(reinterpret_cast<const char*>(s.data()), s.size()); }

// The gateway: an nghttp2 server session.
struct Server {
  nghttp2_session* s = nullptr;
  int32_t stream = -1;               // the request's stream
  std::vector<HttpField> request;    // its fields
  Bytes body;                        // DATA received on it
  Bytes out;                         // what the response's DATA frames still have to carry
  bool end = false;                  // end the stream once `out` is sent
  bool deferred = false;

  explicit Server(bool connect_protocol) {
    nghttp2_session_callbacks* cb = nullptr;
    assert_int_equal(nghttp2_session_callbacks_new(&cb), 0);
    nghttp2_session_callbacks_set_on_header_callback(
        cb, [](nghttp2_session*, const nghttp2_frame* f, const uint8_t* n, size_t nl, const uint8_t* v, size_t vl,
               uint8_t, void* u) {
          auto* self = static_cast<Server*>(u);
          self->stream = f->hd.stream_id;
          self->request.push_back({std::string(reinterpret_cast<const char*>(n), nl),
                                   std::string(reinterpret_cast<const char*>(v), vl)});
          return 0;
        });
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        cb, [](nghttp2_session*, uint8_t, int32_t, const uint8_t* d, size_t len, void* u) {
          auto* self = static_cast<Server*>(u);
          self->body.insert(self->body.end(), d, d + len);
          return 0;
        });
    assert_int_equal(nghttp2_session_server_new(&s, cb, this), 0);
    nghttp2_session_callbacks_del(cb);
    std::vector<nghttp2_settings_entry> iv = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100}};
    if (connect_protocol) iv.push_back({NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1});
    assert_int_equal(nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, iv.data(), iv.size()), 0);
  }
  ~Server() { nghttp2_session_del(s); }

  void recv(const Bytes& b) { assert_int_equal(nghttp2_session_mem_recv(s, b.data(), b.size()), ssize_t(b.size())); }
  Bytes send() {
    Bytes b;
    for (;;) {
      const uint8_t* d = nullptr;
      const ssize_t n = nghttp2_session_mem_send(s, &d);
      assert_true(n >= 0);
      if (n == 0) break;
      b.insert(b.end(), d, d + n);
    }
    return b;
  }
  static ssize_t read(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags, nghttp2_data_source*,
                      void* u) {
    auto* self = static_cast<Server*>(u);
    const size_t n = std::min(length, self->out.size());
    if (n == 0 && !self->end) {
      self->deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    std::memcpy(buf, self->out.data(), n);
    self->out.erase(self->out.begin(), self->out.begin() + long(n));
    if (self->out.empty() && self->end) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return ssize_t(n);
  }
  void respond(const std::vector<HttpField>& fields, bool with_body) {
    std::vector<nghttp2_nv> nva;
    for (const HttpField& f : fields)
      nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(f.name.data())),
                     reinterpret_cast<uint8_t*>(const_cast<char*>(f.value.data())), f.name.size(), f.value.size(),
                     NGHTTP2_NV_FLAG_NONE});
    nghttp2_data_provider p{};
    p.read_callback = read;
    assert_int_equal(nghttp2_submit_response(s, stream, nva.data(), nva.size(), with_body ? &p : nullptr), 0);
  }
  void queue(const Bytes& b, bool end_stream = false) {
    out.insert(out.end(), b.begin(), b.end());
    end = end_stream;
    if (deferred) {
      deferred = false;
      nghttp2_session_resume_data(s, stream);
    }
  }
};

// Client -> server, then server -> client (optionally `piece` bytes at a time), until neither has anything to say.
void pump(H2ConnectUdpClient& c, Server& srv, const H2ConnectUdpClient::Deliver& deliver = {}, size_t piece = 0) {
  for (int round = 0; round < 8; ++round) {
    Bytes up;
    assert_true(c.output(up, 1 << 20));
    if (!up.empty()) srv.recv(up);
    const Bytes down = srv.send();
    if (up.empty() && down.empty()) return;
    if (piece == 0) {
      c.receive(down, deliver);
    } else {
      for (size_t i = 0; i < down.size(); i += piece)
        c.receive(std::span<const uint8_t>(down).subspan(i, std::min(piece, down.size() - i)), deliver);
    }
  }
}

std::string field(const std::vector<HttpField>& fields, const std::string& name) {
  for (const HttpField& f : fields)
    if (f.name == name) return f.value;
  return "<absent>";
}

}  // namespace

// The request waits for the gateway's SETTINGS; then extended CONNECT with the fields of connect_udp_request_fields,
// which a server reads back as a CONNECT-UDP request, on client stream 1, left open for capsules.
static void request_after_settings(void**) {
  H2ConnectUdpClient c("gw.example.net:8443", "dns.corp.example", 53);
  std::string error;
  assert_true(c.start(error));
  Server srv(true);
  Bytes up;
  assert_true(c.output(up, 1 <<20));
  assert_true(up.size() > 24);
  assert_memory_equal(up.data(), NGHTTP2_CLIENT_MAGIC, 24);  // the connection preface (RFC 9113 3.4)
  srv.recv(up);
  assert_int_equal(int(c.state()), int(State::AwaitSettings));
  assert_int_equal(srv.stream, -1);  // no request yet
  assert_int_equal(c.request_stream(), -1);
  // The gateway's SETTINGS (then its ACK of ours), a byte at a time: the request once the SETTINGS frame is whole.
  const Bytes down = srv.send();
  assert_int_equal(down[3], NGHTTP2_SETTINGS);
  const size_t settings_end = 9 + ((size_t(down[0]) << 16) | (size_t(down[1]) << 8) | down[2]);
  assert_true(down.size() > settings_end);
  for (size_t i = 0; i < down.size(); ++i) {
    assert_int_equal(int(c.state()), int(i < settings_end ? State::AwaitSettings : State::AwaitAnswer));
    assert_true(c.receive(std::span<const uint8_t>(down).subspan(i, 1), {}));
  }
  assert_int_equal(int(c.state()), int(State::AwaitAnswer));
  pump(c, srv);
  assert_int_equal(srv.stream, 1);
  assert_int_equal(c.request_stream(), 1);
  assert_string_equal(field(srv.request, ":method").c_str(), "CONNECT");
  assert_string_equal(field(srv.request, ":protocol").c_str(), "connect-udp");
  assert_string_equal(field(srv.request, ":scheme").c_str(), "https");
  assert_string_equal(field(srv.request, ":authority").c_str(), "gw.example.net:8443");
  assert_string_equal(field(srv.request, ":path").c_str(), "/.well-known/masque/udp/dns.corp.example/53/");
  assert_string_equal(field(srv.request, "capsule-protocol").c_str(), "?1");
  auto r = parse_connect_udp_request(srv.request);
  assert_true(r.has_value());
  assert_true(r->capsule_protocol);
  assert_string_equal(r->target.host.c_str(), "dns.corp.example");
  assert_int_equal(r->target.port, 53);
  // The stream stays open for capsules.
  assert_int_equal(nghttp2_session_get_stream_remote_close(srv.s, 1), 0);
}

// SETTINGS without ENABLE_CONNECT_PROTOCOL: no request, a clear failure.
static void gateway_without_extended_connect(void**) {
  H2ConnectUdpClient c("gw.example.net", "dns.corp.example", 53);
  std::string error;
  assert_true(c.start(error));
  Server srv(false);
  pump(c, srv);
  assert_int_equal(int(c.state()), int(State::Failed));
  assert_true(c.no_connect_udp());
  assert_non_null(strstr(c.problem().c_str(), "ENABLE_CONNECT_PROTOCOL"));
  assert_int_equal(srv.stream, -1);
  assert_false(c.receive(Bytes{0}, {}));
  assert_int_equal(int(c.send(Bytes{1, 2})), int(H2ConnectUdpClient::Send::NotOpen));
}

H2ConnectUdpClient* requested(Server& srv) {
  auto* c = new H2ConnectUdpClient("gw.example.net", "dns.corp.example", 53);
  std::string error;
  assert_true(c->start(error));
  pump(*c, srv);
  assert_int_equal(int(c->state()), int(State::AwaitAnswer));
  assert_int_equal(srv.stream, 1);
  return c;
}

// 404 with Proxy-Status: refused, and the refusal names the error; nothing is sent as capsules.
static void refusal(void**) {
  Server srv(true);
  std::unique_ptr<H2ConnectUdpClient> c(requested(srv));
  srv.respond(connect_udp_response_fields(404, "destination_not_found", "no route serves dns.corp.example:53"), true);
  srv.queue(Bytes{'n', 'o'}, true);
  pump(*c, srv);
  assert_int_equal(int(c->state()), int(State::Refused));
  assert_int_equal(c->answer().status, 404);
  assert_non_null(strstr(c->refusal_text().c_str(), "404 (dptun; error=destination_not_found"));
  assert_int_equal(c->capsules_rx(), 0);
  assert_int_equal(int(c->send(Bytes{1})), int(H2ConnectUdpClient::Send::NotOpen));
  // An interim answer is not the answer; a malformed one fails.
  Server srv2(true);
  std::unique_ptr<H2ConnectUdpClient> d(requested(srv2));
  srv2.respond({{":status", "2x0"}}, false);
  pump(*d, srv2);
  assert_int_equal(int(d->state()), int(State::Failed));
}

// 200 opens the request; capsules both ways, cut at every byte; other context IDs dropped, other capsule types
// skipped; the gateway ending the stream ends the proxying.
static void capsules_both_ways(void**) {
  Server srv(true);
  std::unique_ptr<H2ConnectUdpClient> c(requested(srv));
  srv.respond(connect_udp_response_fields(200), true);
  pump(*c, srv);
  assert_int_equal(int(c->state()), int(State::Open));
  assert_true(c->answer().capsule_protocol);
  // Client -> gateway: one DATAGRAM capsule, context 0, per payload, in order.
  const std::string one = "first datagram", two(3000, 'x');
  assert_int_equal(int(c->send(Bytes(one.begin(), one.end()))), int(H2ConnectUdpClient::Send::Queued));
  assert_int_equal(int(c->send(Bytes(two.begin(), two.end()))), int(H2ConnectUdpClient::Send::Queued));
  pump(*c, srv);
  CapsuleReader reader(65535);
  std::vector<std::string> up;
  reader.feed(srv.body, [&](std::span<const uint8_t> value) {
    auto p = parse_udp_proxying_payload(value);
    assert_true(p.has_value());
    assert_int_equal(p->context_id, 0);
    up.push_back(text(p->payload));
  });
  assert_int_equal(up.size(), 2);
  assert_true(up[0] == one && up[1] == two);
  assert_true(reader.at_boundary());
  assert_int_equal(c->pending(), 0);
  // Gateway -> client.
  Bytes body;
  const Bytes a = {'r', 'e', 'p', 'l', 'y'}, b(2000, 'y'), z = {'z'};
  append_datagram_capsule(body, 0, a);
  append_datagram_capsule(body, 2, z);  // another context ID: dropped
  append_capsule_header(body, 0x2a, 3);  // an unknown capsule type: skipped
  body.insert(body.end(), {7, 7, 7});
  append_datagram_capsule(body, 0, b);
  body.push_back(0x00);  // a DATAGRAM capsule whose value is empty: no context ID, malformed
  body.push_back(0x00);
  srv.queue(body);
  std::vector<std::string> got;
  pump(*c, srv, [&](std::span<const uint8_t> p) { got.push_back(text(p)); }, 1);
  assert_int_equal(got.size(), 2);
  assert_true(got[0] == text(a) && got[1] == text(b));
  assert_int_equal(c->capsules_rx(), 2);
  assert_int_equal(c->drops(Drop::Context), 1);
  assert_int_equal(c->drops(Drop::Malformed), 1);
  assert_int_equal(c->capsules_skipped(), 1);
  // The gateway ends the stream.
  srv.queue({}, true);
  pump(*c, srv);
  assert_int_equal(int(c->state()), int(State::Ended));
  assert_int_equal(int(c->send(Bytes{1})), int(H2ConnectUdpClient::Send::NotOpen));
}

// The send buffer is bounded: what does not fit is refused (Full), never queued; it drains as DATA frames go out.
static void bounded_send_buffer(void**) {
  Server srv(true);
  auto* raw = new H2ConnectUdpClient("gw.example.net", "dns.corp.example", 53, 1000);
  std::unique_ptr<H2ConnectUdpClient> c(raw);
  std::string error;
  assert_true(c->start(error));
  pump(*c, srv);
  srv.respond(connect_udp_response_fields(200), true);
  pump(*c, srv);
  assert_int_equal(int(c->state()), int(State::Open));
  const Bytes p(300, 'p');
  int queued = 0, full = 0;
  for (int i = 0; i < 5; ++i) {
    const auto r = c->send(p);
    if (r == H2ConnectUdpClient::Send::Queued) ++queued;
    if (r == H2ConnectUdpClient::Send::Full) ++full;
  }
  assert_int_equal(queued, 3);  // 3 capsules of 1 + 2 + 1 + 300 bytes fit in 1000
  assert_int_equal(full, 2);
  assert_true(c->pending() <= 1000);
  assert_int_equal(int(c->send(Bytes(H2ConnectUdpClient::kMaxPayload + 1))), int(H2ConnectUdpClient::Send::TooBig));
  pump(*c, srv);
  assert_int_equal(c->pending(), 0);
  assert_int_equal(srv.body.size(), 3 * 304);
  assert_int_equal(int(c->send(p)), int(H2ConnectUdpClient::Send::Queued));
}

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(request_after_settings), cmocka_unit_test(gateway_without_extended_connect),
      cmocka_unit_test(refusal),                cmocka_unit_test(capsules_both_ways),
      cmocka_unit_test(bounded_send_buffer),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
