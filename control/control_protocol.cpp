#include "control/control_protocol.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>

#include <nlohmann/json.hpp>

#include "common/hex.hpp"
#include "common/json_fields.hpp"
#include "common/json_writer.hpp"
#include "proto/control_names.hpp"
#include "proto/snat_codec.hpp"

namespace dptun {

const char* nat_mapping_name(NatMapping m) {
  switch (m) {
    case NatMapping::Unknown: return "unknown";
    case NatMapping::None: return "none";
    case NatMapping::EndpointIndependent: return "endpoint-independent";
    case NatMapping::EndpointDependent: return "endpoint-dependent";
    case NatMapping::Count: break;
  }
  return "unknown";
}

const char* candidate_type_name(CandidateType t) {
  switch (t) {
    case CandidateType::Host: return "host";
    case CandidateType::ServerReflexive: return "srflx";
    case CandidateType::Count: break;
  }
  return "host";
}

bool candidate_address_ok(const Endpoint& e) {
  if (!e.ip.is_v4() || e.port == 0) return false;
  const uint32_t a = e.ip.v4();
  const uint32_t top = a >> 24;
  return top != 0 && top != 127 && top < 224;
}

nlohmann::json candidates_json(const std::vector<Candidate>& list) {
  nlohmann::json out = nlohmann::json::array();
  for (const Candidate& c : list) out.push_back({{"type", candidate_type_name(c.type)}, {"address", c.address.str()}});
  return out;
}

std::string candidates_text(const std::vector<Candidate>& list) {
  std::string out;
  for (const Candidate& c : list)
    out += std::string(out.empty() ? "" : " ") + candidate_type_name(c.type) + " " + c.address.str();
  return out.empty() ? "none" : out;
}

std::string pair_id_text(uint32_t pair) {
  char id[9];
  std::snprintf(id, sizeof id, "%08x", pair);
  return id;
}

namespace {

// At most `max` bytes of `s`, cut at a character boundary: a JSON string is UTF-8, and a cut inside a character would
// make the next dump() of it throw.
std::string utf8_prefix(const std::string& s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && (uint8_t(s[n]) & 0xc0) == 0x80) --n;
  return s.substr(0, n);
}

// Messages are written with invalid UTF-8 replaced rather than thrown at (nothing here should hold any).
std::string dump(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }
}

std::string candidates_message(const CandidateReport& r) {
  using nlohmann::json;
  return dump(json{{"type", name_of(AgentMessageType::Candidates)},
                   {"nat", nat_mapping_name(r.nat)},
                   {"candidates", candidates_json(r.candidates)}});
}


PeerOffer::~PeerOffer() { OPENSSL_cleanse(secret.data(), secret.size()); }

std::string peer_message(const PeerOffer& p) {
  using nlohmann::json;
  json msg{{"type", name_of(AgentMessageType::Peer)},
           {"pair", p.pair},
           {"role", p.controlling ? "controlling" : "controlled"},
           {"secret", hex_encode(p.secret)},
           {"session", p.session},
           {"name", p.name},
           {"nat", nat_mapping_name(p.peer.nat)},
           {"candidates", candidates_json(p.peer.candidates)}};
  if (p.data) {
    // (port 0: the visitor's own --local port, as a rule's target without one; written as the address alone)
    const Endpoint& t = p.data->target.value_or(Endpoint{});
    msg["data"] = json{{"block", p.data->block}, {"target", t.port ? t.str() : t.ip.str()}};
  }
  std::string line = dump(msg);
  // The secret's hex lies in the JSON value too: wiped before it is freed (the line is the caller's to wipe).
  std::string& hex = msg["secret"].get_ref<std::string&>();
  OPENSSL_cleanse(hex.data(), hex.size());
  return line;
}

std::string peer_gone_message(uint32_t pair) {
  return dump(nlohmann::json{{"type", name_of(AgentMessageType::PeerGone)}, {"pair", pair}});
}

const char* path_state_name(PathState s) {
  switch (s) {
    case PathState::Checking: return "checking";
    case PathState::Direct: return "direct";
    case PathState::Relayed: return "relayed";
    case PathState::Count: break;
  }
  return "checking";
}

const char* path_reason_name(PathReason r) {
  switch (r) {
    case PathReason::None: return "none";
    case PathReason::ChecksUnanswered: return "checks_unanswered";
    case PathReason::ConsentLost: return "consent_lost";
    case PathReason::TooManyPairs: return "too_many_pairs";
    case PathReason::Count: break;
  }
  return "none";
}

std::string path_message(const PathReport& r) {
  nlohmann::json j{{"type", name_of(AgentMessageType::Path)}, {"pair", r.pair}, {"state", path_state_name(r.state)}};
  if (r.state == PathState::Relayed) j["reason"] = path_reason_name(r.reason);
  if (r.state == PathState::Direct && r.remote) {
    j["remote"] = r.remote->str();
    j["rtt_us"] = r.rtt_us;
  }
  return dump(j);
}

