// Agent session: frames the agent seals decrypt with the gateway's agent->gateway key; frames the gateway
// seals open on the agent exactly once, and tampering, wrong sessions, garbage and wrong keys are told apart
// without poisoning the replay window; epoch keys overlap at an epoch change; timed rekeys move the counter to
// the next epoch; unauthenticated frames cannot make the agent derive more than 20 keys a second.
// The gateway side is built here from crypto/key_schedule.hpp and the OpenSSL engine.
// Some headers below pull in <ios>, whose basic_ios::fail() cmocka's fail() macro would rewrite: include it first.
#include <ios>

#include "tests/unit/cmocka.hpp"

#include <array>
#include <atomic>
#include <cstring>
#include <set>
#include <thread>

#include "agent/agent_session.hpp"
#include "agent/session_slots.hpp"
#include "common/clock.hpp"
#include "crypto/aead_openssl.hpp"
#include "crypto/key_schedule.hpp"
#include "proto/relay_frame.hpp"

using namespace dptun;

namespace {

using R = AgentSession::OpenResult;

constexpr uint32_t kIndex = 7;
constexpr uint64_t kRekey = 120 * kNsPerSec;
constexpr size_t kHeaderLen = 16;  // the relay header and tag, as docs/protocol.md draws them
constexpr size_t kTagLen = 16;

std::vector<uint8_t> psk(uint8_t seed) {
  std::vector<uint8_t> k(kBaseSecretLen);
  for (size_t i = 0; i < k.size(); ++i) k[i] = uint8_t(seed + i * 13);
  return k;
}

// Inner header + a 20-byte "IPv4 header" + payload: enough for the data-frame minimum.
std::vector<uint8_t> plaintext(uint8_t tag, size_t len = 12 + 20 + 28) {
  std::vector<uint8_t> p(len);
  for (size_t i = 0; i < len; ++i) p[i] = uint8_t(tag * 31 + i);
  return p;
}

// The gateway's half of the session, from the key schedule alone.
struct Gateway {
  explicit Gateway(std::vector<uint8_t> s, uint8_t len = 16) : secret(std::move(s)), key_len(len) {}
  std::vector<uint8_t> secret;
  uint8_t key_len;
  OpensslAead engine;
  RelayCodec codec;

  std::unique_ptr<AeadKey> key(KeyDirection dir, uint64_t epoch, AeadDirection op, EpochKey& ek) {
    assert_true(derive_epoch_key(secret, dir, kIndex, epoch, key_len, ek));
    auto k = engine.make_key(ek.key_bytes(), op, RelayCodec::kLayout.header_len);
    assert_non_null(k.get());
    return k;
  }

  // Decrypts an agent frame as the gateway would; true when the tag verified (plaintext at frame + 16).
  bool open_from_agent(std::vector<uint8_t>& frame, KeyDirection dir = KeyDirection::AgentToGateway) {
    FrameMeta m;
    if (codec.read_header(frame, 0, m) != FrameError::None) return false;
    EpochKey ek;
    auto k = key(dir, epoch_of(m.counter), AeadDirection::Decrypt, ek);
    uint8_t iv[kAeadIvLen];
    make_nonce(iv, ek.salt, m.counter);
    const AeadOp op = codec.open_op(frame, iv);
    int32_t status = -1;
    k->process({&op, 1}, {&status, 1}, 0);
    return status == 0;
  }

  // A gateway -> agent frame with the given counter.
  std::vector<uint8_t> seal(uint32_t receiver, uint64_t counter, const std::vector<uint8_t>& plain,
                            FrameType type = FrameType::Data, uint8_t flags = 0) {
    std::vector<uint8_t> f(codec.layout().frame_len(uint32_t(plain.size())));
    codec.write_header(f.data(), FrameMeta{type, flags, receiver, counter});
    if (!plain.empty()) std::memcpy(f.data() + kHeaderLen, plain.data(), plain.size());
    EpochKey ek;
    auto k = key(KeyDirection::GatewayToAgent, epoch_of(counter), AeadDirection::Encrypt, ek);
    uint8_t iv[kAeadIvLen];
    make_nonce(iv, ek.salt, counter);
    const AeadOp op = codec.seal_op(f.data(), uint32_t(plain.size()), iv);
    int32_t status = -1;
    k->process({&op, 1}, {&status, 1}, 0);
    assert_int_equal(status, 0);
    return f;
  }
};

// The agent seals `plain` as a data frame; returns the whole frame.
std::vector<uint8_t> agent_seal(AgentSession& a, const std::vector<uint8_t>& plain, uint64_t now,
                                FrameType type = FrameType::Data, uint8_t flags = 0) {
  std::vector<uint8_t> f(RelayCodec::kLayout.frame_len(uint32_t(plain.size())), 0xee);
  if (!plain.empty()) std::memcpy(f.data() + kHeaderLen, plain.data(), plain.size());
  assert_true(a.seal(type, flags, f.data(), plain.size(), now));
  return f;
}

// Opens a copy, so the caller's frame stays sealed for later use.
R agent_open(AgentSession& a, std::vector<uint8_t> f, uint64_t now, std::vector<uint8_t>* plain = nullptr,
             FrameMeta* meta_out = nullptr) {
  FrameMeta meta;
  R r = a.open(f, meta, now);
  if (plain) plain->assign(f.begin() + kHeaderLen, f.end() - kTagLen);
  if (meta_out) *meta_out = meta;
  return r;
}

uint64_t counter_of(const std::vector<uint8_t>& f) { return load_be64(f.data() + 8); }

}  // namespace

