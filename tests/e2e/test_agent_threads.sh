#!/usr/bin/env bash
# dpagent with two data-path threads (--threads 2: gateway -> TUN on one, TUN -> gateway on the other), through the
# real processes and checked byte for byte:
# 1. Static session: a TCP upload and a TCP download at the same time (both directions of the tunnel busy on both
#    threads at once), then a UDP stream; then transfers in both directions repeated until both ends have moved to
#    a fresh key (--rekey-interval 10 here, dpgw's default on its side is checked by the counters) while traffic
#    flows. Every transfer arrives intact and the counters show no replay, authentication or write error.
# 2. Registered with dpctld: dpctld is restarted twice under a curl loop and a UDP flow, so the agent registers
#    again and moves to a new session (the threads take it over from the main thread) while traffic flows; traffic
#    comes back each time, and a byte-exact transfer both ways passes over the last session.
# Bad values of --threads are refused with a clear message. With DPAGENT_TSAN=DIR the dpagent of DIR (a
# ThreadSanitizer build, docs/testing.md) is the one tested, and the test fails on any report it prints.
source "$(dirname "$0")/lib.sh"
CHECK="/usr/bin/python3 $ROOT/tests/e2e/stream_check.py"
PING="/usr/bin/python3 $ROOT/tests/e2e/udp_ping.py"
BYTES=$((24 << 20))
if [ -n "${DPAGENT_TSAN:-}" ]; then
  DPAGENT=$DPAGENT_TSAN/agent/dpagent
  [ -x "$DPAGENT" ] || fail "DPAGENT_TSAN=$DPAGENT_TSAN: no dpagent there"
  # halt_on_error: the first race ends dpagent, with its report in the log.
  export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1"
  BYTES=$((8 << 20))
  # A race ends dpagent, and then whatever the test was doing fails: say first that the sanitizer found one.
  eval "lib_fail() $(declare -f fail | tail -n +2)"
  fail() {
    if grep -q "WARNING: ThreadSanitizer" "$WORK"/agent.log 2> /dev/null; then
      grep -A30 "WARNING: ThreadSanitizer" "$WORK/agent.log" | head -60 >&2
      lib_fail "ThreadSanitizer reported a problem in dpagent (above); then: $*"
    fi
    lib_fail "$@"
  }
fi

agent_counters() {  # the JSON line dpagent prints on SIGUSR1
  local before
  before=$(wc -l < "$WORK/agent.out")
  kill -USR1 "$AGENT_PID"
  wait_for 10 "dpagent's counters" bash -c "[ \$(wc -l < '$WORK/agent.out') -gt $before ]"
  tail -1 "$WORK/agent.out"
}

no_tsan_report() {
  if grep -q "ThreadSanitizer" "$WORK/agent.log"; then
    grep -A30 "WARNING: ThreadSanitizer" "$WORK/agent.log" | head -60 >&2
    fail "ThreadSanitizer reported a problem in dpagent (above)"
  fi
}

both_ways() {  # label: a TCP upload (port 5201) and a TCP download (port 5203) at the same time, each checked
  local label=$1 sink src put get
  ip netns exec "$NS_A" timeout 90 $CHECK tcp-sink "$AGENT_IP" 5201 > /dev/null &
  sink=$!
  ip netns exec "$NS_A" timeout 90 $CHECK tcp-source "$AGENT_IP" 5203 "$BYTES" 11 &
  src=$!
  sleep 0.5
  ip netns exec "$NS_C" timeout 90 $CHECK tcp-put "$GW_PUBLIC" 5201 "$BYTES" 7 > "$WORK/put-$label.json" &
  put=$!
  ip netns exec "$NS_C" timeout 90 $CHECK tcp-get "$GW_PUBLIC" 5203 "$BYTES" 11 > "$WORK/get-$label.json" &
  get=$!
  wait "$put" || fail "$label: upload failed"
  wait "$get" || fail "$label: download failed"
  wait "$sink" "$src" || true
  jq -e '.echoed == .sha256' "$WORK/put-$label.json" > /dev/null ||
    fail "$label: the server got other bytes than were sent: $(cat "$WORK/put-$label.json")"
  jq -e ".ok and .received == $BYTES" "$WORK/get-$label.json" > /dev/null ||
    fail "$label: the client got other bytes: $(cat "$WORK/get-$label.json")"
}

