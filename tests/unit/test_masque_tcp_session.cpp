// dpctld's CONNECT-UDP sessions on TCP (control/masque_tcp_session.hpp) without sockets. HTTP/2 is driven by
// nghttp2's CLIENT session (an independent peer: it checks our SETTINGS, frames and answers as a client would);
// HTTP/1.1 by the bytes a client sends. Answers come from a real route table (control/masque_routes.hpp); capsules are
// written with proto/masque_capsule.hpp and read back with its CapsuleReader.
#include "control/masque_routes.hpp"
#include "control/masque_tcp_session.hpp"
#include "proto/masque_capsule.hpp"
#include "tests/unit/cmocka.hpp"

#include <nghttp2/nghttp2.h>

#include <map>
#include <string>

using namespace dptun;

namespace {

const char* kTunnel = "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f";

MasqueRouteTable routes() {
  MasqueRoute dns;
  dns.host = "dns.corp.example.com";
  dns.port = 53;
  dns.tunnel = *Uuid::parse(kTunnel);
  dns.to_host = "10.0.0.53";
  dns.to_port = 53;
  dns.allow = {"CN=alice"};
  return MasqueRouteTable({dns});
}

std::string bytes(std::span<const uint8_t> b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); }

std::string capsule(uint64_t context, const std::string& payload) {
  std::vector<uint8_t> out;
  append_datagram_capsule(out, context, {reinterpret_cast<const uint8_t*>(payload.data()), payload.size()});
  return bytes(out);
}

std::string raw_capsule(uint64_t type, const std::string& value) {
  std::vector<uint8_t> out;
  append_capsule_header(out, type, value.size());
  return bytes(out) + value;
}

// The server side: the session under test, its callbacks recorded, answers from the route table for `cn`.
struct Server {
  MasqueRouteTable table = routes();
  std::string cn = "CN=alice";
  bool later = false;
  std::vector<std::pair<int32_t, uint16_t>> bad;
  std::vector<std::pair<int32_t, std::string>> datagrams;
  std::vector<std::pair<int32_t, std::string>> ended;
  std::unique_ptr<MasqueTcpSession> s;

  MasqueTcpSession::Callbacks callbacks() {
    MasqueTcpSession::Callbacks cb;
    cb.connect_udp = [this](int32_t, const ConnectUdpRequest& req) {
      if (later) return ConnectUdpAnswer{ConnectUdpAnswer::kLater, {}, {}};
      const MasqueMatch m = table.match(req.target.host, req.target.port, {cn}, true);
      if (!m)
        return ConnectUdpAnswer{uint16_t(masque_refusal_http_status(m.refusal)), masque_refusal_proxy_status(m.refusal),
                                "no"};
      return ConnectUdpAnswer{200, {}, {}};
    };
    cb.bad_request = [this](int32_t id, uint16_t status, const std::string&) { bad.emplace_back(id, status); };
    cb.datagram = [this](int32_t id, std::span<const uint8_t> p) { datagrams.emplace_back(id, bytes(p)); };
    cb.tunnel_ended = [this](int32_t id, const std::string& why) { ended.emplace_back(id, why); };
    return cb;
  }
};

// ------------------------------------------------------------------------------------------------ HTTP/2 client

struct ClientStream {
  std::map<std::string, std::string> headers;
  std::string data;       // DATA received
  std::string to_send;    // DATA to send (the data provider reads it)
  bool end_after = false;  // END_STREAM once to_send is sent
  bool deferred = false;
  bool closed = false;
  uint32_t close_code = 0;
};

struct H2Client {
  Server server;
  nghttp2_session* c = nullptr;
  std::map<int32_t, ClientStream> streams;
  bool goaway = false;

