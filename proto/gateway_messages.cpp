#include "proto/gateway_messages.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "common/hex.hpp"
#include "common/json_fields.hpp"
#include "proto/quic_short_header.hpp"

namespace dptun {

using nlohmann::json;

namespace {

constexpr const char* kConnectUdpRole = "connect-udp";

SessionRole parse_role(const json& j) {
  const json* v = field(j, "role");
  auto role = v && v->is_string() ? parse_name<SessionRole>(v->get<std::string>()) : std::nullopt;
  if (v && !role) throw FieldError("'role' must be \"agent\", \"visitor\" or \"connect-udp\"");
  return role.value_or(SessionRole::Agent);
}

}  // namespace

json gateway_message(GatewayMessageType type, json body) {
  body["type"] = name_of(type);
  return body;
}

std::optional<GatewayMessageType> gateway_message_type(const json& msg) {
  const json* t = field(msg, "type");
  return t && t->is_string() ? parse_name<GatewayMessageType>(t->get<std::string>()) : std::nullopt;
}

json trace_message(TraceOp op, json body) {
  body["op"] = name_of(op);
  return gateway_message(GatewayMessageType::Trace, std::move(body));
}

json gateway_error(const std::string& reason, std::optional<GatewayErrorCode> code) {
  json j = gateway_message(GatewayMessageType::Error, {{"reason", reason}});
  if (code) j["code"] = name_of(*code);
  return j;
}

std::optional<GatewayErrorCode> gateway_error_code(const json& reply) {
  const json* c = field(reply, "code");
  return c && c->is_string() ? parse_name<GatewayErrorCode>(c->get<std::string>()) : std::nullopt;
}

const char* l4_proto_name(uint8_t proto) { return proto == 6 ? "tcp" : "udp"; }

uint8_t parse_l4_proto(const json& obj, const char* key) {
  const std::string proto = string_field(obj, key);
  if (proto != "tcp" && proto != "udp") throw FieldError(std::string("'") + key + "' must be \"tcp\" or \"udp\"");
  return proto == "tcp" ? 6 : 17;
}

json encode_tunnel(const TunnelSpec& t) { return {{"id", t.id.str()}, {"name", t.name}}; }

TunnelSpec decode_tunnel(const json& j) {
  TunnelSpec t;
  t.id = uuid_field(j, "id");
  t.name = string_or(j, "name", t.id.str());
  return t;
}

// The QUIC framing of a session: {"cipher","rx_secret","tx_secret","cid_tails":[..],"peer_cid","first_tx_pn",
// "max_udp_payload_size","max_datagram_frame_size","path"}, bytes in hex, path "IPV4:PORT".
json encode_quic(const QuicSessionSpec& q) {
  json tails = json::array();
  for (const auto& t : q.cid_tails) tails.push_back(hex_encode(t));
  return {{"cipher", quic_cipher_name(q.cipher)},
          {"rx_secret", hex_encode(q.rx_secret)},
          {"tx_secret", hex_encode(q.tx_secret)},
          {"cid_tails", std::move(tails)},
          {"peer_cid", hex_encode(q.peer_cid)},
          {"first_tx_pn", q.first_tx_pn},
          {"max_udp_payload_size", q.max_udp_payload_size},
          {"max_datagram_frame_size", q.max_datagram_frame_size},
          {"path", q.path.str()}};
}

QuicSessionSpec decode_quic(const json& j) {
  if (!j.is_object()) throw FieldError("'quic' must be an object");
  QuicSessionSpec q;
  const std::string cipher = string_field(j, "cipher");
  bool known = false;
  for (QuicCipher c : {QuicCipher::Aes128Gcm, QuicCipher::Aes256Gcm, QuicCipher::ChaCha20Poly1305})
    if (cipher == quic_cipher_name(c)) {
      q.cipher = c;
      known = true;
    }
  if (!known)
    throw FieldError("'quic.cipher' must be TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384 or TLS_CHACHA20_POLY1305_SHA256");
  auto bytes = [&](const char* key, size_t len) {
    std::optional<std::vector<uint8_t>> v;
    if (const json* f = field(j, key); f && f->is_string()) v = hex_decode(f->get<std::string>());
    if (!v || v->size() != len)
      throw FieldError(std::string("'quic.") + key + "' must be " + std::to_string(2 * len) + " hex digits");
    return std::move(*v);
  };
  q.rx_secret = bytes("rx_secret", quic_secret_len(q.cipher));
  q.tx_secret = bytes("tx_secret", quic_secret_len(q.cipher));
  const json* tails = field(j, "cid_tails");
  if (!tails || !tails->is_array() || tails->empty() || tails->size() > kQuicMaxRxCids)
    throw FieldError("'quic.cid_tails' must be a list of 1 to " + std::to_string(kQuicMaxRxCids) +
                     " connection ID tails (8 hex digits each)");
  for (const json& t : *tails) {
    std::optional<std::vector<uint8_t>> v;
    if (t.is_string()) v = hex_decode(t.get<std::string>());
    if (!v || v->size() != 4) throw FieldError("'quic.cid_tails' entries must be 8 hex digits");
    std::array<uint8_t, 4> tail;
    std::copy(v->begin(), v->end(), tail.begin());
    if (std::find(q.cid_tails.begin(), q.cid_tails.end(), tail) != q.cid_tails.end())
      throw FieldError("'quic.cid_tails' lists " + t.get<std::string>() + " twice");
    q.cid_tails.push_back(tail);
  }
  const auto peer = bytes("peer_cid", 8);
  std::copy(peer.begin(), peer.end(), q.peer_cid.begin());
  q.first_tx_pn = uint64_t(int_field(j, "first_tx_pn", 0, int64_t(1) << 61, int64_t(1) << 30));
  // RFC 9000 18.2: max_udp_payload_size below 1200 is invalid; RFC 9221 3: 0 means no DATAGRAM frames at all.
  q.max_udp_payload_size = uint64_t(int_field(j, "max_udp_payload_size", 1200, 65527, 65527));
  q.max_datagram_frame_size = uint64_t(int_field(j, "max_datagram_frame_size", 1, 65535, 65535));
  const auto path = Endpoint::parse(string_field(j, "path"));
  if (!path || !path->port || !path->ip.is_v4() || path->ip.unspecified())
    throw FieldError("'quic.path' must be the agent's validated address, IPV4:PORT");
  q.path = *path;
  return q;
}

// A MASQUE client's session (docs/masque.md "Datagrams on the fast path"): {"stream_id": N, "target": "IPV4:PORT"},
// and "request_id": R (1..2^53-1) for a client whose capsules dpctld carries ("HTTP/2 and HTTP/1.1 fallback").
json encode_masque(const MasqueSpec& m) {
  json j{{"stream_id", m.stream_id}, {"target", m.target.str()}};
  if (m.request_id) j["request_id"] = m.request_id;
  return j;
}

MasqueSpec decode_masque(const json& j) {
  if (!j.is_object()) throw FieldError("'masque' must be an object");
  MasqueSpec m;
  // A client-initiated bidirectional stream (RFC 9000 2.1: ID % 4 == 0), a varint (at most 2^62 - 1).
  const json* id = field(j, "stream_id");
  const bool integer = id && (id->is_number_unsigned() || (id->is_number_integer() && id->get<int64_t>() >= 0));
  if (!integer || id->get<uint64_t>() > (uint64_t(1) << 62) - 1 || id->get<uint64_t>() % 4)
    throw FieldError("'masque.stream_id' must be a client-initiated bidirectional stream ID (a multiple of 4 below 2^62)");
  m.stream_id = id->get<uint64_t>();
  const json* t = field(j, "target");
  const auto target = t && t->is_string() ? Endpoint::parse(t->get<std::string>()) : std::nullopt;
  if (!target || !target->port || !target->ip.is_v4() || target->ip.unspecified())
    throw FieldError("'masque.target' must be the route's target, IPV4:PORT (port 1..65535)");
  m.target = *target;
  if (const json* r = field(j, "request_id")) {
    const std::optional<int64_t> v = json_int_in(*r, 1, kMaxMasqueRequestId);
    if (!v) throw FieldError("'masque.request_id' must be dpctld's request id, 1..2^53-1");
    m.request_id = uint64_t(*v);
    if (m.stream_id)
      throw FieldError("'masque.stream_id' must be 0 with a request_id (an HTTP/2 or HTTP/1.1 client's capsules)");
  }
  return m;
}

namespace {

// Base64 (RFC 4648 4, with padding) through OpenSSL's block codec. EVP_DecodeBlock is lenient where the message must
// not be: it skips leading and trailing blanks, takes '=' anywhere as a zero sextet and counts the padding in its
// length. So the text is checked here first (the alphabet, a multiple of 4, at most two '=' and only at the end) and
// the padding is taken off the decoded length.
std::string base64_encode(const std::vector<uint8_t>& data) {
  std::string out(4 * ((data.size() + 2) / 3), '\0');
  const int n = data.empty() ? 0
                             : EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data.data(), int(data.size()));
  out.resize(size_t(n));
  return out;
}

bool base64_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

std::optional<std::vector<uint8_t>> base64_decode(const std::string& text) {
  if (text.size() % 4) return std::nullopt;
  size_t pad = 0;
  while (pad < 2 && pad < text.size() && text[text.size() - 1 - pad] == '=') ++pad;
  for (size_t i = 0; i < text.size() - pad; ++i)
    if (!base64_char(text[i])) return std::nullopt;
  std::vector<uint8_t> out(text.size() / 4 * 3);
  if (text.empty()) return out;
  const int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(text.data()), int(text.size()));
  if (n < 0 || size_t(n) != out.size()) return std::nullopt;
  out.resize(out.size() - pad);
  return out;
}

}  // namespace

