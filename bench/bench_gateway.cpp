// Gateway worker pipeline benchmark, in one process: synthetic client bursts enter through a ring-backed
// ethdev and run the real Worker pipeline (parse, flow lookup, NAT, encapsulation, AES-GCM, TX) into a
// second ring-backed ethdev. Baseline measured in the same run: plain io-forward between the same ports.
// Prints one JSON line per measurement (docs/performance.md explains the figures).
#include <rte_eal.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "common/bytes.hpp"
#include "common/log.hpp"
#include "dataplane/main_lcore/gateway.hpp"
#include "packet/checksum.hpp"
#include "packet/headers.hpp"
#include "tests/support/ring_port.hpp"

using namespace dptun;
using dptun::test::make_ring_port;
using dptun::test::RingPort;

namespace {

constexpr uint32_t kFlows = 256;
constexpr int kRepeats = 5;
constexpr uint32_t kGatewayIp = 0x0a630101;   // 10.99.1.1
constexpr uint32_t kUnderlayIp = 0x0a630201;  // 10.99.2.1
constexpr uint32_t kAgentIp = 0x0a630202;     // 10.99.2.2

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

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Result {
  double cycles_per_packet;
  uint64_t packets;
  uint64_t sent;
};

// Feeds `bursts` bursts of 32 synthetic frames and times only the forwarding step.
template <typename Step>
Result run(RingPort& in, RingPort& out, rte_mempool* pool, const std::vector<std::vector<uint8_t>>& frames,
           uint32_t bursts, Step step) {
  uint64_t cycles = 0, packets = 0, sent = 0;
  rte_mbuf* m[kBurst];
  void* done[kBurst * 4];
  uint32_t next = 0;
  for (uint32_t b = 0; b < bursts; ++b) {
    if (rte_pktmbuf_alloc_bulk(pool, m, kBurst) != 0) {
      fprintf(stderr, "mbuf pool exhausted\n");
      exit(1);
    }
    for (unsigned i = 0; i < kBurst; ++i) {
      const auto& f = frames[next++ % frames.size()];
      std::memcpy(rte_pktmbuf_append(m[i], uint16_t(f.size())), f.data(), f.size());
    }
    rte_ring_enqueue_bulk(in.rx, reinterpret_cast<void**>(m), kBurst, nullptr);
    uint64_t t0 = rte_rdtsc_precise();
    step();
    cycles += rte_rdtsc_precise() - t0;
    packets += kBurst;
    unsigned n;
    while ((n = rte_ring_dequeue_burst(out.tx, done, kBurst * 4, nullptr)) > 0) {
      sent += n;
      for (unsigned i = 0; i < n; ++i) rte_pktmbuf_free(static_cast<rte_mbuf*>(done[i]));
    }
    while ((n = rte_ring_dequeue_burst(in.tx, done, kBurst * 4, nullptr)) > 0)
      for (unsigned i = 0; i < n; ++i) rte_pktmbuf_free(static_cast<rte_mbuf*>(done[i]));
  }
  return Result{double(cycles) / double(packets), packets, sent};
}

}  // namespace

int main(int argc, char** argv) {
  log_set_program("bench_gateway");
  log_set_level(LogLevel::Warn);
  uint32_t bursts = 20000;
  std::vector<size_t> sizes{64, 512, 1400};
  std::vector<std::string> engines{"cryptodev", "openssl"};
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--bursts") && i + 1 < argc) bursts = uint32_t(std::stoul(argv[++i]));
    else if (!std::strcmp(argv[i], "--engine") && i + 1 < argc) engines = {argv[++i]};
    else if (!std::strcmp(argv[i], "--size") && i + 1 < argc) sizes = {std::stoul(argv[++i])};
    else if (!std::strcmp(argv[i], "--help")) {
      printf("usage: bench_gateway [--bursts N] [--engine cryptodev|openssl] [--size BYTES]\n"
             "  default: 20000 bursts of 32 per measurement, both engines, frames of 64, 512 and 1400 bytes\n");
      return 0;
    }
  }
  const char* eal[] = {"bench_gateway", "--no-huge", "-m", "512", "--no-pci", "--no-shconf", "-l", "0",
                       "--log-level", "*:error", "--file-prefix", "dptun_bench"};
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
    cfg.ports.push_back(PortConfig{"public", pub.name, Ipv4Prefix{Ipv4{kGatewayIp}, 24}, {}, 0, 1024, 1024, ""});
    cfg.ports.push_back(PortConfig{"underlay", und.name, Ipv4Prefix{Ipv4{kUnderlayIp}, 24}, {}, 0, 1024, 1024, ""});
    cfg.crypto.engine = engine;
    TunnelConfig t;
    t.id = Uuid::random_v4();
    t.name = "bench";
    t.peers.push_back(StaticPeerConfig{1, std::vector<uint8_t>(32, 7), Endpoint{Ipv4{kAgentIp}, 51900}, 1});
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
    Worker& w = *dp.workers[0];

    for (size_t size : sizes) {
      std::vector<std::vector<uint8_t>> frames;
      for (uint32_t f = 0; f < kFlows; ++f) frames.push_back(client_frame(size, f));
      // Warm up (creates the flows), then measure the pipeline and the io-forward baseline.
      run(pub, und, dp.pool, frames, 500, [&] { w.poll_once(); });
      // Alternate pipeline and baseline runs and keep the medians: the machine is shared and noisy.
      std::vector<double> pipe_cycles, base_cycles;
      Result r{}, base{};
      for (int rep = 0; rep < kRepeats; ++rep) {
        Result one = run(pub, und, dp.pool, frames, bursts / kRepeats, [&] { w.poll_once(); });
        Result b = run(pub, und, dp.pool, frames, bursts / kRepeats, [&] {
          rte_mbuf* m[kBurst];
          uint16_t n = rte_eth_rx_burst(pub.port_id, 0, m, kBurst);
          uint16_t s = rte_eth_tx_burst(und.port_id, 0, m, n);
          for (uint16_t i = s; i < n; ++i) rte_pktmbuf_free(m[i]);
        });
        pipe_cycles.push_back(one.cycles_per_packet);
        base_cycles.push_back(b.cycles_per_packet);
        r.packets += one.packets;
        r.sent += one.sent;
      }
      r.cycles_per_packet = median(pipe_cycles);
      base.cycles_per_packet = median(base_cycles);
      if (r.sent != r.packets) {
        fprintf(stderr, "pipeline sent %" PRIu64 " of %" PRIu64 " packets (drops: see stats)\n%s", r.sent, r.packets,
                "");
        return 1;
      }
      double mpps = hz / r.cycles_per_packet / 1e6;
      double base_mpps = hz / base.cycles_per_packet / 1e6;
      printf("{\"bench\":\"gateway_encap\",\"engine\":\"%s\",\"frame_bytes\":%zu,\"flows\":%u,\"packets\":%" PRIu64
             ",\"cycles_per_packet\":%.1f,\"mpps\":%.3f,\"gbps\":%.3f,\"baseline_io_fwd_cycles_per_packet\":%.1f,"
             "\"baseline_mpps\":%.3f,\"ratio_to_baseline\":%.3f}\n",
             engine, size, kFlows, r.packets, r.cycles_per_packet, mpps, mpps * double(size) * 8 / 1000,
             base.cycles_per_packet, base_mpps, mpps / base_mpps);
      fflush(stdout);
    }
  }
  rte_eal_cleanup();
  return 0;
}
