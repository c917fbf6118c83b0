#!/usr/bin/env bash
# The dptun demo, the way an operator runs it: dpgw owns the gateway's ports, dpctld listens on dpgw's own
# address through the kernel path, `dpctl tunnel add` prints the dpagent command that registers an agent,
# `dpctl entry add` publishes the service. Then iperf3 through the encrypted tunnel (relay frames, then the same
# tunnel with the agent the QUIC command starts: the QUIC framing) and, in the same run and
# between the same two namespaces, through its peers: a plain veth (the kernel alone), wireguard-go (Debian's)
# and dpdk-testpmd io-forwarding on the same vdevs and veths as dpgw (a wire that does no work). One table with
# the ratios, and the counters of every component that dropped a datagram. Everything is torn down at the end.
#
# DEMO_SECONDS (5) per measurement, DEMO_ROUNDS (1) of each measurement per path (the table shows medians),
# DEMO_PATHS (all: dptun dptun-quic testpmd veth wireguard-go) which paths to measure,
# DEMO_UDP_RATE (2G) offered by iperf3's UDP client, DEMO_VDEV (af_xdp, falls back to af_packet when dpgw
# cannot pass traffic on it; af_packet skips the try).
export DPT_PREFIX=${DPT_PREFIX:-dptdemo}
source "$(dirname "$0")/../tests/e2e/lib.sh"
source "$ROOT/scripts/demo_peers.sh"
SECS=${DEMO_SECONDS:-5}
ROUNDS=${DEMO_ROUNDS:-1}
UDP_RATE=${DEMO_UDP_RATE:-2G}
[[ $SECS =~ ^[1-9][0-9]*$ ]] || fail "DEMO_SECONDS=$SECS: a whole number of seconds, at least 1"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || fail "DEMO_ROUNDS=$ROUNDS: a whole number, at least 1"
[[ $UDP_RATE =~ ^[0-9]+[KMG]?$ ]] || fail "DEMO_UDP_RATE=$UDP_RATE: iperf3's -b, e.g. 2G or 500M"
show() { echo "+ $*" | sed "s|$WORK|\$WORK|g"; }
OUT=${DEMO_OUT:-}  # a directory that keeps every iperf3 JSON and the table
[ -z "$OUT" ] || mkdir -p "$OUT" || fail "DEMO_OUT=$OUT: cannot create it"
PATHS=" ${DEMO_PATHS:-dptun dptun-quic testpmd veth wireguard-go} "  # which paths to measure (all by default)
want() { [[ $PATHS == *" $1 "* ]]; }
STARTED=$SECONDS
RESULTS=$WORK/results.txt  # PATH TEST ROUND received_bit/s sent_bit/s lost_datagrams datagrams
: > "$RESULTS"
AGENT_PID=""

