// Relay frames (proto/relay_frame.hpp) as dpagent and dpgw read them. The input's first byte (low bit) picks:
// - plain (0): the rest is one whole frame. It goes to a real AgentSession as it arrived from the network (it
//   must never open: nothing here knows the key), and then, as if it had authenticated, through what both ends
//   do with a frame's plaintext: the header, the inner header, the name trailer and the inner IP packet
//   (agent/agent.cpp, dataplane/relay/tunnel_input.cpp and visitor_input.cpp). Properties: decode and encode agree,
//   the trailer and packet lie inside the frame, a name read back is the name written.
// - sealed (1): up to 16 frames sealed here with the gateway's key for the session (the key schedule of
//   crypto/key_schedule.hpp), each [u8 type and flags][u8 counter step][step argument][u16 length][plaintext],
//   opened by the AgentSession in order: replayed, reordered and far-jumping counters across key epochs.
//   Properties: an Ok frame's plaintext is what was sealed, and no counter ever opens twice.
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "agent/agent_session.hpp"
#include "crypto/aead_openssl.hpp"
#include "fuzz/fuzz.hpp"
#include "ingress/client_hello.hpp"
#include "packet/parser.hpp"
#include "proto/relay_frame.hpp"

using namespace dptun;

namespace {

constexpr uint32_t kIndex = 40000;
const std::vector<uint8_t> kSecret(kBaseSecretLen, 0x42);

OpensslAead g_engine;
constexpr RelayCodec kCodec;
constexpr FrameLayout kLayout = RelayCodec::kLayout;

// What both ends do with an authenticated frame's plaintext.
void read_plaintext(std::span<uint8_t> frame) {
  FrameMeta m;
  const FrameError e = kCodec.read_header(frame, 0, m);
  FUZZ_CHECK(frame_error_name(e) != nullptr);
  if (e != FrameError::None) return;
  FUZZ_CHECK(frame.size() >= kLayout.frame_len(0));
  uint32_t receiver = 0;
  FUZZ_CHECK(kCodec.receiver_of(frame, receiver) && receiver == m.receiver_index);
  std::vector<uint8_t> header(kLayout.header_len);
  kCodec.write_header(header.data(), m);
  FUZZ_CHECK(std::memcmp(header.data(), frame.data(), 3) == 0);
  FUZZ_CHECK(std::memcmp(header.data() + 4, frame.data() + 4, kLayout.header_len - 4) == 0);
  const AeadOp op = kCodec.open_op(frame, nullptr);
  FUZZ_CHECK(fuzz::within({op.data, op.len}, frame) && op.aad == frame.data());
  FUZZ_CHECK(op.tag + kAeadTagLen == frame.data() + frame.size());
  if (m.type != FrameType::Data) return;
  FUZZ_CHECK(frame.size() >= kLayout.data_overhead() + 20);

  InnerHeader ih;
  std::span<uint8_t> pkt;
  FUZZ_CHECK(kCodec.read_inner(frame, ih, pkt));
  FUZZ_CHECK(fuzz::within(pkt, frame) && pkt.size() == frame.size() - kLayout.data_overhead());
  std::vector<uint8_t> rewritten(frame.begin(), frame.end());
  kCodec.write_inner(rewritten.data(), ih);
  InnerHeader back;
  std::span<uint8_t> pkt2;
  FUZZ_CHECK(kCodec.read_inner(rewritten, back, pkt2));
  FUZZ_CHECK(back.flow_id == ih.flow_id && back.proto == ih.proto && back.flags == ih.flags);
  if (ih.flags & kInnerHasName) {
    std::string_view name;
    size_t rest = ~size_t(0);
    if (!read_name_trailer(pkt, name, rest)) return;
    FUZZ_CHECK(rest < pkt.size() && !name.empty() && name.size() <= 253);
    FUZZ_CHECK(rest + name.size() + 1 == pkt.size());
    FUZZ_CHECK(fuzz::within(name, pkt));
    uint8_t again[kMaxNameTrailer];
    FUZZ_CHECK(write_name_trailer(again, name) == name.size() + 1);
    std::string_view name2;
    size_t rest2 = 0;
    FUZZ_CHECK(read_name_trailer({again, name.size() + 1}, name2, rest2) && rest2 == 0 && name2 == name);
    (void)plausible_hostname(name);  // what the visitor path asks of it
    pkt = pkt.first(rest);
  }
  PacketInfo pi;
  const bool inner_ok = parse_tunnel_packet(pkt, pi);
  FUZZ_LOG("data frame: inner packet %s, name trailer %d\n", inner_ok ? "ok" : "bad", bool(ih.flags & kInnerHasName));
  if (inner_ok) {
    FUZZ_CHECK(size_t(pi.ip_total_len) <= pkt.size());
    FUZZ_CHECK(size_t(pi.l4_offset) + pi.l4_len <= pi.ip_total_len);
  }
}

// The gateway's side of the session: seals gateway -> agent frames.
class GatewaySealer {
 public:
  std::vector<uint8_t> seal(uint8_t type_flags, uint64_t counter, std::span<const uint8_t> plain) {
    const FrameType type = FrameType(1 + (type_flags & 3) % 3);
    const uint8_t flags = uint8_t(type_flags >> 2);
    std::vector<uint8_t> f(kLayout.frame_len(uint32_t(plain.size())));
    kCodec.write_header(f.data(), FrameMeta{type, flags, kIndex, counter});
    if (!plain.empty()) std::memcpy(f.data() + kLayout.header_len, plain.data(), plain.size());
    const uint64_t epoch = epoch_of(counter);
    auto it = keys_.find(epoch);
    if (it == keys_.end()) {
      Key k;
      if (!derive_epoch_key(kSecret, KeyDirection::GatewayToAgent, kIndex, epoch, 16, k.ek)) std::abort();
      k.aead = g_engine.make_key(k.ek.key_bytes(), AeadDirection::Encrypt, kLayout.header_len);
      if (!k.aead) std::abort();
      it = keys_.emplace(epoch, std::move(k)).first;
    }
    uint8_t iv[kAeadIvLen];
    make_nonce(iv, it->second.ek.salt, counter);
    const AeadOp op = kCodec.seal_op(f.data(), uint32_t(plain.size()), iv);
    int32_t status = -1;
    it->second.aead->process({&op, 1}, {&status, 1}, 0);
    if (status != 0) std::abort();
    return f;
  }

