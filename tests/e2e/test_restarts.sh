#!/usr/bin/env bash
# Restarts without outages (issue #8, item 2): while a curl loop (a new TCP connection every 0.2 s) and a UDP
# flow (one datagram every 0.2 s) cross the tunnel, dpgw, dpctld, both together (dpctld first, so it waits for
# its address), and the agent are each restarted 3 times in a row; then dpgw's two links and the agent's are each
# taken down for 2 s. After every restart and link flap traffic must come back
# within a bound (RECOVERY_BOUND seconds; the fault this catches took 62 s: an agent that kept using the keys
# of an earlier registration with the same session index); every recovery time is printed.
# Then dpctld is stopped 70-150 ms after each of 20 registrations: the agent must notice every time and register again
# (the fault this catches: dpctld's FIN and RST came in as the agent wrote its next line, and the write's SIGPIPE
# ended dpagent without a word, in 3 of 5 runs of 25 such rounds).
source "$(dirname "$0")/lib.sh"
PING="/usr/bin/python3 $ROOT/tests/e2e/udp_ping.py"
RECOVERY_BOUND=${RECOVERY_BOUND:-12}

topology_up
bash "$ROOT/tests/e2e/pki.sh" "$WORK/pki" "$GW_UNDERLAY"
GW_STATIC=0 GW_SESSION_TIMEOUT=1.5 GW_KERNEL_IF=dpgw-under write_gw_conf 1 false
write_dpctld_conf "$GW_UNDERLAY:7443"

start_agent_reg() {
  ip netns exec "$NS_A" "$DPAGENT" --server "$GW_UNDERLAY:7443" --ca "$WORK/pki/ca.pem" --cert "$WORK/pki/agent1.pem" \
    --key "$WORK/pki/agent1.key" --tunnel web --name agent-1 --keepalive 0.5 >> "$WORK/agent.out" 2>> "$WORK/agent.log" &
  AGENT_PID=$!
  PIDS+=("$AGENT_PID")
}
stop_pid() { kill "$1" 2>/dev/null || true; for _ in $(seq 1 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done; }

start_gw
start_dpctld "$NS_G"
dpctl tunnel add web --allow CN=agent-1 > /dev/null
dpctl entry add tcp 8080 web "$AGENT_IP:8080" > /dev/null
dpctl entry add udp 5353 web "$AGENT_IP:5353" --keepalive --ttl 30 > /dev/null
mkdir -p "$WORK/www" && echo ok > "$WORK/www/ok"
ip netns exec "$NS_A" python3 -m http.server 8080 --bind "$AGENT_IP" --directory "$WORK/www" > /dev/null 2>&1 &
PIDS+=("$!")
ip netns exec "$NS_A" $PING echo "$AGENT_IP" 5353 &
PIDS+=("$!")
start_agent_reg
curl_ok() { ip netns exec "$NS_C" curl -sf -m 1 "http://$GW_PUBLIC:8080/ok" > /dev/null; }
wait_for 20 "first request through the tunnel" curl_ok

# The traffic: successes are time-stamped, one line each.
ip netns exec "$NS_C" bash -c "while :; do curl -sf -m 1 -o /dev/null http://$GW_PUBLIC:8080/ok && date +%s.%N; sleep 0.2; done" \
  > "$WORK/tcp_ok.log" 2>/dev/null &
PIDS+=("$!")
ip netns exec "$NS_C" $PING ping "$GW_PUBLIC" 5353 600 0.2 > "$WORK/udp_ok.log" 2>/dev/null &
PIDS+=("$!")
sleep 1

# recovered SINCE: seconds from SINCE to the first success after it on both the TCP and the UDP log
recovered() {
  local since=$1 t u
  for _ in $(seq 1 $((RECOVERY_BOUND * 10))); do
    t=$(awk -v s="$since" '$1 > s { print $1; exit }' "$WORK/tcp_ok.log")
    u=$(awk -v s="$since" '$1 > s { print $1; exit }' "$WORK/udp_ok.log")
    if [ -n "$t" ] && [ -n "$u" ]; then
      awk -v s="$since" -v t="$t" -v u="$u" 'BEGIN { m = t > u ? t : u; printf "%.1f", m - s }'
      return 0
    fi
    sleep 0.1
  done
  return 1
}
RESULTS=()
port_link() {  # PORT up|down: dpgw stats shows it so
  gw_stats | jq -e --arg p "$1" --arg s "$2" '.ports[] | select(.name == $p) | .link == $s' > /dev/null
}
restart() {  # restart WHAT (dpgw, dpctld, both, agent, or link-DEV: DEV down for 2 s): then wait for traffic
  local what=$1 since  # from the moment what restarts is down
  case $what in
    dpgw) stop_gw; since=$(date +%s.%N); start_gw ;;
    dpctld) stop_pid "$DPCTLD_PID"; since=$(date +%s.%N); start_dpctld "$NS_G" ;;
    both)
      stop_pid "$DPCTLD_PID"; stop_gw; since=$(date +%s.%N)
      # dpctld first: its agent address exists only while dpgw's kernel path is up; it waits for it.
      ip netns exec "$NS_G" "$DPCTLD" --config "$WORK/dpctld.conf" >> "$WORK/dpctld.out" 2>> "$WORK/dpctld.log" &
      DPCTLD_PID=$!; PIDS+=("$DPCTLD_PID")
      sleep 0.5
      start_gw ;;
    agent) kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null || true; since=$(date +%s.%N); start_agent_reg ;;
    link-*)  # a link down for 2 s (a cable pulled, a switch port reset): ga and gc are dpgw's own ports, a0 the
      # far end of ga (its carrier goes with it)
      local ns=$NS_G dev=${what#link-} port=underlay
      [ "$dev" = a0 ] && ns=$NS_A
      [ "$dev" = gc ] && port=public
      local down_at
      down_at=$(date +%s.%N)
      ip netns exec "$ns" ip link set "$dev" down
      wait_for 2 "dpgw stats showing port $port's link down" port_link "$port" down
      sleep "$(awk -v t="$down_at" -v now="$(date +%s.%N)" 'BEGIN { r = 2 - (now - t); printf "%.2f", (r > 0 ? r : 0) }')"
      kill -0 "$GW_PID" 2>/dev/null || fail "dpgw exited while $dev was down: $(tail -3 "$WORK/dpgw.log")"
      ip netns exec "$ns" ip link set "$dev" up
      since=$(date +%s.%N)
      wait_for 2 "dpgw stats showing port $port's link up" port_link "$port" up ;;
  esac
  local took
  took=$(recovered "$since") || fail "$what: no traffic within ${RECOVERY_BOUND}s (tcp: $(tail -1 "$WORK/tcp_ok.log"), udp: $(tail -1 "$WORK/udp_ok.log"))"
  RESULTS+=("$what:$took")
  case $what in
    link-*) log "  ${what#link-} down for 2 s: traffic back ${took}s after it came up" ;;
    *) log "  $what restarted: traffic back after ${took}s" ;;
  esac
  sleep 1
}

