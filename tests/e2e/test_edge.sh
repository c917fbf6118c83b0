#!/usr/bin/env bash
# The edge role end to end: DPDK on both tunnel ends. A client reaches targets on an edge's LAN through
#   client ns -> concentrator dpgw (af_packet) -> underlay veth -> edge dpgw (af_packet, its own namespace)
#             -> LAN veth -> target ns (iperf3, nginx, stream_check.py, udp_probe.py)
# The edge is a static peer of the concentrator (session 1 and a key file in both configs). No kernel is on the path:
# the edge namespace's kernel has no address on either link and drops what arrives on them (dpgw takes its copy
# before), as a NIC bound to DPDK would; the target routes the edge's translated sources (100.64.0.0/16) to the edge's
# LAN address. iperf3 TCP both ways and UDP, a curl to nginx (which sees a translated source), byte-exact TCP both
# ways, UDP datagrams bigger than a frame both ways, a target's ICMP error back to the client, the edge restarted
# (SIGKILL) during a UDP stream (the concentrator takes the new process's frames: no nonce reused), the concentrator
# restarted, counters on both.
source "$(dirname "$0")/lib.sh"

NS_E=$DPT_PREFIX-edge
NS_T=$DPT_PREFIX-target
EXTRA_NETNS+=("$NS_E" "$NS_T")
EXTRA_DPDK_PREFIXES+=("$DPT_PREFIX-edge")
EDGE_UNDERLAY=$AGENT_IP  # 10.99.2.2: the underlay link's far end, the edge's now
EDGE_LAN=10.99.5.1
TARGET=10.99.5.2
CHECK="/usr/bin/python3 $ROOT/tests/e2e/stream_check.py"
PROBE="/usr/bin/python3 $ROOT/tests/e2e/udp_probe.py"

topology_up
# The underlay link's far end (a0, in the agent namespace) moves into the edge namespace, without its address; a new
# veth joins the edge to the target. The edge namespace's kernel keeps out of both links, as the gateway's does.
ip netns add "$NS_E"
ip netns add "$NS_T"
ip -n "$NS_A" link set a0 netns "$NS_E"
ip link add el netns "$NS_E" type veth peer name t0 netns "$NS_T"
for ns in "$NS_E" "$NS_T"; do
  ip -n "$ns" link set lo up
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
done
for pair in "$NS_E a0" "$NS_E el" "$NS_T t0"; do
  set -- $pair
  ip -n "$1" link set "$2" up
  ip netns exec "$1" ethtool -K "$2" tx off tso off gso off gro off > /dev/null 2>&1 || true
done
ip netns exec "$NS_E" nft -f - <<NFT
table netdev dptun_dpdk_owned {
  chain a0 { type filter hook ingress device "a0" priority 0; policy drop; }
  chain el { type filter hook ingress device "el" priority 0; policy drop; }
}
NFT
ip -n "$NS_T" addr add "$TARGET/24" dev t0
ip -n "$NS_T" route add 100.64.0.0/16 via "$EDGE_LAN"

# The concentrator: tunnel "edge" with the edge as static peer 1, entry points to the targets.
GW_STATIC=0 write_gw_conf 1 false
cat >> "$WORK/gw.conf" <<CONF
tunnels = ( { id = "$TUNNEL_ID"; name = "edge"; peers = ( { index = 1; psk_file = "$WORK/psk"; } ); } );
entry_points = (
  { proto = "tcp"; port = 5201; tunnel = "edge"; target = "$TARGET:5201"; },
  { proto = "udp"; port = 5201; tunnel = "edge"; target = "$TARGET:5201"; keepalive = true; },
  { proto = "tcp"; port = 80;   tunnel = "edge"; target = "$TARGET:80"; },
  { proto = "tcp"; port = 5400; tunnel = "edge"; target = "$TARGET:5400"; },
  { proto = "udp"; port = 5401; tunnel = "edge"; target = "$TARGET:5401"; keepalive = true; },
  { proto = "udp"; port = 5402; tunnel = "edge"; target = "$TARGET:5402"; }
);
CONF
# The edge: dpgw with an underlay port and a LAN port, and the edge section.
cat > "$WORK/edge.conf" <<CONF
dpgw = {
  workers = 1;
  eal = { memory_mb = 512; hugepages = false; file_prefix = "$DPT_PREFIX-edge"; log_level = "*:notice"; };
  ports = (
    { name = "underlay"; device = "net_af_packet0,iface=a0,framecnt=2048"; address = "$EDGE_UNDERLAY/24"; },
    { name = "lan"; device = "net_af_packet1,iface=el,framecnt=2048"; address = "$EDGE_LAN/24"; }
  );
  idle = { backoff = true; max_sleep_us = 100; };
  control_socket = "$WORK/edge.sock";
  metrics_listen = "";
};
edge = {
  concentrator = "$GW_UNDERLAY:51900";
  session = 1;
  psk_file = "$WORK/psk";
  underlay_port = "underlay";
  lan_port = "lan";
  snat_net = "100.64.0.0/16";
  keepalive = 1;
};
CONF