json encode_masque_datagrams(const MasqueDatagrams& d) {
  json list = json::array();
  for (const auto& p : d.datagrams) list.push_back(base64_encode(p));
  return gateway_message(GatewayMessageType::MasqueDatagrams,
                         {{"index", d.index}, {"request_id", d.request_id}, {"datagrams", std::move(list)}});
}

MasqueDatagrams decode_masque_datagrams(const json& j) {
  MasqueDatagrams d;
  d.index = uint32_t(int_field(j, "index", kFirstControlSessionIndex, 65535));
  const json* r = field(j, "request_id");
  const std::optional<int64_t> id = r ? json_int_in(*r, 1, kMaxMasqueRequestId) : std::nullopt;
  if (!id) throw FieldError("'request_id' must be dpctld's request id, 1..2^53-1");
  d.request_id = uint64_t(*id);
  const json* list = field(j, "datagrams");
  if (!list || !list->is_array() || list->empty() || list->size() > MasqueDatagrams::kMaxMasqueDatagrams)
    throw FieldError("'datagrams' must be a list of 1 to " + std::to_string(MasqueDatagrams::kMaxMasqueDatagrams) +
                     " base64 UDP payloads");
  // The longest base64 text of a payload of kMaxMasqueDatagramSize bytes: checked before anything is decoded.
  constexpr size_t kMaxText = 4 * ((MasqueDatagrams::kMaxMasqueDatagramSize + 2) / 3);
  d.datagrams.reserve(list->size());
  for (const json& p : *list) {
    std::optional<std::vector<uint8_t>> v;
    if (p.is_string() && p.get_ref<const std::string&>().size() <= kMaxText) v = base64_decode(p.get<std::string>());
    if (!v || v->size() > MasqueDatagrams::kMaxMasqueDatagramSize)
      throw FieldError("'datagrams' entries must be base64 (RFC 4648 4, padded) of at most " +
                       std::to_string(MasqueDatagrams::kMaxMasqueDatagramSize) + " bytes");
    d.datagrams.push_back(std::move(*v));
  }
  return d;
}