static void agent_frames_decrypt_at_the_gateway(void**) {
  OpensslAead engine;
  const uint64_t before = realtime_ns();
  AgentSession a(kIndex, psk(1), 16, kRekey, engine);
  const uint64_t after = realtime_ns();
  Gateway gw{psk(1)};
  uint64_t prev = 0;
  for (int i = 0; i < 5; ++i) {
    auto plain = plaintext(uint8_t(i));
    auto f = agent_seal(a, plain, uint64_t(i) * kNsPerMs);
    assert_int_equal(f.size(), 16 + plain.size() + 16);
    FrameMeta m;
    assert_int_equal(RelayCodec{}.read_header(f, 0, m), FrameError::None);
    assert_int_equal(m.type, FrameType::Data);
    assert_int_equal(m.receiver_index, kIndex);
    // Static keys: the counter starts one epoch ahead of the wall clock in ns and then counts frames.
    if (i == 0) {
      assert_true(m.counter >= before + kClockLeadNs && m.counter <= after + kClockLeadNs);
    } else {
      assert_int_equal(m.counter, prev + 1);
    }
    prev = m.counter;
    assert_int_equal(epoch_of(m.counter), a.tx_epoch());
    assert_int_equal(bool(f[2] & kFlagKeyPhase), bool(epoch_of(m.counter) & 1));
    // Encrypted: the plaintext is not there in the clear.
    assert_memory_not_equal(f.data() + 16, plain.data(), plain.size());
    // The gateway's agent->gateway key opens it.
    auto g = f;
    assert_true(gw.open_from_agent(g));
    assert_memory_equal(g.data() + 16, plain.data(), plain.size());
    // The other direction's key does not: the directions have distinct keys.
    g = f;
    assert_false(gw.open_from_agent(g, KeyDirection::GatewayToAgent));
    // Nor does the right direction with another psk.
    Gateway other{psk(2)};
    g = f;
    assert_false(other.open_from_agent(g));
  }
  assert_int_equal(a.rekeys(), 0);
}

static void agent_keepalive_and_flags(void**) {
  OpensslAead engine;
  AgentSession a(kIndex, psk(1), 16, kRekey, engine);
  Gateway gw{psk(1)};
  auto f = agent_seal(a, {}, 0, FrameType::Keepalive, kFlagKeepaliveReply);
  assert_int_equal(f.size(), 32);
  FrameMeta m;
  assert_int_equal(RelayCodec{}.read_header(f, 0, m), FrameError::None);
  assert_int_equal(m.type, FrameType::Keepalive);
  assert_true(m.flags & kFlagKeepaliveReply);
  assert_true(gw.open_from_agent(f));
  // The header is authenticated: changing the reserved byte breaks the tag.
  auto g = agent_seal(a, plaintext(1), 0);
  g[3] ^= 1;
  assert_false(gw.open_from_agent(g));
}

static void two_agents_cannot_talk(void**) {
  OpensslAead engine;
  AgentSession a(kIndex, psk(1), 16, kRekey, engine);
  AgentSession b(kIndex, psk(1), 16, kRekey, engine);
  auto f = agent_seal(a, plaintext(1), 0);
  assert_int_equal(agent_open(b, f, 0), R::AuthFail);
}

static void gateway_frames_open_once(void**) {
  OpensslAead engine;
  AgentSession a(kIndex, psk(1), 16, kRekey, engine, AgentSession::CounterMode::FromZero);
  Gateway gw{psk(1)};
  const uint64_t c0 = first_counter_of(1000) + 12345;
  auto plain = plaintext(9);
  auto f = gw.seal(kIndex, c0, plain);
  std::vector<uint8_t> out;
  FrameMeta meta;
  assert_int_equal(agent_open(a, f, 0, &out, &meta), R::Ok);
  assert_true(out == plain);
  assert_int_equal(meta.counter, c0);
  assert_int_equal(meta.receiver_index, kIndex);
  assert_int_equal(meta.type, FrameType::Data);
  assert_int_equal(agent_open(a, f, 1), R::Replay);
  assert_int_equal(agent_open(a, f, 2), R::Replay);
  // Later and (within the window) earlier counters open once each.
  auto later = gw.seal(kIndex, c0 + 10, plaintext(10));
  auto earlier = gw.seal(kIndex, c0 - 5, plaintext(11));
  assert_int_equal(agent_open(a, later, 3), R::Ok);
  assert_int_equal(agent_open(a, earlier, 4), R::Ok);
  assert_int_equal(agent_open(a, earlier, 5), R::Replay);
  assert_int_equal(agent_open(a, later, 6), R::Replay);
  // Too old for the window.
  auto ancient = gw.seal(kIndex, c0 + 10 - ReplayWindow::kTracked, plaintext(12));
  assert_int_equal(agent_open(a, ancient, 7), R::Replay);
  // A keepalive.
  auto ka = gw.seal(kIndex, c0 + 11, {}, FrameType::Keepalive);
  assert_int_equal(agent_open(a, ka, 8, nullptr, &meta), R::Ok);
  assert_int_equal(meta.type, FrameType::Keepalive);
}

