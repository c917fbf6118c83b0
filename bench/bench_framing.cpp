// The tunnel framings side by side on one core (issue 11's "QUIC framing >= 80 % of the relay-frame Mpps per core"):
// relay frames and QUIC short-header DATAGRAM packets, the same inner packets, the same AEAD engine (ipsec-mb
// AES-128-GCM, one call per burst of 32), measured in the same run, rounds alternating. Per burst, what a worker does
// around the AEAD for each framing:
//   send:    inner header and header written, the burst sealed; QUIC also: the header-protection masks of the burst
//            in one AES-ECB job (ipsec-mb, crypto/hp_ipsec_mb.hpp, as dpgw's workers will) and applied;
//   receive: QUIC: the masks again in one call, header protection removed, the packet number rebuilt; both: the
//            header read, the burst opened, the frames read back (QUIC: its frames parsed).
// Every pass writes its headers afresh over the same buffers, so nothing is copied (after a send-only pass the inner
// bytes are ciphertext, which the next pass carries as well); every packet must open (the run stops otherwise).
// Not counted: the rest of dpgw's pipeline (parse, flows, NAT, mbufs), which is the same for both (bench_gateway
// runs a relay session only so far).
// Output: one JSON line per framing and size (bench/run.sh prints the table).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "crypto/aead_ipsec_mb.hpp"
#include "crypto/header_protection.hpp"
#include "crypto/hp_ipsec_mb.hpp"
#include "crypto/key_schedule.hpp"
#include "crypto/quic_keys.hpp"
#include "proto/quic_short_header.hpp"
#include "proto/relay_frame.hpp"

using namespace dptun;

