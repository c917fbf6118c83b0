#!/usr/bin/env bash
# The QUIC framing end to end (issue 11): dpctld in the gateway namespace with agent_quic_listen on dpgw's underlay
# address, UDP/443 (agents reach it through dpgw's kernel path); `dpctl tunnel add` prints the dpagent
# --transport quic command; that agent registers over QUIC, dpctld hands the connection over to dpgw, and iperf3
# TCP and UDP cross the tunnel as QUIC DATAGRAM frames (dpagent's ngtcp2 on one end checks every packet dpgw
# writes). The agent's counters say DATAGRAM frames, never relay frames; dpgw's say the session is QUIC. dpgw updates
# its keys every 50000 packets it sends (quic_key_update_packets, lowered from 2^22: RFC 9001 6), many times during
# the transfers, and the agent's ngtcp2 follows each (or the connection would end and the transfers with it).
# dpgw holds every connection ID dpctld issued the agent (4) and the agent's limits (max_udp_payload_size,
# max_datagram_frame_size). UDP datagrams toward the agent bigger than one QUIC packet leave as inner IPv4
# fragments, one DATAGRAM frame each, and arrive whole; with DF set they get frag-needed saying 1430 (the QUIC
# budget on a 1500-byte underlay). When dpgw restarts, it forgets the connection; the agent's next packets reach
# dpctld through the new dpgw's kernel path, dpctld answers with a Stateless Reset (RFC 9000 10.3) and the agent
# registers again at its next packet (ngtcp2 probes with backoff), not after its silence timeout (the keepalive is 4 s
# here: 16 s of silence).
source "$(dirname "$0")/lib.sh"
PROBE="/usr/bin/python3 $ROOT/tests/e2e/udp_probe.py"

topology_up
bash "$ROOT/tests/e2e/pki.sh" "$WORK/pki" "$GW_UNDERLAY"
GW_STATIC=0 GW_KERNEL_IF=dpgw-under write_gw_conf 1 false
sed -i 's|^  control_socket = |  quic_key_update_packets = 50000;\n  control_socket = |' "$WORK/gw.conf"
DPCTLD_QUIC_LISTEN="$GW_UNDERLAY:443" write_dpctld_conf "$GW_UNDERLAY:7443"
sed -i 's|^  keepalive = .*|  keepalive = 4;|' "$WORK/dpctld.conf"
metric() {  # metric 'NAME{LABELS}' -> value (dpctld's)
  ip netns exec "$NS_G" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9108; printf "GET /metrics HTTP/1.0\r\n\r\n" >&3; cat <&3' |
    W="$1" awk '$1 == ENVIRON["W"] { print $2 }'
}
start_gw
start_dpctld "$NS_G"
gateway_connected() { dpctl --json stats | jq -e '.gateway_connected' > /dev/null; }
wait_for 10 "dpctld connected to dpgw" gateway_connected
agent_stats() {
  kill -USR1 "$AGENT_PID"
  sleep 0.3
  tail -1 "$WORK/agent.out"
}

