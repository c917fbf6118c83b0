#!/usr/bin/env bash
# Why did my flow fail? Entry points to targets the agent cannot reach, and ports without an entry point, through
# the real processes (dpgw, dpagent --lan-nat, curl, python sockets): the client gets what a router or a host would
# give it (ICMP unreachable, or a RST) instead of a timeout, dpagent counts and logs the reason, dpgw counts it, and
# `dpgw trace` shows the path and the drop reason. Targets, in the agent's namespace:
#   10.99.5.1:80  a route of type unreachable      -> ICMP host unreachable from the agent's kernel
#   10.99.6.1:80  a route of type prohibit         -> ICMP administratively prohibited
#   10.99.4.77:80 a LAN address nobody has          -> ARP fails: ICMP host unreachable after ~3 s
#   10.99.2.2:5999/udp, 10.99.2.2:5998/tcp           -> nothing listens: ICMP port unreachable / the host's RST
#   10.99.7.1:80  a blackhole route                 -> never any answer: dpgw counts flows_unanswered
source "$(dirname "$0")/lib.sh"

topology_up
write_gw_conf 1 false
# More entry points (to the targets above) and a short SYN timeout, so that an unanswered flow ends within the test
# (longer than the 3 s an ARP failure takes to be reported).
sed -i "s|  direct_mode = .*;|&\n  flows = { tcp_syn_timeout = 5; };|" "$WORK/gw.conf"
sed -i "s|  { proto = \"tcp\"; port = 5202; tunnel = \"iperf\"; target = \"$LAN_HOST:5202\"; }|&,\n\
  { proto = \"tcp\"; port = 5210; tunnel = \"iperf\"; target = \"10.99.5.1:80\"; },\n\
  { proto = \"tcp\"; port = 5211; tunnel = \"iperf\"; target = \"10.99.6.1:80\"; },\n\
  { proto = \"tcp\"; port = 5212; tunnel = \"iperf\"; target = \"10.99.4.77:80\"; },\n\
  { proto = \"udp\"; port = 5213; tunnel = \"iperf\"; target = \"$AGENT_IP:5999\"; },\n\
  { proto = \"tcp\"; port = 5214; tunnel = \"iperf\"; target = \"$AGENT_IP:5998\"; },\n\
  { proto = \"tcp\"; port = 5215; tunnel = \"iperf\"; target = \"10.99.7.1:80\"; }|" "$WORK/gw.conf"
grep -q 'port = 5215' "$WORK/gw.conf" || fail "could not add the entry points to $WORK/gw.conf"
ip -n "$NS_A" route add unreachable 10.99.5.0/24
ip -n "$NS_A" route add prohibit 10.99.6.0/24
ip -n "$NS_A" route add blackhole 10.99.7.0/24
ip netns exec "$NS_A" sysctl -qw net.ipv4.icmp_ratelimit=0  # (the kernel's per-destination ICMP rate limit)
start_gw
start_agent agent --lan-nat
wait_for 15 "tunnel up (agent keepalive answered)" tunnel_up

agent_stats() { kill -USR1 "$AGENT_PID"; sleep 0.3; tail -n 1 "$WORK/agent.out"; }
agent_count() { agent_stats | jq -r ".unreachable.$1"; }
# try_curl PORT: curl's exit status (7: could not connect; 28: timed out) and its message in $WORK/curl-PORT.err
try_curl() {
  local rc=0
  ip netns exec "$NS_C" curl -sS -o /dev/null --max-time "${2:-8}" "http://$GW_PUBLIC:$1/" 2> "$WORK/curl-$1.err" || rc=$?
  echo "$rc"
}
# tcp_try PORT [SECONDS]: what a TCP connect from the client hears: connected, refused, unreachable (EHOSTUNREACH),
# timeout, or another errno's name
tcp_try() {
  ip netns exec "$NS_C" python3 - "$GW_PUBLIC" "$1" "${2:-8}" <<'PY'
import errno, socket, sys
s = socket.socket()
s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("connected")
except ConnectionRefusedError:
    print("refused")
except socket.timeout:
    print("timeout")
except OSError as e:
    print("unreachable" if e.errno == errno.EHOSTUNREACH else errno.errorcode.get(e.errno, str(e.errno)))
PY
}
# udp_try PORT: what a connected UDP socket hears after sending one datagram: refused, answer or timeout
udp_try() {
  ip netns exec "$NS_C" python3 - "$GW_PUBLIC" "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.connect((sys.argv[1], int(sys.argv[2])))
s.send(b"hello")
try:
    s.recv(100)
    print("answer")
except ConnectionRefusedError:
    print("refused")
except socket.timeout:
    print("timeout")
PY
}