namespace {

constexpr uint32_t kBurstLen = 32;
constexpr uint32_t kRoom = 2048;

struct Burst {
  std::vector<uint8_t> bytes = std::vector<uint8_t>(kBurstLen * kRoom);
  uint8_t* frame(uint32_t i) { return bytes.data() + i * kRoom; }
};

// An inner IPv4/UDP packet of `len` bytes at `p`.
void fill_inner(uint8_t* p, uint32_t len, uint32_t seed) {
  for (uint32_t i = 0; i < len; ++i) p[i] = uint8_t(seed * 31 + i);
  p[0] = 0x45;
  p[2] = uint8_t(len >> 8);
  p[3] = uint8_t(len);
  p[9] = 17;
}

struct Result {
  double mpps = 0;  // round trips (send + receive) of one packet, millions per second
  double send_mpps = 0;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Relay frames: send and receive `iterations` bursts (or only send, when receive is false).
bool relay_bursts(AeadKey& seal, AeadKey& open, const EpochKey& k, Burst& b, uint32_t inner_len, uint64_t iterations,
                  bool receive, uint64_t& counter) {
  const RelayCodec codec;
  const FrameLayout& l = codec.layout();
  const uint32_t enc = l.encrypted_len(inner_len);
  AeadOp ops[kBurstLen];
  int32_t status[kBurstLen];
  uint8_t iv[kBurstLen][kAeadIvLen];
  for (uint64_t it = 0; it < iterations; ++it) {
    for (uint32_t i = 0; i < kBurstLen; ++i) {
      uint8_t* f = b.frame(i);
      codec.write_inner(f, InnerHeader{it * kBurstLen + i, 17, 0});
      codec.write_header(f, FrameMeta{FrameType::Data, 0, 7, counter});
      make_nonce(iv[i], k.salt, counter++);
      ops[i] = codec.seal_op(f, enc, iv[i]);
    }
    seal.process(ops, status, 0);
    if (!receive) continue;
    for (uint32_t i = 0; i < kBurstLen; ++i) {
      std::span<uint8_t> f{b.frame(i), l.frame_len(enc)};
      FrameMeta m;
      if (codec.read_header(f, counter, m) != FrameError::None) return false;
      make_nonce(iv[i], k.salt, m.counter);
      ops[i] = codec.open_op(f, iv[i]);
    }
    open.process(ops, status, 0);
    for (uint32_t i = 0; i < kBurstLen; ++i) {
      InnerHeader ih;
      std::span<uint8_t> pkt;
      if (status[i] || !codec.read_inner({b.frame(i), l.frame_len(enc)}, ih, pkt) || pkt.size() != inner_len) return false;
    }
  }
  return true;
}

// QUIC short-header DATAGRAM packets with 4-byte packet numbers (what dpgw's codec sends).
bool quic_bursts(AeadKey& seal, AeadKey& open, const QuicPacketKeys& keys, const IpsecMbHeaderProtection& hp,
                 const HpExpandedKey& hp_key, QuicDatagramCodec& codec, Burst& b, uint32_t inner_len,
                 uint64_t iterations, bool receive, uint64_t& pn) {
  const FrameLayout& l = codec.layout();
  const uint32_t enc = l.encrypted_len(inner_len);
  const uint32_t len = l.frame_len(enc);
  AeadOp ops[kBurstLen];
  int32_t status[kBurstLen];
  uint8_t iv[kBurstLen][kAeadIvLen];
  alignas(16) uint8_t samples[kBurstLen * kHpSampleLen];
  alignas(16) uint8_t masks[kBurstLen * kHpMaskLen];
  for (uint64_t it = 0; it < iterations; ++it) {
    for (uint32_t i = 0; i < kBurstLen; ++i) {
      uint8_t* f = b.frame(i);
      codec.write_inner(f, InnerHeader{it * kBurstLen + i, 17, 0});
      codec.write_header(f, FrameMeta{FrameType::Data, 0, 7, pn});
      quic_nonce(iv[i], keys.iv.data(), pn++);
      ops[i] = codec.seal_op(f, enc, iv[i]);
    }
    seal.process(ops, status, 0);
    for (uint32_t i = 0; i < kBurstLen; ++i) std::memcpy(samples + i * kHpSampleLen, b.frame(i) + kQuicSampleOffset, kHpSampleLen);
    if (!hp.masks(hp_key, samples, kBurstLen, masks, 0)) return false;
    for (uint32_t i = 0; i < kBurstLen; ++i)
      quic_protect_header(b.frame(i)[0], b.frame(i) + kQuicPnOffset, masks + i * kHpMaskLen);
    if (!receive) continue;
    for (uint32_t i = 0; i < kBurstLen; ++i)
      if (!QuicDatagramCodec::sample_of({b.frame(i), len}, samples + i * kHpSampleLen)) return false;
    if (!hp.masks(hp_key, samples, kBurstLen, masks, 0)) return false;
    for (uint32_t i = 0; i < kBurstLen; ++i) {
      std::span<uint8_t> f{b.frame(i), len};
      FrameMeta m;
      if (codec.read_header_masked(f, masks + i * kHpMaskLen, pn - 1, m) != FrameError::None) return false;
      quic_nonce(iv[i], keys.iv.data(), m.counter);
      ops[i] = codec.open_op(f, iv[i]);
    }
    open.process(ops, status, 0);
    for (uint32_t i = 0; i < kBurstLen; ++i) {
      InnerHeader ih;
      std::span<uint8_t> pkt;
      if (status[i] || !codec.read_inner({b.frame(i), len}, ih, pkt) || pkt.size() != inner_len) return false;
    }
  }
  return true;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 5;
  double seconds = 0.4;  // per measurement
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--rounds" && i + 1 < argc) {
      rounds = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--seconds" && i + 1 < argc) {
      seconds = std::max(0.05, std::atof(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: bench_framing [--rounds N (5)] [--seconds S per measurement (0.4)]\n");
      return a == "--help" ? 0 : 2;
    }
  }
  std::string error;
  auto engine = IpsecMbAead::open(1, error);
  if (!engine) {
    std::fprintf(stderr, "bench_framing: ipsec-mb: %s\n", error.c_str());
    return 1;
  }
  // Keys: a relay epoch key from a fixed base secret; QUIC 1-RTT keys from a fixed traffic secret.
  const std::vector<uint8_t> base(kBaseSecretLen, 0x42), secret(32, 0x24);
  EpochKey rk;
  QuicKdf kdf;
  QuicPacketKeys qk;
  if (!derive_epoch_key(base, KeyDirection::GatewayToAgent, 7, 0, 16, rk) || !kdf.packet_keys(QuicCipher::Aes128Gcm, secret, qk)) {
    std::fprintf(stderr, "bench_framing: key derivation failed\n");
    return 1;
  }
  auto relay_seal = engine->make_key(rk.key_bytes(), AeadDirection::Encrypt, 16);
  auto relay_open = engine->make_key(rk.key_bytes(), AeadDirection::Decrypt, 16);
  QuicDatagramCodec::Config qc;
  qc.tx_dcid = {0, 0, 0, 7, 1, 2, 3, 4};
  static constexpr std::array<uint8_t, 4> kTail = {1, 2, 3, 4};
  qc.rx_cid_tails = {&kTail, 1};
  qc.tx_hp = qc.rx_hp = qk.hp_bytes();
  QuicDatagramCodec codec(qc);
  const uint32_t aad = uint32_t(kQuicPnOffset + 4);
  auto quic_seal = engine->make_key(qk.key_bytes(), AeadDirection::Encrypt, aad);
  auto quic_open = engine->make_key(qk.key_bytes(), AeadDirection::Decrypt, aad);
  auto hp = IpsecMbHeaderProtection::open(1, error);
  HpExpandedKey hp_key;
  if (!relay_seal || !relay_open || !quic_seal || !quic_open || !codec.ok() || !hp ||
      !hp->make_key(HpCipher::Aes128, qk.hp_bytes(), hp_key)) {
    std::fprintf(stderr, "bench_framing: keys could not be made\n");
    return 1;
  }

  for (uint32_t inner_len : {64u, 512u, 1400u}) {
    Burst rb, qb;
    for (uint32_t i = 0; i < kBurstLen; ++i) {
      fill_inner(rb.frame(i) + RelayCodec::kLayout.packet_offset(), inner_len, i);
      fill_inner(qb.frame(i) + codec.layout().packet_offset(), inner_len, i);
    }
    uint64_t counter = 1, pn = 0;
    // Calibrate: bursts per measurement from a short relay run.
    auto t0 = std::chrono::steady_clock::now();
    uint64_t calib = 0;
    while (seconds_since(t0) < 0.05) {
      if (!relay_bursts(*relay_seal, *relay_open, rk, rb, inner_len, 64, true, counter)) return 1;
      calib += 64;
    }
    const uint64_t iters = std::max<uint64_t>(16, uint64_t(double(calib) / seconds_since(t0) * seconds));
    std::vector<double> relay_rt, relay_tx, quic_rt, quic_tx;
    for (int r = 0; r < rounds; ++r) {
      for (int framing = 0; framing < 2; ++framing) {
        for (bool receive : {true, false}) {
          t0 = std::chrono::steady_clock::now();
          const bool ok = framing == 0
                              ? relay_bursts(*relay_seal, *relay_open, rk, rb, inner_len, iters, receive, counter)
                              : quic_bursts(*quic_seal, *quic_open, qk, *hp, hp_key, codec, qb, inner_len, iters,
                                            receive, pn);
          const double mpps = double(iters * kBurstLen) / seconds_since(t0) / 1e6;
          if (!ok) {
            std::fprintf(stderr, "bench_framing: a %s packet of %u bytes did not open\n", framing ? "QUIC" : "relay",
                         inner_len);
            return 1;
          }
          (framing ? (receive ? quic_rt : quic_tx) : (receive ? relay_rt : relay_tx)).push_back(mpps);
        }
      }
    }
    const double r_rt = median(relay_rt), r_tx = median(relay_tx), q_rt = median(quic_rt), q_tx = median(quic_tx);
    std::printf("{\"bench\":\"framing\",\"framing\":\"relay\",\"inner_bytes\":%u,\"frame_bytes\":%u,"
                "\"roundtrip_mpps\":%.3f,\"send_mpps\":%.3f,\"ratio_to_relay\":1.0}\n",
                inner_len, RelayCodec::kLayout.frame_len(RelayCodec::kLayout.encrypted_len(inner_len)), r_rt, r_tx);
    std::printf("{\"bench\":\"framing\",\"framing\":\"quic\",\"inner_bytes\":%u,\"frame_bytes\":%u,"
                "\"roundtrip_mpps\":%.3f,\"send_mpps\":%.3f,\"ratio_to_relay\":%.3f,\"send_ratio_to_relay\":%.3f}\n",
                inner_len, codec.layout().frame_len(codec.layout().encrypted_len(inner_len)), q_rt, q_tx, q_rt / r_rt,
                q_tx / r_tx);
    std::fflush(stdout);
  }
  return 0;
}