# counters: "name value" for every counter on the paths that records a dropped packet: the kernel's UDP and
# reassembly errors in the client and agent namespaces, the veths' drops, dpgw's port and drop counters and
# dpagent's (SIGUSR1 prints them as a JSON line on its stdout) while they run.
counters() {
  local ns pair n
  for ns in "$NS_C" "$NS_A"; do
    ip netns exec "$ns" nstat -asz UdpSndbufErrors UdpRcvbufErrors IpReasmFails 2>/dev/null |
      awk -v ns="${ns#"$DPT_PREFIX-"}" '!/^#/ { print ns "-kernel:" $1, $2 }'
  done
  for pair in "$NS_C c0" "$NS_G gc" "$NS_G ga" "$NS_A a0" "$NS_C cp" "$NS_A ap" "$NS_C $WG_C" "$NS_A $WG_A"; do
    # shellcheck disable=SC2086
    set -- $pair
    ip -n "$1" link show dev "$2" > /dev/null 2>&1 || continue  # the WireGuard interfaces exist only for a while
    ip -n "$1" -s -j link show dev "$2" |
      jq -r --arg i "$2" '.[0].stats64 | "veth-\($i):rx_dropped \(.rx.dropped)", "veth-\($i):tx_dropped \(.tx.dropped)"' |
      sed 's/^veth-\([^:]*wg[ca]\)/wg-\1/' || true
  done
  if [ -n "${GW_PID:-}" ] && kill -0 "$GW_PID" 2>/dev/null; then
    # (socket_rx_dropped: on af_packet only; on af_xdp it is the veth's rx_dropped, counted above)
    gw_stats | jq -r --arg sock "$([ "${GW_VDEV:-}" = af_packet ] && echo socket_rx_dropped)" \
      '(.ports[] as $p | ["tx_dropped", "hw_rx_missed", "hw_rx_errors", "hw_tx_errors", "hw_rx_nombuf", $sock][]
                        | select(. != "") | "dpgw-\($p.name):\(.) \($p[.] // 0)"),
                      (.totals.drops | to_entries[] | "dpgw-drop:\(.key) \(.value)"),
                      (.totals.parse_errors | to_entries[] | "dpgw-parse:\(.key) \(.value)")'
  fi
  if [ -n "$AGENT_PID" ] && kill -0 "$AGENT_PID" 2>/dev/null; then
    n=$(wc -l < "$WORK/agent.out")
    kill -USR1 "$AGENT_PID"
    for _ in $(seq 1 50); do [ "$(wc -l < "$WORK/agent.out")" -gt "$n" ] && break; sleep 0.05; done
    tail -n 1 "$WORK/agent.out" | jq -r '[paths(scalars) as $p | {key: ($p | map(tostring) | join(".")), value: getpath($p)}][]
                                         | select(.key | test("drops?(\\.|$)|dropped|errors$|malformed|bad_inner|no_nat|no_route|auth_fail|replay|stale"))
                                         | "dpagent:\(.key) \(.value)"'
  fi
}

# measure PATH TEST ROUND IPERF3-ARGS...: one iperf3 run from the client namespace; for UDP also which counters
# grew meanwhile ($WORK/drops-PATH.txt). A run that fails is shown and left out of the table.
measure() {
  local path=$1 test=$2 round=$3 out=$WORK/$1-$2-$3.json; shift 3
  local udp=0
  [ "$test" = udp ] && udp=1
  [ $udp = 1 ] && counters > "$WORK/before.txt"
  if ! timeout $((SECS + 30)) ip netns exec "$NS_C" iperf3 -J --connect-timeout 3000 "$@" > "$out" 2> "$out.err" ||
     jq -e '.error' "$out" > /dev/null 2>&1; then
    echo "  $path $test round $round: iperf3 failed: $(jq -r '.error // empty' "$out" 2>/dev/null) $(head -c 200 "$out.err")"
    return 0
  fi
  [ -n "$OUT" ] && cp "$out" "$OUT/"
  [ $udp = 1 ] && counters | awk 'NR == FNR { b[$1] = $2; next } $2 - b[$1] > 0 { print $1, $2 - b[$1] }' \
    "$WORK/before.txt" - >> "$WORK/drops-$path.txt"
  jq -r --arg p "$path" --arg t "$test" --arg r "$round" '
    if .start.test_start.protocol == "UDP" then
      "\($p) \($t) \($r) \(.end.sum_received.bits_per_second) \(.end.sum_sent.bits_per_second) \(.end.sum_received.lost_packets) \(.end.sum_sent.packets)"
    else
      "\($p) \($t) \($r) \(.end.sum_received.bits_per_second) \(.end.sum_sent.bits_per_second) - -"
    end' "$out" >> "$RESULTS"
}

# measure_path PATH HOST PORT: DEMO_ROUNDS rounds of TCP 1 stream, TCP 4 streams, UDP at DEMO_UDP_RATE to HOST:PORT
measure_path() {
  local path=$1 host=$2 port=$3 r
  log "$path: iperf3 to $host:$port, ${SECS}s each, $ROUNDS round(s): TCP, TCP -P 4, UDP -b $UDP_RATE"
  for r in $(seq 1 "$ROUNDS"); do
    measure "$path" tcp1 "$r" -c "$host" -p "$port" -t "$SECS"
    measure "$path" tcp4 "$r" -c "$host" -p "$port" -t "$SECS" -P 4
    measure "$path" udp "$r" -c "$host" -p "$port" -t "$SECS" -u -b "$UDP_RATE"
  done
}