edge_stats() { "$DPGW" stats --socket "$WORK/edge.sock" --json; }
start_edge() {  # start_edge LOGNAME
  ip netns exec "$NS_E" "$DPGW" --config "$WORK/edge.conf" > "$WORK/$1.out" 2> "$WORK/$1.log" &
  EDGE_PID=$!
  PIDS+=("$EDGE_PID")
  for _ in $(seq 1 100); do
    edge_stats > /dev/null 2>&1 && return 0
    kill -0 "$EDGE_PID" 2>/dev/null || fail "the edge dpgw exited during start-up"
    sleep 0.2
  done
  fail "the edge's stats socket did not come up within 20 s"
}
edge_up() { edge_stats | jq -e '.edge.up' > /dev/null; }
concentrator_sees_edge() {
  gw_stats | jq -e --arg ep "$EDGE_UNDERLAY:51900" \
    '.tunnels[0].sessions[0] | .live and .endpoint == $ep and .last_rx_age_s != null and .last_rx_age_s < 2' > /dev/null
}

log "the config is checked without starting anything"
"$DPGW" --config "$WORK/edge.conf" --check > /dev/null || fail "the edge config does not pass --check"

start_gw
start_edge edge
wait_for 15 "the edge hears the concentrator (keepalives answered)" edge_up
wait_for 10 "the concentrator has the edge's endpoint and marks the session live" concentrator_sees_edge
wait_for 5 "the edge logs the tunnel coming up" grep -q "edge: concentrator $GW_UNDERLAY:51900 answered: tunnel up" \
  "$WORK/edge.log"

log "no kernel on the edge's path: no address on its links, no forwarding"
[ -z "$(ip -n "$NS_E" -4 addr show scope global)" ] || fail "the edge namespace's kernel has an address"
[ "$(ip netns exec "$NS_E" sysctl -n net.ipv4.ip_forward)" = 0 ] || fail "the edge namespace forwards"

log "the target reaches the edge's LAN address (ARP and ICMP echo answered by the edge dpgw)"
ip netns exec "$NS_T" ping -c 2 -i 0.2 -W 2 "$EDGE_LAN" > /dev/null || fail "no echo reply from $EDGE_LAN"

ip netns exec "$NS_T" iperf3 -s -J -B "$TARGET" > "$WORK/iperf3-server.log" 2>&1 &
PIDS+=("$!")
mkdir -p "$WORK/www"
head -c 3000000 /dev/urandom > "$WORK/www/blob"
start_nginx "$NS_T" <<NGINX
  server {
    listen $TARGET:80;
    root $WORK/www;
    location = /whoami { default_type text/plain; return 200 "\$remote_addr:\$remote_port\n"; }
  }
NGINX
wait_for 10 "iperf3 and nginx on the target" \
  ip netns exec "$NS_T" bash -c "ss -ltn | grep -q '$TARGET:5201 ' && ss -ltn | grep -q '$TARGET:80 '"

log "iperf3 TCP client -> target, 3 s"
iperf_client "$WORK/tcp.json" -c "$GW_PUBLIC" -t 3
rx=$(json_get "$WORK/tcp.json" '.end.sum_received.bytes')
[ "$rx" -gt 0 ] || fail "TCP: the target received $rx bytes"
log "  received $rx bytes ($(json_get "$WORK/tcp.json" '.end.sum_received.bits_per_second / 1e6 | floor') Mbit/s)"
mss=$(json_get "$WORK/tcp.json" '.start.tcp_mss_default // 0')
[ "$mss" -gt 0 ] && [ "$mss" -le 1388 ] || fail "client connection MSS is $mss, expected <= 1388"

log "iperf3 TCP target -> client (-R), 3 s"
iperf_client "$WORK/tcp-r.json" -c "$GW_PUBLIC" -t 3 -R
rx=$(json_get "$WORK/tcp-r.json" '.end.sum_received.bytes')
[ "$rx" -gt 0 ] || fail "TCP -R: the client received $rx bytes"
log "  received $rx bytes ($(json_get "$WORK/tcp-r.json" '.end.sum_received.bits_per_second / 1e6 | floor') Mbit/s)"

