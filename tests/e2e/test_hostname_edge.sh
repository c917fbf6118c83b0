#!/usr/bin/env bash
# Hostname routing over TCP at its edges, with the real dpgw/dpctld/dpagent, nginx and kernel TCP clients
# (tests/e2e/hostname_client.py: plain sockets, Nagle on):
#  - first bytes in pieces with gaps (HTTP request line first, a Host line cut in two, a TLS ClientHello in three):
#    dpgw acknowledges what it keeps, so the client sends the rest at once;
#  - request heads of 9 to 31 kB (big cookies) are routed; 40 kB and 100 kB ones get dpgw's 431, readable; TLS
#    ClientHellos of 20 kB are routed, 40 kB ones reset; each refusal counted;
#  - the host an origin server uses: absolute-form targets (with and without Host), a Host naming another host,
#    two Hosts, whitespace before a colon, obs-fold (400, counted), HTTP/1.0 without Host, port / trailing dot /
#    upper case, bare LF line ends;
#  - TCP timestamps in captures of 30+ connections: on the client's side every TSval from dpgw's address rises
#    from the SYN-ACK on (RFC 7323 PAWS); on the target's side every TSval from the client's address too;
#  - the path to the target loses packets (every third one to it dropped): dpgw sends its SYN and the first bytes
#    it acknowledged again, and the request completes;
#  - steps that take too long: a client that never names a host, a target that never answers: RST after 10 s,
#    counted.
source "$(dirname "$0")/lib.sh"
log() { echo "[$TEST_NAME] ${SECONDS}s $*"; }

topology_up
bash "$ROOT/tests/e2e/pki.sh" "$WORK/pki" "$GW_UNDERLAY"
GW_STATIC=0 GW_SESSION_TIMEOUT=1.5 GW_KERNEL_IF=dpgw-under write_gw_conf 1 false
write_dpctld_conf "$GW_UNDERLAY:7443"
start_gw
start_dpctld "$NS_G"
dpctl tunnel add web --allow CN=agent-1 > /dev/null
ip netns exec "$NS_A" "$DPAGENT" --server "$GW_UNDERLAY:7443" --ca "$WORK/pki/ca.pem" --cert "$WORK/pki/agent1.pem" \
  --key "$WORK/pki/agent1.key" --tunnel web --name agent-1 > "$WORK/agent.out" 2> "$WORK/agent.log" &
PIDS+=("$!")
live() { [ "$(dpctl --json session list | jq '[.sessions[] | select(.live)] | length')" -eq 1 ]; }
wait_for 20 "the agent live" live

# Targets on the agent host: a (10.99.2.2, also TLS), b (10.99.2.3: a shared server that also hosts app-a and a
# private name, where routing by the wrong name would lead), and a lossy one (10.99.2.4).
B_IP=10.99.2.3
LOSSY_IP=10.99.2.4
ip -n "$NS_A" addr add "$B_IP/24" dev a0
ip -n "$NS_A" addr add "$LOSSY_IP/24" dev a0
start_nginx "$NS_A" <<NGINX
  ssl_certificate $WORK/pki/server.pem;
  ssl_certificate_key $WORK/pki/server.key;
  large_client_header_buffers 8 16k;
  server { listen $AGENT_IP:80; listen $AGENT_IP:443 ssl; location = / { return 200 "backend a \$scheme\n"; } }
  server { listen $B_IP:80 default_server; server_name app-b.example; location = / { return 200 "backend b\n"; } }
  server { listen $B_IP:80; server_name app-a.example; location = / { return 200 "app-a on b\n"; } }
  server { listen $B_IP:80; server_name private.example; location = / { return 200 "private\n"; } }
  server { listen $LOSSY_IP:80; location = / { return 200 "backend lossy\n"; } }
NGINX
wait_for 10 "nginx" ip netns exec "$NS_A" bash -c "ss -ltn | grep -q '$LOSSY_IP:80 '"

dpctl entry add tcp 80 --route http > /dev/null
dpctl entry add tcp 443 --route sni > /dev/null
dpctl ingress add app-a.example web --target "$AGENT_IP" > /dev/null
dpctl ingress add app-b.example web --target "$B_IP" > /dev/null
dpctl ingress add private.example web --target "$B_IP" --private > /dev/null
dpctl ingress add lossy.example web --target "$LOSSY_IP" > /dev/null
dpctl ingress add blackhole.example web --target 10.99.2.5 > /dev/null  # every packet to it is dropped (below)
rules() { [ "$(gw_stats | jq '.ingress.rules // 0')" -eq 5 ]; }
wait_for 10 "dpgw compiled the rules" rules