json encode_pairs(std::span<const PairSpec> pairs) {
  json list = json::array();
  for (const PairSpec& p : pairs) list.push_back({{"pair", p.pair}, {"sessions", {p.a, p.b}}});
  return list;
}

json pair_set_message(std::span<const PairSpec> pairs) {
  return gateway_message(GatewayMessageType::PairSet, {{"pairs", encode_pairs(pairs)}});
}

std::vector<PairSpec> decode_pairs(const json& list) {
  if (!list.is_array() || list.size() > kMaxPairs)
    throw FieldError("'pairs' must be a list of at most " + std::to_string(kMaxPairs) + " pairs");
  std::vector<PairSpec> out;
  out.reserve(list.size());
  std::unordered_set<uint32_t> seen;
  seen.reserve(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    const json& e = list[i];
    const std::string at = "'pairs[" + std::to_string(i) + "]";
    if (!e.is_object()) throw FieldError(at + "' must be an object {\"pair\": ID, \"sessions\": [A, B]}");
    const json* id = field(e, "pair");
    const std::optional<int64_t> pair = id ? json_int_in(*id, 1, UINT32_MAX) : std::nullopt;
    if (!pair) throw FieldError(at + ".pair' must be a pair id, an integer in 1..4294967295");
    const json* s = field(e, "sessions");
    std::optional<int64_t> a, b;
    if (s && s->is_array() && s->size() == 2) {
      a = json_int_in((*s)[0], 1, 65535);
      b = json_int_in((*s)[1], 1, 65535);
    }
    if (!a || !b || *a == *b)
      throw FieldError(at + ".sessions' must be two different session indexes in 1..65535: [visitor, agent]");
    if (!seen.insert(uint32_t(*pair)).second)
      throw FieldError(at + ".pair' lists pair " + std::to_string(*pair) + " twice");
    out.push_back(PairSpec{uint32_t(*pair), uint32_t(*a), uint32_t(*b)});
  }
  return out;
}

