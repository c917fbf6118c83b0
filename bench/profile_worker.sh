#!/usr/bin/env bash
# Where a dpgw worker's time goes under real traffic: the e2e rig (client -> dpgw on net_af_packet -> dpagent TUN +
# NAT -> iperf3 server, namespaces of its own), one worker with the tests' idle back-off, and `perf record -g` on
# the worker's thread while iperf3 runs. Prints, per load, the worker's samples, the share in housekeeping (flow
# expiry and the held-buffer sweeps) and its top symbols. Loads: none (idle), a full TCP stream, a UDP trickle
# (10 Mbit/s).
#   PROFILE_SECONDS=5 bash bench/profile_worker.sh      # under flock /tmp/dptun-heavy.lock, as root
# BACKOFF=false busy-polls instead (the production default: the worker spins whatever the load). PROFILE_OUT=DIR
# keeps the perf.data files and reports there (perf annotate -i DIR/idle.perf dptun::Worker::poll_once).
export DPT_PREFIX=${DPT_PREFIX:-dptprof}
source "$(dirname "$0")/../tests/e2e/lib.sh"
SECS=${PROFILE_SECONDS:-5}
command -v perf > /dev/null || fail "perf is not installed (Debian: linux-perf)"

topology_up
write_gw_conf 1 false
[ "${BACKOFF:-true}" = true ] || sed -i 's/backoff = true;/backoff = false;/' "$WORK/gw.conf"
start_gw
start_agent agent
wait_for 15 "tunnel up (agent keepalive answered)" tunnel_up
start_iperf_server

# The worker lcore's thread: the one of dpgw's threads DPDK named for a worker lcore.
worker_tid() {
  local t
  for t in /proc/"$GW_PID"/task/*; do
    case "$(cat "$t/comm")" in rte-worker*|lcore-worker*|dpdk-worker*) basename "$t"; return 0 ;; esac
  done
  return 1
}
TID=$(worker_tid) || fail "no worker thread in dpgw (threads: $(cat /proc/"$GW_PID"/task/*/comm | tr '\n' ' '))"

# CPU time of the worker thread so far (user + system, clock ticks).
thread_ticks() { awk '{print $14 + $15}' "/proc/$GW_PID/task/$TID/stat"; }

# profile NAME IPERF_ARGS...: iperf3 from the client while perf samples the worker thread.
profile() {
  local name=$1; shift
  local polls0 polls1 cpu0 cpu1 t0 t1
  polls0=$(gw_stats | jq '[.workers[].polls] | add')
  cpu0=$(thread_ticks)
  t0=$(date +%s%N)
  perf record -q -g -t "$TID" -o "$WORK/$name.perf" -- sleep "$((SECS + 1))" 2> "$WORK/$name.perf.err" &
  local perf_pid=$!
  sleep 0.5
  if [ "$name" = idle ]; then
    sleep "$SECS"
  else
    iperf_client "$WORK/$name.json" -c "$GW_PUBLIC" -t "$SECS" "$@"
  fi
  wait "$perf_pid"
  polls1=$(gw_stats | jq '[.workers[].polls] | add')
  cpu1=$(thread_ticks)
  t1=$(date +%s%N)
  local mbps total hk
  mbps=0
  [ "$name" = idle ] ||
    mbps=$(jq -r '(.end.sum_received.bits_per_second // .end.sum.bits_per_second) / 1e6 | floor' "$WORK/$name.json")
  perf report -q -i "$WORK/$name.perf" --no-children --sort sym -g none --percent-limit 0 2> /dev/null |
    sed 's/^ *//' > "$WORK/$name.txt"
  total=$(perf report -i "$WORK/$name.perf" --stdio 2> /dev/null | awk '/^# Samples:/ && !n++ {print $3}')
  # Housekeeping: FlowTable/FlowSetup and Fragments expiry, TcpBinding/QuicHolds/NameSlots sweeps, release_unheld,
  # the pacers (Worker::sweep_tables).
  hk=$(grep -E 'expire|sweep|release_unheld|SweepPacer' "$WORK/$name.txt" | awk '{s += $1} END {printf "%.1f", s}')
  echo
  local busy=$(( (cpu1 - cpu0) * 100000000000 / ($(getconf CLK_TCK) * (t1 - t0)) ))
  local what="iperf3 ${*:-TCP}"
  [ "$name" = idle ] && what="no traffic"
  echo "== $name ($what): $mbps Mbit/s; worker polls $((polls1 - polls0)), on CPU $busy % of the time;" \
    "$total samples, housekeeping $hk % of them"
  awk '/expire|sweep|release_unheld|SweepPacer/ && n++ < 8 {print "   hk  " $0}' "$WORK/$name.txt"
  awk 'NR <= 12 {print "   top " $0}' "$WORK/$name.txt"
  if [ -n "${PROFILE_OUT:-}" ]; then
    mkdir -p "$PROFILE_OUT"
    cp "$WORK/$name.perf" "$WORK/$name.txt" "$PROFILE_OUT/"
  fi
}

profile idle
profile tcp-stream
profile udp-trickle -u -b 10M