CLIENT="timeout 30 ip netns exec $NS_C /usr/bin/python3 $ROOT/tests/e2e/hostname_client.py"
drops() { gw_stats | jq ".totals.drops.$1"; }
worker_sum() { gw_stats | jq "[.workers[].$1] | add"; }
# expect JSON STATUS BODY WHAT: the client's answer had that status (and body, unless BODY is "-")
expect() {
  local got_status got_body
  got_status=$(jq -r .status <<<"$1")
  got_body=$(jq -r .body <<<"$1")
  [ "$got_status" = "$2" ] && { [ "$3" = - ] || [ "$got_body" = "$3" ]; } || fail "$4: got $1"
}

# Capture everything the client sees from dpgw and everything the targets get, for the timestamp checks at the end.
ip netns exec "$NS_C" timeout 120 tcpdump -nn -i c0 -s 128 -w "$WORK/client.pcap" "host $GW_PUBLIC and tcp" \
  > /dev/null 2> "$WORK/tcpdump-client.log" &
CAP1=$!
PIDS+=("$CAP1")
ip netns exec "$NS_A" timeout 120 tcpdump -nn -i any -s 128 -w "$WORK/target.pcap" \
  "tcp and dst host $AGENT_IP and (dst port 80 or dst port 443)" > /dev/null 2> "$WORK/tcpdump-target.log" &
CAP2=$!
PIDS+=("$CAP2")
wait_for 5 "tcpdump" grep -q listening "$WORK/tcpdump-client.log"
wait_for 5 "tcpdump" grep -q listening "$WORK/tcpdump-target.log"

# Two clients that wait for more than 10 s, in the background while the rest runs: one never names its host, the
# other's target never answers.
ip netns exec "$NS_A" nft add table ip blackhole
ip netns exec "$NS_A" nft add chain ip blackhole in '{ type filter hook prerouting priority -150; }'
ip netns exec "$NS_A" nft add rule ip blackhole in ip daddr 10.99.2.5 drop
HOSTNAME_CLIENT_TIMEOUT=25 $CLIENT pieces "$GW_PUBLIC" 80 0 'GET / HTTP/1.1\r\n' > "$WORK/no-name.json" &
NO_NAME=$!
PIDS+=("$NO_NAME")
HOSTNAME_CLIENT_TIMEOUT=25 $CLIENT pieces "$GW_PUBLIC" 80 0 'GET / HTTP/1.1\r\nHost: blackhole.example\r\n\r\n' \
  > "$WORK/blackhole.json" &
BLACKHOLE=$!
PIDS+=("$BLACKHOLE")

log "first bytes in pieces with gaps: dpgw acknowledges what it keeps, the client sends the rest at once"
r=$($CLIENT pieces "$GW_PUBLIC" 80 0.3 'GET / HTTP/1.1\r\n' 'Host: app-a.example\r\nConnection: close\r\n\r\n')
expect "$r" 200 "backend a http" "request line, then the rest 0.3 s later"
r=$($CLIENT pieces "$GW_PUBLIC" 80 1.0 'GET / HTTP/1.1\r\n' 'Host: app-a.example\r\nConnection: close\r\n\r\n')
expect "$r" 200 "backend a http" "request line, then the rest 1 s later"
r=$($CLIENT pieces "$GW_PUBLIC" 80 0.2 'GET / HTTP/1.1\r\nHo' 'st: app-a.exa' 'mple\r\nConnection: close\r\n' '\r\n')
expect "$r" 200 "backend a http" "a Host line cut in two, over four pieces"
log "  request line + 0.3 s / 1 s gaps, Host line split over 4 pieces: answered"
r=$($CLIENT tls "$GW_PUBLIC" 443 app-a.example 0.3)
expect "$r" 200 "backend a https" "a ClientHello in three pieces 0.3 s apart"
log "  TLS ClientHello of $(jq .hello <<<"$r") bytes in 3 pieces, 0.3 s apart: answered"

log "big request heads are routed up to 32 kB; beyond, dpgw's 431 reaches the client"
for size in 9000 12000 15000 31000; do
  r=$($CLIENT head "$GW_PUBLIC" 80 $size app-a.example)
  expect "$r" 200 "backend a http" "a $size-byte request head"
