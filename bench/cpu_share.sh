#!/usr/bin/env bash
# Who gets the CPUs while iperf3 runs through the whole chain: the e2e rig (client -> dpgw -> dpagent TUN + NAT ->
# iperf3 server, namespaces of its own, one worker with the tests' idle back-off), then per iperf3 run the CPU time
# of dpgw, dpagent and the iperf3 server (utime + stime from /proc/PID/stat) and the machine's idle and softirq
# time (/proc/stat), in jiffies (100 per CPU-second), next to what iperf3 received and where UDP was lost.
#   bash bench/cpu_share.sh                       # under flock /tmp/dptun-heavy.lock, as root
#   GW_VDEV=af_xdp RUNS="-u -b 2G;-u -b 2G; ;-P 4" bash bench/cpu_share.sh
#   GW_IDLE='pause_polls = 256;' GW_VDEV_ARGS=',busy_budget=64' ...   # other idle settings / vdev arguments
#                                                 # (those two: the settings before 2026-11-30)
#   AGENT_ARGS=--no-offload ...                   # dpagent's options
# RUNS: iperf3 client arguments per run, ';'-separated (default: UDP at 2 Gbit/s), SECS per run (5).
# PERF_OUT=DIR: also `perf record -a -g` over each run (DIR/run-N.perf) and the share of every program and, for
# the busiest, their top symbols (perf report; the VM has no PMU, so cpu-clock sampling).
export DPT_PREFIX=${DPT_PREFIX:-dptcpu}
source "$(dirname "$0")/../tests/e2e/lib.sh"
command -v jq > /dev/null || fail "jq is not installed"
topology_up
write_gw_conf 1 false
[ -n "${GW_IDLE:-}" ] && sed -i "s/backoff = true;/backoff = true; $GW_IDLE/" "$WORK/gw.conf"
if [ -n "${GW_VDEV_ARGS:-}" ]; then  # (replacing lib.sh's busy_budget=0 when it sets busy_budget)
  [[ $GW_VDEV_ARGS == *busy_budget=* ]] && sed -i 's/,busy_budget=0//' "$WORK/gw.conf"
  sed -i -E "s/(device = \"net_af_[a-z]+[0-9],[^\"]*)\"/\1$GW_VDEV_ARGS\"/" "$WORK/gw.conf"
fi
log "dpgw: $(grep -E 'device|idle' "$WORK/gw.conf" | tr -s ' ' | tr '\n' ' ')"
start_gw
# shellcheck disable=SC2086
start_agent agent ${AGENT_ARGS:-}
wait_for 15 "tunnel up" tunnel_up
start_iperf_server
server_pid=$(pgrep -f "iperf3 -s -J -B $AGENT_IP" | head -1)
cpu_of() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
IFS=';' read -ra runs <<< "${RUNS:--u -b 2G}"
for r in "${runs[@]}"; do
  ip netns exec "$NS_A" nstat -n > /dev/null
  read -r _ u n s idle io irq sirq _ < /proc/stat; t0=$((u + n + s + idle + io + irq + sirq)); i0=$idle; q0=$sirq
  g0=$(cpu_of "$GW_PID"); a0=$(cpu_of "$AGENT_PID"); s0=$(cpu_of "$server_pid")
  run_no=$((${run_no:-0} + 1))
  perf_pid=""
  if [ -n "${PERF_OUT:-}" ]; then
    mkdir -p "$PERF_OUT"
    perf record -a -g -o "$PERF_OUT/run-$run_no.perf" -- sleep "$((${SECS:-5} - 1))" > /dev/null 2>&1 &
    perf_pid=$!
  fi
  # shellcheck disable=SC2086
  iperf_client "$WORK/run.json" -c "$GW_PUBLIC" -t "${SECS:-5}" $r
  [ -z "$perf_pid" ] || wait "$perf_pid" || true
  read -r _ u n s idle io irq sirq _ < /proc/stat; t1=$((u + n + s + idle + io + irq + sirq))
  g1=$(cpu_of "$GW_PID"); a1=$(cpu_of "$AGENT_PID"); s1=$(cpu_of "$server_pid")
  jq -r --arg r "$r" '"iperf3 \($r): \(.start.test_start.protocol) sent \((.end.sum_sent.bits_per_second // .end.sum.bits_per_second) / 1e6 | floor) Mbit/s, received \((.end.sum_received.bits_per_second // .end.sum.bits_per_second) / 1e6 | floor) Mbit/s" + (if .end.sum.lost_percent then ", lost \(.end.sum.lost_packets) (\(.end.sum.lost_percent * 10 | floor / 10) %)" else "" end)' "$WORK/run.json"
  echo "  jiffies: machine $((t1 - t0)), idle $((idle - i0)), softirq $((sirq - q0)); dpgw $((g1 - g0)), dpagent $((a1 - a0)), iperf3 server $((s1 - s0))"
  echo "  agent namespace: $(ip netns exec "$NS_A" nstat | awk '/UdpRcvbufErrors|UdpInErrors/ { printf "%s %s ", $1, $2 }')"
  if [ -n "$perf_pid" ]; then
    echo "  perf, share of all samples by thread (run-$run_no.perf; iperf3: the client first, then the server):"
    perf report -i "$PERF_OUT/run-$run_no.perf" --no-children --sort pid --stdio 2> /dev/null |
      awk '/^ +[0-9.]+%/ { printf "    %s %s\n", $1, $2 }' | head -8 | tee "$WORK/threads.txt"
    awk '{ print $2 }' "$WORK/threads.txt" | head -4 | while IFS=: read -r tid name; do
      perf report -i "$PERF_OUT/run-$run_no.perf" --no-children --tid "$tid" --sort sym --stdio 2> /dev/null |
        awk -v c="$name" '/^ +[0-9.]+%/ && n < 8 { if (!n) printf "    %s, top symbols (%% of all samples):", c; printf " %s %s;", $1, $NF; n++ } END { if (n) print "" }'
    done
  fi
done
gw_stats | jq -c '{workers: [.workers[] | {polls, idle_sleeps}], drops}'
