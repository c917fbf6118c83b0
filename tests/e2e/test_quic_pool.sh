#!/usr/bin/env bash
# QUIC-framed agents among others (issue 11); test_quic_framing.sh has the QUIC framing's own throughput, sizes and
# dpgw restart. Here, with dpctld in the gateway namespace on dpgw's underlay address (TCP 7443, UDP 443 through the
# kernel path):
#  - hostname routing over a QUIC-framed tunnel: HTTP Host (:80), TLS SNI (:443) and the SNI of a client's QUIC
#    Initial (UDP :443 on the public address, next to the agents' QUIC on the underlay's), against nginx and
#    ngtcp2's HTTP/3 server behind the agent;
#  - a pool mixing a QUIC agent and a relay agent: flows go to both;
#  - the QUIC agent SIGKILLed: the relay agent takes new flows; restarted with the same command, it registers again
#    over QUIC and carries the tunnel alone;
#  - the agent's NAT rebinding twice (nftables in its namespace rewrites its source port) during a UDP stream: dpgw
#    validates each new address (PATH_CHALLENGE, the agent's ngtcp2 answers PATH_RESPONSE) and only then moves the
#    session's endpoint there; the stream goes on;
#  - an on-path rewrite of the agent's source port whose return path is cut (nftables drops what dpgw sends to the
#    new port): the validation fails (counted), the endpoint stays on the old address and the stream goes on there;
#  - hostile datagrams to UDP/443 from the agent's host (quic_hostile.py): truncated, garbage, the session's index
#    with another connection-ID tail, the agent's captured packets replayed and tampered, long headers: counted
#    (or passed to dpctld's port), the session neither moved nor ended, traffic goes on;
#  - the QUIC agent stopped with SIGTERM: its CONNECTION_CLOSE ends its session in dpgw (counted), dpctld hears it in
#    dpgw's next status (not by its rule for sessions missing from dpgw), the pool's relay agent serves on.
source "$(dirname "$0")/lib.sh"

topology_up
bash "$ROOT/tests/e2e/pki.sh" "$WORK/pki" "$GW_UNDERLAY"
GW_STATIC=0 GW_SESSION_TIMEOUT=1.5 GW_KERNEL_IF=dpgw-under write_gw_conf 1 false
DPCTLD_QUIC_LISTEN="$GW_UNDERLAY:443" write_dpctld_conf "$GW_UNDERLAY:7443"

gateway_connected() { dpctl --json stats | jq -e '.gateway_connected' > /dev/null; }
# gw_session FRAMING: dpgw's live session with that framing (JSON), or nothing
gw_session() { gw_stats | jq -c --arg f "$1" '[.tunnels[].sessions[] | select(.framing == $f and .live)] | first // empty'; }
qc() { gw_stats | jq -r ".quic_control.$1"; }  # a counter of dpgw's QUIC slow path
metric() {  # metric NAME -> dpctld's value
  ip netns exec "$NS_G" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9108; printf "GET /metrics HTTP/1.0\r\n\r\n" >&3; cat <&3' |
    W="$1" awk '$1 == ENVIRON["W"] { print $2 }'
}
live_framing() { [ -n "$(gw_session "$1")" ]; }
not_live() { ! live_framing "$1"; }

start_gw
start_dpctld "$NS_G"
wait_for 10 "dpctld connected to dpgw" gateway_connected
dpctl tunnel add web --allow CN=agent-1 --allow CN=agent-2 > "$WORK/add.txt"
qcmd=$(grep -E '^  dpagent --transport quic ' "$WORK/add.txt" | sed 's/^  //' || true)
rcmd=$(grep -E '^  dpagent --server ' "$WORK/add.txt" | sed 's/^  //' || true)
[ -n "$qcmd" ] && [ -n "$rcmd" ] || fail "tunnel add did not print both commands: $(cat "$WORK/add.txt")"
dpctl tunnel show web | matches -- "--transport quic --server $GW_UNDERLAY:443" || fail "tunnel show: no QUIC command"