static void tampered_frame_does_not_poison_window(void**) {
  OpensslAead engine;
  AgentSession a(kIndex, psk(1), 16, kRekey, engine, AgentSession::CounterMode::FromZero);
  Gateway gw{psk(1)};
  const uint64_t c0 = first_counter_of(77) + 5;
  auto plain = plaintext(3);
  auto f = gw.seal(kIndex, c0, plain);
  for (size_t byte : {size_t(16), size_t(16 + 20), f.size() - 17, f.size() - 1 /* tag */}) {
    auto bad = f;
    bad[byte] ^= 0x04;
    assert_int_equal(agent_open(a, bad, 0), R::AuthFail);
  }
  auto bad_aad = f;
  bad_aad[3] ^= 0x80;  // reserved header byte: authenticated as AAD
  assert_int_equal(agent_open(a, bad_aad, 0), R::AuthFail);
  // The genuine frame still opens, once.
  std::vector<uint8_t> out;
  assert_int_equal(agent_open(a, f, 0, &out), R::Ok);
  assert_true(out == plain);
  assert_int_equal(agent_open(a, f, 0), R::Replay);
  // A forged frame far ahead does not move the window either.
  auto ahead = gw.seal(kIndex, c0 + 100000, plaintext(4));
  auto forged = ahead;
  forged[40] ^= 1;
  assert_int_equal(agent_open(a, forged, 0), R::AuthFail);
  auto next = gw.seal(kIndex, c0 + 1, plaintext(5));
  assert_int_equal(agent_open(a, next, 0), R::Ok);
  assert_int_equal(agent_open(a, ahead, 0), R::Ok);
}

static void wrong_session_and_garbage(void**) {
  OpensslAead engine;
  AgentSession a(kIndex, psk(1), 16, kRekey, engine, AgentSession::CounterMode::FromZero);
  Gateway gw{psk(1)};
  const uint64_t c0 = first_counter_of(4) + 1;
  assert_int_equal(agent_open(a, gw.seal(kIndex + 1, c0, plaintext(1)), 0), R::WrongSession);
  assert_int_equal(agent_open(a, gw.seal(0, c0, plaintext(1)), 0), R::WrongSession);

  auto good = gw.seal(kIndex, c0, plaintext(1));
  std::vector<uint8_t> f;
  f.assign(good.begin(), good.begin() + 31);  // shorter than header + tag
  assert_int_equal(agent_open(a, f, 0), R::Malformed);
  f.assign(good.begin(), good.begin() + 63);  // a data frame below the minimum
  assert_int_equal(agent_open(a, f, 0), R::Malformed);
  f = good;
  f[0] = 2;  // version
  assert_int_equal(agent_open(a, f, 0), R::Malformed);
  f = good;
  f[1] = 9;  // type
  assert_int_equal(agent_open(a, f, 0), R::Malformed);
  f = good;
  f[2] ^= kFlagKeyPhase;  // key phase disagrees with the counter
  assert_int_equal(agent_open(a, f, 0), R::Malformed);
  f = gw.seal(kIndex, c0 + 1, plaintext(1, 16), FrameType::Keepalive);  // a keepalive must be 32 bytes
  assert_int_equal(agent_open(a, f, 0), R::Malformed);
  assert_int_equal(agent_open(a, std::vector<uint8_t>{}, 0), R::Malformed);
  uint32_t seed = 99;
  for (int i = 0; i < 2000; ++i) {
    std::vector<uint8_t> g((seed = seed * 1103515245u + 12345u) % 120);
    for (auto& b : g) b = uint8_t((seed = seed * 1103515245u + 12345u) >> 16);
    R r = agent_open(a, g, 0);
    assert_true(r != R::Ok);
  }
  // None of that hurt: the genuine frame opens.
  assert_int_equal(agent_open(a, good, 0), R::Ok);
}

static void other_psk_fails_auth(void**) {
  OpensslAead engine;
  AgentSession a(kIndex, psk(1), 16, kRekey, engine, AgentSession::CounterMode::FromZero);
  Gateway wrong{psk(2)};
  Gateway gw{psk(1)};
  const uint64_t c0 = first_counter_of(9) + 100;
  assert_int_equal(agent_open(a, wrong.seal(kIndex, c0, plaintext(1)), 0), R::AuthFail);
  assert_int_equal(agent_open(a, wrong.seal(kIndex, c0 + 1, plaintext(1)), 0), R::AuthFail);
  // A 32-byte-key gateway (AES-256) does not match a 16-byte-key agent either.
  Gateway g256{psk(1), 32};
  assert_int_equal(agent_open(a, g256.seal(kIndex, c0 + 2, plaintext(1)), 0), R::AuthFail);
  assert_int_equal(agent_open(a, gw.seal(kIndex, c0, plaintext(1)), 0), R::Ok);
}

static void aes256_sessions(void**) {
  OpensslAead engine;
  AgentSession a(kIndex, psk(5), 32, kRekey, engine, AgentSession::CounterMode::FromZero);
  Gateway gw{psk(5), 32};
  auto plain = plaintext(8);
  auto f = agent_seal(a, plain, 0);
  assert_true(gw.open_from_agent(f));
  assert_memory_equal(f.data() + 16, plain.data(), plain.size());
  assert_int_equal(agent_open(a, gw.seal(kIndex, first_counter_of(3), plain), 0), R::Ok);
}

