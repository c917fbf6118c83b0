#!/usr/bin/env bash
# The QUIC framing's key hand-over (issue 11, docs/protocol.md "Key hand-over"): dpgw with quic_port 443 and a
# kernel path on its underlay port, dpctld in the gateway namespace with agent_quic_listen on dpgw's underlay
# address, port 443 (its QUIC handshakes reach it through the kernel path). A QUIC client (ngtcp2 + GnuTLS,
# tests/support/quic_register_client) registers from the agent namespace and gets "framing":"quic"; once it has
# acknowledged the reply, dpctld hands the connection to dpgw (its 1-RTT secrets, connection IDs) and forgets it
# without a CONNECTION_CLOSE. The client then sends PING-only 1-RTT packets on the same connection: dpgw knows the
# session under the index of the reply and opens them on its fast path (the tunnel's keepalives, the session's
# last_rx and endpoint) and acknowledges them (ngtcp2 at the client holds none of them in flight at the end, dpgw
# counts quic_acks_tx), and the client never hears a CONNECTION_CLOSE or a stateless reset. Meanwhile the client's
# ngtcp2 updates its keys (RFC 9001 6) every 1.5 s: dpgw follows each update (quic_key_updates_rx) and answers in
# the new keys, which ngtcp2 needs to confirm the update before it may start the next one. dpctld hands over every
# connection ID it issued (the client asks for 4): a client that migrates to a new port takes another of them as its
# DCID (RFC 9000 9.5, ngtcp2_conn_initiate_immediate_migration), and dpgw opens those packets too (no
# quic_bad_connection_id; it validates the new path and the session's endpoint moves there). Short headers of no connection at dpctld's socket get a Stateless
# Reset (RFC 9000 10.3), smaller than what triggered them (at least 21 bytes: none for packets of 21 or fewer), and no more than the rate; those
# of a session dpgw holds get nothing. A refused
# registration never reaches dpgw; the session of a killed client expires (dpctld and dpgw); a restarted dpgw
# does not get a handed-over session back (its packet numbers are lost with the old process): dpctld drops it, and
# the client's next packets, which the new dpgw's kernel path brings to dpctld, get a Stateless Reset that ends its
# connection.
source "$(dirname "$0")/lib.sh"
PKI=$WORK/pki

topology_up
bash "$ROOT/tests/e2e/pki.sh" "$PKI" "$GW_UNDERLAY"
GW_STATIC=0 GW_SESSION_TIMEOUT=1.5 GW_KERNEL_IF=dpgw-under write_gw_conf 1 false
sed -i 's|^  control_socket = |  quic_port = 443;\n  control_socket = |' "$WORK/gw.conf"
DPCTLD_QUIC_LISTEN="$GW_UNDERLAY:443" write_dpctld_conf "$GW_UNDERLAY:7443"
sed -i "s|^  agent_listen = .*|&\n  session_expiry = 3;|" "$WORK/dpctld.conf"
cat >> "$WORK/dpctld.conf" <<CONF
tunnels = ( { id = "$TUNNEL_ID"; name = "web"; allow = [ "CN=agent-1" ]; } );
CONF
metric() {  # metric 'NAME{LABELS}' -> value
  ip netns exec "$NS_G" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9108; printf "GET /metrics HTTP/1.0\r\n\r\n" >&3; cat <&3' |
    W="$1" awk '$1 == ENVIRON["W"] { print $2 }'
}
gateway_connected() { dpctl --json stats | jq -e '.gateway_connected' > /dev/null; }
# client NAME CERT [options...] LINE...: quic_register_client from the agent namespace to dpgw's address, port 443
client() {
  local name=$1 who=$2; shift 2
  timeout 30 ip netns exec "$NS_A" "$BUILD/tests/quic_register_client" --server "$GW_UNDERLAY:443" --ca "$PKI/ca.pem" \
    --cert "$PKI/$who.pem" --key "$PKI/$who.key" --sni web --verify-name dpctld.test "$@" \
    > "$WORK/$name.out" 2> "$WORK/$name.log"
}
register='{"type":"register","version":1,"tunnel":"web","weight":2,"name":"q1"}'
gw_session() { gw_stats | jq -c --argjson i "$1" '[.tunnels[].sessions[] | select(.index == $i)][0] // empty'; }
keepalives() { gw_stats | jq '[.tunnels[] | select(.id == "'"$TUNNEL_ID"'") | .keepalives] | add // 0'; }

