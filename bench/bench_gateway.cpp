// Gateway worker pipeline benchmark, in one process: synthetic client bursts enter through a ring-backed
// ethdev and run the real Worker pipeline (parse, flow lookup, NAT, encapsulation, AES-GCM, TX) into a
// second ring-backed ethdev. Floor measured in the same run: the AEAD alone, the session's own key, one call per
// burst over the bytes the pipeline encrypts. Buffer handling (allocating the mbufs and copying the frames in, as a
// NIC's RX would; freeing them after TX) is timed on its own. `--framing quic`: the tunnel's one session speaks the
// QUIC framing instead (as dpctld hands a connection over; docs/protocol.md "What dpgw sends"), its floor the
// AEAD alone with the session's QUIC key over the same bytes (header protection is not in the floor).
// The receive side too (direction "rx"): the agent's replies to every flow, sealed here as the agent seals them
// (dpagent's AgentSession for relay frames; for QUIC, a short-header packet with one DATAGRAM frame, the agent's key
// and header protection), enter through the underlay port and run the same Worker (TunnelInput, or QuicInput then
// TunnelInput: open, flow, NAT back to the client, TX, and QuicInput's ACKs to the agent); each burst's 32 packets
// are sealed afresh before the burst, outside every timed region (the replay window wants new counters). Floor: the
// AEAD open alone with the session's receive key over the same bytes (the header as AAD), every packet must open.
// Prints one JSON line per measurement (docs/performance.md explains the figures).
#include <rte_eal.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "agent/agent_session.hpp"
#include "common/bytes.hpp"
#include "common/clock.hpp"
#include "common/log.hpp"
#include "crypto/aead_openssl.hpp"
#include "crypto/key_schedule.hpp"
#include "crypto/quic_keys.hpp"
#include "dataplane/main_lcore/gateway.hpp"
#include "dataplane/tables/quic_session.hpp"
#include "packet/checksum.hpp"
#include "packet/headers.hpp"
#include "proto/quic_short_header.hpp"
#include "proto/relay_frame.hpp"
#include "tests/support/ring_port.hpp"

using namespace dptun;
using dptun::test::make_ring_port;
using dptun::test::RingPort;