  H2Client() {
    server.s = make_h2_session(server.callbacks());
    nghttp2_session_callbacks* cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(
        cbs, [](nghttp2_session*, const nghttp2_frame* f, const uint8_t* n, size_t nl, const uint8_t* v, size_t vl,
                uint8_t, void* u) {
          static_cast<H2Client*>(u)->streams[f->hd.stream_id].headers[std::string((const char*)n, nl)] =
              std::string((const char*)v, vl);
          return 0;
        });
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        cbs, [](nghttp2_session*, uint8_t, int32_t id, const uint8_t* d, size_t len, void* u) {
          static_cast<H2Client*>(u)->streams[id].data.append((const char*)d, len);
          return 0;
        });
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, [](nghttp2_session*, int32_t id, uint32_t code, void* u) {
      auto& st = static_cast<H2Client*>(u)->streams[id];
      st.closed = true;
      st.close_code = code;
      return 0;
    });
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, [](nghttp2_session*, const nghttp2_frame* f, void* u) {
      if (f->hd.type == NGHTTP2_GOAWAY) static_cast<H2Client*>(u)->goaway = true;
      return 0;
    });
    nghttp2_session_client_new(&c, cbs, this);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_submit_settings(c, NGHTTP2_FLAG_NONE, nullptr, 0);
    pump();
  }
  ~H2Client() { nghttp2_session_del(c); }

  // Moves bytes both ways until neither side has anything to say.
  void pump() {
    for (int round = 0; round < 100; ++round) {
      bool moved = false;
      const uint8_t* data;
      ssize_t n;
      std::string to_server;
      while ((n = nghttp2_session_mem_send(c, &data)) > 0) to_server.append((const char*)data, size_t(n));
      if (!to_server.empty()) {
        server.s->feed({(const uint8_t*)to_server.data(), to_server.size()});
        moved = true;
      }
      std::string to_client;
      server.s->take_output(to_client, SIZE_MAX);
      if (!to_client.empty()) {
        nghttp2_session_mem_recv(c, (const uint8_t*)to_client.data(), to_client.size());
        moved = true;
      }
      if (!moved) return;
    }
  }

  static ssize_t read_cb(nghttp2_session*, int32_t id, uint8_t* buf, size_t len, uint32_t* flags, nghttp2_data_source*,
                         void* u) {
    ClientStream& st = static_cast<H2Client*>(u)->streams[id];
    const size_t n = std::min(len, st.to_send.size());
    if (n) {
      memcpy(buf, st.to_send.data(), n);
      st.to_send.erase(0, n);
      return ssize_t(n);
    }
    if (st.end_after) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      return 0;
    }
    st.deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }

  int32_t request(std::vector<std::pair<std::string, std::string>> fields) {
    std::vector<nghttp2_nv> nva;
    for (auto& [n, v] : fields)
      nva.push_back({(uint8_t*)n.data(), (uint8_t*)v.data(), n.size(), v.size(), NGHTTP2_NV_FLAG_NONE});
    nghttp2_data_provider p{};
    p.read_callback = &H2Client::read_cb;
    const int32_t id = nghttp2_submit_request(c, nullptr, nva.data(), nva.size(), &p, nullptr);
    pump();
    return id;
  }
  int32_t connect_udp(const std::string& host = "dns.corp.example.com", const std::string& port = "53") {
    return request({{":method", "CONNECT"},
                    {":protocol", "connect-udp"},
                    {":scheme", "https"},
                    {":authority", "gw.example.com"},
                    {":path", "/.well-known/masque/udp/" + host + "/" + port + "/"},
                    {"capsule-protocol", "?1"}});
  }
  void send(int32_t id, const std::string& b, bool end = false) {
    ClientStream& st = streams[id];
    st.to_send += b;
    st.end_after = end;
    if (st.deferred) {
      st.deferred = false;
      nghttp2_session_resume_data(c, id);
    }
    pump();
  }
  // The UDP payloads of the DATAGRAM capsules received on `id`.
  std::vector<std::string> received(int32_t id) {
    std::vector<std::string> out;
    CapsuleReader r(70000);
    const std::string& d = streams[id].data;
    r.feed({(const uint8_t*)d.data(), d.size()}, [&](std::span<const uint8_t> v) {
      assert_true(v.size() >= 1 && v[0] == 0);  // context ID 0
      out.push_back(bytes(v.subspan(1)));
    });
    return out;
  }
};

