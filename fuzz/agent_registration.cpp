// An agent's message on dpctld's TLS connection (control/control_protocol.hpp, parse_agent_message): any line
// an authenticated agent sends. Properties: a registration it accepts has a weight in 1..255 and a name of at
// most 64 bytes; a candidates report it takes has at most kMaxCandidates addresses, each one a peer may be sent
// to (candidate_address_ok), no two alike, and one it ignores says why; one it refuses says why; nothing but these
// outcomes (no exception escapes).
#include <string_view>

#include "control/control_protocol.hpp"
#include "fuzz/fuzz.hpp"

using namespace dptun;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const AgentMessage m = parse_agent_message(std::string_view(reinterpret_cast<const char*>(data), size));
  switch (m.kind) {
    case AgentMessage::Kind::Register:
      FUZZ_CHECK(m.weight >= 1 && m.weight <= 255);
      FUZZ_CHECK(m.name.size() <= 64);
      FUZZ_CHECK(m.error.empty());
      break;
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
  }
  return 0;
}
