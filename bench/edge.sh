#!/usr/bin/env bash
# DPDK on both tunnel ends (the edge role, docs/operations.md "Edge role"), measured against raw memif forwarding over
# the same pair in the same run. Two processes joined by one net_memif link, each doing its packet work on a core of
# its own:
#   dptun:  [feeder] concentrator dpgw ==memif== edge dpgw [sink]
#           client UDP packets to an entry point -> encapsulated, encrypted -> memif -> opened, translated (SNAT),
#           out the LAN port to the target
#   raw:    [feeder] dpdk-testpmd io ==memif== dpdk-testpmd io [sink]   (the same vdevs, no work: the floor)
# The feeder is net_pcap replaying a pcap of client packets forever (infinite_rx, bench/vdev_feed.py clients: 256
# flows), the sink a net_pcap port without a TX file (packets counted and dropped; it also brings the ARP request
# that tells the edge the target's MAC). Each configuration is counted the same way: the TX packets of the second
# process's sink port, read from its DPDK telemetry socket (vdev_feed.py rate). The configurations run one after
# the other, EDGE_ROUNDS alternating rounds, medians. Before measuring, the dptun pair runs once with a TX pcap on the
# edge's LAN port until it holds a megabyte, and every packet the edge delivered is checked (vdev_feed.py delivered):
# a client's packet, to the target, from a translated source, checksums valid, one source per client flow.
# The round trip (EDGE_ROUND_TRIP=1, the default) runs both ways at once: the clients' packets out as above (with
# their router's ARP request: the concentrator answers clients through it), and the target's answers back, fed on
# the second process's LAN port and counted on the first's client port. The answers go to the translated sources the
# edge used, so the dptun pair first runs the way out alone with a TX pcap on the edge's LAN port, then that edge
# is replaced by one fed the answers (vdev_feed.py replies); testpmd gets the same two pcaps. Before measuring, the
# answers the concentrator sent its clients are checked too (vdev_feed.py returned).
# Each round also gives a ceiling (the way out): raw memif's time per packet plus AES-GCM alone on the concentrator's
# core (bench_gateway's floor), the rate a concentrator whose own work cost nothing would reach.
# Called by bench/run.sh; docs/performance.md ("DPDK on both tunnel ends") has the figures. Skips (exit 0, saying
# why) when something it needs is missing. Bounded: every process runs under timeout.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
ROUNDS=${EDGE_ROUNDS:-3}
MEASURE=${EDGE_SECONDS:-3}      # seconds counted per run
WARMUP=${EDGE_WARMUP:-1}        # seconds after the first packet out before counting
SIZES=${EDGE_SIZES:-"64 1400"}  # client frames (Ethernet, without FCS), as bench_gateway's
ROUND_TRIP=${EDGE_ROUND_TRIP:-1}  # 0: the way out only (no round trip)
HUGE=${EDGE_HUGEPAGES:-0}       # 1: every process on 2 MB hugepages, 256 MB each (scripts/hugepages.sh first)
RESULTS=${RESULTS:-}            # a file JSON lines are appended to (bench/run.sh passes its own)
FEED="$ROOT/bench/vdev_feed.py"
DPGW="$BUILD/dataplane/dpgw"
TESTPMD=$(command -v dpdk-testpmd || true)

skip() {
  echo "edge benchmark skipped: $*"
  exit 0
}
[ -x "$DPGW" ] || skip "no $DPGW (make all first)"
[ -n "$TESTPMD" ] || skip "no dpdk-testpmd (Debian package dpdk)"
pmd_dir=$(pkg-config --variable=pmdsdir libdpdk 2> /dev/null || true)
if [ -n "$pmd_dir" ]; then
  ls "$pmd_dir"/librte_net_memif.so* > /dev/null 2>&1 || skip "no net_memif driver in $pmd_dir"
  ls "$pmd_dir"/librte_net_pcap.so* > /dev/null 2>&1 || skip "no net_pcap driver in $pmd_dir"
