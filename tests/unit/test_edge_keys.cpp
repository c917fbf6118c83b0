// The edge role's session keys (dataplane/tables/session.hpp, agent_side): dpgw as the agent of a session derives
// the keys a dpagent would. A frame the edge seals is byte for byte the frame dpagent's AgentSession seals with the
// same secret, index and counter, and opens with the concentrator's keys (a gateway-side session); a frame the
// concentrator seals opens with the edge's keys and with dpagent's; keys of the wrong direction fail. Also the edge's
// wall-clock counters: keys are published for the counter's epoch and the wall clock's, as for every static peer.
#include <ios>  // (before cmocka: its fail() macro would rewrite basic_ios::fail())

#include "tests/unit/cmocka.hpp"

#include <cstring>
#include <vector>

#include "agent/agent_session.hpp"
#include "common/clock.hpp"
#include "crypto/aead_openssl.hpp"
#include "dataplane/tables/reclaimer.hpp"
#include "dataplane/tables/session.hpp"
#include "proto/relay_frame.hpp"

using namespace dptun;

namespace {

constexpr uint32_t kIndex = 9;
constexpr uint64_t kRekey = 120 * kNsPerSec;
constexpr uint64_t kReal = 1'000'000'000ull;  // a wall clock early in epoch 0

std::vector<uint8_t> secret() {
  std::vector<uint8_t> k(kBaseSecretLen);
  for (size_t i = 0; i < k.size(); ++i) k[i] = uint8_t(0x5a ^ (i * 7));
  return k;
}

// A session as dpgw holds it: the gateway's end, or (agent_side) the edge's.
void init(TunnelSession& s, bool agent_side) {
  s.index = kIndex;
  s.base_secret = secret();
  s.agent_side = agent_side;
  s.tx_counter.store(0);
}

// A data frame of `len` bytes behind the header (inner header and packet), room for the tag; payload bytes set.
std::vector<uint8_t> frame_with(size_t len) {
  RelayCodec codec;
  std::vector<uint8_t> f(codec.layout().frame_len(uint32_t(len)));
  codec.write_inner(f.data(), InnerHeader{0x1234, 17, 0});
  for (size_t i = codec.layout().packet_offset(); i < codec.layout().header_len + len; ++i) f[i] = uint8_t(i * 5 + 1);
  f[codec.layout().packet_offset()] = 0x45;  // (an IPv4 header's first byte)
  return f;
}

// Seals `f` in place with the session's transmit key of `counter`'s epoch, as Encap does.
void seal(TunnelSession& s, std::vector<uint8_t>& f, uint64_t counter) {
  RelayCodec codec;
  EpochCipher* c = s.tx_keys.find(epoch_of(counter));
  assert_non_null(c);
  codec.write_header(f.data(), FrameMeta{FrameType::Data, 0, kIndex, counter});
  uint8_t iv[kAeadIvLen];
  make_nonce(iv, c->salt, counter);
  const AeadOp op = codec.seal_op(f.data(), uint32_t(f.size() - codec.layout().header_len - codec.layout().tag_len), iv);
  int32_t st = -1;
  c->aead->process({&op, 1}, {&st, 1}, 0);
  assert_int_equal(st, 0);
}

// Opens `f` (a copy) with the session's receive key, as tunnel input and edge input do; true when the tag verified.
bool opens(TunnelSession& s, std::vector<uint8_t> f) {
  RelayCodec codec;
  FrameMeta meta;
  if (codec.read_header(f, 0, meta) != FrameError::None) return false;
  EpochCipher* c = s.rx_keys.find(epoch_of(meta.counter));
  if (!c) return false;
  uint8_t iv[kAeadIvLen];
  make_nonce(iv, c->salt, meta.counter);
  const AeadOp op = codec.open_op(f, iv);
  int32_t st = -1;
  c->aead->process({&op, 1}, {&st, 1}, 0);
  return st == 0;
}

}  // namespace

static void edge_seals_as_dpagent_does(void**) {
  OpensslAead engine;
  Reclaimer reclaimer(nullptr);
  SessionKeyManager keys(engine, 16, kRekey, reclaimer);
  TunnelSession edge, concentrator;
  init(edge, true);
  init(concentrator, false);
  assert_true(keys.maintain(edge, 0, kReal));
  assert_true(keys.maintain(concentrator, 0, kReal));

  // dpagent's session with the same secret and index, counting from 0 as the edge does here.
  AgentSession agent(kIndex, secret(), 16, kRekey, engine, AgentSession::CounterMode::FromZero);
  std::vector<uint8_t> by_edge = frame_with(60), by_agent = frame_with(60);
  seal(edge, by_edge, 0);
  assert_true(agent.seal(FrameType::Data, 0, by_agent.data(), 60, 0));
  assert_memory_equal(by_edge.data(), by_agent.data(), by_edge.size());
  assert_true(opens(concentrator, by_edge));
  assert_false(opens(edge, by_edge));  // its own direction does not open with its receive keys

  // The concentrator's frames open on the edge, and on dpagent.
  std::vector<uint8_t> by_gw = frame_with(44);
  seal(concentrator, by_gw, 3);
  assert_true(opens(edge, by_gw));
  assert_false(opens(concentrator, by_gw));
  FrameMeta meta;
  assert_true(agent.open(by_gw, meta, 0) == AgentSession::OpenResult::Ok);
  assert_int_equal(meta.counter, 3);

  // Another cipher on one side: nothing opens.
  SessionKeyManager keys256(engine, 32, kRekey, reclaimer);
  TunnelSession edge256;
  init(edge256, true);
  assert_true(keys256.maintain(edge256, 0, kReal));
  std::vector<uint8_t> f = frame_with(60);
  seal(edge256, f, 1);
  assert_false(opens(concentrator, f));
}

// Counters that follow the wall clock (static keys): the edge's transmit keys cover its counter's epoch and the wall
// clock's, its receive keys the wall clock's epoch and its neighbours (where a restarted concentrator starts).
static void wall_clock_epochs(void**) {
  OpensslAead engine;
  Reclaimer reclaimer(nullptr);
  SessionKeyManager keys(engine, 16, kRekey, reclaimer);
  TunnelSession edge;
  init(edge, true);
  edge.peer_clock_counters = true;
  const uint64_t real = 1'700'000'000'000'000'000ull;  // late 2023, in ns
  edge.tx_counter.store(real + kClockLeadNs);
  assert_true(keys.maintain(edge, 0, real));
  const uint64_t now_epoch = epoch_of(real);
  assert_non_null(edge.tx_keys.find(epoch_of(real + kClockLeadNs)));
  assert_non_null(edge.tx_keys.find(now_epoch));
  for (uint64_t e : {now_epoch - 1, now_epoch, now_epoch + 1}) assert_non_null(edge.rx_keys.find(e));
  assert_null(edge.rx_keys.find(now_epoch + 5));
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(edge_seals_as_dpagent_does),
      cmocka_unit_test(wall_clock_epochs),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