namespace {

template <typename E>
std::optional<E> enum_named(const nlohmann::json& v, const char* (*name)(E)) {
  if (!v.is_string()) return std::nullopt;
  for (size_t i = 0; i < size_t(E::Count); ++i)
    if (v.get_ref<const std::string&>() == name(E(i))) return E(i);
  return std::nullopt;
}

// Reads a candidates report into `out`; returns what is wrong with it, or "" when nothing is.
std::string parse_candidates(const nlohmann::json& msg, CandidateReport& out) {
  const nlohmann::json* nat = field(msg, "nat");
  const std::optional<NatMapping> mapping = nat ? enum_named(*nat, nat_mapping_name) : std::nullopt;
  if (!mapping) return "candidates: 'nat' must be unknown, none, endpoint-independent or endpoint-dependent";
  out.nat = *mapping;
  const nlohmann::json* list = field(msg, "candidates");
  if (!list || !list->is_array()) return "candidates: 'candidates' must be an array";
  if (list->size() > kMaxCandidates) return "candidates: more than " + std::to_string(kMaxCandidates);
  for (const nlohmann::json& c : *list) {
    if (!c.is_object()) return "candidates: each candidate is an object";
    const nlohmann::json* type = field(c, "type");
    const std::optional<CandidateType> t = type ? enum_named(*type, candidate_type_name) : std::nullopt;
    if (!t) return "candidates: a candidate's 'type' must be host or srflx";
    const nlohmann::json* addr = field(c, "address");
    const std::optional<Endpoint> e =
        addr && addr->is_string() ? Endpoint::parse(addr->get_ref<const std::string&>()) : std::nullopt;
    if (!e || !candidate_address_ok(*e))
      return "candidates: a candidate's 'address' must be a unicast IPv4 address and port (not loopback)";
    const Candidate cand{*t, *e};
    if (std::find(out.candidates.begin(), out.candidates.end(), cand) == out.candidates.end())
      out.candidates.push_back(cand);
  }
  return {};
}

std::optional<uint32_t> pair_id(const nlohmann::json& msg) {
  const nlohmann::json* p = field(msg, "pair");
  const std::optional<int64_t> v = p ? json_int_in(*p, 1, UINT32_MAX) : std::nullopt;
  if (!v) return std::nullopt;
  return uint32_t(*v);
}

std::string parse_path(const nlohmann::json& msg, PathReport& out) {
  const std::optional<uint32_t> pair = pair_id(msg);
  if (!pair) return "path: 'pair' must be 1..4294967295";
  out.pair = *pair;
  const nlohmann::json* st = field(msg, "state");
  const std::optional<PathState> state = st ? enum_named(*st, path_state_name) : std::nullopt;
  if (!state) return "path: 'state' must be checking, direct or relayed";
  out.state = *state;
  if (out.state == PathState::Relayed) {
    const nlohmann::json* r = field(msg, "reason");
    const std::optional<PathReason> reason = r ? enum_named(*r, path_reason_name) : std::nullopt;
    if (!reason || *reason == PathReason::None) return "path: a relayed path's 'reason' is missing or unknown";
    out.reason = *reason;
  }
  if (out.state == PathState::Direct) {
    const nlohmann::json* r = field(msg, "remote");
    out.remote = r && r->is_string() ? Endpoint::parse(r->get_ref<const std::string&>()) : std::nullopt;
    if (!out.remote || !candidate_address_ok(*out.remote)) return "path: a direct path's 'remote' must be IP:PORT";
    const nlohmann::json* rtt = field(msg, "rtt_us");
    const std::optional<int64_t> us = rtt ? json_int_in(*rtt, 0, 60'000'000) : std::nullopt;
    if (!us) return "path: 'rtt_us' must be 0..60000000";
    out.rtt_us = uint64_t(*us);
  }
  return {};
}

}  // namespace