done
grown=$(worker_sum bindings_grown)
[ "$grown" -ge 4 ] || fail "heads over 4 kB did not move to large buffers (bindings_grown $grown)"
too_big=$(drops head_too_big)
for size in 40000 100000; do
  r=$($CLIENT head "$GW_PUBLIC" 80 $size app-a.example)
  expect "$r" 431 "dptun: request head over 32768 bytes" "a $size-byte request head"
done
[ "$(drops head_too_big)" -eq $((too_big + 2)) ] || fail "head_too_big not counted twice"
log "  9, 12, 15, 31 kB heads -> backend a (bindings_grown $grown); 40 kB, 100 kB -> 431, counted"
r=$($CLIENT tls "$GW_PUBLIC" 443 app-a.example 0.1 20000)
expect "$r" 200 "backend a https" "a 20 kB ClientHello"
hello_size=$(jq .hello <<<"$r")
r=$($CLIENT tls "$GW_PUBLIC" 443 app-a.example 0.1 40000)
[ "$(jq -r .status <<<"$r")" = 0 ] || fail "a 40 kB ClientHello got an answer: $r"
[ "$(drops head_too_big)" -eq $((too_big + 3)) ] || fail "a 40 kB ClientHello not counted as head_too_big"
log "  TLS: a $hello_size-byte ClientHello routed; a 40 kB one reset ($(jq -r .error <<<"$r")), counted"

log "the host the origin server uses: absolute form, conflicts refused (400), name forms"
r=$($CLIENT pieces "$GW_PUBLIC" 80 0 'GET http://app-a.example/ HTTP/1.0\r\n\r\n')
expect "$r" 200 "backend a http" "absolute form without Host (HTTP/1.0)"
r=$($CLIENT pieces "$GW_PUBLIC" 80 0 'GET http://app-a.example/ HTTP/1.1\r\nHost: app-a.example:80\r\nConnection: close\r\n\r\n')
expect "$r" 200 "backend a http" "absolute form with the same Host"
amb=$(drops ambiguous_host)
n=0
for req in 'GET http://private.example/ HTTP/1.1\r\nHost: app-b.example\r\nConnection: close\r\n\r\n' \
           'GET http://app-a.example/ HTTP/1.1\r\nHost: app-b.example\r\nConnection: close\r\n\r\n' \
           'GET / HTTP/1.1\r\nHost: app-b.example\r\nHost: private.example\r\nConnection: close\r\n\r\n' \
           'GET / HTTP/1.1\r\nHost : private.example\r\nHost: app-b.example\r\nConnection: close\r\n\r\n' \
           'GET / HTTP/1.1\r\nHost: app-b.example\r\n private.example\r\nConnection: close\r\n\r\n' \
           'GET / HTTP/1.1\r\nX: y\rHost: private.example\r\nHost: app-b.example\r\n\r\n'; do
  r=$($CLIENT pieces "$GW_PUBLIC" 80 0 "$req")
  expect "$r" 400 "dptun: the request does not name its host clearly" "'$req'"
  n=$((n + 1))
done
[ "$(drops ambiguous_host)" -eq $((amb + n)) ] || fail "ambiguous_host: $(drops ambiguous_host), expected $((amb + n))"
log "  absolute form -> its authority; Host naming another host, two Hosts, 'Host :', obs-fold, bare CR -> 400 ($n, counted)"
no_host=$(drops no_hostname)
r=$($CLIENT pieces "$GW_PUBLIC" 80 0 'GET / HTTP/1.0\r\n\r\n')
expect "$r" 400 - "HTTP/1.0 without Host"
[ "$(drops no_hostname)" -eq $((no_host + 1)) ] || fail "no_hostname not counted"
r=$($CLIENT pieces "$GW_PUBLIC" 80 0 'GET / HTTP/1.1\r\nHost: APP-A.Example.:80\r\nConnection: close\r\n\r\n')
expect "$r" 200 "backend a http" "Host with upper case, trailing dot and port"
r=$($CLIENT pieces "$GW_PUBLIC" 80 0 'GET / HTTP/1.1\nHost: app-a.example\nConnection: close\n\n')
expect "$r" 200 "backend a http" "bare LF line ends"
r=$($CLIENT pieces "$GW_PUBLIC" 80 0 'GET / HTTP/1.1\r\nHost: private.example\r\nConnection: close\r\n\r\n')
expect "$r" 502 "no route for this hostname" "a private rule from the public entry point"
log "  HTTP/1.0 without Host -> 400; 'APP-A.Example.:80' and bare LF -> a; a private name -> 502"

