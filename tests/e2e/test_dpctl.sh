#!/usr/bin/env bash
# dpctl end to end, on a gateway whose NIC belongs to DPDK: dpctld runs in the gateway namespace and agents
# reach its TLS port through dpgw's own underlay address, by the kernel path (a TAP). `dpctl tunnel add` prints
# the dpagent command; that command registers an agent; an entry point added with dpctl carries iperf3 TCP and
# UDP. Changes survive a dpctld restart (state file), dpctl's errors are one line and a non-zero exit, and
# removing things really removes them (at the gateway too).
source "$(dirname "$0")/lib.sh"
API=$WORK/dpctld.sock
STATE=$WORK/state/dpctld.state

topology_up
bash "$ROOT/tests/e2e/pki.sh" "$WORK/pki" "$GW_UNDERLAY"
GW_STATIC=0 GW_SESSION_TIMEOUT=1.5 GW_KERNEL_IF=dpgw-under write_gw_conf 1 false
write_dpctld_conf "$GW_UNDERLAY:7443"

# expect_error EXIT_CODE TEXT COMMAND...: the command must fail with that status and say TEXT in one line
expect_error() {
  local want=$1 text=$2 rc=0; shift 2
  "$@" > "$WORK/err.out" 2> "$WORK/err.txt" || rc=$?
  [ "$rc" -eq "$want" ] || fail "'$*' exited $rc, expected $want: $(cat "$WORK/err.txt")"
  grep -q -- "$text" "$WORK/err.txt" || fail "'$*' did not say '$text': $(cat "$WORK/err.txt")"
  [ -s "$WORK/err.out" ] && [ "$(head -c1 "$WORK/err.out")" != "{" ] && fail "'$*' printed on stdout: $(cat "$WORK/err.out")"
  return 0
}
gw_kernel() { gw_stats | jq -r ".ports[] | select(.name == \"underlay\") | .kernel_path.$1"; }
live_sessions() { dpctl --json session list | jq '[.sessions[] | select(.live)] | length'; }
live_at_least() { [ "$(live_sessions)" -ge "$1" ]; }
gateway_connected() { dpctl --json stats | jq -e '.gateway_connected' > /dev/null; }

start_gw
ip netns exec "$NS_G" ip -br addr show dpgw-under | matches "$GW_UNDERLAY/24" ||
  fail "dpgw did not give its kernel path the underlay address: $(ip netns exec "$NS_G" ip -br addr)"
start_dpctld "$NS_G"
wait_for 10 "dpctld connected to dpgw" gateway_connected
[ "$(stat -c %a "$API")" = 660 ] || fail "API socket mode is $(stat -c %a "$API"), not 660"

log "dpctl usage errors: one line, exit 2; dpctld refusals: one line, exit 1"
"$DPCTL" --help | matches "tunnel add" || fail "dpctl --help does not list tunnel add"
for c in "tunnel add" "tunnel del" "tunnel list" "tunnel show" "entry add" "entry del" "entry list" \
         "ingress add" "ingress del" "ingress list" "session list" "stats"; do
  # shellcheck disable=SC2086
  "$DPCTL" $c --help | matches "^usage: dpctl $c" || fail "dpctl $c --help"
done
expect_error 2 "no command" "$DPCTL"
expect_error 2 "unknown command 'tunel'" dpctl tunel list
expect_error 2 "expected add|del|list|show" dpctl tunnel remove x
expect_error 2 "\-\-allow IDENTITY is required" dpctl tunnel add web
expect_error 2 "unknown option '--ttl'" dpctl tunnel add web --allow '*' --ttl 3
expect_error 2 "not a weight" dpctl tunnel add web --allow '*' --weight 256
expect_error 1 "either --weight" dpctl tunnel add web --allow '*' --weight 3 --max-weight 4
expect_error 2 "not a port" dpctl entry add tcp 70000 web 10.0.0.1:80
expect_error 2 "not a protocol" dpctl entry add sctp 80 web 10.0.0.1:80
expect_error 1 "cannot connect to $WORK/none.sock" "$DPCTL" --socket "$WORK/none.sock" stats
expect_error 1 "not a UUID" dpctl tunnel add web --allow '*' --id 1234
expect_error 1 'expected "CN=' dpctl tunnel add web --allow 'agent-1'
expect_error 1 "must not be a UUID" dpctl tunnel add 6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f --allow '*'
expect_error 1 "may only hold" dpctl tunnel add 'web site' --allow '*'
expect_error 1 "no tunnel 'web'" dpctl entry add tcp 5201 web "$AGENT_IP:5201"