start_gw
start_dpctld "$NS_G"
wait_for 10 "dpctld connected to dpgw" gateway_connected
quic_listening() { ip netns exec "$NS_G" ss -lun | matches "$GW_UNDERLAY:443 "; }
wait_for 10 "dpctld on udp $GW_UNDERLAY:443" quic_listening

log "a QUIC client registers through dpgw's kernel path, gets \"framing\":\"quic\", then sends PINGs for 5 s, updating its keys every 1.5 s"
k0=$(keepalives)
client q1 agent1 --replies 1 --hold 5 --key-update 1.5 --cipher AES-128-GCM "$register" &
Q1=$!
PIDS+=("$Q1")
registered() { jq -e '.type' "$WORK/q1.out"; }
wait_for 15 "the registration reply" registered
jq -e '.type == "registered" and .framing == "quic" and .session >= 32768 and .weight == 2' "$WORK/q1.out" > /dev/null ||
  fail "no QUIC-framed registration: $(cat "$WORK/q1.out" "$WORK/q1.log")"
index=$(jq -r .session "$WORK/q1.out")
log "  registered: $(jq -c '{session, framing, weight}' "$WORK/q1.out")"
one_handover() { [ "$(metric dptun_agent_quic_handovers_total)" = 1 ]; }
wait_for 10 "the hand-over" one_handover
matches "session $index: QUIC connection of CN=agent-1 .* handed over to dpgw (TLS_AES_" < "$WORK/dpctld.log" ||
  fail "dpctld did not log the hand-over: $(grep "session $index" "$WORK/dpctld.log")"
[ "$(metric dptun_agent_quic_connections)" = 0 ] || fail "dpctld still holds a QUIC connection after the hand-over"

log "dpgw has the session under the index of the reply and opens the client's PINGs with the handed-over keys"
heard() {
  local s
  s=$(gw_session "$index")
  [ -n "$s" ] && jq -e '.framing == "quic" and .live and .last_rx_age_s != null and (.endpoint | startswith("'"$AGENT_IP"':"))' <<< "$s"
}
for _ in $(seq 1 25); do heard > /dev/null && break; sleep 0.2; done
heard > /dev/null || fail "dpgw does not hear the client on session $index: $(gw_stats | jq -c '{sessions: [.tunnels[].sessions[]], drops}')"
log "  dpgw: session $(gw_session "$index")"
gw_session "$index" | jq -e '.quic_connection_ids == 4' > /dev/null ||
  fail "dpgw does not accept the 4 connection IDs dpctld issued: $(gw_session "$index")"
rc=0; wait "$Q1" || rc=$?
[ "$rc" -eq 0 ] || fail "the client's connection broke after the hand-over (exit $rc): $(cat "$WORK/q1.log")"
sent=$(sed -n 's/.*packets after the replies: \([0-9]*\).*/\1/p' "$WORK/q1.log")
k1=$(keepalives)
log "  the client sent $sent packets after the reply and heard no close or reset; the tunnel's keepalives $k0 -> $k1"
inflight=$(sed -n 's/.*in flight at the end: \([0-9]*\) bytes, probe timeouts \([0-9]*\).*/\1 \2/p' "$WORK/q1.log")
log "  ngtcp2 at the client: $inflight (bytes of its packets dpgw has not acknowledged, probe timeouts)"
# dpgw acknowledges the PINGs (docs/protocol.md "ACK generation"), so ngtcp2 holds at most the last one or two in
# flight (a PING-only packet is some 30 bytes); without ACKs every PING stays in flight (26 of them: some 750 bytes).
read -r inflight_bytes _ <<< "$inflight"
[ -n "$inflight_bytes" ] && [ "$inflight_bytes" -lt 100 ] ||
  fail "ngtcp2 still counts $inflight_bytes bytes of the client's packets unacknowledged: $(cat "$WORK/q1.log")"