// Epoch E's last counters and epoch E+1's first ones (the count limit), reordered: both keys are kept.
static void epoch_overlap_at_count_limit(void**) {
  OpensslAead engine;
  AgentSession a(kIndex, psk(1), 16, kRekey, engine, AgentSession::CounterMode::FromZero);
  Gateway gw{psk(1)};
  const uint64_t e = 500;
  const uint64_t next = first_counter_of(e + 1);
  std::vector<uint64_t> order = {next - 10, next, next - 9, next + 1, next - 3, next + 2, next - 1, next + 3};
  uint64_t now = 0;
  for (uint64_t c : order) {
    auto plain = plaintext(uint8_t(c));
    std::vector<uint8_t> out;
    assert_int_equal(agent_open(a, gw.seal(kIndex, c, plain), now += kNsPerMs, &out), R::Ok);
    assert_true(out == plain);
  }
  // A jump to E+2 derives its key on demand; E+1 becomes the previous epoch (its late frames still count,
  // each once) and E is refused.
  assert_int_equal(agent_open(a, gw.seal(kIndex, first_counter_of(e + 2), plaintext(1)), now), R::Ok);
  assert_int_equal(agent_open(a, gw.seal(kIndex, next + 4, plaintext(2)), now), R::Ok);
  assert_int_equal(agent_open(a, gw.seal(kIndex, next + 4, plaintext(2)), now), R::Replay);
  assert_int_equal(agent_open(a, gw.seal(kIndex, next - 2, plaintext(3)), now), R::Replay);
}

// A timed rekey: the sender jumps from somewhere inside epoch E to the first counter of E+1, and frames of E
// sent just before the jump arrive after the first E+1 frame. docs/protocol.md ("Overlap"): "Frames from the
// old epoch that arrive late still decrypt ... no packet is lost at the switch."
static void epoch_overlap_after_timed_rekey(void**) {
  OpensslAead engine;
  AgentSession a(kIndex, psk(1), 16, kRekey, engine, AgentSession::CounterMode::FromZero);
  Gateway gw{psk(1)};
  const uint64_t e = 600;
  const uint64_t in_e = first_counter_of(e) + 1000, in_next = first_counter_of(e + 1);
  assert_int_equal(agent_open(a, gw.seal(kIndex, in_e, plaintext(1)), 0), R::Ok);
  assert_int_equal(agent_open(a, gw.seal(kIndex, in_next, plaintext(2)), 1), R::Ok);
  // In flight before the jump, delivered after the first frame of the new epoch.
  assert_int_equal(agent_open(a, gw.seal(kIndex, in_e + 1, plaintext(3)), 2), R::Ok);
  assert_int_equal(agent_open(a, gw.seal(kIndex, in_next + 1, plaintext(4)), 3), R::Ok);
  assert_int_equal(agent_open(a, gw.seal(kIndex, in_e + 2, plaintext(5)), 4), R::Ok);
}

static void timed_rekey(void**) {
  OpensslAead engine;
  AgentSession a(kIndex, psk(1), 16, 10 * kNsPerSec, engine, AgentSession::CounterMode::FromZero);
  Gateway gw{psk(1)};
  auto p0 = plaintext(0), p1 = plaintext(1), p2 = plaintext(2);
  auto f0 = agent_seal(a, p0, 0);
  const uint64_t e0 = epoch_of(counter_of(f0));
  auto f1 = agent_seal(a, p1, 9 * kNsPerSec);  // before the interval: same epoch
  assert_int_equal(epoch_of(counter_of(f1)), e0);
  assert_int_equal(counter_of(f1), counter_of(f0) + 1);
  assert_int_equal(a.rekeys(), 0);
  auto f2 = agent_seal(a, p2, 11 * kNsPerSec);
  const uint64_t c2 = counter_of(f2);
  assert_int_equal(epoch_of(c2), e0 + 1);
  assert_int_equal(c2, first_counter_of(e0 + 1));
  assert_int_equal(a.tx_epoch(), e0 + 1);
  assert_int_equal(a.rekeys(), 1);
  assert_int_equal(bool(f2[2] & kFlagKeyPhase), bool((e0 + 1) & 1));
  for (auto* p : {&f0, &f1}) assert_true(gw.open_from_agent(*p));
  assert_memory_equal(f0.data() + 16, p0.data(), p0.size());
  assert_true(gw.open_from_agent(f2));
  assert_memory_equal(f2.data() + 16, p2.data(), p2.size());
  // The interval restarts with the new epoch: 11 s + 9 s is still epoch e0 + 1, 11 s + 10 s is e0 + 2.
  auto f3 = agent_seal(a, p0, 20 * kNsPerSec);
  assert_int_equal(epoch_of(counter_of(f3)), e0 + 1);
  assert_int_equal(counter_of(f3), c2 + 1);
  auto f4 = agent_seal(a, p0, 21 * kNsPerSec);
  assert_int_equal(epoch_of(counter_of(f4)), e0 + 2);
  assert_int_equal(a.rekeys(), 2);
  assert_true(gw.open_from_agent(f4));
}

