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
  # shellcheck disable=SC2086
  iperf_client "$WORK/run.json" -c "$GW_PUBLIC" -t "${SECS:-5}" $r
  read -r _ u n s idle io irq sirq _ < /proc/stat; t1=$((u + n + s + idle + io + irq + sirq))
  g1=$(cpu_of "$GW_PID"); a1=$(cpu_of "$AGENT_PID"); s1=$(cpu_of "$server_pid")
  jq -r --arg r "$r" '"iperf3 \($r): \(.start.test_start.protocol) sent \((.end.sum_sent.bits_per_second // .end.sum.bits_per_second) / 1e6 | floor) Mbit/s, received \((.end.sum_received.bits_per_second // .end.sum.bits_per_second) / 1e6 | floor) Mbit/s" + (if .end.sum.lost_percent then ", lost \(.end.sum.lost_packets) (\(.end.sum.lost_percent * 10 | floor / 10) %)" else "" end)' "$WORK/run.json"
  echo "  jiffies: machine $((t1 - t0)), idle $((idle - i0)), softirq $((sirq - q0)); dpgw $((g1 - g0)), dpagent $((a1 - a0)), iperf3 server $((s1 - s0))"
  echo "  agent namespace: $(ip netns exec "$NS_A" nstat | awk '/UdpRcvbufErrors|UdpInErrors/ { printf "%s %s ", $1, $2 }')"
done
gw_stats | jq -c '{workers: [.workers[] | {polls, idle_sleeps}], drops}'