udp_stream() {  # label
  local label=$1 srv
  ip netns exec "$NS_A" timeout 60 $CHECK udp-sink "$AGENT_IP" 5201 2 > "$WORK/udp-$label.json" &
  srv=$!
  sleep 0.5
  ip netns exec "$NS_C" timeout 60 $CHECK udp-send "$GW_PUBLIC" 5201 3000 1200 > /dev/null
  wait "$srv"
  # UDP may lose datagrams under load (each loss is counted by whoever dropped it); none may arrive altered.
  jq -e '.bad == 0 and .datagrams >= 2700' "$WORK/udp-$label.json" > /dev/null ||
    fail "$label: UDP datagrams altered or lost: $(cat "$WORK/udp-$label.json")"
}

clean_counters() {  # JSON: nothing refused, nothing lost to an error inside dpagent
  echo "$1" | jq -e '.replay == 0 and .auth_fail == 0 and .malformed == 0 and .bad_inner == 0 and .no_session == 0
    and .tun_write_errors == 0 and .seal_errors == 0 and .socket_tx_dropped == 0 and .tun_gso_malformed == 0' \
    > /dev/null || fail "dpagent counted errors: $1"
}

log "bad values of --threads are refused"
for bad in 0 3 two ""; do
  if out=$("$DPAGENT" --gateway 10.0.0.1:51900 --session 1 --psk-file /dev/null --threads "$bad" 2>&1); then
    fail "--threads '$bad' was accepted"
  fi
  echo "$out" | matches -- "--threads expects 1 or 2" || fail "--threads '$bad': unclear error: $out"
done
"$DPAGENT" --help | matches -- "--threads N" || fail "--help does not describe --threads"

topology_up
write_gw_conf 1 false
# A second TCP entry point to the agent's host, so an upload and a download can run at the same time.
sed -i "s|^entry_points = (|entry_points = (\n  { proto = \"tcp\"; port = 5203; tunnel = \"iperf\"; target = \"$AGENT_IP:5203\"; },|" "$WORK/gw.conf"
start_gw