fi
A_CPU=$(( $(nproc) > 1 ? 1 : 0 ))  # the first process's packet work (concentrator worker, testpmd A)
B_CPU=0                             # the second's (edge worker, testpmd B); the main lcores sleep on the other core

WORK=$(mktemp -d /tmp/dptun-edge-bench.XXXXXX)
PIDS=()
A_PREFIX="dptun_edge_a_$$"
B_PREFIX="dptun_edge_b_$$"
cleanup() {
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill -TERM "$pid" 2> /dev/null || true
  done
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && wait "$pid" 2> /dev/null || true
  done
  rm -rf "$WORK" "/var/run/dpdk/$A_PREFIX" "/var/run/dpdk/$B_PREFIX"
  rm -f /dev/hugepages/"$A_PREFIX"map_* /dev/hugepages/"$B_PREFIX"map_* 2> /dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- inputs and configurations ----------------------------------------------------------------------------------
# Addresses: clients -> 10.99.1.1:5201 (the concentrator's entry point) -> target 10.99.2.2:5201 on the edge's LAN
# (10.99.2.1/24, vdev_feed.py's agent address); the memif link is 10.99.9.0/24 (clients come
# from 10.99.2.0/23).
PSK=$(printf '5e%.0s' $(seq 32))
python3 "$FEED" arp "$WORK/arp.pcap"  # the target 10.99.2.2 asks for 10.99.2.1: the edge learns its MAC
for size in $SIZES; do
  python3 "$FEED" clients "$WORK/c$size.pcap" "$size" 256
  python3 "$FEED" routed "$WORK/r$size.pcap" "$size" 16  # the round trip's way out
done

if [ "$HUGE" = 1 ]; then
  DPGW_MEM="hugepages = true; memory_mb = 256;"
  PMD_MEM=(-m 256 --huge-unlink)
else
  DPGW_MEM="hugepages = false; memory_mb = 1024;"
  PMD_MEM=(--no-huge -m 1024)
fi

write_dpgw() {  # NAME PREFIX LCORES PORT0 PORT1 EXTRA: a dpgw config in $WORK/NAME.conf
  cat > "$WORK/$1.conf" << CONF
dpgw = {
  workers = 1;
  eal = { $DPGW_MEM file_prefix = "$2"; lcores = "$3"; log_level = "*:notice"; };
  ports = ( $4, $5 );
  control_socket = "$WORK/$1.sock";
  metrics_listen = "";
  crypto = { engine = "ipsec-mb"; cipher = "aes-128-gcm"; };
};
$6
CONF
}

# The memif client connects once, when its port starts: the server's socket (abstract, memif's default) must be
# listening by then.
wait_socket() {
  for _ in $(seq 1 100); do
    ss -xl 2> /dev/null | grep -qF "$1" && return 0
    sleep 0.1
  done
  echo "edge benchmark: no memif socket $1 within 10 s" >&2
  logs
  exit 1
}

DPTUN_SOCK="$WORK/memif-dptun.sock"  # the dptun pair's memif link (the concentrator listens, each edge connects)
# start_dptun FEEDER SINK: the concentrator (the memif server, fed by FEEDER) and the edge (SINK on its LAN port).
# The concentrator's answers to clients go through their router 10.99.1.254 (learned from the round trip's feeder).
start_dptun() {  # (its limit covers the round trip's first edge and the second's tries, before the count)
  local limit=$((WARMUP + MEASURE + 180)) sock=$DPTUN_SOCK
  write_dpgw concentrator "$A_PREFIX" "0@$B_CPU,1@$A_CPU" \
    "{ name = \"public\"; device = \"$1\"; address = \"10.99.1.1/24\"; gateway = \"10.99.1.254\"; }" \
    "{ name = \"underlay\"; device = \"net_memif0,role=server,socket=$sock,id=0\"; address = \"10.99.9.1/24\"; }" \
    "tunnels = ( { id = \"6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f\"; name = \"edge\";
              peers = ( { index = 1; psk = \"$PSK\"; } ); } );
entry_points = ( { proto = \"udp\"; port = 5201; tunnel = \"edge\"; target = \"10.99.2.2:5201\"; keepalive = true;
                   ttl = 600; } );"
  timeout -k 5 "$limit" "$DPGW" --config "$WORK/concentrator.conf" > "$WORK/concentrator.log" 2>&1 &
  PIDS+=("$!")
  wait_socket "$sock"
  start_edge "$2"
}
start_edge() {  # SINK: the edge alone (the last of PIDS), its LAN port SINK
  local limit=$((WARMUP + MEASURE + 60)) sock=$DPTUN_SOCK
  write_dpgw edge "$B_PREFIX" "0@$A_CPU,1@$B_CPU" \
    "{ name = \"underlay\"; device = \"net_memif0,role=client,socket=$sock,id=0\"; address = \"10.99.9.2/24\"; }" \
    "{ name = \"lan\"; device = \"$1\"; address = \"10.99.2.1/24\"; }" \
    "edge = { concentrator = \"10.99.9.1:51900\"; session = 1; psk = \"$PSK\"; underlay_port = \"underlay\";
         lan_port = \"lan\"; snat_net = \"100.64.0.0/16\"; keepalive = 0.5; };"
  timeout -k 5 "$limit" "$DPGW" --config "$WORK/edge.conf" > "$WORK/edge.log" 2>&1 &
  PIDS+=("$!")
}
stop_edge() {
  local pid=${PIDS[-1]}
  kill -TERM "$pid" 2> /dev/null || true
  wait "$pid" 2> /dev/null || true
  unset 'PIDS[-1]'
  rm -rf "/var/run/dpdk/$B_PREFIX"
  rm -f "$WORK/edge.log"  # (the next edge's "running" is looked for there)
}
# wait_size FILE: until FILE holds a megabyte (at most 30 s)
wait_size() {
  for _ in $(seq 1 1500); do
    sleep 0.02
    [ "$(stat -c %s "$1" 2> /dev/null || echo 0)" -gt 1000000 ] && return 0
  done
  return 0
}
# start_dptun_rt SIZE [RETURNED]: the round trip. The concentrator fed the clients' packets (with their router's ARP
# request) and an edge that records what it delivers, until the translated source of every client flow is known;
# then that edge is replaced by one whose LAN port is fed the target's answers to those sources (with the target's
# ARP request), so both ways run at once. RETURNED: a pcap file the concentrator writes what it sends its clients to.
start_dptun_rt() {
  local size=$1 out="$WORK/rt-delivered$1.pcap"
  rm -f "$out"
  start_dptun "net_pcap0,rx_pcap=$WORK/r$size.pcap,infinite_rx=1${2:+,tx_pcap=$2}" \
    "net_pcap1,rx_pcap=$WORK/arp.pcap,tx_pcap=$out"
  wait_size "$out"
  stop_edge
  python3 "$FEED" replies "$WORK/replies$size.pcap" "$out" "$size" 16 || { logs; exit 1; }
  # The concentrator's memif server takes a new client only once it has handled the first one's going: try a few
  # times, a second apart.
  for try in 1 2 3 4 5; do
    sleep 1
    start_edge "net_pcap1,rx_pcap=$WORK/replies$size.pcap,infinite_rx=1"
    for _ in $(seq 1 50); do  # until it runs (its ports started) or fails
      grep -q " running: " "$WORK/edge.log" && return 0
      kill -0 "${PIDS[-1]}" 2> /dev/null || break
      sleep 0.2
    done
    stop_edge
    echo "  (the second edge did not start, try $try: $(grep -m1 "start failed" "$WORK/edge.log"))" >&2
  done
  logs
  exit 1
}

# start_raw FEEDER SINK: testpmd io-forwarding in each process's place, on the same vdevs (both ways: what each
# process receives on one port it sends on the other).
start_raw() {
  local limit=$((WARMUP + MEASURE + 60)) sock="$WORK/memif-raw.sock"
  local eal=("${PMD_MEM[@]}" --no-pci --log-level '*:notice') app=(--forward-mode=io --auto-start --stats-period 60)
  timeout -k 5 "$limit" "$TESTPMD" --lcores "0@$B_CPU,1@$A_CPU" "${eal[@]}" --file-prefix "$A_PREFIX" --vdev "$1" \
    --vdev "net_memif0,role=server,socket=$sock,id=0" -- "${app[@]}" < /dev/null > "$WORK/testpmd-a.log" 2>&1 &
  PIDS+=("$!")
  wait_socket "$sock"
  timeout -k 5 "$limit" "$TESTPMD" --lcores "0@$A_CPU,1@$B_CPU" "${eal[@]}" --file-prefix "$B_PREFIX" \
    --vdev "net_memif0,role=client,socket=$sock,id=0" --vdev "$2" -- "${app[@]}" < /dev/null \
    > "$WORK/testpmd-b.log" 2>&1 &
  PIDS+=("$!")
}
stop_all() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2> /dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2> /dev/null || true; done
  PIDS=()
  rm -rf "/var/run/dpdk/$A_PREFIX" "/var/run/dpdk/$B_PREFIX"
}
logs() {
  for f in "$WORK"/*.log; do
    echo "---- $(basename "$f")" >&2
    tail -n 8 "$f" >&2
  done
}

# check SIZE: the clients' packets through the dptun pair (from the moment the tunnel is up) until the edge has
# delivered a megabyte; every packet it delivered checked. Then the round trip until the concentrator has sent its
# clients a megabyte of the target's answers: every one of those checked too.
check() {
  local size=$1
  local out="$WORK/delivered$size.pcap" back="$WORK/returned$size.pcap"
  start_dptun "net_pcap0,rx_pcap=$WORK/c$size.pcap,infinite_rx=1" "net_pcap1,rx_pcap=$WORK/arp.pcap,tx_pcap=$out"
  wait_size "$out"
  stop_all
  if ! python3 "$FEED" delivered "$out" "$WORK/c$size.pcap" > "$WORK/check.json"; then
    cat "$WORK/check.json"
    logs
    echo "edge benchmark: at $size B the edge did not deliver the clients' packets intact" >&2
    exit 1
  fi
  echo "  check dptun pair, $size B: $(jq -r \
    '"\(.delivered) packets delivered, from \(.sources) translated sources for \(.clients) client flows"' \
    "$WORK/check.json")"
  [ "$ROUND_TRIP" = 1 ] || return 0
  rm -f "$back"
  start_dptun_rt "$size" "$back"
  wait_size "$back"
  stop_all
  if ! python3 "$FEED" returned "$back" "$WORK/replies$size.pcap" > "$WORK/check.json"; then
    cat "$WORK/check.json"
    logs
    echo "edge benchmark: at $size B the target's answers did not reach the clients intact" >&2
    exit 1
  fi
  echo "  check the way back, $size B: $(jq -r \
    '"\(.returned) answers returned, to \(.reached) of \(.clients) clients"' "$WORK/check.json")"
}

# measure KIND SIZE -> Mpps in MEASURED (not in a subshell: the EXIT trap must see the processes it starts). KIND:
# raw or dptun, the way out (counted on the second process's LAN port); raw_rt or dptun_rt, both ways at once (also
# counted on the first process's client port); MEASURED_EACH then has each way's Mpps, out first.
MEASURED="" MEASURED_EACH=""
measure() {
  local kind=$1 size=$2 r
  local count=("$B_PREFIX" 1)
  case $kind in
    raw | dptun)
      "start_$kind" "net_pcap0,rx_pcap=$WORK/c$size.pcap,infinite_rx=1" "net_pcap1,rx_pcap=$WORK/arp.pcap" ;;
    raw_rt)
      start_raw "net_pcap0,rx_pcap=$WORK/r$size.pcap,infinite_rx=1" \
        "net_pcap1,rx_pcap=$WORK/replies$size.pcap,infinite_rx=1"
      count+=("$A_PREFIX" 0) ;;
    dptun_rt)
      start_dptun_rt "$size"
      count+=("$A_PREFIX" 0) ;;
  esac
  if [ "${kind#dptun}" != "$kind" ]; then  # (the edge's LAN port sends an ARP reply first: wait for the tunnel)
    for _ in $(seq 1 100); do
      "$DPGW" stats --socket "$WORK/edge.sock" --json 2> /dev/null | jq -e '.edge.from_concentrator_packets > 0' \
        > /dev/null 2>&1 && break
      sleep 0.2
    done
  fi
  if ! r=$(python3 "$FEED" rate "${count[@]}" "$WARMUP" "$MEASURE"); then
    logs
    stop_all
    return 1
  fi
  stop_all
  MEASURED=$(jq -r .mpps <<< "$r")
  MEASURED_EACH=$(jq -r '.ports | map(tostring) | join(" ")' <<< "$r")
  [ "$(jq -r '.ports | all(. > 0)' <<< "$r")" = true ] || { logs; return 1; }
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "cores: the first process's packet work on CPU $A_CPU, the second's on CPU $B_CPU (main lcores on the other);" \
  "$([ "$HUGE" = 1 ] && echo hugepages || echo --no-huge); $ROUNDS rounds of ${MEASURE} s per configuration and size"
for size in $SIZES; do check "$size"; done

# The ceiling: raw memif plus the one thing the concentrator's core must add to it whatever dptun's own code costs,
# AES-GCM over each frame. The AEAD alone (bench_gateway's floor: the session's transmit key over the same bytes,
# same engine and key length) is measured on that core in each round, after its raw memif and dptun runs, and
# added to the round's raw memif time per packet: CEILING = 1 / (1 / RAW + 1 / FLOOR), in Mpps. The edge's
# decryption runs on the other core, in parallel, and is not added.
BENCH_GW="$BUILD/bench/bench_gateway"
ceiling() {  # SIZE RAW_MPPS -> Mpps in MEASURED, or "" without bench_gateway
  MEASURED=""
  [ -x "$BENCH_GW" ] || return 0
  local floor
  floor=$(taskset -c "$A_CPU" timeout -k 5 120 "$BENCH_GW" --engine ipsec-mb --direction tx --size "$1" \
    --bursts 4000 2> /dev/null | jq -rs 'map(select(.direction == "tx")) | first | .floor_mpps // empty') || return 0
  [ -n "$floor" ] || return 0
  MEASURED=$(jq -n "1 / (1 / $2 + 1 / $floor)")
}

declare -A MPPS
add() { MPPS[$1,$size]="${MPPS[$1,$size]:+${MPPS[$1,$size]} }$2"; }  # NAME MPPS: one more round's figure
for size in $SIZES; do
  for ((round = 1; round <= ROUNDS; round++)); do
    for kind in raw dptun $([ "$ROUND_TRIP" = 1 ] && echo raw_rt dptun_rt); do
      if ! measure "$kind" "$size"; then
        if [ "${kind#dptun}" != "$kind" ]; then
          echo "edge benchmark: the dptun pair delivered nothing measurable" >&2
          exit 1
        fi
        skip "raw memif forwarding with testpmd sent nothing measurable (logs above)"
      fi
      add "$kind" "$MEASURED"
      if [ "${kind%_rt}" != "$kind" ]; then
        read -r out back <<< "$MEASURED_EACH"
        add "$kind.out" "$out"
        add "$kind.back" "$back"
      fi
      [ "$kind" = raw ] && raw_round=$MEASURED
    done
    ceiling "$size" "$raw_round"
    [ -n "$MEASURED" ] && MPPS[ceiling,$size]="${MPPS[ceiling,$size]:+${MPPS[ceiling,$size]} }$MEASURED"
  done
done

range() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.2f-%.2f", lo, hi }'; }
echo "medians of $ROUNDS rounds (the rounds' range in brackets):"
printf '%-6s %22s %22s %10s %13s %14s %13s\n' frame "raw memif Mpps" "dptun Mpps" "dptun/raw" "dptun Gbit/s" \
  "ceiling Mpps" "ceiling/raw"
for size in $SIZES; do
  # shellcheck disable=SC2086
  r=$(median ${MPPS[raw,$size]}) d=$(median ${MPPS[dptun,$size]}) c=$(median ${MPPS[ceiling,$size]:-0})
  gbps=$(jq -n "$d * 1e6 * ($size - 14) * 8 / 1e9")  # the clients' IP packets delivered to the target
  # shellcheck disable=SC2086
  printf '%-6s %22s %22s %10.2f %13.2f %14s %13s\n' "$size" "$(printf '%.2f' "$r") [$(range ${MPPS[raw,$size]})]" \
    "$(printf '%.2f' "$d") [$(range ${MPPS[dptun,$size]})]" "$(jq -n "$d / $r")" "$gbps" \
    "$([ "$c" = 0 ] && echo - || printf '%.2f' "$c")" "$([ "$c" = 0 ] && echo - || printf '%.2f' "$(jq -n "$c / $r")")"
  line=$(jq -cn --argjson size "$size" --argjson r "$r" --argjson d "$d" --argjson g "$gbps" --argjson c "$c" \
    --arg rr "${MPPS[raw,$size]}" --arg rd "${MPPS[dptun,$size]}" --arg rc "${MPPS[ceiling,$size]:-}" \
    '{bench: "edge_memif", frame_bytes: $size, raw_memif_mpps: $r, dptun_mpps: $d, ratio: ($d / $r),
      dptun_inner_gbps: $g, ceiling_mpps: (if $c == 0 then null else $c end),
      ceiling_ratio: (if $c == 0 then null else $c / $r end),
      rounds: {raw_memif: $rr, dptun: $rd, ceiling: $rc}}')
  if [ -n "$RESULTS" ]; then echo "$line" >> "$RESULTS"; fi
done

[ "$ROUND_TRIP" = 1 ] || exit 0
echo "both ways at once (the clients' packets out, the target's answers back), medians of $ROUNDS rounds:"
printf '%-6s %32s %32s %10s %10s %10s\n' frame "raw memif Mpps: out + back" "dptun Mpps: out + back" "dptun/raw" \
  "out" "back"
# shellcheck disable=SC2086
m() { median ${MPPS[$1,$size]}; }  # NAME: the median of its rounds at $size (the figures split into words)
for size in $SIZES; do
  r=$(m raw_rt) d=$(m dptun_rt) ro=$(m raw_rt.out) rb=$(m raw_rt.back) dout=$(m dptun_rt.out) db=$(m dptun_rt.back)
  printf '%-6s %32s %32s %10.2f %10.2f %10.2f\n' "$size" \
    "$(printf '%.2f + %.2f = %.2f' "$ro" "$rb" "$r")" "$(printf '%.2f + %.2f = %.2f' "$dout" "$db" "$d")" \
    "$(jq -n "$d / $r")" "$(jq -n "$dout / $ro")" "$(jq -n "$db / $rb")"
  line=$(jq -cn --argjson size "$size" --argjson r "$r" --argjson d "$d" --argjson ro "$ro" --argjson rb "$rb" \
    --argjson dout "$dout" --argjson db "$db" --arg rr "${MPPS[raw_rt,$size]}" --arg rd "${MPPS[dptun_rt,$size]}" \
    '{bench: "edge_memif_round_trip", frame_bytes: $size, raw_memif_mpps: $r, dptun_mpps: $d, ratio: ($d / $r),
      raw_memif_out_mpps: $ro, raw_memif_back_mpps: $rb, dptun_out_mpps: $dout, dptun_back_mpps: $db,
      rounds: {raw_memif: $rr, dptun: $rd}}')
  if [ -n "$RESULTS" ]; then echo "$line" >> "$RESULTS"; fi
done