void test_h2_settings_and_accept(void**) {
  H2Client t;
  // RFC 8441 3: the server's SETTINGS say extended CONNECT is understood.
  assert_int_equal(nghttp2_session_get_remote_settings(t.c, NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL), 1);
  assert_int_equal(nghttp2_session_get_remote_settings(t.c, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS),
                   MasqueTcpSession::kMaxStreams);
  const int32_t id = t.connect_udp();
  assert_true(id > 0);
  assert_string_equal(t.streams[id].headers[":status"].c_str(), "200");
  assert_string_equal(t.streams[id].headers["capsule-protocol"].c_str(), "?1");
  assert_false(t.streams[id].closed);
  assert_int_equal(t.server.s->tunnels(), 1);
  // Capsules: a datagram, one with context ID 5 (dropped), an unknown type (skipped), another datagram split in two.
  const std::string two = capsule(0, "second");
  t.send(id, capsule(0, "hello") + capsule(5, "nope") + raw_capsule(0x2a, "skip me") + two.substr(0, 3));
  t.send(id, two.substr(3));
  assert_int_equal(t.server.datagrams.size(), 2);
  assert_string_equal(t.server.datagrams[0].second.c_str(), "hello");
  assert_string_equal(t.server.datagrams[1].second.c_str(), "second");
  assert_int_equal(t.server.datagrams[0].first, id);
  assert_int_equal(t.server.s->stats().datagrams_in, 2);
  assert_int_equal(t.server.s->stats().drop_context, 1);
  assert_int_equal(t.server.s->stats().skipped_capsules, 1);
  // Replies go back as DATAGRAM capsules with context ID 0.
  assert_true(t.server.s->send_datagram(id, {(const uint8_t*)"reply", 5}));
  assert_true(t.server.s->send_datagram(id, {(const uint8_t*)"two", 3}));
  t.pump();
  const auto got = t.received(id);
  assert_int_equal(got.size(), 2);
  assert_string_equal(got[0].c_str(), "reply");
  assert_string_equal(got[1].c_str(), "two");
  // The client ends the stream: the tunnel ends, and our side closes too.
  t.send(id, "", true);
  assert_int_equal(t.server.ended.size(), 1);
  assert_int_equal(t.server.s->tunnels(), 0);
  assert_true(t.streams[id].closed);
  assert_false(t.server.s->send_datagram(id, {(const uint8_t*)"late", 4}));
}

void test_h2_refusals(void**) {
  H2Client t;
  int32_t id = t.connect_udp("nowhere.example.com", "53");
  assert_string_equal(t.streams[id].headers[":status"].c_str(), "404");
  assert_non_null(strstr(t.streams[id].headers["proxy-status"].c_str(), "destination_not_found"));
  assert_int_equal(nghttp2_session_get_stream_remote_close(t.c, id), 1);  // END_STREAM on the answer
  t.server.cn = "CN=mallory";
  id = t.connect_udp();
  assert_string_equal(t.streams[id].headers[":status"].c_str(), "403");
  assert_non_null(strstr(t.streams[id].headers["proxy-status"].c_str(), "http_request_denied"));
  // Not CONNECT: 405; a path that is no target: 400; another protocol: 501.
  id = t.request({{":method", "GET"}, {":scheme", "https"}, {":authority", "gw"}, {":path", "/"}});
  assert_string_equal(t.streams[id].headers[":status"].c_str(), "405");
  id = t.request({{":method", "CONNECT"}, {":protocol", "connect-udp"}, {":scheme", "https"}, {":authority", "gw"},
                  {":path", "/.well-known/masque/udp/host/0/"}});
  assert_string_equal(t.streams[id].headers[":status"].c_str(), "400");
  assert_non_null(strstr(t.streams[id].headers["proxy-status"].c_str(), "http_request_error"));
  id = t.request({{":method", "CONNECT"}, {":protocol", "websocket"}, {":scheme", "https"}, {":authority", "gw"},
                  {":path", "/chat"}});
  assert_string_equal(t.streams[id].headers[":status"].c_str(), "501");
  assert_int_equal(t.server.bad.size(), 3);
  assert_int_equal(t.server.s->tunnels(), 0);
  // Fields over 16 KiB: 431.
  id = t.request({{":method", "CONNECT"}, {":protocol", "connect-udp"}, {":scheme", "https"}, {":authority", "gw"},
                  {":path", "/.well-known/masque/udp/dns.corp.example.com/53/"}, {"x-big", std::string(17000, 'a')}});
  assert_string_equal(t.streams[id].headers[":status"].c_str(), "431");
  assert_int_equal(t.server.s->stats().requests, 6);
  assert_false(t.goaway);
}