// Forged frames choose their epoch: each new one would cost a key derivation.
static void rx_key_derivation_is_rate_limited(void**) {
  OpensslAead engine;
  AgentSession a(kIndex, psk(1), 16, kRekey, engine, AgentSession::CounterMode::FromZero);
  Gateway gw{psk(1)};
  Gateway attacker{psk(66)};
  const uint64_t e = 1234;
  // A genuine frame first (one derivation).
  assert_int_equal(agent_open(a, gw.seal(kIndex, first_counter_of(e), plaintext(1)), 0), R::Ok);
  int auth_fail = 0, no_key = 0;
  for (int i = 0; i < 30; ++i) {
    const uint64_t far = e + 1000 + uint64_t(i) * 7919;
    R r = agent_open(a, attacker.seal(kIndex, first_counter_of(far) + uint64_t(i), plaintext(uint8_t(i))),
                     uint64_t(i + 1) * 10 * kNsPerMs);
    assert_true(r == R::AuthFail || r == R::NoKey);
    auth_fail += r == R::AuthFail;
    no_key += r == R::NoKey;
  }
  assert_true(auth_fail <= 20);
  assert_true(auth_fail >= 1);
  assert_int_equal(auth_fail + no_key, 30);
  assert_true(no_key >= 10);
  // The budget only limits unexpected epochs: the epoch with a key keeps working, and the gateway's next epoch
  // (its next rekey) still gets a key within the same second.
  const uint64_t late = 900 * kNsPerMs;
  assert_int_equal(agent_open(a, gw.seal(kIndex, first_counter_of(e) + 1, plaintext(3)), late), R::Ok);
  assert_int_equal(agent_open(a, gw.seal(kIndex, first_counter_of(e + 1), plaintext(2)), late), R::Ok);
  // A far-ahead genuine epoch is unexpected: no budget left in this second...
  assert_int_equal(agent_open(a, gw.seal(kIndex, first_counter_of(e + 50), plaintext(4)), late + 1), R::NoKey);
  // ... but a second later the budget is back.
  const uint64_t later = late + kNsPerSec + 1;
  assert_int_equal(agent_open(a, gw.seal(kIndex, first_counter_of(e + 50), plaintext(4)), later), R::Ok);
  // ... and it is the same budget again: at most 20 derivations in this second too.
  auth_fail = no_key = 0;
  for (int i = 0; i < 30; ++i) {
    const uint64_t far = e + 900000 + uint64_t(i) * 104729;
    R r = agent_open(a, attacker.seal(kIndex, first_counter_of(far), plaintext(uint8_t(i))),
                     later + uint64_t(i + 1) * kNsPerMs);
    auth_fail += r == R::AuthFail;
    no_key += r == R::NoKey;
  }
  assert_true(auth_fail >= 1 && auth_fail <= 20);
  assert_int_equal(auth_fail + no_key, 30);
}

// Static keys: the wall clock bounds which counters are believable.
static void wall_clock_freshness(void**) {
  OpensslAead engine;
  AgentSession a(kIndex, psk(1), 16, kRekey, engine);
  uint64_t real = first_counter_of(400000000) + 12345;  // some wall-clock instant
  a.set_realtime_source([&] { return real; });
  Gateway gw{psk(1)};
  // A frame recorded 121 s ago (a replay to a restarted agent) is refused before any crypto.
  assert_int_equal(agent_open(a, gw.seal(kIndex, real - 121 * kNsPerSec, plaintext(1)), 0), R::Stale);
  // 100 s behind is within the freshness limit (clock skew, a gateway that re-anchors every 30 s).
  assert_int_equal(agent_open(a, gw.seal(kIndex, real - 100 * kNsPerSec, plaintext(2)), 0), R::Ok);
  // Epochs further ahead than clock skew allows are implausible: no key is even derived.
  assert_int_equal(agent_open(a, gw.seal(kIndex, real + 100 * kNsPerSec, plaintext(3)), 0), R::NoKey);
  // The current one is fine.
  assert_int_equal(agent_open(a, gw.seal(kIndex, real, plaintext(4)), 0), R::Ok);
  // A gateway whose clock runs 60 s ahead is believed.
  assert_int_equal(agent_open(a, gw.seal(kIndex, real + 60 * kNsPerSec, plaintext(5)), 0), R::Ok);
}

// Static keys: a sender starts one epoch ahead of the wall clock; when its counter falls 30 s behind it (little
// traffic) it jumps to it, so its frames always pass the receiver's freshness check; anchor_to_clock() does the
// same on demand.
static void wall_clock_anchor(void**) {
  OpensslAead engine;
  const uint64_t start = realtime_ns();
  AgentSession a(kIndex, psk(1), 16, kRekey, engine);
  uint64_t real = start;
  a.set_realtime_source([&] { return real; });
  Gateway gw{psk(1)};
  auto f0 = agent_seal(a, plaintext(0), 0);
  const uint64_t c0 = counter_of(f0);
  assert_true(c0 >= start + kClockLeadNs);
  real = c0 + 29 * kNsPerSec;
  auto f1 = agent_seal(a, plaintext(1), kNsPerSec);
  assert_int_equal(counter_of(f1), c0 + 1);  // within the lag: keep counting
  real = c0 + 31 * kNsPerSec;                // now 30 s behind
  auto f2 = agent_seal(a, plaintext(2), 2 * kNsPerSec);
  assert_int_equal(counter_of(f2), real);    // re-anchored
  assert_int_equal(a.rekeys(), 1);
  for (auto* f : {&f0, &f1, &f2}) assert_true(gw.open_from_agent(*f));
  real += kNsPerSec;
  a.anchor_to_clock();
  auto f3 = agent_seal(a, plaintext(3), 3 * kNsPerSec);
  assert_int_equal(counter_of(f3), real);
  assert_true(gw.open_from_agent(f3));
}