topology_up
# iperf3 servers in the agent namespace: on 10.99.2.2:5201 for dptun (dpagent's NAT delivers there; a server on
# every address would answer UDP from the TUN's address) and testpmd, on every address's port 5202 for the others.
ip netns exec "$NS_A" iperf3 -s -B "$AGENT_IP" -p 5201 > "$WORK/iperf3-server.log" 2>&1 &
PIDS+=("$!")
ip netns exec "$NS_A" iperf3 -s -p 5202 > "$WORK/iperf3-server-5202.log" 2>&1 &
PIDS+=("$!")

log "certificates with dptun-pki: a CA, dpctld's certificate for the address agents use, one agent's"
for step in "init $WORK/pki" "server $WORK/pki server --ip $GW_UNDERLAY" "agent $WORK/pki agent-1"; do
  # shellcheck disable=SC2086
  show dptun-pki $step
  # shellcheck disable=SC2086
  bash "$ROOT/scripts/dptun-pki" $step > /dev/null
done

# dpgw on the fastest vdev that passes traffic here: af_xdp (native XDP on the veths) if dpgw starts on it and
# answers a ping on both ports within 5 s, else af_packet.
gw_answers() {
  ip netns exec "$NS_C" ping -c 1 -W 1 "$GW_PUBLIC" > /dev/null 2>&1 &&
    ip netns exec "$NS_A" ping -c 1 -W 1 "$GW_UNDERLAY" > /dev/null 2>&1
}
try_gw() {  # try_gw: dpgw started on $GW_VDEV and answering, or stopped and a reason in $why
  write_gw_conf 1 false
  ip netns exec "$NS_G" "$DPGW" --config "$WORK/gw.conf" > "$WORK/dpgw.out" 2> "$WORK/dpgw.log" &
  GW_PID=$!
  PIDS+=("$GW_PID")
  for _ in $(seq 1 100); do
    gw_stats > /dev/null 2>&1 && break
    kill -0 "$GW_PID" 2>/dev/null || { why="dpgw exited: $(grep -m1 -iE 'error|fail|cannot' "$WORK/dpgw.log")"; return 1; }
    sleep 0.2
  done
  for _ in $(seq 1 5); do gw_answers && return 0; done
  why="dpgw started but did not answer pings on both ports within 5 s"
  stop_gw
  return 1
}
export GW_STATIC=0 GW_KERNEL_IF=dpgw-under
GW_VDEV=${DEMO_VDEV:-af_xdp}
VDEV_NOTE=""
if [ "$GW_VDEV" = af_xdp ]; then
  log "dpgw on net_af_xdp (XDP sockets on the veths gc and ga), kernel path dpgw-under on 10.99.2.1"
  if ! try_gw; then
    VDEV_NOTE="af_xdp did not work here ($why); af_packet instead"
    log "$VDEV_NOTE"
    ip -n "$NS_G" link set dev gc xdp off 2>/dev/null || true
    ip -n "$NS_G" link set dev ga xdp off 2>/dev/null || true
    GW_VDEV=af_packet
  fi
fi
if [ "$GW_VDEV" = af_packet ]; then
  log "dpgw on net_af_packet (AF_PACKET sockets on the veths gc and ga), kernel path dpgw-under on 10.99.2.1"
  try_gw || fail "dpgw on af_packet: $why"
fi
show dpgw --config \$WORK/gw.conf "  # ports: $(gw_vdev 0 gc 1)  $(gw_vdev 1 ga 1)"
DPCTLD_QUIC_LISTEN="$GW_UNDERLAY:443" write_dpctld_conf "$GW_UNDERLAY:7443"
log "dpctld listening on 10.99.2.1:7443 (TLS over TCP) and 10.99.2.1:443 (QUIC)"
start_dpctld "$NS_G"