ControllerMessage parse_controller_message(std::string_view line) {
  using nlohmann::json;
  ControllerMessage m;
  const json msg = json::parse(line, nullptr, false);
  if (msg.is_discarded() || !msg.is_object()) {
    m.kind = ControllerMessage::Kind::Invalid;
    m.error = "not a JSON object";
    return m;
  }
  const json* type = field(msg, "type");
  const std::optional<AgentMessageType> t =
      type && type->is_string() ? parse_name<AgentMessageType>(type->get_ref<const std::string&>()) : std::nullopt;
  if (t != AgentMessageType::Peer && t != AgentMessageType::PeerGone) return m;  // pong and the like
  m.kind = ControllerMessage::Kind::Invalid;
  const std::optional<uint32_t> pair = pair_id(msg);
  if (!pair) {
    m.error = "'pair' must be 1..4294967295";
    return m;
  }
  if (t == AgentMessageType::PeerGone) {
    m.kind = ControllerMessage::Kind::PeerGone;
    m.pair = *pair;
    return m;
  }
  PeerOffer& p = m.peer;
  p.pair = *pair;
  const json* role = field(msg, "role");
  if (!role || !role->is_string() || (*role != "controlling" && *role != "controlled")) {
    m.error = "'role' must be controlling or controlled";
    return m;
  }
  p.controlling = *role == "controlling";
  const json* secret = field(msg, "secret");
  std::optional<std::vector<uint8_t>> bytes =
      secret && secret->is_string() ? hex_decode(secret->get_ref<const std::string&>()) : std::nullopt;
  const bool ok = bytes && bytes->size() == p.secret.size();
  if (ok) std::copy(bytes->begin(), bytes->end(), p.secret.begin());
  if (bytes) OPENSSL_cleanse(bytes->data(), bytes->size());
  if (!ok) {
    m.error = "'secret' must be 32 bytes in hex";
    return m;
  }
  const json* session = field(msg, "session");
  const std::optional<int64_t> index = session ? json_int_in(*session, 1, 65535) : std::nullopt;
  if (!index) {
    m.error = "'session' must be 1..65535";
    return m;
  }
  p.session = uint32_t(*index);
  if (const json* name = field(msg, "name"); name && name->is_string()) p.name = utf8_prefix(name->get<std::string>(), 64);
  // The peer's candidates as dpctld took them: read with the same checks as a report.
  m.error = parse_candidates(msg, p.peer);
  if (!m.error.empty()) return m;
  if (const json* data = field(msg, "data")) {
    const json* block = data->is_object() ? field(*data, "block") : nullptr;
    const std::optional<int64_t> b = block ? json_int_in(*block, 0, SnatCodec::kPairBlocks - 1) : std::nullopt;
    if (!b) {
      m.error = "'data.block' must be 0.." + std::to_string(SnatCodec::kPairBlocks - 1);
      return m;
    }
    PairDataOffer d;
    d.block = uint16_t(*b);
    if (const json* target = field(*data, "target"); target) {
      if (target->is_string()) {
        const std::string& text = target->get_ref<const std::string&>();
        d.target = Endpoint::parse(text);
        if (!d.target)
          if (const std::optional<Ipv4> ip = Ipv4::parse(text)) d.target = Endpoint{*ip, 0};
      }
    }
    if (!d.target || !d.target->ip.is_v4() || d.target->ip.v4() == 0) {
      m.error = "'data.target' must be an IPv4 address, with or without a port";
      return m;
    }
    p.data = d;
  }
  m.kind = ControllerMessage::Kind::Peer;
  return m;
}

AgentMessage parse_agent_message(std::string_view line) {
  using nlohmann::json;
  AgentMessage m;
  const json msg = json::parse(line, nullptr, false);
  if (msg.is_discarded() || !msg.is_object() || !field(msg, "type") || !msg["type"].is_string()) {
    m.error = "malformed message (expected one JSON object per line)";
    return m;
  }
  const std::string type = msg["type"];
  // An agent sends register, ping, candidates and path; anything else, dpctld's own messages included, is unknown
  // from one.
  std::optional<AgentMessageType> known = parse_name<AgentMessageType>(type);
  if (known) {
    switch (*known) {
      case AgentMessageType::Ping:
        m.kind = AgentMessage::Kind::Ping;
        return m;
      case AgentMessageType::Register: break;
      case AgentMessageType::Candidates:
        m.kind = AgentMessage::Kind::Candidates;
        m.error = parse_candidates(msg, m.candidates);
        return m;
      case AgentMessageType::Path:
        m.kind = AgentMessage::Kind::Path;
        m.error = parse_path(msg, m.path);
        return m;
      case AgentMessageType::Peer:
      case AgentMessageType::PeerGone:
      case AgentMessageType::Registered:
      case AgentMessageType::Refused:
      case AgentMessageType::Pong: known.reset(); break;
    }
  }
  if (!known) {
    m.error = "unknown message type '" + type + "'";
    return m;
  }
  if (!field(msg, "version") || json_int_in(msg["version"], 0, 1 << 30) != kControlProtocolVersion) {
    m.bad_version = true;
    m.error = "unsupported protocol version (this dpctld speaks " + std::to_string(kControlProtocolVersion) + ")";
    return m;
  }
  if (!field(msg, "tunnel") || !msg["tunnel"].is_string()) {
    m.error = "register: 'tunnel' (id or name) is required";
    return m;
  }
  if (field(msg, "weight")) {
    auto w = json_int_in(msg["weight"], 1, 255);
    if (!w) {
      m.error = "weight must be 1..255";
      return m;
    }
    m.weight = int(*w);
  }
  if (field(msg, "name")) {
    if (!msg["name"].is_string()) {
      m.error = "register: 'name' must be a string";
      return m;
    }
    m.name = utf8_prefix(msg["name"].get<std::string>(), 64);
  }
  if (const json* r = field(msg, "role")) {
    auto role = r->is_string() ? parse_name<SessionRole>(r->get<std::string>()) : std::nullopt;
    if (!role) {
      m.error = "register: 'role' must be \"agent\" or \"visitor\"";
      return m;
    }
    m.visitor = *role == SessionRole::Visitor;
  }
  // What this dpagent can do beyond version 1 (unknown names are ignored: newer agents, older dpctld).
  if (const json* f = field(msg, "features")) {
    if (!f->is_array() || f->size() > 16) {
      m.error = "register: 'features' must be a list of names";
      return m;
    }
    for (const json& name : *f) m.pair_data |= name.is_string() && name == "pair_data";
  }
  if (const json* sv = field(msg, "service")) {
    std::string host = sv->is_string() ? sv->get<std::string>() : std::string();
    for (char& c : host) c = char(std::tolower(static_cast<unsigned char>(c)));
    const bool ok = !host.empty() && host.size() <= 253 &&
                    std::all_of(host.begin(), host.end(), [](char c) {
                      return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
                    });
    if (!ok || !m.visitor) {
      m.error = "register: 'service' must be a hostname (at most 253 bytes), of a visitor";
      return m;
    }
    m.service = std::move(host);
  }
  m.tunnel = msg["tunnel"].get<std::string>();
  m.kind = AgentMessage::Kind::Register;
  return m;
}