# Key updates: ngtcp2 starts the next one only after the previous one is confirmed (dpgw's packets in the new keys);
# each update dpgw followed is counted once.
read -r started refused <<< "$(sed -n 's/.*key updates started: \([0-9]*\), refused: \([0-9]*\).*/\1 \2/p' "$WORK/q1.log")"
followed=$(gw_stats | jq '[.workers[].quic_key_updates_rx] | add')
log "  the client's ngtcp2 started $started key updates ($refused refused: the previous one not confirmed yet); dpgw followed $followed"
[ "${started:-0}" -ge 2 ] || fail "the client started ${started:-no} key updates: $(cat "$WORK/q1.log")"
[ "$followed" = "$started" ] || fail "dpgw followed $followed of the client's $started key updates"
gens=$(gw_session "$index" | jq -c '[.quic_rx_generation, .quic_tx_generation]')
log "  dpgw's key generations of the session (receive, transmit): $gens"
[ "$gens" = "[$started,$started]" ] || fail "dpgw's key generations $gens after $started updates"
acks=$(gw_stats | jq '[.workers[].quic_acks_tx] | add')
log "  dpgw sent $acks ACK packets (quic_acks_tx)"
[ "$acks" -ge 2 ] || fail "dpgw counts $acks ACK packets"
[ "$((k1 - k0))" -ge 2 ] && [ "$((k1 - k0))" -le "$sent" ] || fail "PINGs counted by dpgw: $k0 -> $k1 (the client sent $sent)"
log "  dpgw drops (nonzero): $(gw_stats | jq -c '.totals.drops | with_entries(select(.value > 0))')"
dpctl --json session list | jq -e --argjson i "$index" \
  '.sessions[] | select(.index == $i) | .framing == "quic" and .handed_over and (.control_connected | not) and .control_transport == "quic"' \
  > /dev/null || fail "dpctl session list: $(dpctl --json session list)"
dpctl session list | matches "handed over to dpgw (quic)" || fail "dpctl session list (text): $(dpctl session list)"

log "a straggler for the handed-over connection at dpctld's socket gets no answer (never a stateless reset)"
ip netns exec "$NS_G" python3 - "$GW_UNDERLAY" "$index" > "$WORK/straggler.out" <<'PY'
import os, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.5)
dcid = struct.pack("!I", int(sys.argv[2])) + os.urandom(4)
for _ in range(3):
    s.sendto(bytes([0x41]) + dcid + os.urandom(40), (sys.argv[1], 443))
try:
    print("answered", len(s.recv(2048)))
except socket.timeout:
    print("silent")
PY
matches '^silent' < "$WORK/straggler.out" || fail "dpctld answered a short header of a session dpgw holds: $(cat "$WORK/straggler.out")"
held=$(metric 'dptun_agent_quic_datagrams_dropped_total{reason="handed_over"}')
[ "$held" -ge 3 ] || fail "stragglers not counted as handed_over: $held"

log "short headers of no connection get a Stateless Reset: smaller than the packet, none for 21 bytes or less, at most the rate"
ip netns exec "$NS_G" python3 - "$GW_UNDERLAY" > "$WORK/resets.out" <<'PY'
import os, socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
dcid = struct.pack("!I", 65000) + os.urandom(4)  # an index no session has
def ask(size):
    s.sendto(bytes([0x41]) + dcid + os.urandom(size - 9), (sys.argv[1], 443))
    try:
        return len(s.recv(2048))
    except socket.timeout:
        return 0
for size in (60, 30, 22, 21, 12):
    print("size", size, "reset", ask(size))
time.sleep(1.5)  # the bucket full again
s.settimeout(0.2)
for _ in range(300):
    s.sendto(bytes([0x41]) + dcid + os.urandom(40), (sys.argv[1], 443))