log "dpctl tunnel add prints a dpagent --transport quic command; it registers over QUIC and dpgw takes the connection"
dpctl tunnel add iperf --allow CN=agent-1 > "$WORK/add.txt"
cmd=$(grep -E '^  dpagent --transport quic ' "$WORK/add.txt" | sed 's/^  //')
[ -n "$cmd" ] || fail "tunnel add printed no dpagent --transport quic command: $(cat "$WORK/add.txt")"
echo "$cmd" | matches -- "--server $GW_UNDERLAY:443 " || fail "dpagent command: $cmd"
cmd=${cmd//AGENT.pem/$WORK/pki/agent1.pem}
cmd=${cmd//AGENT.key/$WORK/pki/agent1.key}
dpctl entry add tcp 5201 iperf "$AGENT_IP:5201" > /dev/null
dpctl entry add udp 5201 iperf "$AGENT_IP:5201" > /dev/null
start_iperf_server
# shellcheck disable=SC2086
ip netns exec "$NS_A" "$BUILD/agent/"$cmd --name agent-1 > "$WORK/agent.out" 2> "$WORK/agent.log" &
AGENT_PID=$!
PIDS+=("$AGENT_PID")
wait_for 15 "the agent registered" grep -q "registered with dpctld" "$WORK/agent.log"
matches "data as QUIC DATAGRAM frames" < "$WORK/agent.log" ||
  fail "dpctld did not hand the QUIC connection over: $(grep -m1 'registered with dpctld' "$WORK/agent.log")"
session_quic() { gw_stats | jq -e '[.tunnels[].sessions[] | select(.framing == "quic")] | length > 0' > /dev/null; }
wait_for 10 "a QUIC session at dpgw" session_quic
wait_for 10 "the agent hearing the gateway over QUIC" grep -q "answers (session" "$WORK/agent.log"
# Every connection ID dpctld issued (dpagent keeps 4), and the agent's limits: its max_udp_payload_size 9216 less
# the 42 bytes around an inner packet.
session=$(gw_stats | jq -c '[.tunnels[].sessions[] | select(.framing == "quic")][0]')
log "  dpgw: $(jq -c '{index, quic_connection_ids, quic_max_packet}' <<< "$session")"
jq -e '.quic_connection_ids == 4 and .quic_max_packet == 9174' <<< "$session" > /dev/null ||
  fail "dpgw's QUIC session lacks the connection IDs or the agent's limits: $session"

log "iperf3 TCP through the QUIC-framed tunnel, both directions"
iperf_client "$WORK/tcp.json" -c "$GW_PUBLIC" -p 5201 -t 3
up=$(json_get "$WORK/tcp.json" '.end.sum_received.bits_per_second')
iperf_client "$WORK/tcp-r.json" -c "$GW_PUBLIC" -p 5201 -t 3 -R
down=$(json_get "$WORK/tcp-r.json" '.end.sum_received.bits_per_second')
log "  client -> target $(awk -v b="$up" 'BEGIN { printf "%d", b / 1e6 }') Mbit/s, target -> client $(awk -v b="$down" 'BEGIN { printf "%d", b / 1e6 }') Mbit/s"
awk -v a="$up" -v b="$down" 'BEGIN { exit !(a > 1e6 && b > 1e6) }' || fail "TCP through the QUIC tunnel: $up / $down bit/s"

log "iperf3 UDP through the QUIC-framed tunnel (1200-byte datagrams), both directions"
iperf_client "$WORK/udp.json" -c "$GW_PUBLIC" -p 5201 -u -b 20M -l 1200 -t 3
iperf_client "$WORK/udp-r.json" -c "$GW_PUBLIC" -p 5201 -u -b 20M -l 1200 -t 3 -R
for f in udp udp-r; do
  pkts=$(json_get "$WORK/$f.json" '.end.sum.packets')
  lost=$(json_get "$WORK/$f.json" '.end.sum.lost_packets')
  log "  $f: $lost of $pkts datagrams lost"
  [ "$pkts" -gt 1000 ] && [ "$lost" -lt $((pkts / 10)) ] || fail "UDP $f through the QUIC tunnel: $lost of $pkts lost"
done

# From the agent only: its TUN's MTU makes the kernel fragment the replies, the agent puts them together and sends
# inner fragments of its own, which dpgw reassembles (toward the agent, af_packet's fanout in this topology would
# hand dpgw the client's datagrams reassembled and cut: test_fragments.sh uses a TAP for that).
log "iperf3 UDP of 3000-byte datagrams from the target (bigger than a packet: inner fragments from the agent)"
iperf_client "$WORK/udpbig-r.json" -c "$GW_PUBLIC" -p 5201 -u -b 10M -l 3000 -t 3 -R
pkts=$(json_get "$WORK/udpbig-r.json" '.end.sum.packets')
lost=$(json_get "$WORK/udpbig-r.json" '.end.sum.lost_packets')
log "  $lost of $pkts datagrams lost"
[ "$pkts" -gt 500 ] && [ "$lost" -lt $((pkts / 10)) ] || fail "3000-byte UDP through the QUIC tunnel: $lost of $pkts lost"
"$DPGW" stats --socket "$WORK/dpgw.sock" | matches "from agents [1-9][0-9]* ([1-9][0-9]* datagrams" ||
  fail "dpgw reassembled no inner fragments from the agent"

log "UDP toward the agent bigger than a QUIC packet (a 1500-byte IP packet, DF clear): inner fragments, one DATAGRAM each, delivered whole"
dpctl entry add udp 5300 iperf "$AGENT_IP:5300" > /dev/null
frag_tx0=$(gw_stats | jq '[.workers[].fragments_tx] | add')
ip netns exec "$NS_A" timeout 20 $PROBE recv "$AGENT_IP" 5300 4 > "$WORK/recv-nodf.out" &
recv=$!
sleep 0.5
ip netns exec "$NS_C" timeout 20 $PROBE send "$GW_PUBLIC" 5300 1472 20 nodf > "$WORK/send-nodf.out"
wait "$recv" || true
log "  sender: $(cat "$WORK/send-nodf.out")  receiver: $(cat "$WORK/recv-nodf.out")"
jq -e '.datagrams >= 18 and .sizes == [1472]' "$WORK/recv-nodf.out" > /dev/null || fail "datagrams not delivered whole"
frag_tx=$(( $(gw_stats | jq '[.workers[].fragments_tx] | add') - frag_tx0 ))
[ "$frag_tx" -ge 36 ] || fail "dpgw sent $frag_tx inner fragments for 20 datagrams"
log "the same with DF set: frag-needed tells the client the QUIC tunnel's MTU, 1430"
ip netns exec "$NS_C" ip route flush cache
ip netns exec "$NS_C" timeout 20 $PROBE send "$GW_PUBLIC" 5300 1472 5 df > "$WORK/send-df.out"
log "  sender: $(cat "$WORK/send-df.out")"
jq -e '.emsgsize >= 1' "$WORK/send-df.out" > /dev/null || fail "the client never learned the smaller path MTU"
ip netns exec "$NS_C" ip route get "$GW_PUBLIC" | matches "mtu 1430" ||
  fail "client route has no mtu 1430: $(ip netns exec "$NS_C" ip route get "$GW_PUBLIC")"

log "the agent's counters: DATAGRAM frames both ways, no relay frames"
stats=$(agent_stats)
echo "$stats" | jq -e '.framing == "quic" and .datagrams_tx > 1000 and .datagrams_rx > 1000 and .frames_tx == 0 and
  .frames_rx == 0 and .datagram_drops.too_big == 0 and .quic.packets_rx > 0 and .fragments_tx > 0' > /dev/null ||
  fail "agent counters: $stats"
log "  $(echo "$stats" | jq -c '{datagrams_tx, datagrams_rx, datagram_drops, quic}')"
kill -0 "$AGENT_PID" 2>/dev/null || fail "dpagent died"
kill -0 "$GW_PID" 2>/dev/null || fail "dpgw died"
own=$(gw_stats | jq '[.workers[].quic_key_updates_tx] | add')
gens=$(gw_stats | jq -c '[.tunnels[].sessions[] | select(.framing == "quic") | [.quic_rx_generation, .quic_tx_generation]][0]')
log "  dpgw started $own key updates of its own during the transfers; the session's key generations (receive, transmit): $gens"
[ "$own" -ge 2 ] || fail "dpgw started $own key updates"

log "dpgw restarts: dpctld answers the agent's next packets with a Stateless Reset, the agent registers again at once, and dpgw takes the new connection"
resets0=$(metric 'dptun_agent_quic_stateless_resets_total{result="sent"}')
t0=$(date +%s.%N)
stop_gw
start_gw
wait_for 20 "the agent hearing the reset" grep -q "ended: a Stateless Reset from the server" "$WORK/agent.log"
log "  agent: $(grep -m1 'ended: a Stateless Reset' "$WORK/agent.log" | sed 's/^.*dpagent [a-z]*: //')"
! grep -q "carrying the tunnel's data: nothing heard for" "$WORK/agent.log" ||
  fail "the agent went by its silence timeout, not by a reset: $(grep 'nothing heard for' "$WORK/agent.log")"
wait_for 20 "a second hand-over" bash -c "[ \$(grep -c 'data as QUIC DATAGRAM frames on this connection' '$WORK/agent.log') -ge 2 ]"
t1=$(date +%s.%N)
resets=$(( $(metric 'dptun_agent_quic_stateless_resets_total{result="sent"}') - resets0 ))
stats=$(agent_stats)
log "  dpctld sent $resets Stateless Reset(s); the agent counts $(echo "$stats" | jq '.quic.stateless_resets')"
[ "$resets" -ge 1 ] && echo "$stats" | jq -e '.quic.stateless_resets == 1' > /dev/null ||
  fail "resets: dpctld $resets, agent $(echo "$stats" | jq -c .quic)"
iperf_client "$WORK/tcp2.json" -c "$GW_PUBLIC" -p 5201 -t 2
log "  registered again $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s after dpgw was stopped; then TCP $(json_get "$WORK/tcp2.json" '.end.sum_received.bits_per_second' | awk '{ printf "%d", $1 / 1e6 }') Mbit/s"
kill -0 "$AGENT_PID" 2>/dev/null || fail "dpagent died"
log PASS