log "dpctl tunnel add prints the dpagent command; that command registers an agent through the kernel path"
dpctl tunnel add iperf --allow CN=agent-1 --allow CN=agent-2 --max-weight 100 > "$WORK/add.txt"
grep -q "^tunnel iperf added, id " "$WORK/add.txt" || fail "tunnel add output: $(cat "$WORK/add.txt")"
id=$(awk '/^tunnel iperf added, id/ { print $5 }' "$WORK/add.txt")
cmd=$(grep -E '^  dpagent ' "$WORK/add.txt" | sed 's/^  //')
[ -n "$cmd" ] || fail "tunnel add did not print a dpagent command: $(cat "$WORK/add.txt")"
echo "$cmd" | matches -- "--server $GW_UNDERLAY:7443 .*--tunnel $id" || fail "dpagent command: $cmd"
expect_error 1 "exists already" dpctl tunnel add other --allow '*' --id "$id"
expect_error 1 "already named 'iperf'" dpctl tunnel add iperf --allow '*'
cmd=${cmd//AGENT.pem/$WORK/pki/agent1.pem}
cmd=${cmd//AGENT.key/$WORK/pki/agent1.key}
# shellcheck disable=SC2086
ip netns exec "$NS_A" "$BUILD/agent/"$cmd --name agent-1 --weight 200 > "$WORK/agent-1.out" 2> "$WORK/agent-1.log" &
PIDS+=("$!")
wait_for 15 "agent-1 live" live_at_least 1
[ "$(gw_kernel to_kernel_packets)" -gt 0 ] && [ "$(gw_kernel from_kernel_packets)" -gt 0 ] ||
  fail "the registration did not go through the kernel path: $(gw_stats | jq -c '.ports[1]')"
log "  kernel path: $(gw_kernel to_kernel_packets) packets up, $(gw_kernel from_kernel_packets) down"
[ "$(dpctl --json session list | jq '.sessions[0].weight')" -eq 100 ] ||
  fail "the tunnel's max weight 100 did not cap the agent's 200: $(dpctl --json session list | jq -c .sessions)"
grep -q "weight 100 (the tunnel's weight policy)" "$WORK/agent-1.log" || fail "the agent was not told its weight"

log "the kernel path carries the host's own traffic (ARP, ICMP) and refuses what is not from the port's address"
ip netns exec "$NS_G" ping -c 2 -W 2 "$AGENT_IP" > /dev/null || fail "the gateway host cannot ping through its kernel path"
ip netns exec "$NS_G" ip addr add 10.99.2.50/24 dev dpgw-under
if ip netns exec "$NS_G" ping -c 1 -W 1 -I 10.99.2.50 "$AGENT_IP" > /dev/null 2>&1; then
  fail "a frame from an address that is not the port's left through the kernel path"
fi
[ "$(gw_kernel refused)" -gt 0 ] || fail "nothing counted as refused: $(gw_stats | jq -c '.ports[1].kernel_path')"
ip netns exec "$NS_G" ip addr del 10.99.2.50/24 dev dpgw-under

log "entry points added with dpctl carry iperf3 TCP and UDP"
dpctl entry add tcp 5201 iperf "$AGENT_IP:5201" | matches "entry point tcp/5201 -> iperf -> $AGENT_IP:5201 added" ||
  fail "entry add output"
dpctl entry add udp 5201 "$id" "$AGENT_IP:5201" --keepalive --ttl 30 > /dev/null
expect_error 1 "entry point tcp/5201 exists already" dpctl entry add tcp 5201 iperf "$AGENT_IP:5201"
expect_error 1 "target must be ipv4:port" dpctl entry add tcp 5202 iperf nowhere
expect_error 1 "apply to UDP entry points only" dpctl entry add tcp 5203 iperf "$AGENT_IP:5201" --keepalive
expect_error 1 "dpctld's agent port" dpctl entry add tcp 7443 iperf "$AGENT_IP:5201"
expect_error 1 "tunnel port" dpctl entry add udp 51900 iperf "$AGENT_IP:5201"
expect_error 1 "udp/3478 is the gateway's STUN port" dpctl entry add udp 3478 iperf "$AGENT_IP:5201"
dpctl entry add tcp 3478 iperf "$AGENT_IP:5201" > /dev/null || fail "tcp/3478 (only UDP is STUN's) refused"
dpctl entry del tcp 3478 > /dev/null || fail "entry del tcp/3478"
expect_error 1 "10.99.9.9 is not an address of the gateway (its ports have 10.99.1.1, 10.99.2.1)" \
  dpctl entry add tcp 5204 iperf "$AGENT_IP:5201" --listen 10.99.9.9
expect_error 1 "a tunnel is already named 'iperf'" dpctl tunnel add IPERF --allow '*'

log "numbers from outside are range-checked before they are converted (API socket, raw JSON)"
api() {  # api JSON: one raw request on dpctld's API socket; prints the reply
  python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.argv[2].encode()+b"\n"); s.shutdown(socket.SHUT_WR); print(s.makefile().read(), end="")' "$API" "$1"
}
dpctl entry add tcp 6201 iperf "$AGENT_IP:5201" > /dev/null
for port in 4294973497 1e300 -1 65536 6201.5 '"6201"' 18446744073709551615; do
  api "{\"cmd\":\"entry.del\",\"proto\":\"tcp\",\"port\":$port}" | jq -e '.ok == false and (.error | test("port.* must be an integer in 1..65535"))' > /dev/null ||
    fail "entry.del with port $port: $(api "{\"cmd\":\"entry.del\",\"proto\":\"tcp\",\"port\":$port}")"
done
api '{"cmd":"entry.add","proto":"udp","port":5999,"tunnel":"iperf","target":"10.0.0.1:1","ttl":1e300}' |
  jq -e '.ok == false and (.error | test("ttl"))' > /dev/null || fail "ttl 1e300 accepted"
api '{"cmd":"tunnel.add","name":"w","allow":["*"],"weight":4294967297}' | jq -e '.ok == false' > /dev/null ||
  fail "weight 4294967297 accepted"
dpctl --json entry list | jq -e '[.entry_points[] | select(.port == 6201)] | length == 1' > /dev/null ||
  fail "tcp/6201 was touched by requests with out-of-range ports"
dpctl entry del tcp 6201 > /dev/null
dpctl entry list > "$WORK/entries.txt"
grep -Eq '^tcp/5201 +iperf +10.99.2.2:5201 +- +dpctl' "$WORK/entries.txt" || fail "entry list: $(cat "$WORK/entries.txt")"
grep -Eq '^udp/5201 +iperf +10.99.2.2:5201 +ttl=30.0s keepalive +dpctl' "$WORK/entries.txt" ||
  fail "entry list: $(cat "$WORK/entries.txt")"
start_iperf_server
iperf_client "$WORK/tcp.json" -c "$GW_PUBLIC" -t 2
rx=$(json_get "$WORK/tcp.json" '.end.sum_received.bytes')
[ "$rx" -gt 0 ] || fail "TCP through the dpctl entry point: $rx bytes"
iperf_client "$WORK/udp.json" -c "$GW_PUBLIC" -u -b 20M -t 2
urx=$(json_get "$WORK/udp.json" '.end.sum.bytes')
loss=$(json_get "$WORK/udp.json" '.end.sum.lost_percent')
[ "$urx" -gt 0 ] && awk -v l="$loss" 'BEGIN { exit !(l < 5) }' || fail "UDP through the dpctl entry point: $urx bytes, $loss% lost"
log "  TCP $rx bytes, UDP $urx bytes ($loss% lost)"

log "ingress rules, tables and JSON"
dpctl ingress add App.Example.ORG iperf > /dev/null
dpctl ingress add '*.internal.example.org' iperf --private > /dev/null
expect_error 1 "is not a hostname" dpctl ingress add 'bad..name' iperf
expect_error 1 "exists already" dpctl ingress add app.example.org iperf
dpctl --json ingress list | jq -e '.rules | length == 2 and (map(select(.private)) | .[0].hostname == "*.internal.example.org")
  and (map(.hostname) | index("app.example.org") != null)' > /dev/null || fail "ingress list: $(dpctl --json ingress list)"
dpctl tunnel list | matches -E "^iperf +$id +1 +1 +2 " || fail "tunnel list: $(dpctl tunnel list)"
dpctl tunnel show iperf > "$WORK/show.txt"
grep -q "CN=agent-1" "$WORK/show.txt" && grep -q "\*.internal.example.org (private)" "$WORK/show.txt" &&
  grep -q "dpagent --server" "$WORK/show.txt" || fail "tunnel show: $(cat "$WORK/show.txt")"
dpctl session list | matches -E "^[0-9]+ +iperf +agent +CN=agent-1 .* yes " || fail "session list: $(dpctl session list)"
dpctl stats | matches "^gateway: *connected" || fail "stats: $(dpctl stats)"

log "dpctld restarts: tunnel, entry points and rules come back from the state file; the agent registers again"
[ "$(stat -c %a "$STATE")" = 640 ] || fail "state file mode $(stat -c %a "$STATE")"
jq -e --arg id "$id" '.tunnels[0].id == $id and (.entry_points | length == 2) and (.ingress | length == 2)' "$STATE" > /dev/null ||
  fail "state file: $(cat "$STATE")"
kill "$DPCTLD_PID"
wait "$DPCTLD_PID" 2>/dev/null || true
start_dpctld "$NS_G"
dpctl --json tunnel list | jq -e --arg id "$id" '.tunnels | length == 1 and .[0].id == $id and .[0].entry_points == 2' > /dev/null ||
  fail "tunnel not back after the restart: $(dpctl --json tunnel list)"
[ "$(dpctl --json ingress list | jq '.rules | length')" -eq 2 ] || fail "ingress rules lost in the restart"
wait_for 20 "agent-1 registered again" bash -c "[ \$(grep -c 'registered with dpctld' '$WORK/agent-1.log') -ge 2 ]"
wait_for 10 "agent-1 live again" live_at_least 1
iperf_client "$WORK/tcp2.json" -c "$GW_PUBLIC" -t 1
[ "$(json_get "$WORK/tcp2.json" '.end.sum_received.bytes')" -gt 0 ] || fail "no traffic after the dpctld restart"

log "removing: the entry point stops answering, the tunnel goes with its agent sessions"
dpctl entry del tcp 5201 | matches "entry point tcp/5201 removed" || fail "entry del"
expect_error 1 "no entry point tcp/5201" dpctl entry del tcp 5201
gw_stats | jq -e '[.entry_points[]? | select(.proto == "tcp" and .port == 5201)] | length == 0' > /dev/null ||
  fail "dpgw still has tcp/5201"
if timeout 3 ip netns exec "$NS_C" bash -c "exec 3<>/dev/tcp/$GW_PUBLIC/5201" 2>/dev/null; then
  fail "tcp/5201 still connects after entry del"
fi
dpctl ingress del APP.example.org > /dev/null
log "a tunnel in use is removed only with --force, and dpctl says what went with it"
expect_error 1 "tunnel iperf is in use (1 entry point, 1 ingress rule, 1 registered agent); 'dpctl tunnel del iperf --force'" \
  dpctl tunnel del iperf
[ "$(wc -l < "$WORK/failures.jsonl" 2>/dev/null || echo 0)" -eq 0 ] || fail "handshake failures: $(cat "$WORK/failures.jsonl")"
dpctl tunnel del IPERF --force > "$WORK/del.txt" || fail "tunnel del --force: $(cat "$WORK/del.txt")"
grep -q "tunnel iperf ($id) removed" "$WORK/del.txt" && grep -q "with its entry points: udp/5201" "$WORK/del.txt" &&
  grep -q "with its ingress rules: \*.internal.example.org" "$WORK/del.txt" &&
  grep -q "agents disconnected: [0-9]* (CN=agent-1)" "$WORK/del.txt" || fail "tunnel del --force said: $(cat "$WORK/del.txt")"
grep -q "dpctl: tunnel iperf ($id) removed with 1 entry point(s)" "$WORK/dpctld.log" || fail "tunnel removal not logged"
expect_error 1 "no tunnel 'iperf'" dpctl tunnel show iperf
[ "$(dpctl --json session list | jq '.sessions | length')" -eq 0 ] || fail "sessions left after tunnel del"
wait_for 5 "dpgw dropped the tunnel" bash -c "[ \"\$('$DPGW' stats --socket '$WORK/dpgw.sock' --json | jq '.tunnels | length')\" -eq 0 ]"
jq -e '(.tunnels | length == 0) and (.entry_points | length == 0) and (.ingress | length == 0)' "$STATE" > /dev/null ||
  fail "state file after removal: $(cat "$STATE")"
# agent-1, disconnected, tries again: refused for want of its tunnel, and for nothing else (on a loaded machine it is
# back before the checks above are done).
if [ -s "$WORK/failures.jsonl" ]; then
  jq -e -s 'all(.[]; .event == "agent_registration_refused" and .reason == "no_tunnel" and
    .certificate.subject == "CN=agent-1")' "$WORK/failures.jsonl" > /dev/null ||
    fail "handshake failures after the removal: $(cat "$WORK/failures.jsonl")"
fi
log "PASS"
