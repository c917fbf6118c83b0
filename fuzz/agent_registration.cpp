// An agent's message on dpctld's TLS connection (control/control_protocol.hpp, parse_agent_message): any line
// an authenticated agent sends. Properties: a registration it accepts has a weight in 1..255 and a name of at
// most 64 bytes that dpctld can write into a pairing message and read back; a candidates report it takes has at most kMaxCandidates addresses, each one a peer may be sent
// to (candidate_address_ok), no two alike, and one it ignores says why; a path report it takes names a pair, and a
// reason exactly when relayed, an address exactly when direct; one it refuses says why; nothing but these outcomes
// (no exception escapes). The same bytes as a line from dpctld to dpagent (parse_controller_message): a pairing it
// takes has a pair id, a peer session and candidates a peer may be sent to, and with data a block of flow tags that
// exists and a target that is an IPv4 address; what it cannot read says why. A visitor's service is a lowercase
// hostname of at most 253 bytes, and only a visitor's. The same bytes, when they are a JSON object, as dpctld's
// answer to a registration (parse_registered_reply): one it can use has every field in range and reads back the
// same from registered_message (the durations to 6 significant digits); one it cannot says why; nothing throws.
#include <nlohmann/json.hpp>

#include <string_view>

#include "control/control_protocol.hpp"
#include "proto/snat_codec.hpp"
#include "fuzz/fuzz.hpp"

using namespace dptun;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const AgentMessage m = parse_agent_message(std::string_view(reinterpret_cast<const char*>(data), size));
  switch (m.kind) {
    case AgentMessage::Kind::Register: {
      FUZZ_CHECK(m.weight >= 1 && m.weight <= 255);
      FUZZ_CHECK(m.name.size() <= 64);
      FUZZ_CHECK(m.error.empty());
      FUZZ_CHECK(m.service.size() <= 253 && (m.service.empty() || m.visitor));
      for (char ch : m.service) FUZZ_CHECK(!(ch >= 'A' && ch <= 'Z') && ch != ' ' && ch != '"');
      // dpctld writes the name into the peer's pairing message: it must come back as it went.
      PeerOffer o;
      o.pair = 1;
      o.session = 40000;
      o.name = m.name;
      const ControllerMessage back = parse_controller_message(peer_message(o));
      FUZZ_CHECK(back.kind == ControllerMessage::Kind::Peer && back.peer.name == m.name);
      break;
    }
    case AgentMessage::Kind::Invalid:
      FUZZ_CHECK(!m.error.empty());
      break;
    case AgentMessage::Kind::Ping:
      break;
    case AgentMessage::Kind::Candidates:
      if (!m.error.empty()) break;
      FUZZ_CHECK(m.candidates.candidates.size() <= kMaxCandidates);
      FUZZ_CHECK(size_t(m.candidates.nat) < size_t(NatMapping::Count));
      for (size_t i = 0; i < m.candidates.candidates.size(); ++i) {
        FUZZ_CHECK(candidate_address_ok(m.candidates.candidates[i].address));
        for (size_t k = 0; k < i; ++k) FUZZ_CHECK(!(m.candidates.candidates[k] == m.candidates.candidates[i]));
      }
      break;
    case AgentMessage::Kind::Path:
      if (!m.error.empty()) break;
      FUZZ_CHECK(m.path.pair != 0 && size_t(m.path.state) < size_t(PathState::Count));
      FUZZ_CHECK((m.path.state == PathState::Relayed) == (m.path.reason != PathReason::None));
      FUZZ_CHECK((m.path.state == PathState::Direct) == m.path.remote.has_value());
      if (m.path.remote) FUZZ_CHECK(candidate_address_ok(*m.path.remote));
      break;
  }
  const ControllerMessage c = parse_controller_message(std::string_view(reinterpret_cast<const char*>(data), size));
  switch (c.kind) {
    case ControllerMessage::Kind::Peer:
      FUZZ_CHECK(c.peer.pair != 0 && c.peer.session >= 1 && c.peer.session <= 65535 && c.peer.name.size() <= 64);
      FUZZ_CHECK(c.peer.peer.candidates.size() <= kMaxCandidates);
      for (const Candidate& cand : c.peer.peer.candidates) FUZZ_CHECK(candidate_address_ok(cand.address));
      if (c.peer.data) {
        FUZZ_CHECK(c.peer.data->block < SnatCodec::kPairBlocks);
        if (c.peer.data->target) FUZZ_CHECK(c.peer.data->target->ip.is_v4() && c.peer.data->target->ip.v4() != 0);
      }
      break;
    case ControllerMessage::Kind::PeerGone: FUZZ_CHECK(c.pair != 0); break;
    case ControllerMessage::Kind::Invalid: FUZZ_CHECK(!c.error.empty()); break;
    case ControllerMessage::Kind::Other: break;
  }
  const nlohmann::json msg = nlohmann::json::parse(data, data + size, nullptr, false);
  if (msg.is_object()) {
    const RegisteredReply r = parse_registered_reply(msg, 7);
    if (r.error.empty()) {
      FUZZ_CHECK(r.session != 0 && r.weight >= 1 && r.weight <= 255 && (r.key_len == 16 || r.key_len == 32));
      FUZZ_CHECK(r.keepalive_ns >= 50'000'000ull && r.keepalive_ns <= 3600'000'000'000ull);
      FUZZ_CHECK(r.rekey_interval_ns >= 1'000'000'000ull && r.rekey_interval_ns <= 86400'000'000'000ull);
      const nlohmann::json written = nlohmann::json::parse(registered_message(r), nullptr, false);
      FUZZ_CHECK(written.is_object());
      const RegisteredReply back = parse_registered_reply(written, 1);
      FUZZ_CHECK(back.error.empty() && back.session == r.session && back.weight == r.weight && back.tunnel == r.tunnel);
      FUZZ_CHECK(back.gateway == r.gateway && back.key_len == r.key_len && back.stun_port == r.stun_port);
      FUZZ_CHECK(back.quic_framing == r.quic_framing && back.visitor == r.visitor);
      // Seconds are written with 6 significant digits: back within 5e-6 of the value (and 1 ns of truncation).
      const auto near = [](uint64_t a, uint64_t b) { return (a > b ? a - b : b - a) <= b / 100000 + 1; };
      FUZZ_CHECK(near(back.keepalive_ns, r.keepalive_ns) && near(back.rekey_interval_ns, r.rekey_interval_ns));
    }
  }
  return 0;
}