// Forged frames cannot use up the derivation budget for the epochs a real gateway uses: the wall clock's.
static void expected_epochs_bypass_the_budget(void**) {
  OpensslAead engine;
  AgentSession a(kIndex, psk(1), 16, kRekey, engine);
  uint64_t real = first_counter_of(500000000) + 777;
  a.set_realtime_source([&] { return real; });
  Gateway gw{psk(1)};
  Gateway attacker{psk(66)};
  // Forged frames in 25 distinct believable but unexpected epochs (2..26 epochs behind the wall clock).
  int no_key = 0;
  for (uint64_t back = 2; back <= 26; ++back) {
    R r = agent_open(a, attacker.seal(kIndex, first_counter_of(epoch_of(real) - back) + 1, plaintext(uint8_t(back))),
                     back * kNsPerMs);
    assert_true(r == R::AuthFail || r == R::NoKey);
    no_key += r == R::NoKey;
  }
  assert_int_equal(no_key, 5);  // 20 derivations allowed, the budget is spent
  // A (restarted) gateway starts at the wall clock: its epoch is expected, so it still gets a key.
  assert_int_equal(agent_open(a, gw.seal(kIndex, real, plaintext(1)), 30 * kNsPerMs), R::Ok);
  // And so does its next epoch.
  assert_int_equal(agent_open(a, gw.seal(kIndex, first_counter_of(epoch_of(real) + 1), plaintext(2)), 31 * kNsPerMs),
                   R::Ok);
}

// Static keys: a timed rekey never takes the counter more than one epoch past the wall clock (a restarted sender
// starts that far ahead, so it could otherwise reuse a counter); it waits for the clock instead.
static void wall_clock_rekey_waits_for_the_clock(void**) {
  OpensslAead engine;
  uint64_t real = realtime_ns();
  AgentSession a(kIndex, psk(1), 16, 10 * kNsPerSec, engine);  // counter starts one epoch ahead of `real`
  a.set_realtime_source([&] { return real; });
  Gateway gw{psk(1)};
  auto f0 = agent_seal(a, plaintext(0), 0);
  const uint64_t c0 = counter_of(f0);
  assert_true(c0 >= real + kClockLeadNs);
  // Rekey due (11 s later on the monotonic clock) but the wall clock did not move: the next epoch would be more
  // than one epoch ahead of it.
  auto f1 = agent_seal(a, plaintext(1), 11 * kNsPerSec);
  assert_int_equal(counter_of(f1), c0 + 1);
  assert_int_equal(a.rekeys(), 0);
  // Once the wall clock has moved on, the rekey happens.
  real += 2 * kClockLeadNs;
  auto f2 = agent_seal(a, plaintext(2), 12 * kNsPerSec);
  assert_true(epoch_of(counter_of(f2)) > epoch_of(c0));
  assert_true(counter_of(f2) <= real + kClockLeadNs);
  assert_int_equal(a.rekeys(), 1);
  for (auto* f : {&f0, &f1, &f2}) assert_true(gw.open_from_agent(*f));
}


// A restarted dpctld may hand the agent the receiver index it already uses, with a new secret: frames for that
// index open with the new keys at once, and the old keys are never selected again (issue: 60 s of stale keys).
// A new session under another index keeps the previous one receiving, selected by its index.
static void session_slots_never_select_stale_keys(void**) {
  OpensslAead engine;
  using Mode = AgentSession::CounterMode;
  SessionSlots slots;
  const uint64_t now = kNsPerSec;
  assert_false(slots.adopt(std::make_unique<AgentSession>(kIndex, psk(1), 16, kRekey, engine, Mode::FromZero), now));
  Gateway old_gw{psk(1)}, new_gw{psk(2)};
  const auto plain = plaintext(1);
  assert_int_equal(agent_open(*slots.for_index(kIndex), old_gw.seal(kIndex, 1, plain), now), R::Ok);
  // Same index, new registration: replaced outright.
  assert_true(slots.adopt(std::make_unique<AgentSession>(kIndex, psk(2), 16, kRekey, engine, Mode::FromZero), now));
  assert_null(slots.previous());
  assert_int_equal(agent_open(*slots.for_index(kIndex), new_gw.seal(kIndex, 1, plain), now), R::Ok);
  assert_int_equal(agent_open(*slots.for_index(kIndex), old_gw.seal(kIndex, 2, plain), now), R::AuthFail);
  // Another index: the previous session keeps receiving its own frames for the grace time.
  assert_false(slots.adopt(std::make_unique<AgentSession>(kIndex + 1, psk(3), 16, kRekey, engine, Mode::FromZero), now));
  assert_non_null(slots.previous());
  assert_int_equal(slots.for_index(kIndex)->index(), kIndex);
  assert_int_equal(slots.for_index(kIndex + 1)->index(), kIndex + 1);
  assert_int_equal(agent_open(*slots.for_index(kIndex), new_gw.seal(kIndex, 2, plain), now), R::Ok);
  slots.expire(now + SessionSlots::kGraceNs + 1);
  assert_null(slots.previous());
  // And back to an index the previous session had: that one goes, never the keys it held.
  assert_false(slots.adopt(std::make_unique<AgentSession>(kIndex + 2, psk(4), 16, kRekey, engine, Mode::FromZero), now));
  assert_true(slots.adopt(std::make_unique<AgentSession>(kIndex + 1, psk(5), 16, kRekey, engine, Mode::FromZero), now));
  assert_int_equal(slots.current()->index(), kIndex + 1);
  assert_int_equal(slots.previous()->index(), kIndex + 2);
}