std::vector<PairSpec> decode_pair_set(const json& msg) {
  const json* list = field(msg, "pairs");
  if (!list) throw FieldError("'pairs' is required: the whole list of pairs ([] for none)");
  return decode_pairs(*list);
}

json encode_session(const SessionSpec& s) {
  json j{{"index", s.index}, {"tunnel", s.tunnel.str()}, {"weight", s.weight}, {"secret", hex_encode(s.base_secret)}};
  if (s.visitor) j["role"] = name_of(SessionRole::Visitor);
  // A CONNECT-UDP client is a role of its own: a dpgw that does not know it refuses the session instead of serving
  // the client as a visitor of the whole tunnel.
  if (s.masque) j["role"] = kConnectUdpRole;
  if (s.quic) j["quic"] = encode_quic(*s.quic);
  if (s.masque) j["masque"] = encode_masque(*s.masque);
  return j;
}

SessionSpec decode_session(const json& j) {
  SessionSpec s;
  s.index = uint32_t(int_field(j, "index", kFirstControlSessionIndex, 65535));
  s.tunnel = uuid_field(j, "tunnel");
  s.weight = uint8_t(int_field(j, "weight", 1, 255, 1));
  std::optional<std::vector<uint8_t>> secret;
  if (const json* v = field(j, "secret"); v && v->is_string()) secret = hex_decode(v->get<std::string>());
  if (!secret || secret->size() != 32) throw FieldError("'secret' must be 64 hex digits");
  s.base_secret = std::move(*secret);
  // "connect-udp": a CONNECT-UDP client, a visitor of the tunnel whose datagrams go to its one target (the masque
  // object) and nowhere else; the role and the object come together, and only over the QUIC framing.
  const json* role = field(j, "role");
  const bool connect_udp = role && role->is_string() && role->get<std::string>() == kConnectUdpRole;
  s.visitor = connect_udp || parse_role(j) == SessionRole::Visitor;
  if (const json* q = field(j, "quic")) s.quic = decode_quic(*q);
  if (const json* m = field(j, "masque")) s.masque = decode_masque(*m);
  if (connect_udp != s.masque.has_value() || (s.masque && !s.masque->request_id && !s.quic))
    throw FieldError("'masque' comes with \"role\": \"connect-udp\" and a 'quic' object, and that role with both");
  // A client whose capsules dpctld carries: nothing of it comes from the network, so no QUIC connection either.
  if (s.masque && s.masque->request_id && s.quic)
    throw FieldError("'masque' with a request_id (an HTTP/2 or HTTP/1.1 client) comes without a 'quic' object");
  return s;
}