# run_agent NAME CERT COMMAND: a command dpctl printed, with that agent's certificate; sets AGENT_PID
run_agent() {
  local name=$1 cert=$2 cmd=$3
  cmd=${cmd//AGENT.pem/$WORK/pki/$cert.pem}
  cmd=${cmd//AGENT.key/$WORK/pki/$cert.key}
  # shellcheck disable=SC2086
  ip netns exec "$NS_A" "$BUILD/agent/"$cmd --name "$name" --keepalive 0.5 >> "$WORK/$name.out" 2>> "$WORK/$name.log" &
  AGENT_PID=$!
  PIDS+=("$AGENT_PID")
}

# Services behind the agent: nginx (HTTP, HTTPS), ngtcp2's HTTP/3 server, iperf3.
mkdir -p "$WORK/htdocs"
echo "backend over quic" > "$WORK/htdocs/index.html"
start_nginx "$NS_A" <<NGINX
  ssl_certificate $WORK/pki/server.pem;
  ssl_certificate_key $WORK/pki/server.key;
  server { listen $AGENT_IP:80; listen $AGENT_IP:443 ssl; location = / { return 200 "backend \$scheme\n"; } }
NGINX
ip netns exec "$NS_A" gtlsserver -q -d "$WORK/htdocs" "$AGENT_IP" 4431 "$WORK/pki/server.key" "$WORK/pki/server.pem" \
  > "$WORK/h3-server.log" 2>&1 &
PIDS+=("$!")
start_iperf_server

log "a QUIC agent (the printed command) registers; dpgw serves its connection"
run_agent agent-q agent1 "$qcmd"
Q_PID=$AGENT_PID
wait_for 20 "a live QUIC session at dpgw" live_framing quic
dpctl --json session list | jq -e '.sessions[0].framing == "quic"' > /dev/null ||
  fail "dpctl session list: $(dpctl --json session list | jq -c .sessions)"

log "hostname routing over the QUIC-framed tunnel: HTTP Host, TLS SNI, QUIC SNI"
dpctl entry add tcp 80 --route http > /dev/null
dpctl entry add tcp 443 --route sni > /dev/null
dpctl entry add udp 443 --route quic --listen "$GW_PUBLIC" --keepalive --ttl 30 > /dev/null
dpctl ingress add app.example web --target "$AGENT_IP" > /dev/null
dpctl ingress add h3.example web --target "$AGENT_IP:4431" > /dev/null
rules() { [ "$(gw_stats | jq '.ingress.rules // 0')" -eq 2 ]; }
wait_for 10 "dpgw compiled the rules" rules
get() {
  local port=80; [ "$1" = https ] && port=443
  timeout 20 ip netns exec "$NS_C" curl -sk --max-time 15 --resolve "$2:$port:$GW_PUBLIC" "$1://$2/"
}
[ "$(get http app.example)" = "backend http" ] || fail "HTTP Host app.example: '$(get http app.example)'"
[ "$(get https app.example)" = "backend https" ] || fail "TLS SNI app.example: '$(get https app.example)'"
netns_hosts "$NS_C" "$GW_PUBLIC h3.example"
rm -rf "$WORK/dl" && mkdir -p "$WORK/dl"
timeout 15 ip netns exec "$NS_C" gtlsclient -q --no-pmtud --max-udp-payload-size=1200 --handshake-timeout=3s \
  --exit-on-all-streams-close --download="$WORK/dl" h3.example 443 "https://h3.example/index.html" \
  > "$WORK/h3-client.log" 2>&1 || true
[ "$(cat "$WORK/dl/index.html" 2>/dev/null)" = "backend over quic" ] ||
  fail "HTTP/3 by QUIC SNI over the QUIC tunnel: $(tail -5 "$WORK/h3-client.log")"
[ -z "$(gw_session relay)" ] || fail "a relay session carried it: $(gw_stats | jq -c '[.tunnels[].sessions[]]')"
log "  http, https and HTTP/3 reached the services through the QUIC agent"

log "a pool mixing the QUIC agent and a relay agent: flows go to both"
dpctl entry add tcp 5201 web "$AGENT_IP:5201" > /dev/null
run_agent agent-r agent2 "$rcmd"
R_PID=$AGENT_PID
wait_for 20 "a live relay session at dpgw" live_framing relay
q0=$(gw_session quic | jq -r .flows_total)
r0=$(gw_session relay | jq -r .flows_total)
iperf_client "$WORK/pool.json" -c "$GW_PUBLIC" -t 2 -P 8
[ "$(json_get "$WORK/pool.json" '.end.sum_received.bytes')" -gt 0 ] || fail "TCP through the mixed pool"
q1=$(gw_session quic | jq -r .flows_total)
r1=$(gw_session relay | jq -r .flows_total)
[ "$q1" -gt "$q0" ] && [ "$r1" -gt "$r0" ] || fail "9 flows did not reach both agents: quic $q0 -> $q1, relay $r0 -> $r1"
log "  flows: QUIC agent +$((q1 - q0)), relay agent +$((r1 - r0))"

log "the QUIC agent SIGKILLed: the relay agent takes new flows; restarted, it registers again over QUIC"
kill -9 "$Q_PID"
wait_for 10 "the killed agent's session no longer live" not_live quic
iperf_client "$WORK/after_kill.json" -c "$GW_PUBLIC" -t 2
[ "$(json_get "$WORK/after_kill.json" '.end.sum_received.bytes')" -gt 0 ] || fail "TCP after the QUIC agent died"
run_agent agent-q agent1 "$qcmd"
Q_PID=$AGENT_PID
wait_for 20 "the restarted QUIC agent live" live_framing quic
kill "$R_PID"
wait_for 10 "the relay agent's session no longer live" not_live relay
q2=$(gw_session quic | jq -r .flows_total)
iperf_client "$WORK/restarted.json" -c "$GW_PUBLIC" -t 2
[ "$(json_get "$WORK/restarted.json" '.end.sum_received.bytes')" -gt 0 ] || fail "TCP through the restarted QUIC agent"
[ "$(gw_session quic | jq -r .flows_total)" -gt "$q2" ] || fail "the restarted QUIC agent carried no flow"
[ "$(get http app.example)" = "backend http" ] || fail "HTTP Host after the restart"

log "the agent's NAT rebinds twice during a UDP stream (nftables rewrites its source port): validated, then followed"
# The agent's QUIC socket: the one connected to dpgw's port 443.
qport=$(ip netns exec "$NS_A" ss -unpH "dst $GW_UNDERLAY:443" |
  awk -v a="$AGENT_IP:" '/dpagent/ { for (i = 1; i <= NF; i++) if (index($i, a) == 1) { print substr($i, length(a) + 1); exit } }')
[ -n "$qport" ] || fail "no dpagent socket to $GW_UNDERLAY:443: $(ip netns exec "$NS_A" ss -unp)"
# rebind PORT: the agent's packets to dpgw leave from PORT; dpgw's answers to PORT reach the socket (a NAT, stateless).
# Inbound the port is written as raw bytes: dpgw sends UDP checksum 0 (IPv4 allows it), which nft's "udp dport set"
# refuses to fix up (the rule would stop before the write); a zero checksum needs no fixing.
rebind() {
  ip netns exec "$NS_A" nft delete table ip dptun_rebind 2> /dev/null || true
  ip netns exec "$NS_A" nft -f - <<NFT
table ip dptun_rebind {
  chain out { type filter hook output priority 0; ip daddr $GW_UNDERLAY udp sport $qport udp dport 443 counter udp sport set $1; }
  chain in { type filter hook prerouting priority 0; ip saddr $GW_UNDERLAY udp sport 443 udp dport $1 counter @th,16,16 set $qport; }
}
NFT
}
dpctl entry add udp 5201 web "$AGENT_IP:5201" --keepalive --ttl 30 > /dev/null
changes0=$(gw_session quic | jq -r .endpoint_changes)
challenges0=$(qc quic_path_challenges_tx) validated0=$(qc quic_paths_validated) failed0=$(qc quic_path_validation_failed)
timeout 30 ip netns exec "$NS_C" iperf3 -J -c "$GW_PUBLIC" -u -b 10M -l 1200 -t 8 > "$WORK/rebind.json" 2> "$WORK/rebind.err" &
IPERF=$!
sleep 2
rebind 40000
sleep 2
rebind 40001
wait "$IPERF" || fail "iperf3 UDP during the rebinding: $(cat "$WORK/rebind.err")"
s=$(gw_session quic)
[ "$(jq -r .endpoint <<< "$s")" = "$AGENT_IP:40001" ] || fail "dpgw did not follow the agent to port 40001: $s; $(ip netns exec "$NS_A" nft list ruleset)"
changes=$(( $(jq -r .endpoint_changes <<< "$s") - changes0 ))
validated=$(( $(qc quic_paths_validated) - validated0 )) challenges=$(( $(qc quic_path_challenges_tx) - challenges0 ))
[ "$changes" -ge 2 ] || fail "endpoint changes not counted: $s"
# Every move of the endpoint was a validated path: as many moves as validations, a PATH_CHALLENGE for each.
[ "$validated" -eq "$changes" ] && [ "$challenges" -ge "$validated" ] ||
  fail "the endpoint moved $changes times, $validated paths validated, $challenges PATH_CHALLENGEs"
[ "$(qc quic_path_validation_failed)" = "$failed0" ] || fail "a validation failed: $(gw_stats | jq -c .quic_control)"
grep -q "path to $AGENT_IP:40000 validated" "$WORK/dpgw.log" && grep -q "path to $AGENT_IP:40001 validated" "$WORK/dpgw.log" ||
  fail "no validation logged: $(grep -i path "$WORK/dpgw.log" | tail -5)"
pkts=$(json_get "$WORK/rebind.json" '.end.sum.packets')
lost=$(json_get "$WORK/rebind.json" '.end.sum.lost_packets')
# What dpgw sends to the old mapping until the agent's next packet (its ACKs stop with the traffic that reaches it,
# so at worst its next keep-alive PING, 0.5 s) is lost, as behind any NAT that forgets a mapping: about 6 % here.
[ "$pkts" -gt 1000 ] && [ "$lost" -lt $((pkts / 5)) ] || fail "UDP across the rebinding: $lost of $pkts lost"
log "  endpoint $AGENT_IP:$qport -> :40000 -> :40001 ($validated paths validated, $challenges PATH_CHALLENGEs); $lost of $pkts datagrams lost"
ip netns exec "$NS_A" nft delete table ip dptun_rebind
home() { [ "$(gw_session quic | jq -r .endpoint)" = "$AGENT_IP:$qport" ]; }
wait_for 10 "dpgw validated the agent's own port again" home
iperf_client "$WORK/after_rebind.json" -c "$GW_PUBLIC" -t 2
[ "$(json_get "$WORK/after_rebind.json" '.end.sum_received.bytes')" -gt 0 ] || fail "TCP after the rebinding"

log "an on-path rewrite to a port dpgw cannot reach: the validation fails, the endpoint stays, the stream goes on"
# The agent's packets leave from port 40002; what is sent to 40002 is dropped: dpgw's PATH_CHALLENGEs never arrive.
ip netns exec "$NS_A" nft -f - <<NFT
table ip dptun_blackhole {
  chain out { type filter hook output priority 0; ip daddr $GW_UNDERLAY udp sport $qport udp dport 443 counter udp sport set 40002; }
  chain in { type filter hook prerouting priority 0; ip saddr $GW_UNDERLAY udp sport 443 udp dport 40002 counter drop; }
}
NFT
challenges0=$(qc quic_path_challenges_tx) validated0=$(qc quic_paths_validated) failed0=$(qc quic_path_validation_failed)
changes0=$(gw_session quic | jq -r .endpoint_changes)
iperf_client "$WORK/blackhole.json" -c "$GW_PUBLIC" -u -b 5M -l 1200 -t 4
validation_failed() { [ "$(qc quic_path_validation_failed)" -gt "$failed0" ]; }
wait_for 10 "the validation of :40002 given up" validation_failed
s=$(gw_session quic)
[ "$(jq -r .endpoint <<< "$s")" = "$AGENT_IP:$qport" ] && [ "$(jq -r .endpoint_changes <<< "$s")" = "$changes0" ] ||
  fail "the endpoint moved to an address that never answered: $s"
[ "$(qc quic_paths_validated)" = "$validated0" ] && [ "$(qc quic_path_challenges_tx)" -gt "$challenges0" ] ||
  fail "challenges/validations: $(gw_stats | jq -c .quic_control)"
drops=$(ip netns exec "$NS_A" nft list table ip dptun_blackhole | awk '/drop/ { for (i = 1; i <= NF; i++) if ($i == "packets") print $(i + 1) }')
[ "${drops:-0}" -ge 1 ] || fail "no PATH_CHALLENGE reached the rewritten port (nft dropped none)"
pkts=$(json_get "$WORK/blackhole.json" '.end.sum.packets')
lost=$(json_get "$WORK/blackhole.json" '.end.sum.lost_packets')
[ "$pkts" -gt 500 ] && [ "$lost" -lt $((pkts / 20)) ] || fail "UDP while the rewritten port was unreachable: $lost of $pkts lost"
grep -q "path to $AGENT_IP:40002 not validated" "$WORK/dpgw.log" || fail "the failed validation was not logged"
log "  endpoint stayed $AGENT_IP:$qport; $(( $(qc quic_path_challenges_tx) - challenges0 )) PATH_CHALLENGEs to :40002 dropped on the way ($drops), validation failed; $lost of $pkts datagrams lost"
ip netns exec "$NS_A" nft delete table ip dptun_blackhole

log "hostile datagrams to UDP/443 next to the live session: counted, nothing moves, traffic goes on"
ip netns exec "$NS_A" timeout 10 tcpdump -nn -i a0 -c 8 -w "$WORK/agent.pcap" \
  "udp and src $AGENT_IP and src port $qport and dst $GW_UNDERLAY and dst port 443" > /dev/null 2>&1 &
TCPDUMP=$!
sleep 0.5
iperf_client "$WORK/capture.json" -c "$GW_PUBLIC" -u -b 1M -l 200 -t 1
wait "$TCPDUMP" || true
drop() { gw_stats | jq ".totals.drops.$1 // 0"; }
kernel() { gw_stats | jq '.ports[] | select(.name == "underlay") | .kernel_path.to_kernel_packets'; }
before=$(gw_session quic)
index=$(jq -r .index <<< "$before")
bad0=$(drop quic_bad_connection_id) replay0=$(drop replay) auth0=$(drop auth_fail) kernel0=$(kernel)
sent=$(ip netns exec "$NS_A" python3 "$ROOT/tests/e2e/quic_hostile.py" "$WORK/agent.pcap" "$GW_UNDERLAY" 443 "$index") ||
  fail "quic_hostile.py: $sent"
n=$(jq -r .replayed <<< "$sent")
sleep 0.5
bad=$(( $(drop quic_bad_connection_id) - bad0 )) replays=$(( $(drop replay) - replay0 )) auth=$(( $(drop auth_fail) - auth0 ))
kern=$(( $(kernel) - kernel0 ))
log "  sent $sent: quic_bad_connection_id +$bad, replay +$replays, auth_fail +$auth, to the kernel path +$kern"
[ "$bad" -ge "$(jq -r .wrong_dcid <<< "$sent")" ] || fail "wrong connection-ID tails: quic_bad_connection_id +$bad"
# (A captured packet's truncated packet number decodes against the session's newest: once the agent has sent a few
# hundred packets more, an exact copy decodes to a number not yet seen and fails authentication instead.)
[ $((replays + auth)) -ge $((3 * n)) ] || fail "$n captured packets sent 3 ways: replay +$replays, auth_fail +$auth"
[ "$kern" -ge $(( $(jq -r '.truncated + .long_header' <<< "$sent") )) ] ||
  fail "truncated and long-header datagrams not passed to the kernel path (dpctld's port): +$kern"
after=$(gw_session quic)
[ "$(jq -r .index <<< "$after")" = "$index" ] && [ "$(jq -r .endpoint <<< "$after")" = "$(jq -r .endpoint <<< "$before")" ] ||
  fail "the hostile datagrams moved the session: $before -> $after"
iperf_client "$WORK/after_hostile.json" -c "$GW_PUBLIC" -t 2
[ "$(json_get "$WORK/after_hostile.json" '.end.sum_received.bytes')" -gt 0 ] || fail "TCP after the hostile datagrams"

kill -0 "$Q_PID" 2>/dev/null || fail "the QUIC agent exited"

log "the QUIC agent stopped (SIGTERM): its CONNECTION_CLOSE ends the session at once, the relay agent serves on"
run_agent agent-r agent2 "$rcmd"
R_PID=$AGENT_PID
wait_for 20 "a live relay session at dpgw" live_framing relay
closes0=$(qc quic_connection_closes_rx) dropped0=$(metric dptun_agent_quic_sessions_dropped_total)
index=$(gw_session quic | jq -r .index)
kill "$Q_PID"
wait "$Q_PID" 2> /dev/null || true
session_gone() { [ "$(gw_stats | jq --argjson i "$index" '[.tunnels[].sessions[] | select(.index == $i)] | length')" = 0 ]; }
wait_for 10 "the QUIC session gone from dpgw" session_gone
[ "$(qc quic_connection_closes_rx)" = $((closes0 + 1)) ] || fail "dpgw did not end the session on CONNECTION_CLOSE: $(gw_stats | jq -c .quic_control)"
grep -q "session $index: the agent closed its QUIC connection (CONNECTION_CLOSE, application error 0x0" "$WORK/dpgw.log" ||
  fail "dpgw did not log the CONNECTION_CLOSE: $(grep CONNECTION_CLOSE "$WORK/dpgw.log")"
closed_at_dpctld() { [ "$(metric dptun_agent_quic_sessions_closed_total)" = 1 ]; }
wait_for 10 "dpctld told of the closed session" closed_at_dpctld
# dpctld learnt it from dpgw's status (quic_closed), not by its rule for handed-over sessions missing from dpgw.
[ "$(metric dptun_agent_quic_sessions_dropped_total)" = "$dropped0" ] || fail "dpctld dropped the session as missing"
[ "$(dpctl --json session list | jq --argjson i "$index" '[.sessions[] | select(.index == $i)] | length')" = 0 ] ||
  fail "dpctld still lists the QUIC session: $(dpctl --json session list | jq -c .sessions)"
iperf_client "$WORK/after_close.json" -c "$GW_PUBLIC" -t 2
[ "$(json_get "$WORK/after_close.json" '.end.sum_received.bytes')" -gt 0 ] || fail "TCP through the relay agent after the close"
[ "$(get http app.example)" = "backend http" ] || fail "HTTP Host through the relay agent after the close"
log "  session $index ended by CONNECTION_CLOSE at dpgw and at dpctld; the relay agent carries the tunnel"
log "  frames dpgw's slow path saw: $(gw_stats | jq -c '.quic_control.quic_frames_rx | with_entries(select(.value > 0))')"

kill -0 "$GW_PID" 2>/dev/null || fail "dpgw exited"
kill -0 "$DPCTLD_PID" 2>/dev/null || fail "dpctld exited"
log PASS