std::vector<uint8_t> export_session_secret(SSL* ssl, uint32_t session_index) {
  std::vector<uint8_t> secret(32);
  const uint8_t context[4] = {uint8_t(session_index >> 24), uint8_t(session_index >> 16), uint8_t(session_index >> 8),
                              uint8_t(session_index)};
  if (SSL_export_keying_material(ssl, secret.data(), secret.size(), kExporterLabel, std::strlen(kExporterLabel),
                                 context, sizeof context, 1) != 1)
    return {};
  return secret;
}

std::string registered_message(const RegisteredReply& r) {
  JsonWriter j;
  j.begin_object()
      .field("type", name_of(AgentMessageType::Registered))
      .field("version", kControlProtocolVersion)
      .field("session", unsigned(r.session))
      .field("tunnel", r.tunnel)
      .field("weight", r.weight)
      .field("role", role_name(r.visitor))
      .field("gateway", r.gateway.str())
      .field("cipher", r.key_len == 32 ? "aes-256-gcm" : "aes-128-gcm")
      .field("rekey_interval", double(r.rekey_interval_ns) / 1e9)
      .field("keepalive", double(r.keepalive_ns) / 1e9)
      .field("framing", r.quic_framing ? "quic" : "relay");
  if (r.stun_port) j.field("stun_port", unsigned(r.stun_port));
  j.end_object();
  return j.str();
}

RegisteredReply parse_registered_reply(const nlohmann::json& msg, unsigned asked_weight) {
  RegisteredReply r;
  try {
    r.session = uint32_t(int_field(msg, "session", 1, UINT32_MAX));
    r.tunnel = string_or(msg, "tunnel", "");  // (tunnel and role: shown, not used by the agent; never refused)
    r.visitor = string_or(msg, "role", std::string(role_name(false))) == role_name(true);
    r.weight = unsigned(int_field(msg, "weight", 1, 255, asked_weight));
    const std::string gateway = string_field(msg, "gateway");
    const std::optional<Endpoint> gw = Endpoint::parse(gateway);
    if (!gw) throw FieldError("'gateway' must be an IPv4 address and port, not '" + gateway + "'");
    r.gateway = *gw;
    const std::string cipher = string_field(msg, "cipher", "aes-128-gcm");
    if (cipher != "aes-128-gcm" && cipher != "aes-256-gcm")
      throw FieldError("'cipher' must be aes-128-gcm or aes-256-gcm, not '" + cipher + "'");
    r.key_len = cipher == "aes-256-gcm" ? 32 : 16;
    r.rekey_interval_ns = uint64_t(number_field(msg, "rekey_interval", 1, 86400, 120.0) * 1e9);
    r.keepalive_ns = uint64_t(number_field(msg, "keepalive", 0.05, 3600, 2.0) * 1e9);
    const std::string framing = string_field(msg, "framing", "relay");
    if (framing != "relay" && framing != "quic")
      throw FieldError("'framing' must be relay or quic, not '" + framing + "'");
    r.quic_framing = framing == "quic";
    r.stun_port = uint16_t(int_field(msg, "stun_port", 0, 65535, 0));
  } catch (const FieldError& e) {
    r.error = e.what();
  }
  return r;
}

}  // namespace dptun
