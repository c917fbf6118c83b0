#!/usr/bin/env bash
# dpagent --threads 1 against --threads 2, in one run on the e2e rig (tests/e2e/lib.sh: client, gateway and agent
# namespaces; dpgw on af_packet with one worker; a static tunnel), iperf3 through the tunnel to a server in the
# agent's namespace: TCP client -> server, TCP server -> client (-R), TCP both ways at once (--bidir) and UDP at
# AGENT_BENCH_UDP_RATE offered. Each measurement AGENT_BENCH_SECONDS long, the thread counts alternating for
# AGENT_BENCH_ROUNDS rounds; prints every figure and the median per cell (Gbit/s received), and dpagent's drop
# counters after the UDP runs. With AGENT_BENCH_PERF=1, `perf stat` watches dpagent during each TCP measurement and
# the table gets its CPU time (task-clock, seconds per second) and context switches per second next to the figures.
# Needs root. docs/performance.md, "dpagent at speed", has the figures.
#   bash bench/agent_threads.sh            (BUILD=... for another build directory)
source "$(dirname "$0")/../tests/e2e/lib.sh"
SECS=${AGENT_BENCH_SECONDS:-5}
ROUNDS=${AGENT_BENCH_ROUNDS:-3}
RATE=${AGENT_BENCH_UDP_RATE:-2G}
OUT=${AGENT_BENCH_OUT:-$WORK}
mkdir -p "$OUT"

topology_up
write_gw_conf 1 false
start_gw
start_iperf_server

PERF=${AGENT_BENCH_PERF:-0}
measure() {  # OUT ARGS...: iperf3, with perf stat on dpagent meanwhile (AGENT_BENCH_PERF=1)
  local out=$1 p=""
  shift
  if [ "$PERF" = 1 ]; then
    timeout -s INT "$SECS" perf stat -x, -e task-clock,context-switches -p "$AGENT_PID" -o "$out.perf" &
    p=$!
  fi
  iperf_client "$out" "$@"
  [ -z "$p" ] || wait "$p" || true
}
cpu() {  # FILE.perf: "CPU s/s, switches/s" of dpagent over the measurement
  [ -f "$1.perf" ] || return 0
  awk -F, -v s="$SECS" '$3 == "task-clock" {c = $1 / 1000 / s} $3 == "context-switches" {w = $1 / s}
    END {printf " [cpu %.2f, %dk cs/s]", c, w / 1000}' "$1.perf"
}
gbits() { jq -r "$1 / 1e9 | . * 100 | round / 100" "$2"; }
declare -A FIG
run_threads() {  # THREADS ROUND
  local t=$1 r=$2 f
  start_agent "agent-t$t-r$r" --threads "$t"
  wait_for 15 "tunnel up" tunnel_up
  sleep 1
  f="$OUT/t$t-r$r"
  measure "$f-up.json" -c "$GW_PUBLIC" -t "$SECS"
  measure "$f-down.json" -c "$GW_PUBLIC" -t "$SECS" -R
  measure "$f-bidir.json" -c "$GW_PUBLIC" -t "$SECS" --bidir
  iperf_client "$f-udp.json" -c "$GW_PUBLIC" -t "$SECS" -u -b "$RATE"
  kill -USR1 "$AGENT_PID"
  sleep 0.5
  FIG[$t,up]+="$(gbits .end.sum_received.bits_per_second "$f-up.json") "
  FIG[$t,down]+="$(gbits .end.sum_received.bits_per_second "$f-down.json") "
  FIG[$t,bidir]+="$(jq -r '(.end.sum_received.bits_per_second + .end.sum_received_bidir_reverse.bits_per_second) / 1e9 | . * 100 | round / 100' "$f-bidir.json") "
  # UDP: what the server received, and the share of the datagrams sent that it did not.
  FIG[$t,udp]+="$(gbits .end.sum_received.bits_per_second "$f-udp.json")($(jq -r '.end.sum_received.lost_packets * 100 / .end.sum_sent.packets | round' "$f-udp.json")%) "
  log "--threads $t, round $r: up ${FIG[$t,up]}| down ${FIG[$t,down]}| both ${FIG[$t,bidir]}| udp ${FIG[$t,udp]}"
  [ "$PERF" = 1 ] && log "  dpagent: up$(cpu "$f-up.json") down$(cpu "$f-down.json") both$(cpu "$f-bidir.json")"
  log "  dpagent's drops: $(tail -1 "$WORK/agent-t$t-r$r.out" | jq -c '{socket_rx_drops, tun_queue_drops, socket_tx_dropped, tun_write_errors}')"
  kill "$AGENT_PID"
  wait "$AGENT_PID" 2> /dev/null || true
}
for r in $(seq 1 "$ROUNDS"); do
  for t in 1 2; do run_threads "$t" "$r"; done
done
median() { tr ' ' '\n' | sed '/^$/d' | sed 's/(.*//' | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
echo
echo "| dpagent | TCP client -> server | TCP server -> client | TCP both ways (sum) | UDP $RATE offered: received (loss) |"
echo "| --- | --- | --- | --- | --- |"
for t in 1 2; do
  printf '| --threads %s | %s (%s) | %s (%s) | %s (%s) | %s (%s) |\n' "$t" \
    "$(median <<< "${FIG[$t,up]}")" "${FIG[$t,up]% }" "$(median <<< "${FIG[$t,down]}")" "${FIG[$t,down]% }" \
    "$(median <<< "${FIG[$t,bidir]}")" "${FIG[$t,bidir]% }" "$(median <<< "${FIG[$t,udp]}")" "${FIG[$t,udp]% }"
done