void test_h2_hostile_capsules(void**) {
  H2Client t;
  // An oversized DATAGRAM capsule is skipped (never buffered) and what follows is read.
  const int32_t a = t.connect_udp();
  t.send(a, capsule(0, std::string(70000, 'x')) + capsule(0, "after"));
  assert_int_equal(t.server.s->stats().drop_too_large, 1);
  assert_int_equal(t.server.datagrams.size(), 1);
  assert_string_equal(t.server.datagrams[0].second.c_str(), "after");
  // A DATAGRAM capsule without its context ID is malformed: RST_STREAM PROTOCOL_ERROR, the tunnel ends.
  t.send(a, raw_capsule(0, ""));
  assert_int_equal(t.server.s->stats().drop_malformed, 1);
  assert_true(t.streams[a].closed);
  assert_int_equal(t.streams[a].close_code, NGHTTP2_PROTOCOL_ERROR);
  assert_int_equal(t.server.ended.size(), 1);
  assert_int_equal(t.server.ended[0].first, a);
  // A stream that ends inside a capsule is malformed too.
  const int32_t b = t.connect_udp();
  t.send(b, capsule(0, "cut short").substr(0, 4), true);
  assert_int_equal(t.server.s->stats().drop_malformed, 2);
  assert_int_equal(t.server.ended.size(), 2);
  assert_int_equal(t.server.datagrams.size(), 1);
  // The connection itself is fine: another request is accepted.
  const int32_t c = t.connect_udp();
  assert_string_equal(t.streams[c].headers[":status"].c_str(), "200");
  assert_false(t.goaway);
}

void test_h2_tunnel_limit_and_cut(void**) {
  H2Client t;
  std::vector<int32_t> ids;
  for (size_t i = 0; i < MasqueTcpSession::kMaxTunnels; ++i) {
    ids.push_back(t.connect_udp());
    assert_string_equal(t.streams[ids.back()].headers[":status"].c_str(), "200");
  }
  const int32_t over = t.connect_udp();
  assert_string_equal(t.streams[over].headers[":status"].c_str(), "429");
  assert_non_null(strstr(t.streams[over].headers["proxy-status"].c_str(), "connection_limit_reached"));
  assert_int_equal(t.server.s->stats().over_tunnel_limit, 1);
  // dpctld cuts one (its session was revoked): RST_STREAM CANCEL, no tunnel_ended callback; a new one fits again.
  t.server.s->cut(ids[0]);
  t.pump();
  assert_true(t.streams[ids[0]].closed);
  assert_int_equal(t.streams[ids[0]].close_code, NGHTTP2_CANCEL);
  assert_int_equal(t.server.ended.size(), 0);
  const int32_t again = t.connect_udp();
  assert_string_equal(t.streams[again].headers[":status"].c_str(), "200");
  // The connection goes: every open tunnel ends.
  t.server.s->peer_closed();
  assert_int_equal(t.server.ended.size(), MasqueTcpSession::kMaxTunnels);
  assert_true(t.server.s->closing());
}

void test_h2_slow_client(void**) {
  H2Client t;
  const int32_t id = t.connect_udp();
  // The client reads nothing: replies queue up to the bound, then are dropped and counted.
  const std::string payload(1200, 'r');
  size_t queued = 0;
  for (int i = 0; i < 1000; ++i) queued += t.server.s->send_datagram(id, {(const uint8_t*)payload.data(), payload.size()});
  assert_true(queued > 0);
  assert_true(queued * (payload.size() + 4) <= MasqueTcpSession::kMaxPendingOutput);
  assert_int_equal(t.server.s->stats().drop_slow_client, 1000 - queued);
  // Once it reads (flow control lets through what its window allows), some room comes back.
  t.pump();
  nghttp2_session_consume(t.c, id, t.streams[id].data.size());
  t.pump();
  assert_true(t.received(id).size() > 0);
  assert_true(t.server.s->send_datagram(id, {(const uint8_t*)payload.data(), payload.size()}));
}