namespace {

constexpr uint32_t kFlows = 256;
constexpr int kRepeats = 5;
constexpr uint32_t kGatewayIp = 0x0a630101;   // 10.99.1.1
// Clients are 10.99.2.2 .. 10.99.3.57 (client_frame), behind the public port's router 10.99.1.254 (the receive side
// routes the replies to them there); the agent is on the underlay's own subnet.
constexpr uint32_t kRouterIp = 0x0a6301fe;    // 10.99.1.254
constexpr uint32_t kUnderlayIp = 0x0a63c801;  // 10.99.200.1
constexpr uint32_t kAgentIp = 0x0a63c802;     // 10.99.200.2
constexpr uint16_t kTunnelPort = 51900;       // dpgw.tunnel_port (default): relay frames, both ends
constexpr uint16_t kQuicPort = 443;           // dpgw.quic_port (default)
constexpr uint16_t kAgentQuicPort = 50443;    // the QUIC agent's UDP port
const std::vector<uint8_t> kQuicRxSecret(32, 0x41), kQuicTxSecret(32, 0x52);  // made-up 1-RTT secrets
const std::array<uint8_t, 4> kQuicTail = {1, 2, 3, 4};                        // dpgw's connection ID tail

// A client UDP packet to the entry point 10.99.1.1:5201 of `frame_len` bytes on the wire (without FCS).
std::vector<uint8_t> client_frame(size_t frame_len, uint32_t flow) {
  std::vector<uint8_t> f(frame_len, 0);
  const MacAddr dst{0x02, 0, 0, 0, 0, 1}, src{0x02, 0, 0, 0, 0, 2};
  std::memcpy(f.data(), dst.data(), 6);
  std::memcpy(f.data() + 6, src.data(), 6);
  store_be16(f.data() + 12, kEtherTypeIpv4);
  uint8_t* ip = f.data() + 14;
  const size_t ip_len = frame_len - 14;
  ip[0] = 0x45;
  store_be16(ip + 2, uint16_t(ip_len));
  ip[8] = 64;
  ip[9] = kIpProtoUdp;
  store_be32(ip + 12, 0x0a630000 | (2 + flow / 200) << 8 | (flow % 200 + 2));  // 10.99.x.y clients
  store_be32(ip + 16, kGatewayIp);
  store_be16(ip + 10, ipv4_header_checksum({ip, 20}));
  uint8_t* udp = ip + 20;
  store_be16(udp, uint16_t(10000 + flow));
  store_be16(udp + 2, 5201);
  store_be16(udp + 4, uint16_t(ip_len - 20));
  for (size_t i = 8; i < ip_len - 20; ++i) udp[i] = uint8_t(i);
  store_be16(udp + 6, ipv4_l4_checksum(load_be32(ip + 12), kGatewayIp, kIpProtoUdp, {udp, ip_len - 20}));
  return f;
}

// The worker's drop counters that are not zero, on stderr (why a run is void).
void print_drops(Worker& w) {
  for (size_t d = 0; d < size_t(Drop::Count); ++d)
    if (const uint64_t n = w.stats.drops[d].get()) fprintf(stderr, "  dropped %s: %" PRIu64 "\n", drop_reason_name(Drop(d)), n);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Result {
  double cycles_per_packet;  // the timed step
  double buffer_cycles_per_packet;  // allocating the mbufs and copying the frames in, freeing them after TX
  uint64_t packets;
  uint64_t sent;
  uint64_t answers = 0;  // what left through `in` (QUIC input: ACK packets to the agent)
  size_t frame_bytes = 0;  // for the report
};

// Feeds `bursts` bursts of kBurst synthetic frames (into `in`'s RX ring when given) and times the step and the
// buffer handling around it separately. Whatever leaves through `out` (and `in`, answers) is freed after the step;
// with no `out`, the step's own mbufs are.
// `refill(first, n)`, when given, rewrites frames first .. first + n - 1 before they are copied, outside every timed
// region (the receive side seals each burst's packets afresh).
struct NoRefill {
  void operator()(size_t, size_t) const {}
};
template <typename Step, typename Refill = NoRefill>
Result run(RingPort* in, RingPort* out, rte_mempool* pool, const std::vector<std::vector<uint8_t>>& frames,
           uint32_t bursts, Step step, Refill refill = {}) {
  uint64_t cycles = 0, buffer_cycles = 0, packets = 0, sent = 0, answers = 0;
  rte_mbuf* m[kBurst];
  void* done[kBurst * 4];
  uint32_t next = 0;
  for (uint32_t b = 0; b < bursts; ++b) {
    refill(next % frames.size(), kBurst);
    const uint64_t t0 = rte_rdtsc_precise();
    if (rte_pktmbuf_alloc_bulk(pool, m, kBurst) != 0) {
      fprintf(stderr, "mbuf pool exhausted\n");
      exit(1);
    }
    for (unsigned i = 0; i < kBurst; ++i) {
      const auto& f = frames[next++ % frames.size()];
      std::memcpy(rte_pktmbuf_append(m[i], uint16_t(f.size())), f.data(), f.size());
    }
    if (in) rte_ring_enqueue_bulk(in->rx, reinterpret_cast<void**>(m), kBurst, nullptr);
    const uint64_t t1 = rte_rdtsc_precise();
    step(m);
    const uint64_t t2 = rte_rdtsc_precise();
    packets += kBurst;
    unsigned n;
    if (!out) {
      rte_pktmbuf_free_bulk(m, kBurst);
      sent += kBurst;
    }
    while (out && (n = rte_ring_dequeue_burst(out->tx, done, kBurst * 4, nullptr)) > 0) {
      sent += n;
      rte_pktmbuf_free_bulk(reinterpret_cast<rte_mbuf**>(done), n);
    }
    while (in && (n = rte_ring_dequeue_burst(in->tx, done, kBurst * 4, nullptr)) > 0) {
      answers += n;
      rte_pktmbuf_free_bulk(reinterpret_cast<rte_mbuf**>(done), n);
    }
    const uint64_t t3 = rte_rdtsc_precise();
    cycles += t2 - t1;
    buffer_cycles += (t1 - t0) + (t3 - t2);
  }
  return Result{double(cycles) / double(packets), double(buffer_cycles) / double(packets), packets, sent, answers};
}

// The floor: what the pipeline's AEAD call does for a burst of client frames, alone. Each frame is sealed in place
// where the pipeline puts its relay frame (docs/protocol.md): the 16-byte header (the AAD) 28 bytes before the
// inner IP packet, the inner header and the packet encrypted, the tag after it; a fresh nonce per packet; one call
// to the session's transmit key for the burst, as Encap::flush makes.
// A QUIC session (quic != nullptr): its 13-byte short header the AAD, 26 bytes before the inner packet, the nonce
// its IV xor the packet number.
struct AeadFloor {
  AeadKey* key;
  std::array<uint8_t, kSaltLen> salt;
  uint64_t counter;
  const QuicSessionState* quic = nullptr;
  void operator()(rte_mbuf* const* m) {
    constexpr RelayCodec relay;
    const FrameLayout& layout = quic ? quic->codec.layout() : relay.layout();
    AeadOp ops[kBurst];
    uint8_t iv[kBurst][kAeadIvLen];
    int32_t status[kBurst];
    for (unsigned i = 0; i < kBurst; ++i) {
      uint8_t* inner_ip = rte_pktmbuf_mtod(m[i], uint8_t*) + kEthHeaderLen;
      const uint32_t packet_len = m[i]->pkt_len - uint32_t(kEthHeaderLen);
      if (quic)
        quic_nonce(iv[i], quic->tx_generation_of(0)->tx_iv.data(), counter++);  // (generation 0: the bench runs no update)
      else
        make_nonce(iv[i], salt, counter++);
      ops[i] = AeadOp{inner_ip - layout.packet_offset() + layout.header_len, layout.encrypted_len(packet_len), iv[i],
                      inner_ip - layout.packet_offset(), inner_ip + packet_len};
    }
    if (key->process({ops, kBurst}, {status, kBurst}, 0) != kBurst) {
      fprintf(stderr, "floor: AEAD failed\n");
      exit(1);
    }
  }
};


// The receive side's far end: session 1's agent, sealing its replies to the bench's flows as the agent would. Relay
// frames: dpagent's own AgentSession (static peer 1, its key schedule). QUIC: a short-header packet to dpgw's
// connection ID (index 1 | tail) with a 2-byte packet number, one DATAGRAM frame (inner header, then the reply),
// sealed with the agent's 1-RTT key and header-protected, as the agent's QUIC stack sends them.
struct Agent {
  bool quic;
  OpensslAead engine;
  std::unique_ptr<AgentSession> relay;
  std::unique_ptr<QuicDatagramCodec> codec;
  QuicPacketKeys keys;
  std::unique_ptr<AeadKey> key;
  uint64_t pn = 0;  // the next packet number
  std::vector<std::vector<uint8_t>> replies;  // per flow: the inner header (12 bytes), then the inner IP packet
  std::vector<uint64_t> counters;  // per frame: the counter or packet number it was last sealed with

  explicit Agent(bool q) : quic(q) {
    if (!quic) {
      relay = std::make_unique<AgentSession>(1, std::vector<uint8_t>(32, 7), 16, 120'000'000'000ull, engine);
      return;
    }
    QuicKdf kdf;
    if (!kdf.packet_keys(QuicCipher::Aes128Gcm, kQuicRxSecret, keys)) {
      fprintf(stderr, "agent: QUIC keys\n");
      exit(1);
    }
    QuicDatagramCodec::Config c;
    c.tx_dcid = {0, 0, 0, 1, kQuicTail[0], kQuicTail[1], kQuicTail[2], kQuicTail[3]};
    c.tx_hp = c.rx_hp = keys.hp_bytes();
    c.tx_pn_len = 2;
    codec = std::make_unique<QuicDatagramCodec>(c);
    key = engine.make_key(keys.key_bytes(), AeadDirection::Encrypt, codec->layout().header_len);
  }
  // The reply of the target (kAgentIp:5201) to flow `f`'s client, `frame_len` bytes on the wire when dpgw sends it
  // to the client (Ethernet included); `flow_id` from dpgw's flow table, as the agent learnt it from the flow's frames.
  void add_reply(size_t frame_len, uint32_t f, uint64_t flow_id) {
    std::vector<uint8_t> client = client_frame(frame_len, f);
    std::vector<uint8_t> r(kInnerHeaderLen + frame_len - kEthHeaderLen);
    encode_inner_header(r.data(), InnerHeader{flow_id, kIpProtoUdp, 0});
    uint8_t* ip = r.data() + kInnerHeaderLen;
    std::memcpy(ip, client.data() + kEthHeaderLen, frame_len - kEthHeaderLen);
    uint8_t* udp = ip + 20;
    const uint32_t client_ip = load_be32(ip + 12);
    const uint16_t client_port = load_be16(udp);
    store_be32(ip + 12, kAgentIp);
    store_be32(ip + 16, client_ip);
    store_be16(ip + 10, 0);
    store_be16(ip + 10, ipv4_header_checksum({ip, 20}));
    store_be16(udp, 5201);
    store_be16(udp + 2, client_port);
    store_be16(udp + 6, 0);
    store_be16(udp + 6, ipv4_l4_checksum(kAgentIp, client_ip, kIpProtoUdp, {udp, frame_len - kEthHeaderLen - 20}));
    replies.push_back(std::move(r));
  }
  // Frame k (an Ethernet frame from the agent to dpgw) holding reply k % replies, sealed with the next counter.
  // `clear`, when given, gets the frame before header protection (what the floor opens).
  void seal(std::vector<uint8_t>& out, size_t k, std::vector<uint8_t>* clear = nullptr) {
    const std::vector<uint8_t>& r = replies[k % replies.size()];
    const size_t packet_len = r.size() - kInnerHeaderLen;
    size_t payload_len;
    if (quic) {
      const uint32_t h = codec->layout().header_len;
      const uint32_t frames_len = uint32_t(1 + r.size());
      payload_len = h + frames_len + kAeadTagLen;
      out.assign(42 + payload_len, 0);
      uint8_t* q = out.data() + 42;
      counters[k] = pn;
      codec->write_header(q, FrameMeta{FrameType::Data, 0, 0, pn});
      q[h] = kQuicFrameDatagram;
      std::memcpy(q + h + 1, r.data(), r.size());
      uint8_t iv[kAeadIvLen];
      quic_nonce(iv, keys.iv.data(), pn++);
      const AeadOp op = codec->seal_op(q, frames_len, iv);
      int32_t status = -1;
      if (key->process({&op, 1}, {&status, 1}, 0) != 1) {
        fprintf(stderr, "agent: seal failed\n");
        exit(1);
      }
      if (clear) *clear = out;
      codec->protect({q, payload_len});
    } else {
      const FrameLayout& l = relay->codec().layout();
      const size_t enc = l.encrypted_len(uint32_t(packet_len));
      payload_len = l.frame_len(enc);
      out.assign(42 + payload_len, 0);
      uint8_t* q = out.data() + 42;
      std::memcpy(q + l.inner_offset(), r.data(), r.size());
      if (!relay->seal(FrameType::Data, 0, q, enc, monotonic_ns())) {
        fprintf(stderr, "agent: seal failed\n");
        exit(1);
      }
      counters[k] = load_be64(q + 8);
    }
    // Ethernet, IPv4 and UDP from the agent to dpgw's underlay address.
    uint8_t* f = out.data();
    const MacAddr dst{0x02, 0, 0, 0, 0, 1}, src{0x02, 0, 0, 0, 0, 9};
    std::memcpy(f, dst.data(), 6);
    std::memcpy(f + 6, src.data(), 6);
    store_be16(f + 12, kEtherTypeIpv4);
    uint8_t* ip = f + kEthHeaderLen;
    ip[0] = 0x45;
    store_be16(ip + 2, uint16_t(28 + payload_len));
    ip[8] = 64;
    ip[9] = kIpProtoUdp;
    store_be32(ip + 12, kAgentIp);
    store_be32(ip + 16, kUnderlayIp);
    store_be16(ip + 10, ipv4_header_checksum({ip, 20}));
    uint8_t* udp = ip + 20;
    store_be16(udp, quic ? kAgentQuicPort : kTunnelPort);
    store_be16(udp + 2, quic ? kQuicPort : kTunnelPort);
    store_be16(udp + 4, uint16_t(8 + payload_len));
    store_be16(udp + 6, ipv4_l4_checksum(kAgentIp, kUnderlayIp, kIpProtoUdp, {udp, 8 + payload_len}));
    if (clear && !quic) *clear = out;
  }
};

// The receive side's floor: the AEAD open of each packet alone, with the session's receive key (the one dpgw
// opens it with), one call per burst, in place in the same kind of mbuf: the header (relay 16 bytes; QUIC 11, its
// protection removed beforehand) as AAD, the rest up to the tag decrypted, the tag verified. Every packet must open.
struct OpenFloor {
  AeadKey* key;
  const QuicDatagramCodec* quic;  // nullptr: relay frames
  std::vector<std::array<uint8_t, kAeadIvLen>> ivs;  // per frame, in the order run() copies them
  size_t next = 0;
  void operator()(rte_mbuf* const* m) {
    constexpr RelayCodec relay;
    AeadOp ops[kBurst];
    int32_t status[kBurst];
    for (unsigned i = 0; i < kBurst; ++i) {
      uint8_t* p = rte_pktmbuf_mtod(m[i], uint8_t*) + 42;
      const std::span<uint8_t> frame{p, m[i]->pkt_len - 42u};
      const uint8_t* iv = ivs[next++ % ivs.size()].data();
      ops[i] = quic ? quic->open_op(frame, iv) : relay.open_op(frame, iv);
    }
    if (key->process({ops, kBurst}, {status, kBurst}, 0) != kBurst) {
      fprintf(stderr, "floor: a packet did not open\n");
      exit(1);
    }
  }
};

// kRepeats rounds, each a pipeline run (`pipe`) then a floor run (`floor`), alternating because the machine is shared
// and noisy: the pipeline's and the floor's median cycles, the pipeline's packet counts summed.
template <typename Pipe, typename Floor>
std::pair<Result, Result> alternate(Pipe pipe, Floor floor) {
  std::vector<double> pipe_cycles, buffer_cycles, floor_cycles;
  Result r{}, fl{};
  for (int rep = 0; rep < kRepeats; ++rep) {
    const Result one = pipe();
    const Result f = floor();
    pipe_cycles.push_back(one.cycles_per_packet);
    buffer_cycles.push_back(one.buffer_cycles_per_packet);
    floor_cycles.push_back(f.cycles_per_packet);
    r.packets += one.packets;
    r.sent += one.sent;
    r.answers += one.answers;
  }
  r.cycles_per_packet = median(pipe_cycles);
  r.buffer_cycles_per_packet = median(buffer_cycles);
  fl.cycles_per_packet = median(floor_cycles);
  return {r, fl};
}

}  // namespace

int main(int argc, char** argv) {
  log_set_program("bench_gateway");
  log_set_level(LogLevel::Warn);
  uint32_t bursts = 20000;
  std::vector<size_t> sizes{64, 512, 1400};
  std::vector<std::string> engines{"cryptodev", "cryptodev-async", "ipsec-mb", "openssl"};
  bool quic = false, tx = true, rx = true;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--bursts") && i + 1 < argc) bursts = uint32_t(std::stoul(argv[++i]));
    else if (!std::strcmp(argv[i], "--direction") && i + 1 < argc) {
      const std::string d = argv[++i];
      tx = d != "rx";
      rx = d != "tx";
    }
    else if (!std::strcmp(argv[i], "--framing") && i + 1 < argc) quic = !std::strcmp(argv[++i], "quic");
    else if (!std::strcmp(argv[i], "--engine") && i + 1 < argc) engines = {argv[++i]};
    else if (!std::strcmp(argv[i], "--size") && i + 1 < argc) sizes = {std::stoul(argv[++i])};
    else if (!std::strcmp(argv[i], "--help")) {
      printf("usage: bench_gateway [--bursts N] [--engine cryptodev|cryptodev-async|ipsec-mb|openssl]\n"
             "                     [--size BYTES] [--framing relay|quic] [--direction tx|rx|both]\n"
             "  default: 20000 bursts of 32 per measurement, every engine (cryptodev-async: crypto ops on\n"
             "  crypto_aesni_gcm0), frames of 64, 512 and 1400 bytes, relay frames (quic: the session speaks\n"
             "  the QUIC framing), both directions (tx: clients to the agent, encap; rx: the agent's replies\n"
             "  to the clients, decap; the size is the client's frame either way); runs on the first CPU of\n"
             "  its affinity (taskset -c N)\n");
      return 0;
    }
  }
  // The one lcore runs on the first CPU the process may use, so `taskset -c N bench_gateway` measures on CPU N (EAL
  // would otherwise pin it to CPU 0).
  int cpu = 0;
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof allowed, &allowed) == 0)
    while (cpu < CPU_SETSIZE - 1 && !CPU_ISSET(cpu, &allowed)) ++cpu;
  const std::string lcores = "0@" + std::to_string(cpu);
  const char* eal[] = {"bench_gateway", "--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--no-telemetry",
                       "--lcores", lcores.c_str(), "--log-level", "*:error", "--file-prefix", "dptun_bench"};
  if (rte_eal_init(int(sizeof eal / sizeof eal[0]), const_cast<char**>(eal)) < 0) {
    fprintf(stderr, "EAL init failed\n");
    return 1;
  }
  const double hz = double(rte_get_tsc_hz());

  for (const std::string& engine_name : engines) {
    const char* engine = engine_name.c_str();
    // The gateway closes its ports when it goes away: fresh ring ports for each engine.
    RingPort pub = make_ring_port(std::string("pub_") + engine);
    RingPort und = make_ring_port(std::string("und_") + engine);
    GatewayConfig cfg;
    cfg.workers = 1;
    cfg.mbufs = 16383;
    cfg.ports.push_back(PortConfig{"public", pub.name, Ipv4Prefix{Ipv4{kGatewayIp}, 24}, Ipv4{kRouterIp}, 0, 1024,
                                   1024, ""});
    cfg.ports.push_back(PortConfig{"underlay", und.name, Ipv4Prefix{Ipv4{kUnderlayIp}, 24}, {}, 0, 1024, 1024, ""});
    cfg.crypto.engine = engine;
    TunnelConfig t;
    t.id = Uuid::random_v4();
    t.name = "bench";
    if (!quic) t.peers.push_back(StaticPeerConfig{1, std::vector<uint8_t>(32, 7), Endpoint{Ipv4{kAgentIp}, 51900}, 1});
    cfg.tunnels.push_back(t);
    EntryPointConfig e;
    e.proto = kIpProtoUdp;
    e.port = 5201;
    e.tunnel = 0;
    e.target = Endpoint{Ipv4{kAgentIp}, 5201};
    e.keepalive = true;
    e.udp_ttl_ns = 60'000'000'000ull;
    cfg.entry_points.push_back(e);

    std::string error;
    auto gw = Gateway::create(cfg, Gateway::Options{false, false}, error);
    if (!gw) {
      fprintf(stderr, "gateway: %s\n", error.c_str());
      return 1;
    }
    Dataplane& dp = gw->dataplane();
    dp.neighbors.update(1, kAgentIp, MacAddr{0x02, 0, 0, 0, 0, 9});
    dp.neighbors.update(0, kRouterIp, MacAddr{0x02, 0, 0, 0, 0, 2});
    if (quic) {  // session 1 as dpctld hands a QUIC connection over (made-up secrets and connection IDs)
      SessionSpec s;
      s.index = 1;
      s.tunnel = t.id;
      s.base_secret.assign(32, 7);
      s.endpoint = Endpoint{Ipv4{kAgentIp}, 50443};
      QuicSessionSpec q;
      q.rx_secret = kQuicRxSecret;
      q.tx_secret = kQuicTxSecret;
      q.cid_tails = {kQuicTail};
      q.peer_cid = {9, 8, 7, 6, 5, 4, 3, 2};
      s.quic = q;
      if (!gw->state().add_session(s, error)) {
        fprintf(stderr, "QUIC session: %s\n", error.c_str());
        return 1;
      }
    }
    Worker& w = *dp.workers[0];
    Agent agent(quic);
    auto report = [&](const char* direction, const Result& r, const Result& fl, const char* extra) {
      const double mpps = hz / r.cycles_per_packet / 1e6;
      const double with_buffers = r.cycles_per_packet + r.buffer_cycles_per_packet;
      printf("{\"bench\":\"%s\",\"direction\":\"%s\",\"engine\":\"%s\",\"framing\":\"%s\",\"frame_bytes\":%zu,"
             "\"flows\":%u,\"packets\":%" PRIu64 ",\"cycles_per_packet\":%.1f,\"mpps\":%.3f,\"gbps\":%.3f,"
             "\"buffer_cycles_per_packet\":%.1f,\"with_buffers_cycles_per_packet\":%.1f,\"with_buffers_mpps\":%.3f,"
             "\"floor_cycles_per_packet\":%.1f,\"floor_mpps\":%.3f,\"over_floor_cycles_per_packet\":%.1f,"
             "\"ratio_to_floor\":%.3f%s}\n",
             !std::strcmp(direction, "rx") ? "gateway_decap" : "gateway_encap", direction, engine,
             quic ? "quic" : "relay", r.frame_bytes, kFlows, r.packets, r.cycles_per_packet, mpps,
             mpps * double(r.frame_bytes) * 8 / 1000, r.buffer_cycles_per_packet, with_buffers, hz / with_buffers / 1e6,
             fl.cycles_per_packet, hz / fl.cycles_per_packet / 1e6, r.cycles_per_packet - fl.cycles_per_packet,
             r.cycles_per_packet / fl.cycles_per_packet, extra);
      fflush(stdout);
    };

    for (size_t size : sizes) {
      std::vector<std::vector<uint8_t>> frames;
      for (uint32_t f = 0; f < kFlows; ++f) frames.push_back(client_frame(size, f));
      // Warm up (creates the flows), then measure the pipeline and the floor.
      run(&pub, &und, dp.pool, frames, 500, [&](rte_mbuf* const*) { w.poll_once(); });
      TunnelSession* session = dp.sessions.find(1);
      if (tx) {
        // The floor seals with the session's own transmit key (same engine, same key length), from a counter of its
        // own far above the pipeline's (the key is used for nothing else; frames of the floor are never sent).
        const uint64_t counter = session ? session->tx_counter.load() : 0;
        const EpochCipher* cipher = !session                ? nullptr
                                   : quic ? &session->quic->tx_generation_of(counter)->tx
                                          : session->tx_keys.find(epoch_of(counter));
        if (!cipher) {
          fprintf(stderr, "no transmit key for session 1 after the warm-up\n");
          return 1;
        }
        AeadFloor floor{cipher->aead.get(), cipher->salt, counter + (uint64_t(1) << 31), quic ? session->quic.get() : nullptr};
        auto [r, fl] = alternate(
            [&] { return run(&pub, &und, dp.pool, frames, bursts / kRepeats, [&](rte_mbuf* const*) { w.poll_once(); }); },
            [&] { return run(nullptr, nullptr, dp.pool, frames, bursts / kRepeats, floor); });
        if (r.sent != r.packets) {
          fprintf(stderr, "pipeline sent %" PRIu64 " of %" PRIu64 " packets (drops: see stats)\n", r.sent, r.packets);
          return 1;
        }
        r.frame_bytes = size;
        report("tx", r, fl, "");
      }
      if (!rx) continue;

      // The receive side: the agent's reply to each flow, its flow id from the worker's flow table (what the flow's
      // frames told the agent).
      agent.replies.clear();
      FlowTable& flows = const_cast<FlowTable&>(w.flows());  // (find() only reads)
      for (uint32_t f = 0; f < kFlows; ++f) {
        const FlowKey k = FlowKey::v4(0x0a630000 | (2 + f / 200) << 8 | (f % 200 + 2), kGatewayIp,
                                      uint16_t(10000 + f), 5201, kIpProtoUdp, 0);
        const Flow* fl = flows.find(k, FlowTable::hash(k));
        if (!fl) {
          fprintf(stderr, "flow %u is not in the flow table after the warm-up\n", f);
          return 1;
        }
        agent.add_reply(size, f, flows.id_of(*fl));
      }
      // Each burst's frames are sealed afresh before it (new counters / packet numbers for the replay window),
      // outside the timed regions.
      std::vector<std::vector<uint8_t>> replies(kFlows);
      agent.counters.assign(kFlows, 0);
      auto reseal = [&](size_t first, size_t n) {
        for (size_t i = first; i < first + n; ++i) agent.seal(replies[i], i);
      };
      auto poll = [&](rte_mbuf* const*) { w.poll_once(); };
      Result warm = run(&und, &pub, dp.pool, replies, 50, poll, reseal);
      if (warm.sent != warm.packets) {
        fprintf(stderr, "receive warm-up: %" PRIu64 " of %" PRIu64 " packets reached the clients\n", warm.sent,
                warm.packets);
        print_drops(w);
        return 1;
      }
      // The floor's frames: sealed once (the floor has no replay window), kept as they were before header
      // protection; its key: the one dpgw opens them with.
      std::vector<std::vector<uint8_t>> clear(kFlows);
      std::vector<uint8_t> scratch;
      for (uint32_t k = 0; k < kFlows; ++k) agent.seal(scratch, k, &clear[k]);
      OpenFloor open_floor{nullptr, quic ? &session->quic->codec : nullptr, {}, 0};
      open_floor.ivs.resize(kFlows);
      for (uint32_t k = 0; k < kFlows; ++k) {
        if (quic) {
          const QuicKeyGeneration* g = session->quic->generation(0);  // (no key update in the bench)
          if (!g) {
            fprintf(stderr, "no receive keys for the QUIC session\n");
            return 1;
          }
          open_floor.key = g->rx_key(2).aead.get();
          quic_nonce(open_floor.ivs[k].data(), g->rx_iv.data(), agent.counters[k]);
        } else {
          const EpochCipher* c = session->rx_keys.find(epoch_of(agent.counters[k]));
          if (!c || (open_floor.key && open_floor.key != c->aead.get())) {
            fprintf(stderr, "no receive key for the floor's frame %u (or a new epoch mid-way)\n", k);
            return 1;
          }
          open_floor.key = c->aead.get();
          make_nonce(open_floor.ivs[k].data(), c->salt, agent.counters[k]);
        }
      }
      auto [r, fl] = alternate([&] { return run(&und, &pub, dp.pool, replies, bursts / kRepeats, poll, reseal); },
                               [&] { return run(nullptr, nullptr, dp.pool, clear, bursts / kRepeats, open_floor); });
      if (r.sent != r.packets) {
        fprintf(stderr, "receive: %" PRIu64 " of %" PRIu64 " packets reached the clients\n", r.sent, r.packets);
        print_drops(w);
        return 1;
      }
      r.frame_bytes = size;
      char extra[64];
      snprintf(extra, sizeof extra, ",\"acks\":%" PRIu64, r.answers);
      report("rx", r, fl, extra);
    }
  }
  // EAL leaves its runtime directory (/var/run/dpdk/dptun_bench) behind, empty (no telemetry socket): it goes too.
  const std::string runtime_dir = rte_eal_get_runtime_dir();
  rte_eal_cleanup();
  rmdir(runtime_dir.c_str());
  return 0;
}
