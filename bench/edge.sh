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
# Each round also gives a ceiling: raw memif's time per packet plus AES-GCM alone on the concentrator's core
# (bench_gateway's floor), the rate a concentrator whose own work cost nothing would reach.
# Called by bench/run.sh; docs/performance.md ("DPDK on both tunnel ends") has the figures. Skips (exit 0, saying
# why) when something it needs is missing. Bounded: every process runs under timeout.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
ROUNDS=${EDGE_ROUNDS:-3}
MEASURE=${EDGE_SECONDS:-3}      # seconds counted per run
WARMUP=${EDGE_WARMUP:-1}        # seconds after the first packet out before counting
SIZES=${EDGE_SIZES:-"64 1400"}  # client frames (Ethernet, without FCS), as bench_gateway's
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
# (10.99.2.1/24, vdev_feed.py's agent address); the memif link is 10.99.3.0/24.
PSK=$(printf '5e%.0s' $(seq 32))
python3 "$FEED" arp "$WORK/arp.pcap"  # the target 10.99.2.2 asks for 10.99.2.1: the edge learns its MAC
for size in $SIZES; do
  python3 "$FEED" clients "$WORK/c$size.pcap" "$size" 256
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

# start_dptun FEEDER SINK: the concentrator (the memif server, fed by FEEDER) and the edge (SINK on its LAN port).
start_dptun() {
  local limit=$((WARMUP + MEASURE + 60)) sock="$WORK/memif-dptun.sock"
  write_dpgw concentrator "$A_PREFIX" "0@$B_CPU,1@$A_CPU" \
    "{ name = \"public\"; device = \"$1\"; address = \"10.99.1.1/24\"; }" \
    "{ name = \"underlay\"; device = \"net_memif0,role=server,socket=$sock,id=0\"; address = \"10.99.3.1/24\"; }" \
    "tunnels = ( { id = \"6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f\"; name = \"edge\";
              peers = ( { index = 1; psk = \"$PSK\"; } ); } );
entry_points = ( { proto = \"udp\"; port = 5201; tunnel = \"edge\"; target = \"10.99.2.2:5201\"; keepalive = true;
                   ttl = 600; } );"
  write_dpgw edge "$B_PREFIX" "0@$A_CPU,1@$B_CPU" \
    "{ name = \"underlay\"; device = \"net_memif0,role=client,socket=$sock,id=0\"; address = \"10.99.3.2/24\"; }" \
    "{ name = \"lan\"; device = \"$2\"; address = \"10.99.2.1/24\"; }" \
    "edge = { concentrator = \"10.99.3.1:51900\"; session = 1; psk = \"$PSK\"; underlay_port = \"underlay\";
         lan_port = \"lan\"; snat_net = \"100.64.0.0/16\"; keepalive = 0.5; };"
  timeout -k 5 "$limit" "$DPGW" --config "$WORK/concentrator.conf" > "$WORK/concentrator.log" 2>&1 &
  PIDS+=("$!")
  wait_socket "$sock"
  timeout -k 5 "$limit" "$DPGW" --config "$WORK/edge.conf" > "$WORK/edge.log" 2>&1 &
  PIDS+=("$!")
}
# start_raw FEEDER SINK: testpmd io-forwarding in each process's place, on the same vdevs.
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
# delivered a megabyte; every packet it delivered checked.
check() {
  local size=$1
  local out="$WORK/delivered$size.pcap" n=0
  start_dptun "net_pcap0,rx_pcap=$WORK/c$size.pcap,infinite_rx=1" "net_pcap1,rx_pcap=$WORK/arp.pcap,tx_pcap=$out"
  for _ in $(seq 1 1500); do  # at most 30 s
    sleep 0.02
    n=$(stat -c %s "$out" 2> /dev/null || echo 0)
    [ "$n" -gt 1000000 ] && break
  done
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
}

# measure KIND SIZE -> Mpps in MEASURED (not in a subshell: the EXIT trap must see the processes it starts)
MEASURED=""
measure() {
  local kind=$1 size=$2 r
  "start_$kind" "net_pcap0,rx_pcap=$WORK/c$size.pcap,infinite_rx=1" "net_pcap1,rx_pcap=$WORK/arp.pcap"
  if [ "$kind" = dptun ]; then  # (the edge's LAN port sends an ARP reply first: wait for the tunnel's traffic)
    for _ in $(seq 1 100); do
      "$DPGW" stats --socket "$WORK/edge.sock" --json 2> /dev/null | jq -e '.edge.from_concentrator_packets > 0' \
        > /dev/null 2>&1 && break
      sleep 0.2
    done
  fi
  if ! r=$(python3 "$FEED" rate "$B_PREFIX" 1 "$WARMUP" "$MEASURE"); then
    logs
    stop_all
    return 1
  fi
  stop_all
  MEASURED=$(jq -r .mpps <<< "$r")
  [ "$(jq -r '.packets > 0' <<< "$r")" = true ] || { logs; return 1; }
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
for size in $SIZES; do
  for ((round = 1; round <= ROUNDS; round++)); do
    for kind in raw dptun; do
      if ! measure "$kind" "$size"; then
        [ "$kind" = dptun ] && { echo "edge benchmark: the dptun pair delivered nothing measurable" >&2; exit 1; }
        skip "raw memif forwarding with testpmd sent nothing measurable (logs above)"
      fi
      MPPS[$kind,$size]="${MPPS[$kind,$size]:+${MPPS[$kind,$size]} }$MEASURED"
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