log "a path to the target that loses every third packet: dpgw sends its SYN and the first bytes again"
ip netns exec "$NS_A" nft -f - <<NFT
table ip lossy {
  chain in { type filter hook prerouting priority -150; ip daddr $LOSSY_IP tcp dport 80 numgen inc mod 3 == 0 drop; }
}
NFT
resent=$(worker_sum binding_retransmits)
for i in 1 2 3; do
  r=$($CLIENT head "$GW_PUBLIC" 80 12000 lossy.example)
  expect "$r" 200 "backend lossy" "a 12 kB head to a lossy target (try $i)"
done
ip netns exec "$NS_A" nft delete table ip lossy
resent=$(( $(worker_sum binding_retransmits) - resent ))
[ "$resent" -ge 1 ] || fail "nothing was sent again to the lossy target"
log "  3/3 answered; dpgw sent $resent segments again (binding_retransmits)"

log "TCP timestamps rise for every connection, from the SYN-ACK on (client's side) and from the SYN on (target's)"
for i in $(seq 1 24); do
  [ "$(timeout 20 ip netns exec "$NS_C" curl -s --max-time 10 --resolve "app-a.example:80:$GW_PUBLIC" http://app-a.example/)" = "backend a http" ] \
    || fail "curl $i"
done
for i in 1 2 3; do
  r=$($CLIENT pieces "$GW_PUBLIC" 80 0.15 'GET / HTTP/1.1\r\n' 'Host: app-a.example\r\nConnection: close\r\n\r\n')
  expect "$r" 200 "backend a http" "gapped request $i"
  r=$($CLIENT tls "$GW_PUBLIC" 443 app-a.example 0.05)
  expect "$r" 200 "backend a https" "TLS request $i"
done
sleep 1
kill "$CAP1" "$CAP2" 2> /dev/null || true
wait "$CAP1" "$CAP2" 2> /dev/null || true
for port in 80 443; do
  ts=$(/usr/bin/python3 "$ROOT/tests/e2e/hostname_client.py" timestamps "$WORK/client.pcap" "$GW_PUBLIC" $port)
  [ "$(jq .went_back_count <<<"$ts")" -eq 0 ] || fail "TSvals from dpgw:$port went back: $ts"
  [ "$port" = 443 ] || [ "$(jq .connections <<<"$ts")" -ge 30 ] || fail "fewer than 30 connections captured: $ts"
  log "  client side, from dpgw:$port: $(jq -c '{connections, segments, went_back_count}' <<<"$ts")"
  ts=$(/usr/bin/python3 "$ROOT/tests/e2e/hostname_client.py" timestamps "$WORK/target.pcap" "$AGENT_IP" $port to)
  [ "$(jq .went_back_count <<<"$ts")" -eq 0 ] || fail "TSvals towards the target:$port went back: $ts"
  [ "$(jq .connections <<<"$ts")" -ge 4 ] || fail "too few connections captured at the target: $ts"
  log "  target side, to $AGENT_IP:$port: $(jq -c '{connections, segments, went_back_count}' <<<"$ts")"
done

log "steps that take too long: reset after 10 s, counted"
wait "$NO_NAME" || true
wait "$BLACKHOLE" || true
for f in no-name blackhole; do
  jq -e '.status == 0 and (.error | test("reset"))' "$WORK/$f.json" > /dev/null || fail "$f: $(cat "$WORK/$f.json")"
done
[ "$(drops hostname_timeout)" -eq 1 ] || fail "hostname_timeout: $(drops hostname_timeout)"
[ "$(drops target_timeout)" -eq 1 ] || fail "target_timeout: $(drops target_timeout)"
log "  no name in 10 s: reset after $(jq .seconds "$WORK/no-name.json") s; no answer from the target: reset after $(jq .seconds "$WORK/blackhole.json") s"

log "the new drop reasons are in dpgw stats"
"$DPGW" stats --socket "$WORK/dpgw.sock" > "$WORK/stats.txt"
for reason in head_too_big ambiguous_host no_hostname hostname_timeout target_timeout; do
  grep -q "$reason" "$WORK/stats.txt" || fail "dpgw stats does not show $reason"
done
log "PASS"