log "iperf3 UDP 50 Mbit/s, 3 s"
iperf_client "$WORK/udp.json" -c "$GW_PUBLIC" -u -b 50M -t 3
rx=$(json_get "$WORK/udp.json" '.end.sum.bytes')
lost=$(json_get "$WORK/udp.json" '.end.sum.lost_percent')
log "  sent $rx bytes, lost ${lost}%"
[ "$rx" -gt 0 ] || fail "UDP: no bytes"
awk -v l="$lost" 'BEGIN { exit !(l < 10) }' || fail "UDP loss ${lost}% >= 10%"

log "curl to nginx on the target: the target sees a translated source in 100.64.0.0/16; a 3 MB file byte for byte"
who=$(timeout 20 ip netns exec "$NS_C" curl -sS --max-time 10 "http://$GW_PUBLIC/whoami") || fail "curl /whoami failed"
log "  nginx saw the client as $who"
[[ "$who" =~ ^100\.64\.[0-9]+\.[0-9]+:[0-9]+$ ]] || fail "nginx saw '$who', not a translated source"
port=${who##*:}
[ "$port" -ge 32768 ] || fail "translated port $port below 32768"
timeout 30 ip netns exec "$NS_C" curl -sS --max-time 20 -o "$WORK/blob.got" "http://$GW_PUBLIC/blob" ||
  fail "curl /blob failed"
cmp -s "$WORK/www/blob" "$WORK/blob.got" || fail "the file curl got differs from nginx's"

log "byte-exact TCP: 20 MB client -> target, 20 MB target -> client"
ip netns exec "$NS_T" $CHECK tcp-sink "$TARGET" 5400 > "$WORK/sink.out" &
sink=$!
sleep 0.5
timeout 60 ip netns exec "$NS_C" $CHECK tcp-put "$GW_PUBLIC" 5400 20000000 7 > "$WORK/put.out" || fail "tcp-put failed"
wait "$sink" || fail "tcp-sink failed"
jq -e '.sha256 == .echoed' "$WORK/put.out" > /dev/null || fail "the target got other bytes: $(cat "$WORK/put.out")"
ip netns exec "$NS_T" $CHECK tcp-source "$TARGET" 5400 20000000 8 > /dev/null &
src=$!
sleep 0.5
timeout 60 ip netns exec "$NS_C" $CHECK tcp-get "$GW_PUBLIC" 5400 20000000 8 > "$WORK/get.out" || fail "tcp-get failed"
wait "$src" || fail "tcp-source failed"
jq -e '.ok and .received == 20000000' "$WORK/get.out" > /dev/null || fail "the client got other bytes: $(cat "$WORK/get.out")"

log "UDP datagrams bigger than a frame, both ways (inner fragments across the tunnel, IPv4 fragments on the LAN)"
# 1900 bytes: the client's kernel fragments them, af_packet hands them to the concentrator whole, which sends them in
# two frames; the edge puts them together and fragments them again for its LAN. The echoes take the opposite way.
ip netns exec "$NS_T" $PROBE echo "$TARGET" 5401 15 > "$WORK/echo.out" &
echo_pid=$!
sleep 0.5
timeout 60 ip netns exec "$NS_C" $PROBE ping "$GW_PUBLIC" 5401 200,1400,1900 20 > "$WORK/probe.out" || fail "udp ping failed"
log "  $(cat "$WORK/probe.out")"
jq -e '.sent == 60 and .intact >= 57 and .echoed == .intact' "$WORK/probe.out" > /dev/null ||
  fail "big datagrams did not come back intact: $(cat "$WORK/probe.out")"
kill "$echo_pid" 2>/dev/null || true
wait "$echo_pid" 2>/dev/null || true

log "a UDP port nobody listens on: the target's ICMP port unreachable comes back through both ends to the client"
answer=$(ip netns exec "$NS_C" python3 - "$GW_PUBLIC" 5402 <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.connect((sys.argv[1], int(sys.argv[2])))
s.send(b"anyone?")
try:
    s.recv(100)
    print("answer")
except ConnectionRefusedError:
    print("refused")
except socket.timeout:
    print("timeout")
PY
)
[ "$answer" = refused ] || fail "the client's UDP socket heard '$answer', not refused"
edge_stats | jq -e '.edge.icmp_errors_forwarded >= 1' > /dev/null || fail "the edge did not count the ICMP error it passed on"
gw_stats | jq -e '.tunnels[0].targets_unreachable >= 1' > /dev/null || fail "the concentrator did not count the target as unreachable"

log "counters on both ends show the traffic"
gw_stats > "$WORK/gw-stats.out"
edge_stats > "$WORK/edge-stats.out"
jq -e '.tunnels[0].to_agent_packets > 10000 and .tunnels[0].from_agent_packets > 10000 and .totals.drops.auth_fail == 0
       and .totals.drops.replay == 0 and .totals.drops.stale_counter == 0 and .totals.drops.flow_mismatch == 0' \
  "$WORK/gw-stats.out" > /dev/null ||
  fail "unexpected concentrator counters: $(jq -c '{t: .tunnels[0], d: .totals.drops}' "$WORK/gw-stats.out")"
jq -e '.edge.from_concentrator_packets > 10000 and .edge.to_concentrator_packets > 10000 and .edge.auth_fail == 0
       and .edge.keepalives_tx > 0 and .edge.keepalives_rx > 0 and .totals.drops.no_snat == 0
       and .totals.drops.bad_inner == 0 and .totals.drops.frame_malformed == 0
       and .workers[0].inner_frag_reassembled > 0 and .workers[0].fragments_tx > 0' \
  "$WORK/edge-stats.out" > /dev/null ||
  fail "unexpected edge counters: $(jq -c '{e: .edge, d: .totals.drops, w: .workers[0]}' "$WORK/edge-stats.out")"
log "  concentrator: to edge $(jq .tunnels[0].to_agent_packets "$WORK/gw-stats.out"), from edge" \
  "$(jq .tunnels[0].from_agent_packets "$WORK/gw-stats.out"); edge: from concentrator" \
  "$(jq .edge.from_concentrator_packets "$WORK/edge-stats.out"), to it $(jq .edge.to_concentrator_packets "$WORK/edge-stats.out")"
"$DPGW" stats --socket "$WORK/edge.sock" | matches "^edge: session 1 to concentrator $GW_UNDERLAY:51900, up" ||
  fail "dpgw stats (text) has no edge line"

log "the edge killed (SIGKILL) and restarted during a UDP stream: the concentrator takes its new frames"
before=$(gw_stats | jq '.tunnels[0].from_agent_packets')
timeout 60 ip netns exec "$NS_C" iperf3 -J -c "$GW_PUBLIC" -u -b 10M -t 9 --get-server-output \
  > "$WORK/udp-restart.json" 2> "$WORK/udp-restart.err" &
client=$!
sleep 2.5
kill -9 "$EDGE_PID"
wait "$EDGE_PID" 2>/dev/null || true
rm -f "$WORK/edge.sock"
start_edge edge2
wait "$client" || { cat "$WORK/udp-restart.err" >&2; fail "iperf3 UDP failed across the edge restart"; }
jq -c '[.server_output_json.intervals[].sum.bytes]' "$WORK/udp-restart.json" > "$WORK/udp-restart-intervals.out"
log "  target bytes per second: $(cat "$WORK/udp-restart-intervals.out")"
jq -e '[.server_output_json.intervals[5:8][].sum.bytes] | length == 3 and all(. > 0)' "$WORK/udp-restart.json" \
  > /dev/null || fail "UDP did not resume after the edge restart"
# The restarted edge counts from the wall clock one epoch ahead: its counters are above everything the first process
# sent, so the concentrator's replay window (which outlived the edge) refuses none, and no nonce is used twice.
gw_stats > "$WORK/gw-stats2.out"
jq -e --argjson before "$before" '.tunnels[0].from_agent_packets > $before and .totals.drops.replay == 0 and
       .totals.drops.stale_counter == 0 and .totals.drops.auth_fail == 0' "$WORK/gw-stats2.out" > /dev/null ||
  fail "the concentrator refused the restarted edge: $(jq -c '{t: .tunnels[0], d: .totals.drops}' "$WORK/gw-stats2.out")"
iperf_client "$WORK/tcp-after.json" -c "$GW_PUBLIC" -t 1
[ "$(json_get "$WORK/tcp-after.json" '.end.sum_received.bytes')" -gt 0 ] || fail "no TCP after the edge restart"

log "the concentrator restarted under the edge: the tunnel comes back by itself"
stop_gw
mv "$WORK/dpgw.log" "$WORK/dpgw-first-run.log"
start_gw
wait_for 15 "the concentrator hears the edge again" concentrator_sees_edge
wait_for 15 "the edge hears the concentrator again" edge_up
iperf_client "$WORK/tcp-gw-restart.json" -c "$GW_PUBLIC" -t 1
[ "$(json_get "$WORK/tcp-gw-restart.json" '.end.sum_received.bytes')" -gt 0 ] || fail "no TCP after the concentrator restart"
gw_stats | jq -e '.totals.drops.auth_fail == 0' > /dev/null || fail "authentication failures after the restart"
edge_stats | jq -e '.edge.auth_fail == 0' > /dev/null || fail "the edge counted authentication failures"
log "PASS"