log "a target behind a route of type unreachable: the client's connect fails with 'No route to host'"
rc=$(try_curl 5210)
[ "$rc" = 7 ] || fail "curl to 5210 exited $rc, expected 7 (could not connect): $(cat "$WORK/curl-5210.err")"
[ "$(tcp_try 5210)" = unreachable ] || fail "a TCP connect to 5210 did not get EHOSTUNREACH"
[ "$(agent_count host_unreachable)" -ge 1 ] || fail "dpagent did not count host_unreachable: $(agent_stats)"
wait_for 5 "dpagent logs the unreachable target" \
  grep -q "target 10.99.5.1:80/tcp cannot be reached: host_unreachable" "$WORK/agent.log"
gw_stats > "$WORK/stats-1.json"
jq -e '.tunnels[0].targets_unreachable >= 1 and .workers[0].icmp_errors_forwarded >= 1' "$WORK/stats-1.json" \
  > /dev/null || fail "dpgw did not count the ICMP error: $(jq -c '{t: .tunnels[0], w: .workers[0].icmp_errors_forwarded}' "$WORK/stats-1.json")"

log "a target behind a route of type prohibit: administratively prohibited, the client told at once"
rc=$(try_curl 5211)
[ "$rc" = 7 ] || fail "curl to 5211 exited $rc, expected 7: $(cat "$WORK/curl-5211.err")"
[ "$(agent_count admin_prohibited)" -ge 1 ] || fail "dpagent did not count admin_prohibited: $(agent_stats)"

log "an address on the agent's LAN that nobody has: ARP fails, the client hears 'No route to host'"
answer=$(tcp_try 5212 15)
[ "$answer" = unreachable ] || fail "a TCP connect to 5212: $answer, expected unreachable"
wait_for 5 "dpagent logs the LAN target" grep -q "target 10.99.4.77:80/tcp cannot be reached" "$WORK/agent.log"

log "UDP to a port nothing listens on at the target: ICMP port unreachable reaches the client's socket"
[ "$(udp_try 5213)" = refused ] || fail "the UDP client was not refused"
[ "$(agent_count port_unreachable)" -ge 1 ] || fail "dpagent did not count port_unreachable: $(agent_stats)"

log "TCP to a port nothing listens on at the target: the target's own RST"
rc=$(try_curl 5214)
[ "$rc" = 7 ] || fail "curl to 5214 exited $rc, expected 7: $(cat "$WORK/curl-5214.err")"
[ "$(tcp_try 5214)" = refused ] || fail "a TCP connect to 5214 was not refused"

log "a target that never answers (blackhole): the flow ends unanswered, counted per tunnel"
rc=$(try_curl 5215 3)
[ "$rc" = 28 ] || fail "curl to 5215 exited $rc, expected 28 (timed out): $(cat "$WORK/curl-5215.err")"
wait_for 10 "flows_unanswered counted" bash -c "'$DPGW' stats --socket '$WORK/dpgw.sock' --json |
  jq -e '.tunnels[0].flows_unanswered >= 1 and .workers[0].flows_unanswered >= 1'"
"$DPGW" stats --socket "$WORK/dpgw.sock" > "$WORK/stats-text.out"
grep -q "never answered" "$WORK/stats-text.out" || fail "the text stats do not say so: $(cat "$WORK/stats-text.out")"

log "ports without an entry point: TCP refused by a RST, UDP by ICMP port unreachable, counted"
rc=$(try_curl 9999)
[ "$rc" = 7 ] || fail "curl to 9999 exited $rc, expected 7: $(cat "$WORK/curl-9999.err")"
[ "$(tcp_try 9999)" = refused ] || fail "a TCP connect to 9999 was not refused"
[ "$(udp_try 9999)" = refused ] || fail "UDP to port 9999 was not refused"
gw_stats > "$WORK/stats-2.json"
jq -e '.workers[0].closed_port_rsts >= 1 and .workers[0].closed_port_unreachables >= 1 and
       .totals.drops.no_entry_point >= 2' "$WORK/stats-2.json" > /dev/null ||
  fail "closed ports not counted: $(jq -c '{w: .workers[0] | {closed_port_rsts, closed_port_unreachables}, d: .totals.drops.no_entry_point}' "$WORK/stats-2.json")"