// Sessions leaving the slots while another thread may still use them go to the caller's retired list (dpagent frees
// them once its data-path threads have moved on): they stay usable until then, and only the ones that left are in it.
static void session_slots_retire_instead_of_destroying(void**) {
  OpensslAead engine;
  using Mode = AgentSession::CounterMode;
  SessionSlots slots;
  SessionSlots::Retired retired;
  const uint64_t now = kNsPerSec;
  Gateway gw{psk(1)};
  slots.adopt(std::make_unique<AgentSession>(kIndex, psk(1), 16, kRekey, engine, Mode::FromZero), now, &retired);
  AgentSession* first = slots.current();
  slots.adopt(std::make_unique<AgentSession>(kIndex + 1, psk(2), 16, kRekey, engine, Mode::FromZero), now, &retired);
  assert_true(retired.empty());  // the first one is the previous session now
  slots.adopt(std::make_unique<AgentSession>(kIndex + 2, psk(3), 16, kRekey, engine, Mode::FromZero), now, &retired);
  assert_int_equal(retired.size(), 1);
  assert_ptr_equal(retired[0].get(), first);
  // Still whole: a thread that has not moved on yet opens its frames with it.
  assert_int_equal(agent_open(*first, gw.seal(kIndex, 1, plaintext(1)), now), R::Ok);
  // Same index as the current one: replaced outright, into the list too.
  AgentSession* current = slots.current();
  slots.adopt(std::make_unique<AgentSession>(kIndex + 2, psk(4), 16, kRekey, engine, Mode::FromZero), now, &retired);
  assert_int_equal(retired.size(), 2);
  assert_ptr_equal(retired[1].get(), current);
  assert_false(slots.expire(now + SessionSlots::kGraceNs / 2, &retired));
  assert_true(slots.expire(now + SessionSlots::kGraceNs + 1, &retired));
  assert_int_equal(retired.size(), 3);
  assert_int_equal(retired[2]->index(), kIndex + 1);
  assert_null(slots.previous());
}

// dpagent with two data-path threads: one thread seals agent -> gateway frames while another opens gateway -> agent
// frames of the same session, each half with its own engine slot. Every frame opens once, every sealed frame
// authenticates at the gateway under a counter of its own, and the counters another thread reads stay sane.
static void halves_on_two_threads(void**) {
  OpensslAead engine(2);
  AgentSession a(kIndex, psk(1), 16, kRekey, engine, AgentSession::CounterMode::FromZero);
  a.use_engine_threads(0, 1);
  Gateway gw{psk(1)};
  constexpr size_t kFrames = 4096, kBurst = 32;
  std::vector<std::vector<uint8_t>> in(kFrames);
  for (size_t i = 0; i < kFrames; ++i) in[i] = gw.seal(kIndex, first_counter_of(3) + i, plaintext(uint8_t(i)));
  std::vector<std::vector<uint8_t>> out(kFrames, std::vector<uint8_t>(RelayCodec::kLayout.frame_len(60)));
  size_t opened = 0, sealed = 0;
  std::atomic<bool> done{false};
  std::thread down([&] {
    std::array<AgentSession::Received, kBurst> batch;
    for (size_t i = 0; i < kFrames; i += kBurst) {
      for (size_t k = 0; k < kBurst; ++k) batch[k] = {in[i + k], &a, {}, R::Malformed};
      a.open_burst(batch, kNsPerSec);
      for (auto& r : batch) opened += r.result == R::Ok;
      a.heard(kNsPerSec + i);
    }
  });
  std::thread up([&] {
    for (size_t i = 0; i < kFrames; ++i) {
      const auto plain = plaintext(uint8_t(i));
      std::memcpy(out[i].data() + kHeaderLen, plain.data(), plain.size());
      sealed += a.seal_later(FrameType::Data, 0, out[i].data(), plain.size(), kNsPerSec);
      if (i % kBurst == kBurst - 1) a.seal_pending();
    }
    a.seal_pending();
  });
  // What a third thread reads meanwhile must always be sane. It reads at least once: the scheduler may run it only
  // after the other two are done (a loaded machine, tests in parallel), which is no failure of the session.
  uint64_t reads = 0, sane = 0;
  std::thread reader([&] {
    do {
      ++reads;
      sane += a.tx_epoch() == 0 && a.rekeys() == 0 && a.last_heard_ns() < 2 * kNsPerSec;
    } while (!done.load());
  });
  down.join();
  up.join();
  done = true;
  reader.join();
  assert_true(reads > 0);
  assert_int_equal(sane, reads);
  assert_int_equal(opened, kFrames);
  assert_int_equal(sealed, kFrames);
  std::set<uint64_t> counters;
  for (auto& f : out) {
    counters.insert(counter_of(f));
    assert_true(gw.open_from_agent(f));
  }
  assert_int_equal(counters.size(), kFrames);
  assert_int_equal(a.last_heard_ns(), kNsPerSec + kFrames - kBurst);
}