void test_h2_later_answer(void**) {
  H2Client t;
  t.server.later = true;
  const int32_t id = t.connect_udp();
  assert_int_equal(t.server.s->waiting(), 1);
  assert_true(t.streams[id].headers.empty());
  // Capsules sent before the answer (RFC 9298 allows it) wait, one of them cut in two, and are read on the 2xx.
  const std::string split = capsule(0, "split");
  t.send(id, capsule(0, "early") + split.substr(0, 2));
  assert_int_equal(t.server.datagrams.size(), 0);
  t.server.s->complete(id, ConnectUdpAnswer{200, {}, {}});
  t.pump();
  assert_string_equal(t.streams[id].headers[":status"].c_str(), "200");
  assert_int_equal(t.server.datagrams.size(), 1);
  assert_string_equal(t.server.datagrams[0].second.c_str(), "early");
  t.send(id, split.substr(2));
  assert_int_equal(t.server.datagrams.size(), 2);
  assert_string_equal(t.server.datagrams[1].second.c_str(), "split");
  assert_int_equal(t.server.s->waiting(), 0);
  assert_int_equal(t.server.s->tunnels(), 1);
  // Per stream: one reset while its answer is pending no longer waits, whatever other streams do (dpctld checks the
  // stream itself before it makes a session for a late answer).
  const int32_t a = t.connect_udp(), b = t.connect_udp();
  assert_true(t.server.s->waiting(a) && t.server.s->waiting(b));
  assert_false(t.server.s->waiting(id));
  nghttp2_submit_rst_stream(t.c, NGHTTP2_FLAG_NONE, a, NGHTTP2_CANCEL);
  t.pump();
  assert_false(t.server.s->waiting(a));
  assert_true(t.server.s->waiting(b));
  assert_int_equal(t.server.s->waiting(), 1);
}

void test_h2_not_http2(void**) {
  Server s;
  s.s = make_h2_session(s.callbacks());
  const std::string junk = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  assert_false(s.s->feed({(const uint8_t*)junk.data(), junk.size()}));
  assert_true(s.s->closing());
}

// ------------------------------------------------------------------------------------------------ HTTP/1.1

struct H1 {
  Server server;
  std::string out;
  H1() { server.s = make_h1_session(server.callbacks()); }
  bool feed(const std::string& b) {
    const bool r = server.s->feed({(const uint8_t*)b.data(), b.size()});
    server.s->take_output(out, SIZE_MAX);
    return r;
  }
};

std::string upgrade_request(const std::string& path = "/.well-known/masque/udp/dns.corp.example.com/53/",
                            const std::string& extra = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: gw.example.com\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\n"
         "Capsule-Protocol: ?1\r\n" + extra + "\r\n";
}

void test_h1_upgrade(void**) {
  H1 t;
  // Byte at a time: nothing until the head is complete.
  const std::string req = upgrade_request();
  for (size_t i = 0; i + 1 < req.size(); ++i) assert_true(t.feed(req.substr(i, 1)));
  assert_true(t.out.empty());
  // The last byte of the head, then capsules in the same read.
  assert_true(t.feed(req.substr(req.size() - 1) + capsule(0, "early") + capsule(3, "ctx")));
  assert_string_equal(t.out.c_str(),
                      "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\n"
                      "Capsule-Protocol: ?1\r\n\r\n");
  assert_int_equal(t.server.datagrams.size(), 1);
  assert_string_equal(t.server.datagrams[0].second.c_str(), "early");
  assert_int_equal(t.server.s->stats().drop_context, 1);
  assert_int_equal(t.server.s->tunnels(), 1);
  t.out.clear();
  assert_true(t.server.s->send_datagram(0, {(const uint8_t*)"pong", 4}));
  t.server.s->take_output(t.out, SIZE_MAX);
  assert_string_equal(t.out.c_str(), capsule(0, "pong").c_str());
  // The client closes: the tunnel ends.
  t.server.s->peer_closed();
  assert_int_equal(t.server.ended.size(), 1);
  assert_true(t.server.s->closing());
}

void expect_refusal(const std::string& request, int status, const char* in_proxy_status, bool bad_request = true) {
  H1 t;
  assert_false(t.feed(request));
  const std::string head = "HTTP/1.1 " + std::to_string(status) + " ";
  assert_true(t.out.rfind(head, 0) == 0);
  assert_non_null(strstr(t.out.c_str(), "\r\nConnection: close\r\n"));
  assert_non_null(strstr(t.out.c_str(), in_proxy_status));
  assert_true(t.server.s->closing());
  assert_int_equal(t.server.s->tunnels(), 0);
  assert_int_equal(t.server.bad.size(), bad_request ? 1 : 0);
}