for what in dpgw dpctld both agent; do
  log "$what restarted 3 times in a row under a curl loop and a UDP flow"
  for _ in 1 2 3; do restart "$what"; done
done
log "links down for 2 s under the same traffic: dpgw's underlay port (ga), its public port (gc), the agent's side (a0)"
for link in ga gc a0; do restart "link-$link"; done
links() { gw_stats | jq -c '[.ports[] | {name, link, link_changes}]'; }
for want in "underlay 2" "public 1"; do  # each flap in dpgw's log and its counters: ga and a0, gc
  set -- $want
  downs=$(grep -c "port $1: link down (" "$WORK/dpgw.log" || true)
  ups=$(grep -c "port $1: link up" "$WORK/dpgw.log" || true)
  [ "$downs" = "$2" ] && [ "$ups" = "$2" ] ||
    fail "dpgw logged port $1's link down $downs and up $ups times, not $2: $(grep -h link "$WORK/dpgw.log" | tail -6)"
  gw_stats | jq -e --arg p "$1" --argjson n "$(($2 * 2))" '.ports[] | select(.name == $p) | .link_changes == $n' \
    > /dev/null || fail "port $1: link changes not counted $(($2 * 2)) times: $(links)"
done
log "  dpgw logged each link going down and coming back: $(links)"

log "dpctld stopped 70-150 ms after each of 20 registrations: dpagent registers again every time"
if sigpipe_inherited; then
  log "  (this test runs with SIGPIPE ignored already: the daemons' own disposition cannot be checked)"
else
  for pid in "$GW_PID" "$DPCTLD_PID" "$AGENT_PID"; do
    ignores_sigpipe "$pid" || fail "$(cat "/proc/$pid/comm") (pid $pid) does not ignore SIGPIPE"
  done
fi
registrations() { grep -c 'registered with dpctld: session' "$WORK/agent.log"; }
for round in $(seq 1 20); do
  n=$(registrations)
  stop_pid "$DPCTLD_PID"
  start_dpctld "$NS_G"
  for _ in $(seq 1 500); do
    [ "$(registrations)" -gt "$n" ] && break
    if ! kill -0 "$AGENT_PID" 2>/dev/null; then
      rc=0
      wait "$AGENT_PID" || rc=$?
      fail "round $round: dpagent is gone (exit status $rc; 141: SIGPIPE)"
    fi
    sleep 0.02
  done
  [ "$(registrations)" -gt "$n" ] || fail "round $round: dpagent did not register again within 10 s"
  # The next stop lands some 70-150 ms after the registration (50-100 ms after this loop saw it), when the agent
  # sends its first lines (its candidates).
  sleep "0.$(printf '%02d' $((5 + RANDOM % 6)))"
done
losses=$(grep -c 'control connection to dpctld .* lost' "$WORK/agent.log")
log "  20 stops, dpagent registered again after each ($losses losses noticed in all)"
recovered "$(date +%s.%N)" > /dev/null || fail "no traffic after the stops"

grep -q "waiting for $GW_UNDERLAY to appear" "$WORK/dpctld.log" ||
  fail "dpctld started before dpgw did not say it waits for its address"
log "  recovery (s): ${RESULTS[*]}"
dpctl --json session list | jq -e '[.sessions[] | select(.live)] | length >= 1' > /dev/null ||
  fail "no live session at the end: $(dpctl --json session list)"
log "PASS"