show dpctl tunnel add iperf --allow CN=agent-1
dpctl tunnel add iperf --allow CN=agent-1 | tee "$WORK/add.txt"
cmd=$(grep -E '^  dpagent --server ' "$WORK/add.txt" | sed 's/^  //')
cmd=${cmd//AGENT.pem/$WORK/pki/agent-1.pem}
cmd=${cmd//AGENT.key/$WORK/pki/agent-1.key}
qcmd=$(grep -E '^  dpagent --transport quic ' "$WORK/add.txt" | sed 's/^  //')
qcmd=${qcmd//AGENT.pem/$WORK/pki/agent-1.pem}
qcmd=${qcmd//AGENT.key/$WORK/pki/agent-1.key}
log "running the first command (relay frames) in the agent's namespace (with the agent's certificate)"
# shellcheck disable=SC2086
ip netns exec "$NS_A" "$BUILD/agent/"$cmd > "$WORK/agent.out" 2> "$WORK/agent.log" &
AGENT_PID=$!
PIDS+=("$AGENT_PID")
show dpctl entry add tcp 5201 iperf "$AGENT_IP:5201"
dpctl entry add tcp 5201 iperf "$AGENT_IP:5201"
show dpctl entry add udp 5201 iperf "$AGENT_IP:5201" --keepalive
dpctl entry add udp 5201 iperf "$AGENT_IP:5201" --keepalive
agent_live() { dpctl --json session list | jq -e '[.sessions[] | select(.live)] | length > 0'; }
wait_for 15 "the agent's session live" agent_live
show dpctl session list
dpctl session list
grep -iE 'offload|vnet|segment|gro' "$WORK/agent.log" | sed 's/^/  dpagent: /' || true
sleep 0.5

echo
want dptun && measure_path dptun "$GW_PUBLIC" 5201
show dpctl tunnel list
dpctl tunnel list > "$WORK/tunnel-list.txt"
cat "$WORK/tunnel-list.txt"
"$DPGW" stats --socket "$WORK/dpgw.sock" > "$WORK/dpgw-stats.txt"
stop_agent() {  # dpagent prints its counters on the way out
  kill "$AGENT_PID"
  for _ in $(seq 1 50); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.1; done
  wait "$AGENT_PID" 2>/dev/null || true
  AGENT_PID=""
}
if want dptun-quic; then
  echo
  log "the same tunnel with the QUIC framing: the relay agent stops, the second command (--transport quic) runs"
  stop_agent
  cp "$WORK/agent.out" "$WORK/agent-relay.out"
  # shellcheck disable=SC2086
  ip netns exec "$NS_A" "$BUILD/agent/"$qcmd > "$WORK/agent.out" 2> "$WORK/agent-quic.log" &
  AGENT_PID=$!
  PIDS+=("$AGENT_PID")
  quic_live() { gw_stats | jq -e '[.tunnels[].sessions[] | select(.framing == "quic" and .live)] | length > 0'; }
  wait_for 20 "the QUIC agent's session live at dpgw" quic_live
  # New flows go to live sessions: until dpgw sees the relay agent's session fall quiet (session_timeout), some
  # would still be pinned to it.
  relay_down() { gw_stats | jq -e '[.tunnels[].sessions[] | select(.framing == "relay" and .live)] | length == 0'; }
  wait_for 20 "the relay agent's session no longer live at dpgw" relay_down
  measure_path dptun-quic "$GW_PUBLIC" 5201
  "$DPGW" stats --socket "$WORK/dpgw.sock" > "$WORK/dpgw-stats-quic.txt"
fi
log "stopping dpagent, dpctld and dpgw"
if [ -n "$AGENT_PID" ]; then stop_agent; fi
[ -f "$WORK/agent-relay.out" ] || cp "$WORK/agent.out" "$WORK/agent-relay.out"
kill "$DPCTLD_PID"
wait "$DPCTLD_PID" 2>/dev/null || true
stop_gw
GW_PID=""
ip -n "$NS_G" link set dev gc xdp off 2>/dev/null || true
ip -n "$NS_G" link set dev ga xdp off 2>/dev/null || true

echo
TP_NOTE=""
if ! want testpmd; then
  :
elif log "dpdk-testpmd io-forward in dpgw's place: $(gw_vdev 0 gc 1) <-> $(gw_vdev 1 ga 1), client -> $AGENT_IP on-link" &&
  testpmd_up; then
  measure_path testpmd "$AGENT_IP" 5201
  testpmd_down
else
  TP_NOTE="testpmd did not pass a ping within 5 s: $(grep -m1 -iE 'error|fail|cause' "$WORK/testpmd.log")"
  log "$TP_NOTE"
  testpmd_down
fi

echo
if want veth; then
  log "plain veth cp/ap (10.99.3.1 -> 10.99.3.2), the kernel alone"
  measure_path veth 10.99.3.2 5202
fi
if want wireguard-go; then
  log "wireguard-go on both ends ($WG_C 10.99.5.1 <-> $WG_A 10.99.5.2, UDP over cp/ap, MTU 1420)"
  wg_up
  measure_path wireguard-go "$WG_AGENT_IP" 5202
  wg_down
fi

# ---- the table
med() {  # med PATH TEST FIELD: median (and min-max when more than one round) in Gbit/s, or "-"
  awk -v p="$1" -v t="$2" -v f="$3" '$1 == p && $2 == t { print $f / 1e9 }' "$RESULTS" | sort -g |
    awk '{ v[NR] = $1 } END {
      if (NR == 0) { print "-"; exit }
      m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      if (NR > 1) printf "%.2f (%.2f-%.2f)\n", m, v[1], v[NR]; else printf "%.2f\n", m }'
}
loss() {  # loss PATH: lost / sent datagrams over every UDP round, in %
  awk -v p="$1" '$1 == p && $2 == "udp" { l += $6; n += $7 } END { if (n) printf "%.1f %%", 100 * l / n; else print "-" }' "$RESULTS"
}
num() { echo "${1%% *}"; }
ratio() {  # ratio A B x|%: A/B as "2.1x" or "65 %"
  local a b
  a=$(num "$1") b=$(num "$2")
  [ "$a" = - ] || [ "$b" = - ] && { echo "-"; return; }
  awk -v a="$a" -v b="$b" -v k="$3" 'BEGIN { if (b == 0) print "-"; else if (k == "x") printf "%.2fx\n", a / b; else printf "%.0f %%\n", 100 * a / b }'
}
WG_VERSION=$(dpkg-query -W -f='${Version}' wireguard-go 2>/dev/null || echo "?")
DPDK_VERSION=$(dpkg-query -W -f='${Version}' dpdk 2>/dev/null || echo "?")

# report: the table, the ratios, where UDP datagrams were lost, dpagent's and dpgw's counters
report() {
  W='%-36s %-17s %-17s %-17s %s\n'
  echo
  echo "iperf3 client -> server between the same two namespaces, ${SECS}s per run, $ROUNDS round(s) per path;"
  echo "Gbit/s received$([ "$ROUNDS" -gt 1 ] && echo ", median (min-max)"). $(nproc) CPUs, kernel $(uname -r)."
  [ -n "$VDEV_NOTE" ] && echo "note: $VDEV_NOTE"
  [ -n "$TP_NOTE" ] && echo "note: $TP_NOTE"
  # shellcheck disable=SC2059
  printf "$W" "path" "TCP 1 stream" "TCP 4 streams" "UDP, $UDP_RATE offered" "UDP loss"
  for row in "dptun|dptun, $GW_VDEV" "dptun-quic|dptun, QUIC framing, $GW_VDEV" \
             "testpmd|testpmd io-forward wire, $GW_VDEV" "wireguard-go|wireguard-go" \
             "veth|plain veth, offloads off"; do
    p=${row%%|*}
    # shellcheck disable=SC2059
    printf "$W" "${row#*|}" "$(med "$p" tcp1 4)" "$(med "$p" tcp4 4)" "$(med "$p" udp 4)" "$(loss "$p")"
  done
  echo
  # shellcheck disable=SC2059
  {
    printf "$W" "ratio (goal)" "TCP 1 stream" "TCP 4 streams" "UDP received"
    printf "$W" "dptun / wireguard-go (>= 3x TCP)" "$(ratio "$(med dptun tcp1 4)" "$(med wireguard-go tcp1 4)" x)" \
      "$(ratio "$(med dptun tcp4 4)" "$(med wireguard-go tcp4 4)" x)" "$(ratio "$(med dptun udp 4)" "$(med wireguard-go udp 4)" x)"
    printf "$W" "dptun / testpmd wire (>= 90 % TCP)" "$(ratio "$(med dptun tcp1 4)" "$(med testpmd tcp1 4)" %)" \
      "$(ratio "$(med dptun tcp4 4)" "$(med testpmd tcp4 4)" %)" "$(ratio "$(med dptun udp 4)" "$(med testpmd udp 4)" %)"
    printf "$W" "dptun / plain veth (UDP >= 75 %)" "$(ratio "$(med dptun tcp1 4)" "$(med veth tcp1 4)" %)" \
      "$(ratio "$(med dptun tcp4 4)" "$(med veth tcp4 4)" %)" "$(ratio "$(med dptun udp 4)" "$(med veth udp 4)" %)"
    printf "$W" "dptun QUIC framing / relay frames" "$(ratio "$(med dptun-quic tcp1 4)" "$(med dptun tcp1 4)" %)" \
      "$(ratio "$(med dptun-quic tcp4 4)" "$(med dptun tcp4 4)" %)" "$(ratio "$(med dptun-quic udp 4)" "$(med dptun udp 4)" %)"
  }
  echo
  echo "dptun: client 10.99.1.2 -> dpgw 10.99.1.1:5201 ($GW_VDEV; NAT, AES-128-GCM relay frames) -> dpagent 10.99.2.2"
  echo "       (TUN with offloads, NAT) -> iperf3 server 10.99.2.2:5201"
  echo "dptun, QUIC framing: the same, the agent started with --transport quic: QUIC v1 1-RTT packets with DATAGRAM"
  echo "       frames to dpgw's UDP/443 (dpgw's workers; ngtcp2 in dpagent)"
  echo "testpmd io-forward wire: dpdk-testpmd $DPDK_VERSION in dpgw's place on the same veths and vdevs, doing no work:"
  echo "       client 10.99.1.2 -> 10.99.2.2 on-link"
  echo "wireguard-go $WG_VERSION (Debian) on both ends: 10.99.5.1 -> 10.99.5.2, UDP over the veth cp/ap"
  echo "plain veth: 10.99.3.1 (cp) -> 10.99.3.2 (ap), the kernel alone"
  echo "All of it, iperf3 client and server included, shares this machine's $(nproc) CPUs."
  echo
  echo "UDP: datagrams iperf3 lost over all rounds, and the drop counters that grew meanwhile (by how much):"
  for p in dptun dptun-quic testpmd wireguard-go veth; do
    grep -q "^$p udp" "$RESULTS" || continue
    awk -v p="$p" '$1 == p && $2 == "udp" { l += $6; n += $7 } END { printf "  %-13s lost %8d of %8d;", p, l, n }' "$RESULTS"
    if [ -s "$WORK/drops-$p.txt" ]; then
      awk '{ s[$1] += $2 } END { for (k in s) print s[k], k }' "$WORK/drops-$p.txt" | sort -rn |
        awk '{ t += $1; printf " %s %d", $2, $1 } END { printf "  (counted %d)\n", t }'
    else
      echo " no drop counter grew"
    fi
  done
  echo "  (iperf3 and the kernel's UDP counters count datagrams; dpgw and the veths count frames; the client's"
  echo "   and agent's namespaces: *-kernel, from nstat; dpagent's own: dpagent:*, which are zero when absent)"
  echo
  echo "dpagent (relay frames) at exit:"
  tail -n 1 "$WORK/agent-relay.out" | jq -r '"  \(.tun_packets_written) packets to the TUN in \(.tun_writes) writes (\(if .tun_writes > 0 then
    (.tun_packets_written / .tun_writes * 10 | floor / 10) else 0 end) per write), \(.socket_rx_drops) dropped before its socket,
  \(.tun_queue_drops) at the TUN queue, \(.socket_tx_dropped) not sent to the gateway"'
  tail -n 1 "$WORK/agent-relay.out" | jq -c '{frames_rx, frames_tx, tun_writes, tun_packets_written, tun_packets_coalesced,
    tun_super_packets, tun_segments, socket_rx_coalesced, socket_tx_sends, socket_rx_drops, tun_queue_drops,
    socket_tx_dropped, tun_write_errors, send_errors}'
  echo
  echo "dpgw stats (after the dptun runs):"
  cat "$WORK/dpgw-stats.txt"
}
if [ -n "$OUT" ]; then report | tee "$OUT/report.txt"; else report; fi
echo
log "done in $((SECONDS - STARTED)) s"