log "dpgw trace: a SYN to a port without an entry point, step by step, with its drop reason"
"$DPGW" trace 1 --socket "$WORK/dpgw.sock" --filter "tcp,port=9999" --timeout 10 > "$WORK/trace-closed.out" \
  2> "$WORK/trace-closed.err" &
tracer=$!
PIDS+=("$tracer")
wait_for 5 "the trace armed" grep -q "tracing the next" "$WORK/trace-closed.err"
try_curl 9999 > /dev/null
wait "$tracer" || fail "dpgw trace failed: $(cat "$WORK/trace-closed.err")"
cat "$WORK/trace-closed.out"
grep -q "1 packet traced" "$WORK/trace-closed.out" || fail "no packet traced"
grep -Eq "rx +public, [0-9]+ bytes, 10.99.1.2:[0-9]+ -> 10.99.1.1:9999 tcp \[S\]" "$WORK/trace-closed.out" ||
  fail "no rx step"
grep -Eq "classify +no_entry_point" "$WORK/trace-closed.out" || fail "no classify step"
grep -Eq "answer +rst" "$WORK/trace-closed.out" || fail "no answer step"
grep -Eq "drop +no_entry_point" "$WORK/trace-closed.out" || fail "no drop step"

log "dpgw trace --json: the client's SYN to the unreachable target, and the agent's ICMP error coming back"
"$DPGW" trace 1 --socket "$WORK/dpgw.sock" --filter "port=5210" --timeout 10 --json \
  > "$WORK/trace-syn.json" 2> "$WORK/trace-syn.err" &
tracer=$!
PIDS+=("$tracer")
wait_for 5 "the SYN trace armed" grep -q "tracing the next" "$WORK/trace-syn.err"
try_curl 5210 > /dev/null
wait "$tracer" || fail "dpgw trace failed: $(cat "$WORK/trace-syn.err")"
jq -e '.packets[0].steps | map(.stage) == ["rx", "classify", "flow", "nat", "encap", "tx"]' "$WORK/trace-syn.json" \
  > /dev/null || fail "unexpected steps for the SYN: $(jq -c '.packets[0].steps' "$WORK/trace-syn.json")"
jq -e '.packets[0].steps[3].target == "10.99.5.1:80" and .packets[0].steps[2].new == true and
       .packets[0].steps[5].port == "underlay"' "$WORK/trace-syn.json" > /dev/null ||
  fail "unexpected SYN trace: $(jq -c '.packets[0].steps' "$WORK/trace-syn.json")"
"$DPGW" trace 3 --socket "$WORK/dpgw.sock" --filter "rx=underlay,udp" --timeout 10 --json \
  > "$WORK/trace-icmp.json" 2> "$WORK/trace-icmp.err" &
tracer=$!
PIDS+=("$tracer")
wait_for 5 "the ICMP trace armed" grep -q "tracing the next" "$WORK/trace-icmp.err"
try_curl 5210 > /dev/null
wait "$tracer" || fail "dpgw trace failed: $(cat "$WORK/trace-icmp.err")"
jq -e '[.packets[].steps | map(.stage)] | any(. == ["rx", "classify", "decap", "icmp_error", "tx"])' \
  "$WORK/trace-icmp.json" > /dev/null ||
  fail "no trace of the ICMP error: $(jq -c '[.packets[].steps | map(.stage)]' "$WORK/trace-icmp.json")"
jq -e '[.packets[].steps[] | select(.stage == "icmp_error")][0] | .reason == "host_unreachable" and
       .target == "10.99.5.1:80"' "$WORK/trace-icmp.json" > /dev/null || fail "wrong icmp_error step"

log "the tunnel still carries traffic"
start_iperf_server
iperf_client "$WORK/tcp.json" -c "$GW_PUBLIC" -t 1
[ "$(json_get "$WORK/tcp.json" '.end.sum_received.bytes')" -gt 0 ] || fail "no traffic after the failures"
log "PASS"