got = 0
try:
    while True:
        s.recv(2048)
        got += 1
except socket.timeout:
    pass
print("burst 300 answered", got)
PY
log "  $(tr '\n' ' ' < "$WORK/resets.out")"
for want in "size 60 reset 43" "size 30 reset 29" "size 22 reset 21" "size 21 reset 0" "size 12 reset 0"; do
  matches "^$want\$" < "$WORK/resets.out" || fail "stateless resets: wanted '$want': $(cat "$WORK/resets.out")"
done
burst=$(sed -n 's/^burst 300 answered \([0-9]*\)/\1/p' "$WORK/resets.out")
limited=$(metric 'dptun_agent_quic_stateless_resets_total{result="rate_limited"}')
[ "$burst" -ge 1 ] && [ "$burst" -lt 300 ] && [ "$limited" -ge 1 ] ||
  fail "stateless resets not rate-limited: $burst of 300 answered, $limited limited"
log "  sent $(metric 'dptun_agent_quic_stateless_resets_total{result="sent"}'), over the rate $limited"

log "a refused registration does not reach dpgw (and is closed by dpctld, as before)"
sessions_before=$(gw_stats | jq '[.tunnels[].sessions[]] | length')
client q2 agent2 --replies 1 '{"type":"register","version":1,"tunnel":"web","weight":1}' || true
jq -e '.type == "refused" and (.reason | test("may not serve tunnel"))' "$WORK/q2.out" > /dev/null ||
  fail "agent-2 not refused: $(cat "$WORK/q2.out" "$WORK/q2.log")"
sleep 1.5
[ "$(gw_stats | jq '[.tunnels[].sessions[]] | length')" = "$sessions_before" ] || fail "a refused registration reached dpgw"
[ "$(metric dptun_agent_quic_handovers_total)" = 1 ] || fail "a refused registration was handed over"

log "a second client (AES-256-GCM this time) is handed over too; killed, its session expires: dpgw stops hearing it, dpctld removes it (session_expiry 3 s) and dpgw drops it"
timeout 60 ip netns exec "$NS_A" "$BUILD/tests/quic_register_client" --server "$GW_UNDERLAY:443" --ca "$PKI/ca.pem" \
  --cert "$PKI/agent1.pem" --key "$PKI/agent1.key" --sni web --verify-name dpctld.test --replies 1 --hold 50 \
  --cipher AES-256-GCM "$register" > "$WORK/q3.out" 2> "$WORK/q3.log" &
Q3=$!
PIDS+=("$Q3")
two_handovers() { [ "$(metric dptun_agent_quic_handovers_total)" = 2 ]; }
wait_for 15 "the second hand-over" two_handovers
index3=$(jq -r .session "$WORK/q3.out")
[ "$index3" != "$index" ] || fail "two sessions with index $index"
live3() { local s; s=$(gw_session "$index3"); [ -n "$s" ] && jq -e '.live' <<< "$s" > /dev/null; }
wait_for 10 "dpgw hearing session $index3" live3
expired_before=$(metric dptun_sessions_expired_total)
q3_pid=$(pgrep -P "$Q3")  # the client itself (ip netns exec execs it), not timeout
[ -n "$q3_pid" ] || fail "no client process under $Q3"
kill -9 "$q3_pid"
gone3() { ! dpctl --json session list | jq -e --argjson i "$index3" '.sessions[] | select(.index == $i)' > /dev/null; }
wait_for 20 "session $index3 expired at dpctld" gone3
[ "$(metric dptun_sessions_expired_total)" -gt "$expired_before" ] || fail "expiry not counted"
gw_gone3() { [ -z "$(gw_session "$index3")" ]; }
wait_for 10 "session $index3 removed at dpgw" gw_gone3
matches "session $index3: agent gone and no traffic for 3 s; removed" < "$WORK/dpctld.log" || fail "no expiry line for $index3"