// A receive batch opened in one go: frames of two epochs, a repeat within the batch, a tampered frame, another
// session's frame and garbage, each judged as alone, in frame order; frames sealed in one burst all open at the
// gateway, under the key of the epoch each was counted in.
static void bursts_both_ways(void**) {
  OpensslAead engine;
  AgentSession a(kIndex, psk(1), 16, kRekey, engine, AgentSession::CounterMode::FromZero);
  Gateway gw{psk(1)};
  const uint64_t c0 = first_counter_of(1000) - 2;
  std::vector<std::vector<uint8_t>> frames;
  for (uint64_t i = 0; i < 6; ++i) frames.push_back(gw.seal(kIndex, c0 + i, plaintext(uint8_t(i))));  // epochs 999, 1000
  frames.push_back(frames[1]);                                                      // a repeat of #1
  auto bad = gw.seal(kIndex, c0 + 6, plaintext(6));
  bad[kHeaderLen + 3] ^= 0x40;
  frames.push_back(bad);                                                            // tampered
  frames.push_back(gw.seal(kIndex, c0 + 7, plaintext(7)));                          // after the tampered one
  frames.push_back(std::vector<uint8_t>(10, 1));                                    // garbage
  std::vector<AgentSession::Received> batch;
  for (auto& f : frames) batch.push_back(AgentSession::Received{f, &a, {}, R::Malformed});
  AgentSession other(kIndex + 1, psk(2), 16, kRekey, engine, AgentSession::CounterMode::FromZero);
  batch.push_back(AgentSession::Received{frames[0], &other, {}, R::NoKey});  // not this session's: left alone
  a.open_burst(batch, 0);
  const R want[] = {R::Ok, R::Ok, R::Ok, R::Ok, R::Ok, R::Ok, R::Replay, R::AuthFail, R::Ok, R::Malformed, R::NoKey};
  for (size_t i = 0; i < batch.size(); ++i) assert_int_equal(batch[i].result, want[i]);
  for (uint64_t i = 0; i < 6; ++i) {
    assert_int_equal(batch[i].meta.counter, c0 + i);
    assert_memory_equal(frames[i].data() + kHeaderLen, plaintext(uint8_t(i)).data(), plaintext(0).size());
  }
  // Opened once: the same frames again are replays.
  for (auto& r : batch) r.result = R::Malformed;
  a.open_burst(std::span(batch).first(6), 1);
  for (size_t i = 0; i < 6; ++i) assert_int_equal(batch[i].result, R::Replay);

  // Sealing: frames kept, then sealed together; each opens at the gateway.
  AgentSession b(kIndex, psk(3), 16, kRekey, engine, AgentSession::CounterMode::FromZero);
  Gateway gw3{psk(3)};
  std::vector<std::vector<uint8_t>> out(70);
  for (size_t i = 0; i < out.size(); ++i) {  // more than one burst's worth: the first 64 are sealed on the way
    const auto plain = plaintext(uint8_t(i));
    out[i].assign(RelayCodec::kLayout.frame_len(uint32_t(plain.size())), 0);
    std::memcpy(out[i].data() + kHeaderLen, plain.data(), plain.size());
    assert_true(b.seal_later(FrameType::Data, 0, out[i].data(), plain.size(), 0));
  }
  assert_true(b.sealing());
  assert_int_equal(b.seal_pending(), 0);
  assert_false(b.sealing());
  for (size_t i = 0; i < out.size(); ++i) {
    assert_true(gw3.open_from_agent(out[i]));
    assert_memory_equal(out[i].data() + kHeaderLen, plaintext(uint8_t(i)).data(), plaintext(0).size());
  }
}

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test(agent_frames_decrypt_at_the_gateway),
      cmocka_unit_test(agent_keepalive_and_flags),
      cmocka_unit_test(two_agents_cannot_talk),
      cmocka_unit_test(gateway_frames_open_once),
      cmocka_unit_test(tampered_frame_does_not_poison_window),
      cmocka_unit_test(wrong_session_and_garbage),
      cmocka_unit_test(other_psk_fails_auth),
      cmocka_unit_test(aes256_sessions),
      cmocka_unit_test(epoch_overlap_at_count_limit),
      cmocka_unit_test(epoch_overlap_after_timed_rekey),
      cmocka_unit_test(timed_rekey),
      cmocka_unit_test(rx_key_derivation_is_rate_limited),
      cmocka_unit_test(wall_clock_freshness),
      cmocka_unit_test(wall_clock_anchor),
      cmocka_unit_test(wall_clock_rekey_waits_for_the_clock),
      cmocka_unit_test(expected_epochs_bypass_the_budget),
      cmocka_unit_test(session_slots_never_select_stale_keys),
      cmocka_unit_test(session_slots_retire_instead_of_destroying),
      cmocka_unit_test(halves_on_two_threads),
      cmocka_unit_test(bursts_both_ways),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