 private:
  struct Key {
    EpochKey ek;
    std::unique_ptr<AeadKey> aead;
  };
  std::map<uint64_t, Key> keys_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in({data, size});
  const uint8_t mode = in.u8();
  AgentSession agent(kIndex, kSecret, 16, 120'000'000'000ull, g_engine, AgentSession::CounterMode::FromZero);
  uint64_t now_ns = 1'000'000'000ull;

  if (!(mode & 1)) {
    const auto frame = in.rest();
    std::vector<uint8_t> copy(frame.begin(), frame.end());
    FrameMeta meta;
    const auto r = agent.open(copy, meta, now_ns);
    FUZZ_CHECK(r != AgentSession::OpenResult::Ok);
    FUZZ_LOG("unauthenticated frame: open result %d\n", int(r));
    std::vector<uint8_t> as_sent(frame.begin(), frame.end());
    read_plaintext(as_sent);
    return 0;
  }

  GatewaySealer gw;
  std::set<uint64_t> opened;
  uint64_t counter = 0;
  for (int i = 0; i < 16 && in.left(); ++i) {
    const uint8_t type_flags = in.u8();
    // How this frame's counter relates to the previous one's.
    const uint8_t step = in.u8();
    switch (step & 7) {
      case 0: counter += 1; break;
      case 1: counter -= uint64_t(in.u8()); break;                  // a little back: reordering or replay
      case 2: counter += uint64_t(in.u16()); break;                 // a little ahead: loss
      case 3: counter -= uint64_t(in.u16()); break;                 // far back, maybe out of the window
      case 4: counter = first_counter_of(epoch_of(counter) + 1 + (in.u8() & 3)); break;  // rekey
      case 5: counter = in.u64(); break;                            // anything
      case 6: counter = first_counter_of(epoch_of(counter)) - 1 - in.u8(); break;  // the epoch before
      default: break;                                               // the same counter again
    }
    now_ns += uint64_t(in.u16()) * 1'000'000;
    const auto plain = in.bytes(in.u16() % 1600);
    std::vector<uint8_t> frame = gw.seal(type_flags, counter, plain);
    const std::vector<uint8_t> sealed = frame;
    FrameMeta meta;
    const auto r = agent.open(frame, meta, now_ns);
    FUZZ_LOG("counter %llu: open result %d\n", (unsigned long long)counter, int(r));
    if (r == AgentSession::OpenResult::Ok) {
      FUZZ_CHECK(meta.counter == counter && meta.receiver_index == kIndex);
      FUZZ_CHECK(opened.insert(counter).second);  // never the same counter twice
      FUZZ_CHECK(plain.empty() || std::memcmp(frame.data() + kLayout.header_len, plain.data(), plain.size()) == 0);
      read_plaintext(frame);
    }
    // The same bytes once more, straight away: a replay, never opened again.
    std::vector<uint8_t> again = sealed;
    FUZZ_CHECK(agent.open(again, meta, now_ns) != AgentSession::OpenResult::Ok);
  }
  return 0;
}