void test_h1_refusals(void**) {
  expect_refusal(upgrade_request("/.well-known/masque/udp/nowhere.example.com/53/"), 404, "destination_not_found", false);
  expect_refusal("POST / HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\n\r\n", 405,
                 "http_request_error");
  expect_refusal("GET /.well-known/masque/udp/dns.corp.example.com/53/ HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\n"
                 "Upgrade: websocket\r\n\r\n", 501, "http_request_error");
  expect_refusal("GET /.well-known/masque/udp/dns.corp.example.com/53/ HTTP/1.1\r\nHost: gw\r\n\r\n", 400,
                 "not an Upgrade request");
  expect_refusal("GET /.well-known/masque/udp/dns.corp.example.com/53/ HTTP/1.1\r\nConnection: Upgrade\r\n"
                 "Upgrade: connect-udp\r\n\r\n", 400, "no Host");
  expect_refusal(upgrade_request("/.well-known/masque/udp/host/99999/"), 400, "http_request_error");
  expect_refusal("GET / HTTP/1.0\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\n\r\n", 400,
                 "not an HTTP/1.1 request");
  expect_refusal("\x16\x03\x01 not http\r\n\r\n", 400, "not an HTTP/1.1 request");
  // The head over 16 KiB, in pieces, before it ends: 431.
  H1 t;
  std::string big = "GET / HTTP/1.1\r\nHost: gw\r\n";
  bool open = true;
  for (int i = 0; i < 40 && open; ++i) open = t.feed(big + "X-Pad: " + std::string(500, 'p') + "\r\n"), big.clear();
  assert_false(open);
  assert_true(t.out.rfind("HTTP/1.1 431 ", 0) == 0);
  // Not allowed: 403.
  H1 d;
  d.server.cn = "CN=mallory";
  assert_false(d.feed(upgrade_request()));
  assert_true(d.out.rfind("HTTP/1.1 403 ", 0) == 0);
}

void test_h1_hostile_capsules(void**) {
  H1 t;
  assert_true(t.feed(upgrade_request()));
  assert_true(t.feed(capsule(0, std::string(70000, 'x')) + capsule(0, "ok")));
  assert_int_equal(t.server.s->stats().drop_too_large, 1);
  assert_int_equal(t.server.datagrams.size(), 1);
  assert_false(t.feed(raw_capsule(0, "")));  // no context ID: malformed, the connection closes
  assert_int_equal(t.server.s->stats().drop_malformed, 1);
  assert_int_equal(t.server.ended.size(), 1);
  assert_true(t.server.s->closing());
  // Ending inside a capsule is malformed too.
  H1 u;
  assert_true(u.feed(upgrade_request() + capsule(0, "partial").substr(0, 3)));
  u.server.s->peer_closed();
  assert_int_equal(u.server.s->stats().drop_malformed, 1);
  // Cut by dpctld: closing, no callback.
  H1 v;
  assert_true(v.feed(upgrade_request()));
  v.server.s->cut(0);
  assert_true(v.server.s->closing());
  assert_int_equal(v.server.ended.size(), 0);
}

void test_h1_slow_client_and_later(void**) {
  H1 t;
  t.server.later = true;
  assert_true(t.feed(upgrade_request() + capsule(0, "waiting")));
  assert_int_equal(t.server.s->waiting(), 1);
  assert_true(t.out.empty());
  t.server.s->complete(0, ConnectUdpAnswer{200, {}, {}});
  t.server.s->take_output(t.out, SIZE_MAX);
  assert_true(t.out.rfind("HTTP/1.1 101 ", 0) == 0);
  assert_int_equal(t.server.datagrams.size(), 1);  // the capsule sent before the answer
  const std::string payload(1000, 'z');
  size_t queued = 0;
  for (int i = 0; i < 1000; ++i) queued += t.server.s->send_datagram(0, {(const uint8_t*)payload.data(), payload.size()});
  assert_true(queued > 200 && queued * 1003 <= MasqueTcpSession::kMaxPendingOutput);
  assert_int_equal(t.server.s->stats().drop_slow_client, 1000 - queued);
}

}  // namespace

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_h2_settings_and_accept), cmocka_unit_test(test_h2_refusals),
      cmocka_unit_test(test_h2_hostile_capsules),    cmocka_unit_test(test_h2_tunnel_limit_and_cut),
      cmocka_unit_test(test_h2_slow_client),         cmocka_unit_test(test_h2_later_answer),
      cmocka_unit_test(test_h2_not_http2),           cmocka_unit_test(test_h1_upgrade),
      cmocka_unit_test(test_h1_refusals),            cmocka_unit_test(test_h1_hostile_capsules),
      cmocka_unit_test(test_h1_slow_client_and_later),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
