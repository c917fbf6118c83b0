#!/usr/bin/env bash
# Instructions per packet of the gateway worker pipeline, counted by valgrind's callgrind (repeatable
# whatever else the machine does, unlike cycles). Only Worker::poll_once is counted: rx, parse, flow, NAT,
# encapsulation, AES-GCM, tx (bench_gateway --direction tx: the transmit side only). Under valgrind, ipsec-mb runs
# its SSE code path (valgrind does not emulate AVX-512), so the crypto share is higher than on the real CPU;
# compare runs with runs.
# Not counted: the worker's time-paced sweeps (Worker::sweep_tables: flow expiry, held buffers). They do a share of
# the tables per second of wall-clock time, and under valgrind (and the bench's packet making between polls) a poll
# spans ~1000x the time it does at speed, so counting them would charge each packet for time that exists only
# here (~180 instructions per packet at 1400 B). bench/profile_worker.sh measures them at speed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
BURSTS=${BURSTS:-1000}
WARMUP_BURSTS=500  # bench_gateway's warm-up, also inside poll_once
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '%-16s %6s %14s\n' engine frame instr/packet
for engine in cryptodev cryptodev-async openssl; do
  for size in 64 1400; do
    valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" "--toggle-collect=dptun::Worker::poll_once()" \
      "--toggle-collect=dptun::Worker::sweep_tables(unsigned long)" \
      "$BUILD/bench/bench_gateway" --engine "$engine" --size "$size" --bursts "$BURSTS" --direction tx > "$tmp/out.json" 2> "$tmp/err"
    ir=$(grep -m1 "Collected" "$tmp/err" | awk '{print $NF}')
    packets=$(( (BURSTS / 5 * 5 + WARMUP_BURSTS) * 32 ))
    printf '%-16s %6d %14d\n' "$engine" "$size" $(( ir / packets ))
  done
done