log "a client moves to another port 1 s after the hand-over: its ngtcp2 takes another connection ID, which dpgw accepts"
client q4 agent1 --replies 1 --hold 40 --migrate 1 --cipher AES-128-GCM "$register" &
Q4=$!
PIDS+=("$Q4")
three_handovers() { [ "$(metric dptun_agent_quic_handovers_total)" = 3 ]; }
wait_for 15 "the third hand-over" three_handovers
index4=$(jq -r .session "$WORK/q4.out")
live4() { local s; s=$(gw_session "$index4"); [ -n "$s" ] && jq -e '.live' <<< "$s" > /dev/null; }
wait_for 10 "dpgw hearing session $index4" live4
gw_session "$index4" | jq -e '.quic_connection_ids == 4' > /dev/null ||
  fail "dpgw does not accept the 4 connection IDs dpctld issued: $(gw_session "$index4")"
migrated() { grep -q "migrated to port" "$WORK/q4.log"; }
wait_for 10 "the client's migration" migrated
read -r mport old_dcid new_dcid <<< "$(sed -n 's/.*migrated to port \([0-9]*\): DCID \([0-9a-f]*\) -> \([0-9a-f]*\).*/\1 \2 \3/p' "$WORK/q4.log")"
log "  the client moved to port $mport: DCID $old_dcid -> $new_dcid"
# Another connection ID of dpctld's: the same index, another tail.
[ "$old_dcid" != "$new_dcid" ] && [ "${new_dcid:0:8}" = "$(printf '%08x' "$index4")" ] && [ "${old_dcid:0:8}" = "${new_dcid:0:8}" ] ||
  fail "no move to another connection ID of the session: $(cat "$WORK/q4.log")"
# dpgw moves the endpoint only once the new path is validated (its PATH_CHALLENGE answered from there), which takes
# packets it opened from that port, and none of the packets to the new connection ID was refused (a dpgw that took
# the first connection ID only counts them as quic_bad_connection_id).
on_new_port() { gw_session "$index4" | jq -e --arg p "$AGENT_IP:$mport" '.endpoint == $p' > /dev/null; }
wait_for 5 "dpgw following the client to $AGENT_IP:$mport" on_new_port
[ "$(gw_stats | jq '.quic_control.quic_paths_validated')" -ge 1 ] ||
  fail "the endpoint moved without a validated path: $(gw_stats | jq -c .quic_control)"
[ "$(gw_stats | jq '.totals.drops.quic_bad_connection_id')" = 0 ] ||
  fail "dpgw refused connection IDs dpctld issued: $(gw_stats | jq -c '.totals.drops | with_entries(select(.value > 0))')"
log "  dpgw: session $(gw_session "$index4" | jq -c '{endpoint, endpoint_changes, quic_connection_ids, last_rx_age_s}')"

log "dpgw restarts under a handed-over QUIC session: dpctld drops it rather than give the new dpgw its keys again"
stop_gw
start_gw
wait_for 15 "dpctld connected to the new dpgw" gateway_connected
dropped() { [ "$(metric dptun_agent_quic_sessions_dropped_total)" = 1 ]; }
wait_for 10 "session $index4 dropped by dpctld" dropped
matches "session $index4 (CN=agent-1): dpgw restarted .*; session dropped" < "$WORK/dpctld.log" || fail "no line for the drop"
[ -z "$(gw_session "$index4")" ] || fail "the new dpgw got session $index4 again"
! dpctl --json session list | jq -e --argjson i "$index4" '.sessions[] | select(.index == $i)' > /dev/null ||
  fail "dpctld still lists session $index4"
reset4() { grep -q "stateless reset received" "$WORK/q4.log"; }
wait_for 15 "a Stateless Reset ending the client's connection" reset4
log "  the client: $(grep -m1 'stateless reset received' "$WORK/q4.log" | sed 's/^quic_register_client: //')"
kill "$(pgrep -P "$Q4")" 2>/dev/null || true
kill -0 "$DPCTLD_PID" || fail "dpctld died"
kill -0 "$GW_PID" || fail "dpgw died"
log "PASS"
