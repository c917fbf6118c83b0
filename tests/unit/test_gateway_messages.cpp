// dpctld -> dpgw control messages: what dpctld encodes, dpgw decodes to the same values; malformed fields are
// refused with a message naming the field.
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/unit/cmocka.hpp"

#include "proto/gateway_messages.hpp"

using namespace dptun;
using nlohmann::json;

static Uuid id1() { return *Uuid::parse("6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f"); }

static std::string decode_error(void (*fn)(const json&), const json& j) {
  try {
    fn(j);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

static void tunnel_round_trip(void**) {
  TunnelSpec t{id1(), "web", true};
  json j = encode_tunnel(t);
  assert_false(j.contains("from_config"));  // local knowledge, not sent
  TunnelSpec back = decode_tunnel(json::parse(j.dump()));
  assert_true(back.id == t.id);
  assert_string_equal(back.name.c_str(), "web");
  assert_false(back.from_config);
  // A tunnel without a name is named by its id.
  assert_string_equal(decode_tunnel(json{{"id", id1().str()}}).name.c_str(), id1().str().c_str());
  assert_non_null(strstr(decode_error([](const json& x) { decode_tunnel(x); }, json{{"id", "nope"}}).c_str(), "'id'"));
}

static void session_round_trip(void**) {
  SessionSpec s;
  s.index = 40000;
  s.tunnel = id1();
  s.weight = 255;
  for (int i = 0; i < 32; ++i) s.base_secret.push_back(uint8_t(i * 7));
  SessionSpec back = decode_session(json::parse(encode_session(s).dump()));
  assert_int_equal(back.index, 40000);
  assert_true(back.tunnel == s.tunnel);
  assert_int_equal(back.weight, 255);
  assert_true(back.base_secret == s.base_secret);
  assert_false(back.peer_clock_counters);  // sessions from dpctld are never static peers

  auto err = [](json j) { return decode_error([](const json& x) { decode_session(x); }, j); };
  json good = encode_session(s);
  json bad = good;
  bad["index"] = 5;  // a static peer's index
  assert_non_null(strstr(err(bad).c_str(), "'index'"));
  bad = good;
  bad["index"] = "40000";
  assert_non_null(strstr(err(bad).c_str(), "'index'"));
  bad = good;
  bad["weight"] = 0;
  assert_non_null(strstr(err(bad).c_str(), "'weight'"));
  bad = good;
  bad["secret"] = "abcd";
  assert_non_null(strstr(err(bad).c_str(), "'secret'"));
  bad = good;
  bad.erase("tunnel");
  assert_non_null(strstr(err(bad).c_str(), "'tunnel'"));
}

// A QUIC-framed session's connection (docs/protocol.md "QUIC framing"): secrets of the cipher's length, the
// connection IDs, the first packet number; a relay session has no "quic" object.
static void quic_session_round_trip(void**) {
  SessionSpec s;
  s.index = 40001;
  s.tunnel = id1();
  s.base_secret.assign(32, 9);
  assert_false(encode_session(s).contains("quic"));
  QuicSessionSpec q;
  q.cipher = QuicCipher::Aes256Gcm;
  q.rx_secret.assign(48, 1);
  q.tx_secret.assign(48, 2);
  q.cid_tails = {{1, 2, 3, 4}, {0xa0, 0xb0, 0xc0, 0xd0}};  // every connection ID dpctld issued
  q.peer_cid = {8, 7, 6, 5, 4, 3, 2, 1};
  q.first_tx_pn = 12345;
  q.max_udp_payload_size = 1452;  // the agent's transport parameters
  q.max_datagram_frame_size = 1200;
  q.path = Endpoint{Ipv4{0x0a630202}, 40400};  // the address the handshake validated
  s.quic = q;
  const json j = encode_session(s);
  assert_string_equal(j["quic"]["cipher"].get<std::string>().c_str(), "TLS_AES_256_GCM_SHA384");
  const SessionSpec back = decode_session(json::parse(j.dump()));
  assert_true(back.quic.has_value());
  assert_true(*back.quic == q);

  auto err = [](json j) { return decode_error([](const json& x) { decode_session(x); }, j); };
  json bad = j;
  bad["quic"]["cipher"] = "TLS_AES_128_CCM_SHA256";
  assert_non_null(strstr(err(bad).c_str(), "'quic.cipher'"));
  bad = j;
  bad["quic"]["rx_secret"] = std::string(64, 'a');  // 32 bytes: AES-256-GCM's SHA-384 secrets are 48
  assert_non_null(strstr(err(bad).c_str(), "'quic.rx_secret'"));
  bad = j;
  bad["quic"]["peer_cid"] = "0102";
  assert_non_null(strstr(err(bad).c_str(), "'quic.peer_cid'"));
  bad = j;
  bad["quic"] = "yes";
  assert_non_null(strstr(err(bad).c_str(), "'quic'"));
  bad = j;
  bad["quic"].erase("first_tx_pn");  // the default: above the handshake's numbers
  assert_int_equal(decode_session(bad).quic->first_tx_pn, uint64_t(1) << 30);
  assert_true(j["quic"]["cid_tails"] == json::parse(R"(["01020304","a0b0c0d0"])"));
  for (const char* tails : {R"([])", R"("01020304")", R"(["010203"])", R"(["01020304","01020304"])",
                            R"(["00000001","00000002","00000003","00000004","00000005","00000006","00000007",
                                "00000008","00000009"])"}) {
    bad = j;
    bad["quic"]["cid_tails"] = json::parse(tails);
    assert_non_null(strstr(err(bad).c_str(), "'quic.cid_tails'"));
  }
  bad = j;
  bad["quic"]["max_datagram_frame_size"] = 0;  // no DATAGRAM frames (RFC 9221 3): no tunnel
  assert_non_null(strstr(err(bad).c_str(), "max_datagram_frame_size"));
  bad = j;
  bad["quic"]["max_udp_payload_size"] = 1199;  // RFC 9000 18.2: invalid below 1200
  assert_non_null(strstr(err(bad).c_str(), "max_udp_payload_size"));
  bad = j;
  bad["quic"].erase("max_udp_payload_size");
  bad["quic"].erase("max_datagram_frame_size");
  assert_int_equal(decode_session(bad).quic->max_udp_payload_size, 65527);
  assert_int_equal(decode_session(bad).quic->max_datagram_frame_size, 65535);
  assert_string_equal(j["quic"]["path"].get<std::string>().c_str(), "10.99.2.2:40400");
  for (const char* path : {"", "10.99.2.2", "10.99.2.2:0", "0.0.0.0:443", "[::1]:443"}) {  // required, IPv4
    bad = j;
    bad["quic"]["path"] = path;
    assert_non_null(strstr(err(bad).c_str(), "'quic.path'"));
  }
  bad = j;
  bad["quic"].erase("path");
  assert_non_null(strstr(err(bad).c_str(), "path"));
}

// A MASQUE client's session (docs/masque.md "Datagrams on the fast path"): the request stream and the route's target
// beside the visitor role and the QUIC connection; refused without either, with a stream ID that is not a
// client-initiated bidirectional stream's, or with a target that is no IPv4 address and port.
static void masque_session_round_trip(void**) {
  SessionSpec s;
  s.index = 40002;
  s.tunnel = id1();
  s.base_secret.assign(32, 9);
  s.visitor = true;
  QuicSessionSpec q;
  q.rx_secret.assign(32, 1);
  q.tx_secret.assign(32, 2);
  q.cid_tails = {{1, 2, 3, 4}};
  q.path = Endpoint{Ipv4{0xc6336407}, 51234};
  s.quic = q;
  assert_false(encode_session(s).contains("masque"));
  s.masque = MasqueSpec{(uint64_t(1) << 62) - 4, Endpoint{Ipv4{0x0a000005}, 53}};  // the highest stream ID there is
  const json j = encode_session(s);
  assert_string_equal(j["masque"]["target"].get<std::string>().c_str(), "10.0.0.5:53");
  assert_true(j["masque"]["stream_id"] == json((uint64_t(1) << 62) - 4));
  const SessionSpec back = decode_session(json::parse(j.dump()));
  assert_true(back.masque.has_value());
  assert_true(*back.masque == *s.masque);
  assert_true(back.visitor);
  json ok = j;
  ok["masque"]["stream_id"] = 0;  // (a signed JSON integer, as a hand-written message has it)
  assert_int_equal(decode_session(ok).masque->stream_id, 0);

  auto err = [](json j) { return decode_error([](const json& x) { decode_session(x); }, j); };
  json bad = j;
  bad.erase("role");  // an agent's session carries a tunnel's flows: no MASQUE client
  assert_non_null(strstr(err(bad).c_str(), "'masque'"));
  // Its own role, never a visitor's: a dpgw that does not know the role refuses the session rather than let the
  // client visit the whole tunnel; and the role without the object is refused too.
  assert_string_equal(j["role"].get<std::string>().c_str(), "connect-udp");
  bad = j;
  bad["role"] = "visitor";
  assert_non_null(strstr(err(bad).c_str(), "'masque'"));
  bad = j;
  bad.erase("masque");
  assert_non_null(strstr(err(bad).c_str(), "connect-udp"));
  bad = j;
  bad.erase("quic");  // relay frames have no HTTP Datagrams
  assert_non_null(strstr(err(bad).c_str(), "'masque'"));
  bad = j;
  bad["masque"] = "4";
  assert_non_null(strstr(err(bad).c_str(), "'masque'"));
  for (const json& id : {json(1), json(2), json(6), json(-4), json(uint64_t(1) << 62), json(4.0), json("4"), json()}) {
    bad = j;
    bad["masque"]["stream_id"] = id;
    assert_non_null(strstr(err(bad).c_str(), "'masque.stream_id'"));
  }
  bad = j;
  bad["masque"].erase("stream_id");
  assert_non_null(strstr(err(bad).c_str(), "'masque.stream_id'"));
  for (const char* target : {"", "10.0.0.5", "10.0.0.5:0", "10.0.0.5:65536", "0.0.0.0:53", "[::1]:53", "dns:53"}) {
    bad = j;
    bad["masque"]["target"] = target;
    assert_non_null(strstr(err(bad).c_str(), "'masque.target'"));
  }
  bad = j;
  bad["masque"].erase("target");
  assert_non_null(strstr(err(bad).c_str(), "'masque.target'"));
}

// An HTTP/2 or HTTP/1.1 client whose capsules dpctld carries (docs/masque.md "HTTP/2 and HTTP/1.1 fallback"): the
// masque object with a request_id, no quic object, stream_id 0; refused with a quic object, another stream ID, or a
// request_id outside 1..2^53-1.
static void capsule_session_round_trip(void**) {
  SessionSpec s;
  s.index = 40003;
  s.tunnel = id1();
  s.base_secret.assign(32, 9);
  s.visitor = true;
  s.masque = MasqueSpec{0, Endpoint{Ipv4{0x0a000005}, 53}, (uint64_t(1) << 53) - 1};
  const json j = encode_session(s);
  assert_false(j.contains("quic"));
  assert_string_equal(j["role"].get<std::string>().c_str(), "connect-udp");
  assert_true(j["masque"]["request_id"] == json((uint64_t(1) << 53) - 1));
  const SessionSpec back = decode_session(json::parse(j.dump()));
  assert_true(back.masque.has_value());
  assert_true(*back.masque == *s.masque);
  assert_false(back.quic.has_value());
  assert_true(back.visitor);
  // An HTTP/3 client's masque object has no request_id.
  SessionSpec h3 = s;
  QuicSessionSpec q;
  q.rx_secret.assign(32, 1);
  q.tx_secret.assign(32, 2);
  q.cid_tails = {{1, 2, 3, 4}};
  q.path = Endpoint{Ipv4{0xc6336407}, 51234};
  h3.quic = q;
  h3.masque->request_id = 0;
  const json jq = encode_session(h3);
  assert_false(jq["masque"].contains("request_id"));
  assert_int_equal(decode_session(jq).masque->request_id, 0);

  auto err = [](json j) { return decode_error([](const json& x) { decode_session(x); }, j); };
  json bad = j;
  bad["masque"]["stream_id"] = 4;  // capsules name no QUIC stream
  assert_non_null(strstr(err(bad).c_str(), "'masque.stream_id'"));
  for (const json& id : {json(0), json(-1), json(uint64_t(1) << 53), json(1.0), json("1"), json(true)}) {
    bad = j;
    bad["masque"]["request_id"] = id;
    assert_non_null(strstr(err(bad).c_str(), "'masque.request_id'"));
  }
  bad = j;
  bad["quic"] = jq["quic"];  // nothing of it comes over QUIC
  assert_non_null(strstr(err(bad).c_str(), "'quic'"));
  bad = j;
  bad.erase("role");
  assert_non_null(strstr(err(bad).c_str(), "'masque'"));
}

// masque_datagrams (both ways on dpgw's control socket): the payloads in base64 (RFC 4648 4, padded), every length
// mod 3 and an empty one; the index, request id, count, encoding and size refused by name.
static void masque_datagrams_round_trip(void**) {
  MasqueDatagrams d;
  d.index = 40003;
  d.request_id = 77;
  d.datagrams = {{}, {0xfb}, {0xfb, 0xff}, {0xfb, 0xff, 0xbf}, {'f', 'o', 'o', 'b'}};
  const json j = encode_masque_datagrams(d);
  assert_string_equal(j["type"].get<std::string>().c_str(), "masque_datagrams");
  assert_true(gateway_message_type(j) == GatewayMessageType::MasqueDatagrams);
  // RFC 4648 10's vectors' shapes, and the alphabet's last two characters (0xfb 0xff -> "+/"), padding kept.
  assert_true(j["datagrams"] == json({"", "+w==", "+/8=", "+/+/", "Zm9vYg=="}));
  MasqueDatagrams back = decode_masque_datagrams(json::parse(j.dump()));
  assert_int_equal(back.index, 40003);
  assert_int_equal(back.request_id, 77);
  assert_true(back.datagrams == d.datagrams);
  // The largest: 64 payloads; one of 65527 bytes.
  d.datagrams.assign(MasqueDatagrams::kMaxMasqueDatagrams, std::vector<uint8_t>{1, 2, 3});
  d.datagrams[5].assign(MasqueDatagrams::kMaxMasqueDatagramSize, 0xa5);
  back = decode_masque_datagrams(encode_masque_datagrams(d));
  assert_true(back.datagrams == d.datagrams);
  assert_true(decode_masque_datagrams(json::parse(R"({"index":32768,"request_id":9007199254740991,"datagrams":["Zm9vYmFy"]})"))
                  .datagrams[0] == std::vector<uint8_t>({'f', 'o', 'o', 'b', 'a', 'r'}));

  auto err = [](json j) { return decode_error([](const json& x) { decode_masque_datagrams(x); }, j); };
  const json good = encode_masque_datagrams(MasqueDatagrams{40003, 77, {{1, 2, 3}}});
  json bad;
  for (const json& index : {json(0), json(32767), json(65536), json("40003"), json()}) {
    bad = good;
    bad["index"] = index;
    assert_non_null(strstr(err(bad).c_str(), "'index'"));
  }
  for (const json& id : {json(0), json(-5), json(uint64_t(1) << 53), json(3.0), json("77"), json()}) {
    bad = good;
    bad["request_id"] = id;
    assert_non_null(strstr(err(bad).c_str(), "'request_id'"));
  }
  for (const json& list : {json::array(), json("AQID"), json(), json(std::vector<std::string>(65, "AQID"))}) {
    bad = good;
    bad["datagrams"] = list;
    assert_non_null(strstr(err(bad).c_str(), "'datagrams'"));
  }
  // Not base64, or not strictly: no padding, padding inside or three of it, blanks, another alphabet (RFC 4648 5),
  // a non-string; and one byte over the largest payload.
  for (const json& p : {json("AQI"), json("AQ=D"), json("A==="), json("AQ==AQ=="), json(" AQID"), json("AQID\n"),
                        json("AQ-_"), json("AQ\"D"), json(5), json::array()}) {
    bad = good;
    bad["datagrams"] = json::array({"AQID", p});
    assert_non_null(strstr(err(bad).c_str(), "'datagrams'"));
  }
  d.datagrams = {std::vector<uint8_t>(MasqueDatagrams::kMaxMasqueDatagramSize + 1, 1)};
  assert_non_null(strstr(err(encode_masque_datagrams(d)).c_str(), "'datagrams'"));
}

static void entry_round_trip(void**) {
  EntrySpec e;
  e.proto = 17;
  e.port = 5353;
  e.listen = Ipv4{0x0a630101};
  e.tunnel = id1();
  e.target = *Endpoint::parse("10.0.0.10:53");
  e.keepalive = true;
  e.udp_ttl_ns = 2'500'000'000ull;
  EntrySpec back = decode_entry(json::parse(encode_entry(e).dump()));
  assert_int_equal(back.proto, 17);
  assert_int_equal(back.port, 5353);
  assert_true(back.listen && back.listen->value == 0x0a630101);
  assert_true(back.target == e.target);
  assert_true(back.keepalive);
  assert_int_equal(back.udp_ttl_ns, 2'500'000'000ull);
  e.listen.reset();
  e.proto = 6;
  back = decode_entry(encode_entry(e));
  assert_false(back.listen.has_value());
  assert_int_equal(back.proto, 6);

  auto err = [](json j) { return decode_error([](const json& x) { decode_entry(x); }, j); };
  json good = encode_entry(e);
  json bad = good;
  bad["proto"] = "sctp";
  assert_non_null(strstr(err(bad).c_str(), "'proto'"));
  bad = good;
  bad["port"] = 70000;
  assert_non_null(strstr(err(bad).c_str(), "'port'"));
  bad = good;
  bad["target"] = "example.org:80";
  assert_non_null(strstr(err(bad).c_str(), "'target'"));
  bad = good;
  bad["ttl"] = 0;
  assert_non_null(strstr(err(bad).c_str(), "'ttl'"));
  bad = good;
  bad["listen"] = "::1";
  assert_non_null(strstr(err(bad).c_str(), "'listen'"));
  bad = good;
  bad["keepalive"] = "yes";
  assert_non_null(strstr(err(bad).c_str(), "'keepalive'"));
}

static void routed_entries(void**) {
  EntrySpec e;
  e.proto = 17;
  e.port = 443;
  e.route = EntryRoute::QuicSni;
  json j = encode_entry(e);
  assert_false(j.contains("tunnel"));  // routed entry points have no tunnel or target of their own
  EntrySpec back = decode_entry(json::parse(j.dump()));
  assert_true(back.route == EntryRoute::QuicSni);
  assert_string_equal(entry_route_name(EntryRoute::TlsSni), "sni");
  assert_true(parse_entry_route("http") == EntryRoute::HttpHost);
  assert_false(parse_entry_route("smtp").has_value());
  auto err = [](const json& x) { return decode_error([](const json& y) { decode_entry(y); }, x); };
  assert_non_null(strstr(err(json{{"proto", "tcp"}, {"port", 443}, {"route", "quic"}}).c_str(), "'route'"));
  assert_non_null(strstr(err(json{{"proto", "udp"}, {"port", 443}, {"route", "sni"}}).c_str(), "'route'"));
  assert_non_null(strstr(err(json{{"proto", "tcp"}, {"port", 443}, {"route", "sni"}, {"tunnel", id1().str()}}).c_str(),
                         "no 'tunnel'"));
  assert_non_null(strstr(err(json{{"proto", "tcp"}, {"port", 443}, {"route", "ftp"}}).c_str(), "'route'"));
  // "route" present means routed by hostname: "fixed" is said by leaving it out (dpgw refuses it, as the state
  // file and the dpctl API do).
  assert_non_null(strstr(err(json{{"proto", "tcp"}, {"port", 80}, {"route", "fixed"}, {"tunnel", id1().str()},
                                  {"target", "10.0.0.1:80"}})
                              .c_str(),
                         "'route'"));
  // null is absent, as everywhere in JSON from outside.
  assert_true(decode_entry(json{{"proto", "tcp"}, {"port", 443}, {"route", "sni"}, {"tunnel", nullptr}}).route ==
              EntryRoute::TlsSni);
}

// The TTL travels as seconds: read to the nearest nanosecond, so what is read, written and read again is the same
// (a truncating read lost a nanosecond at every pass for values like 1.005 s).
static void entry_ttl(void**) {
  const std::pair<double, uint64_t> cases[] = {{0.1, 100'000'000ull},          {0.3, 300'000'000ull},
                                               {1.005, 1'005'000'000ull},      {2.675, 2'675'000'000ull},
                                               {30.5, 30'500'000'000ull},      {86399.999999999, 86'399'999'999'999ull},
                                               {86400, 86'400'000'000'000ull}};
  for (const auto& [seconds, ns] : cases) {
    const json j{{"proto", "udp"}, {"port", 443}, {"route", "quic"}, {"ttl", seconds}};
    const EntrySpec e = decode_entry(j);
    assert_int_equal(e.udp_ttl_ns, ns);
    assert_int_equal(decode_entry(json::parse(encode_entry(e).dump())).udp_ttl_ns, ns);
    assert_int_equal(entry_ttl_ns(j), ns);
  }
  assert_int_equal(entry_ttl_ns(json::object()), 5'000'000'000ull);  // the default
}

// What goes on the wire, to the byte: the names of proto/control_names.hpp in the envelope old peers expect.
static void envelopes(void**) {
  assert_string_equal(gateway_message(GatewayMessageType::SessionDel, {{"index", 32768}}).dump().c_str(),
                      R"({"index":32768,"type":"session_del"})");
  assert_string_equal(gateway_message(GatewayMessageType::Status).dump().c_str(), R"({"type":"status"})");
  assert_string_equal(trace_message(TraceOp::Poll, {{"generation", 3}}).dump().c_str(),
                      R"({"generation":3,"op":"poll","type":"trace"})");
  const json refusal = gateway_error("dpgw still holds it", GatewayErrorCode::IndexInUse);
  assert_string_equal(refusal.dump().c_str(), R"({"code":"index_in_use","reason":"dpgw still holds it","type":"error"})");
  assert_true(gateway_error_code(refusal) == GatewayErrorCode::IndexInUse);
  assert_string_equal(gateway_error("no").dump().c_str(), R"({"reason":"no","type":"error"})");
  assert_false(gateway_error_code(gateway_error("no")).has_value());
  assert_false(gateway_error_code(json{{"type", "error"}, {"code", "busy"}}).has_value());
  assert_true(gateway_message_type(json::parse(R"({"type":"entry_set","port":1})")) == GatewayMessageType::EntrySet);
  for (const char* odd : {R"({"type":"entry.set"})", R"({"type":7})", R"({"type":null})", R"({})", R"(["type"])",
                          R"("hello")", R"({"type":"Hello"})"})
    assert_false(gateway_message_type(json::parse(odd)).has_value());
  EntrySpec e;
  e.proto = 6;
  e.port = 8080;
  e.tunnel = id1();
  e.target = *Endpoint::parse("10.0.0.10:80");
  assert_string_equal(gateway_message(GatewayMessageType::EntrySet, encode_entry(e)).dump().c_str(),
                      R"({"keepalive":false,"port":8080,"proto":"tcp","target":"10.0.0.10:80","ttl":5.0,)"
                      R"("tunnel":"6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f","type":"entry_set"})");
}

// The route-kind table (proto/entry_route.hpp): every kind by its name, one check for all readers, its message
// made from the table.
static void entry_route_kinds(void**) {
  std::set<std::string> names;
  for (const EntryRouteKind& k : kEntryRouteKinds) {
    assert_true(names.insert(k.name).second);
    assert_true(parse_entry_route(k.name) == k.route);
    assert_ptr_equal(&entry_route_kind(k.route), &k);
    EntryRoute out = EntryRoute::Fixed;
    for (uint8_t proto : {uint8_t(6), uint8_t(17)}) {
      const std::string problem = entry_route_problem(k.name, proto, out);
      const bool usable = k.source != NameSource::None && (k.proto == 0 || k.proto == proto);
      assert_int_equal(problem.empty(), usable);
      if (usable) assert_true(out == k.route);
    }
  }
  EntryRoute out = EntryRoute::Fixed;
  assert_string_equal(entry_route_problem("ftp", 6, out).c_str(),
                      "route must be sni or http (tcp), or quic (udp), not 'ftp'");
  assert_string_equal(entry_route_problem("fixed", 6, out).c_str(),
                      "route must be sni or http (tcp), or quic (udp), not 'fixed'");
  assert_string_equal(entry_route_problem("quic", 6, out).c_str(),
                      "route quic is for udp entry points (routes: sni or http (tcp), or quic (udp))");
}

static void ingress_rules(void**) {
  IngressRuleSpec r{"*.example.com", id1(), Endpoint::parse("10.0.0.10:443"), true, true};
  IngressRuleSpec back = decode_ingress_rule(json::parse(encode_ingress_rule(r).dump()));
  assert_string_equal(back.hostname.c_str(), "*.example.com");
  assert_true(back.tunnel == r.tunnel);
  assert_true(back.target && back.target->str() == "10.0.0.10:443");
  assert_true(back.private_rule && back.proxy_protocol);
  IngressRuleSpec bare{"app.example.org", id1(), std::nullopt, false, false};
  back = decode_ingress_rule(json::parse(encode_ingress_rule(bare).dump()));
  assert_false(back.target.has_value());
  assert_false(back.private_rule || back.proxy_protocol);
  auto err = [](const json& x) { return decode_error([](const json& y) { decode_ingress_rule(y); }, x); };
  assert_non_null(strstr(err(json{{"tunnel", id1().str()}}).c_str(), "'hostname'"));
  assert_non_null(strstr(err(json{{"hostname", "a.b"}, {"tunnel", id1().str()}, {"target", "x"}}).c_str(), "'target'"));
  assert_non_null(strstr(err(json{{"hostname", "a.b"}, {"tunnel", id1().str()}, {"private", "yes"}}).c_str(), "'private'"));
}

// pair_set (direct-path pairs whose pair frames dpgw relays): the wire form to the byte, the list back to the same
// pairs, the whole range of ids and indexes; what is not a list of pairs is refused naming the entry and field.
static void pair_sets(void**) {
  const std::vector<PairSpec> pairs = {{123, 40000, 32768}, {4294967295u, 65535, 1}, {1, 40001, 32768}};
  const json msg = pair_set_message(pairs);
  assert_string_equal(msg.dump().c_str(),
                      R"({"pairs":[{"pair":123,"sessions":[40000,32768]},{"pair":4294967295,"sessions":[65535,1]},)"
                      R"({"pair":1,"sessions":[40001,32768]}],"type":"pair_set"})");
  assert_true(gateway_message_type(msg) == GatewayMessageType::PairSet);
  assert_true(decode_pair_set(json::parse(msg.dump())) == pairs);
  assert_true(decode_pairs(encode_pairs(pairs)) == pairs);
  assert_string_equal(pair_set_message({}).dump().c_str(), R"({"pairs":[],"type":"pair_set"})");
  assert_true(decode_pair_set(json::parse(R"({"type":"pair_set","pairs":[]})")).empty());  // clears them
  // The most there may be.
  std::vector<PairSpec> most;
  for (uint32_t i = 0; i < kMaxPairs; ++i) most.push_back(PairSpec{i + 1, 40000, 32768 + (i % 100)});
  assert_int_equal(decode_pairs(encode_pairs(most)).size(), kMaxPairs);
  json over = encode_pairs(most);
  over.push_back({{"pair", kMaxPairs + 1}, {"sessions", {40000, 32768}}});

  auto err = [](const json& x) { return decode_error([](const json& y) { decode_pair_set(y); }, x); };
  auto list_err = [&](const char* list) { return err(json::parse(std::string(R"({"type":"pair_set","pairs":)") + list + "}")); };
  assert_non_null(strstr(err(json{{"type", "pair_set"}}).c_str(), "'pairs' is required"));
  assert_non_null(strstr(err(json{{"type", "pair_set"}, {"pairs", nullptr}}).c_str(), "'pairs' is required"));
  assert_non_null(strstr(err(json{{"type", "pair_set"}, {"pairs", over}}).c_str(), "'pairs' must be a list of at most 65536"));
  for (const char* list : {R"({"pair":1,"sessions":[1,2]})", R"("[]")", R"(7)"})
    assert_non_null(strstr(list_err(list).c_str(), "'pairs' must be a list"));
  for (const char* list : {R"([7])", R"([[1,2,3]])", R"([null])"})
    assert_non_null(strstr(list_err(list).c_str(), "'pairs[0]' must be an object"));
  for (const char* list : {R"([{"pair":0,"sessions":[40000,32768]}])", R"([{"pair":-1,"sessions":[40000,32768]}])",
                           R"([{"pair":4294967296,"sessions":[40000,32768]}])", R"([{"pair":"123","sessions":[40000,32768]}])",
                           R"([{"pair":1.5,"sessions":[40000,32768]}])", R"([{"sessions":[40000,32768]}])"})
    assert_non_null(strstr(list_err(list).c_str(), "'pairs[0].pair' must be a pair id"));
  for (const char* list : {R"([{"pair":9,"sessions":[40000,40000]}])", R"([{"pair":9,"sessions":[40000]}])",
                           R"([{"pair":9,"sessions":[40000,32768,1]}])", R"([{"pair":9,"sessions":[0,32768]}])",
                           R"([{"pair":9,"sessions":[40000,65536]}])", R"([{"pair":9,"sessions":["40000",32768]}])",
                           R"([{"pair":9,"sessions":{"a":40000,"b":32768}}])", R"([{"pair":9}])",
                           R"([{"pair":9,"sessions":[40000,32768.0]}])"})
    assert_non_null(strstr(list_err(list).c_str(), "'pairs[0].sessions' must be two different session indexes"));
  assert_non_null(strstr(list_err(R"([{"pair":9,"sessions":[40000,32768]},{"pair":5,"sessions":[40001,32768]},)"
                                  R"({"pair":9,"sessions":[40002,32768]}])")
                             .c_str(),
                         "'pairs[2].pair' lists pair 9 twice"));
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(tunnel_round_trip),
      cmocka_unit_test(session_round_trip),
      cmocka_unit_test(quic_session_round_trip),
      cmocka_unit_test(masque_session_round_trip),
      cmocka_unit_test(capsule_session_round_trip),
      cmocka_unit_test(masque_datagrams_round_trip),
      cmocka_unit_test(entry_round_trip),
      cmocka_unit_test(routed_entries),
      cmocka_unit_test(entry_route_kinds),
      cmocka_unit_test(entry_ttl),
      cmocka_unit_test(envelopes),
      cmocka_unit_test(ingress_rules),
      cmocka_unit_test(pair_sets),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
