#!/usr/bin/env bash
# Runs the benchmarks and prints a table; raw JSON lines go to bench/results/<timestamp>.jsonl.
# Figures are ratios against baselines measured in the same run; absolute numbers on a shared machine are noisy.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
mkdir -p "$ROOT/bench/results"
out="$ROOT/bench/results/$(date -u +%Y%m%dT%H%M%SZ).jsonl"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
"$BUILD/bench/bench_gateway" "$@" | tee "$out" | jq -r '
  [.engine, .frame_bytes, .cycles_per_packet, .mpps, .gbps, .baseline_mpps, .ratio_to_baseline] | @tsv' |
  awk 'BEGIN { printf "%-10s %6s %10s %8s %8s %14s %8s\n", "engine", "frame", "cyc/pkt", "Mpps", "Gbps", "io-fwd Mpps", "ratio" }
       { printf "%-10s %6d %10.1f %8.2f %8.2f %14.1f %8.3f\n", $1, $2, $3, $4, $5, $6, $7 }'
echo
echo "hostname rules (IngressMatcher vs a label walk over std::unordered_map, same run):"
"$BUILD/bench/bench_ingress" | tee -a "$out" | jq -r '[.patterns, .rules, .build_ms, .ns_per_lookup, .lookups_per_s / 1e6,
  .baseline_lookups_per_s / 1e6, .ratio_to_baseline] | @tsv' |
  awk 'BEGIN { printf "%8s %8s %10s %10s %10s %14s %8s\n", "patterns", "rules", "build ms", "ns/lookup", "M/s", "label-walk M/s", "ratio" }
       { printf "%8d %8d %10.1f %10.1f %10.2f %14.2f %8.2f\n", $1, $2, $3, $4, $5, $6, $7 }'
echo "raw results: $out"
echo
echo "instructions per packet (valgrind callgrind, repeatable):"
BUILD="$BUILD" bash "$ROOT/bench/instructions.sh"
