#!/usr/bin/env bash
# Runs the benchmarks and prints a table; raw JSON lines go to bench/results/<timestamp>.jsonl.
# Figures are ratios against floors and peers measured in the same run; absolute numbers on a shared machine are noisy.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
mkdir -p "$ROOT/bench/results"
out="$ROOT/bench/results/$(date -u +%Y%m%dT%H%M%SZ).jsonl"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
echo "gateway worker pipeline (Worker::poll_once on ring ports) and its floor, the AEAD alone on the same bytes;"
echo "relay frames, then the same with the session speaking the QUIC framing (engine/quic); tx: clients -> agent"
echo "(encap, floor: seal), rx: the agent's replies -> clients (decap, floor: open):"
{ "$BUILD/bench/bench_gateway" "$@"; "$BUILD/bench/bench_gateway" "$@" --framing quic; } | tee "$out" | jq -r '
  [.engine + (if .framing == "quic" then "/quic" else "" end), .direction, .frame_bytes, .cycles_per_packet,
   .buffer_cycles_per_packet, .floor_cycles_per_packet, .over_floor_cycles_per_packet, .ratio_to_floor, .mpps,
   .with_buffers_mpps, .gbps] | @tsv' |
  awk 'BEGIN { printf "%-21s %3s %6s %9s %9s %9s %10s %7s %7s %11s %7s\n", "engine", "dir", "frame", "cyc/pkt", "buffers",
                      "floor", "over floor", "x floor", "Mpps", "Mpps+bufs", "Gbps" }
       { printf "%-21s %3s %6d %9.1f %9.1f %9.1f %10.1f %7.2f %7.2f %11.2f %7.2f\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 }'
echo
echo "QUIC framing / relay frames, Mpps per core of the pipeline (same run; issue 11's goal: >= 0.80):"
jq -rs '[.[] | select(.bench == "gateway_encap" or .bench == "gateway_decap")]
  | group_by([.engine, .direction, .frame_bytes])[]
  | (map(select(.framing == "relay"))[0]) as $r | (map(select(.framing == "quic"))[0]) as $q
  | select($r and $q) | [$r.engine, $r.direction, $r.frame_bytes, $r.mpps, $q.mpps, $q.mpps / $r.mpps] | @tsv' "$out" |
  awk 'BEGIN { printf "%-16s %3s %6s %11s %10s %13s\n", "engine", "dir", "frame", "relay Mpps", "QUIC Mpps", "QUIC / relay" }
       { printf "%-16s %3s %6d %11.2f %10.2f %13.2f\n", $1, $2, $3, $4, $5, $6 }'
echo
echo "hostname rules (IngressMatcher vs a label walk over std::unordered_map, same run):"
"$BUILD/bench/bench_ingress" | tee -a "$out" | jq -r '[.patterns, .rules, .build_ms, .ns_per_lookup, .lookups_per_s / 1e6,
  .baseline_lookups_per_s / 1e6, .ratio_to_baseline] | @tsv' |
  awk 'BEGIN { printf "%8s %8s %10s %10s %10s %14s %8s\n", "patterns", "rules", "build ms", "ns/lookup", "M/s", "label-walk M/s", "ratio" }
       { printf "%8d %8d %10.1f %10.1f %10.2f %14.2f %8.2f\n", $1, $2, $3, $4, $5, $6, $7 }'
echo
echo "tunnel framings on one core: QUIC short-header DATAGRAM packets against relay frames (framing and AEAD only,"
echo "bursts of 32, ipsec-mb AES-128-GCM; round trip = send + receive of one packet):"
"$BUILD/bench/bench_framing" | tee -a "$out" | jq -r '[.framing, .inner_bytes, .frame_bytes, .roundtrip_mpps, .send_mpps,
  .ratio_to_relay, (.send_ratio_to_relay // 1)] | @tsv' |
  awk 'BEGIN { printf "%-8s %6s %6s %14s %10s %13s %12s\n", "framing", "inner", "frame", "round trip Mpps", "send Mpps",
                      "x relay (rt)", "x relay (send)" }
       { printf "%-8s %6d %6d %14.2f %10.2f %13.2f %12.2f\n", $1, $2, $3, $4, $5, $6, $7 }'
echo
echo "against a real peer: dpgw and DPDK's ipsec-secgw (ESP tunnel, AES-128-GCM), one core each, same pcap input:"
BUILD="$BUILD" RESULTS="$out" bash "$ROOT/bench/secgw.sh"
echo
echo "DPDK on both tunnel ends: concentrator dpgw and edge dpgw over net_memif, against raw memif forwarding (testpmd)"
echo "over the same pair, same feeder and sink:"
BUILD="$BUILD" RESULTS="$out" bash "$ROOT/bench/edge.sh"
echo "raw results: $out"
echo
echo "instructions per packet (valgrind callgrind, repeatable):"
BUILD="$BUILD" bash "$ROOT/bench/instructions.sh"