log "static session, --threads 2"
start_agent agent --threads 2 --rekey-interval 10
wait_for 15 "tunnel up" tunnel_up
grep -q "2 data-path threads (--threads" "$WORK/agent.log" || fail "dpagent did not log its threads: $(head -5 "$WORK/agent.log")"
names=$(cat /proc/"$AGENT_PID"/task/*/comm | sort | tr '\n' ' ')
[[ "$names" == *dpagent-down* && "$names" == *dpagent-up* ]] || fail "no data-path threads in dpagent: $names"
log "  threads: $names"
both_ways static
log "  $BYTES bytes up and $BYTES bytes down at the same time, both intact"
udp_stream static
log "  UDP $(jq -r .datagrams "$WORK/udp-static.json")/3000 datagrams, none altered"
c=$(agent_counters)
clean_counters "$c"
echo "$c" | jq -e '.frames_rx > 1000 and .frames_tx > 1000 and .tun_packets_coalesced > 0 and .tun_segments > 0' \
  > /dev/null || fail "traffic did not take the offload paths: $c"
log "  dpagent: $(echo "$c" | jq -r '"\(.frames_rx) frames in, \(.frames_tx) out, \(.tun_packets_written) packets in \(.tun_writes) TUN writes"')"

# Transfers both ways until dpagent has moved to its next key (10 s after the first), bounded.
log "  both ways again until dpagent rekeys (--rekey-interval 10)"
rekeys0=$(echo "$c" | jq .rekeys)
epoch0=$(echo "$c" | jq .tx_epoch)
rounds=0
deadline=$((SECONDS + 60))
while :; do
  rounds=$((rounds + 1))
  both_ways "rekey-$rounds"
  c=$(agent_counters)
  [ "$(echo "$c" | jq .rekeys)" -gt "$rekeys0" ] && break
  [ "$SECONDS" -lt "$deadline" ] || fail "no rekey within 60 s: $c"
done
# One more round under the new key, both ways.
both_ways "after-rekey"
c=$(agent_counters)
clean_counters "$c"
log "  rekeyed during traffic after $rounds rounds: epoch $epoch0 -> $(echo "$c" | jq .tx_epoch), every transfer intact"
no_tsan_report
kill "$AGENT_PID"
wait "$AGENT_PID" 2> /dev/null || true
no_tsan_report
stop_gw

log "registered with dpctld, --threads 2: dpctld restarted under traffic"
bash "$ROOT/tests/e2e/pki.sh" "$WORK/pki" "$GW_UNDERLAY" > /dev/null
GW_STATIC=0 GW_SESSION_TIMEOUT=1.5 GW_KERNEL_IF=dpgw-under write_gw_conf 1 false
write_dpctld_conf "$GW_UNDERLAY:7443"
start_gw
start_dpctld "$NS_G"
dpctl tunnel add web --allow CN=agent-1 > /dev/null
dpctl entry add tcp 5201 web "$AGENT_IP:5201" > /dev/null
dpctl entry add tcp 5203 web "$AGENT_IP:5203" > /dev/null
dpctl entry add tcp 8080 web "$AGENT_IP:8080" > /dev/null
dpctl entry add udp 5353 web "$AGENT_IP:5353" --keepalive --ttl 30 > /dev/null
mkdir -p "$WORK/www" && echo ok > "$WORK/www/ok"
ip netns exec "$NS_A" python3 -m http.server 8080 --bind "$AGENT_IP" --directory "$WORK/www" > /dev/null 2>&1 &
PIDS+=("$!")
ip netns exec "$NS_A" $PING echo "$AGENT_IP" 5353 &
PIDS+=("$!")
: > "$WORK/agent.out"
ip netns exec "$NS_A" "$DPAGENT" --server "$GW_UNDERLAY:7443" --ca "$WORK/pki/ca.pem" --cert "$WORK/pki/agent1.pem" \
  --key "$WORK/pki/agent1.key" --tunnel web --name agent-1 --keepalive 0.5 --threads 2 \
  >> "$WORK/agent.out" 2>> "$WORK/agent.log" &
AGENT_PID=$!
PIDS+=("$AGENT_PID")
curl_ok() { ip netns exec "$NS_C" curl -sf -m 1 "http://$GW_PUBLIC:8080/ok" > /dev/null; }
wait_for 30 "first request through the tunnel" curl_ok
ip netns exec "$NS_C" bash -c "while :; do curl -sf -m 1 -o /dev/null http://$GW_PUBLIC:8080/ok && date +%s.%N; sleep 0.2; done" \
  > "$WORK/tcp_ok.log" 2>/dev/null &
PIDS+=("$!")
ip netns exec "$NS_C" $PING ping "$GW_PUBLIC" 5353 600 0.2 > "$WORK/udp_ok.log" 2>/dev/null &
PIDS+=("$!")
sleep 1
recovered() {  # SINCE: both the TCP and the UDP log have a success after SINCE (within 20 s)
  local since=$1 t u
  for _ in $(seq 1 200); do
    t=$(awk -v s="$since" '$1 > s { print $1; exit }' "$WORK/tcp_ok.log")
    u=$(awk -v s="$since" '$1 > s { print $1; exit }' "$WORK/udp_ok.log")
    [ -n "$t" ] && [ -n "$u" ] && return 0
    sleep 0.1
  done
  return 1
}
adopted0=$(agent_counters | jq .sessions_adopted)
for round in 1 2; do
  kill "$DPCTLD_PID"
  for _ in $(seq 1 50); do kill -0 "$DPCTLD_PID" 2> /dev/null || break; sleep 0.1; done
  since=$(date +%s.%N)
  start_dpctld "$NS_G"
  wait_for 30 "dpagent registered again" bash -c "[ \$(grep -c 'registered with dpctld: session' '$WORK/agent.log') -gt $round ]"
  recovered "$since" || fail "restart $round: no traffic within 20 s (tcp: $(tail -1 "$WORK/tcp_ok.log"), udp: $(tail -1 "$WORK/udp_ok.log"))"
  log "  dpctld restart $round: dpagent registered again, curl and UDP flow again"
done
c=$(agent_counters)
[ "$(echo "$c" | jq .sessions_adopted)" -ge $((adopted0 + 2)) ] || fail "dpagent did not move to new sessions: $c"
both_ways registered
log "  $BYTES bytes up and $BYTES bytes down at the same time over session $(echo "$c" | jq .session), both intact"
c=$(agent_counters)
echo "$c" | jq -e '.seal_errors == 0 and .tun_write_errors == 0 and .bad_inner == 0' > /dev/null ||
  fail "dpagent counted errors: $c"
no_tsan_report
kill "$AGENT_PID"
wait "$AGENT_PID" 2> /dev/null || true
no_tsan_report
log "PASS"