uint64_t entry_ttl_ns(const json& obj) { return uint64_t(std::llround(number_field(obj, "ttl", 0.1, 86400, 5.0) * 1e9)); }

// An entry point: {"proto","port","keepalive","ttl"} with "tunnel" and "target" (fixed) or "route" (by hostname),
// and "listen" when it is bound to one address. The TTL travels as seconds.
json encode_entry(const EntrySpec& e) {
  json j{{"proto", l4_proto_name(e.proto)},
         {"port", e.port},
         {"keepalive", e.keepalive},
         {"ttl", double(e.udp_ttl_ns) / 1e9}};
  if (e.route == EntryRoute::Fixed) {
    j["tunnel"] = e.tunnel.str();
    j["target"] = e.target.str();
  } else {
    j["route"] = entry_route_name(e.route);
  }
  if (e.listen) j["listen"] = e.listen->str();
  return j;
}

EntrySpec decode_entry(const json& j) {
  EntrySpec e;
  e.proto = parse_l4_proto(j, "proto");
  e.port = uint16_t(int_field(j, "port", 1, 65535));
  if (field(j, "route")) {
    const std::string problem = entry_route_problem(string_field(j, "route"), e.proto, e.route);
    if (!problem.empty()) throw FieldError("'route': " + problem);
    if (field(j, "tunnel") || field(j, "target"))
      throw FieldError("an entry point routed by hostname has no 'tunnel' or 'target' of its own");
  } else {
    e.tunnel = uuid_field(j, "tunnel");
    auto target = Endpoint::parse(string_field(j, "target"));
    if (!target) throw FieldError("'target' must be ipv4:port");
    e.target = *target;
  }
  if (field(j, "listen")) {
    auto ip = Ipv4::parse(string_field(j, "listen"));
    if (!ip) throw FieldError("'listen' is not an IPv4 address");
    e.listen = *ip;
  }
  e.keepalive = bool_field(j, "keepalive", false);
  e.udp_ttl_ns = entry_ttl_ns(j);
  return e;
}

json encode_ingress_rule(const IngressRuleSpec& r) {
  json j{{"hostname", r.hostname}, {"tunnel", r.tunnel.str()}, {"private", r.private_rule}};
  if (r.target) j["target"] = rule_target_str(*r.target);
  if (r.proxy_protocol) j["proxy_protocol"] = true;
  return j;
}

IngressRuleSpec decode_ingress_rule(const json& j) {
  IngressRuleSpec r;
  r.hostname = string_field(j, "hostname");
  if (r.hostname.empty()) throw FieldError("'hostname' is required");
  r.tunnel = uuid_field(j, "tunnel");
  if (field(j, "target")) {
    auto t = parse_rule_target(string_field(j, "target"));
    if (!t) throw FieldError("'target' must be ipv4:port or ipv4");
    r.target = *t;
  }
  r.private_rule = bool_field(j, "private", false);
  r.proxy_protocol = bool_field(j, "proxy_protocol", false);
  return r;
}

}  // namespace dptun
