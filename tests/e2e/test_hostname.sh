#!/usr/bin/env bash
# Hostname routing end to end: two tunnels served by two agents, shared public ports, the backend chosen by the
# name the client asks for.
#  - TCP (nginx with one virtual host per tunnel, curl): one :80 by HTTP Host and one :443 by TLS SNI, by
#    delayed binding; a wildcard; a name without a rule (HTTP 502 / reset); a ClientHello larger than a segment;
#    large downloads; the handshake options in a packet capture on both sides; a PROXY protocol v2 header;
#    clients that only send SYNs (no state) and a bounded SYN flood while requests keep succeeding; more slow
#    clients (one byte, then nothing) than binding buffers while requests keep succeeding.
#  - QUIC (HTTP/3 with ngtcp2's client and server): the SNI of the client's Initial picks the rule; a wildcard
#    rule; a name no rule matches; a private rule refused from the public entry point; a ClientHello over two
#    Initials, with the name in the first (GnuTLS, FFDHE key share) and only in the second (quic_probe.py).
source "$(dirname "$0")/lib.sh"

topology_up
bash "$ROOT/tests/e2e/pki.sh" "$WORK/pki" "$GW_UNDERLAY"
GW_STATIC=0 GW_SESSION_TIMEOUT=1.5 GW_KERNEL_IF=dpgw-under write_gw_conf 1 false
write_dpctld_conf "$GW_UNDERLAY:7443"
start_gw
start_dpctld "$NS_G"

dpctl tunnel add web-a --allow CN=agent-1 > /dev/null
dpctl tunnel add web-b --allow CN=agent-2 > /dev/null
B_IP=10.99.2.3
for n in 1 2; do
  t=$([ $n = 1 ] && echo web-a || echo web-b)
  # agent-1 also routes by hostname itself, for rules without a target: two names, and a fallback.
  routes=()
  [ $n = 1 ] && routes=(--route "x.agent.example=$AGENT_IP:8081" --route "quic.agent.example=$AGENT_IP:4431" --fallback "$B_IP")
  ip netns exec "$NS_A" "$DPAGENT" --server "$GW_UNDERLAY:7443" --ca "$WORK/pki/ca.pem" --cert "$WORK/pki/agent$n.pem" \
    --key "$WORK/pki/agent$n.key" --tunnel "$t" --name "agent-$n" "${routes[@]}" > "$WORK/agent-$n.out" 2> "$WORK/agent-$n.log" &
  PIDS+=("$!")
  [ $n = 1 ] && AGENT1_PID=$!
done
two_live() { [ "$(dpctl --json session list | jq '[.sessions[] | select(.live)] | length')" -eq 2 ]; }
wait_for 20 "both agents live" two_live
agents_since=$(date +%s)

# Two QUIC (HTTP/3) servers on the agent host, one per tunnel, each with its own page.
for b in a b; do
  mkdir -p "$WORK/htdocs-$b"
  echo "backend $b" > "$WORK/htdocs-$b/index.html"
done
ip netns exec "$NS_A" gtlsserver -q -d "$WORK/htdocs-a" "$AGENT_IP" 4431 "$WORK/pki/server.key" "$WORK/pki/server.pem" \
  > "$WORK/quic-a.log" 2>&1 &
PIDS+=("$!")
ip netns exec "$NS_A" gtlsserver -q -d "$WORK/htdocs-b" "$AGENT_IP" 4432 "$WORK/pki/server.key" "$WORK/pki/server.pem" \
  > "$WORK/quic-b.log" 2>&1 &
PIDS+=("$!")

# nginx on the agent host: backend a on 10.99.2.2, backend b on 10.99.2.3, each with :80 and :443 (and a PROXY
# protocol port on a). Only dpgw's routing decides which one a client reaches.
ip -n "$NS_A" addr add "$B_IP/24" dev a0
head -c 4194304 /dev/urandom > "$WORK/htdocs-a/big.bin"
cp "$WORK/htdocs-a/big.bin" "$WORK/htdocs-b/big.bin"
start_nginx "$NS_A" <<NGINX
  ssl_certificate $WORK/pki/server.pem;
  ssl_certificate_key $WORK/pki/server.key;
  server { listen $AGENT_IP:80; listen $AGENT_IP:443 ssl; root $WORK/htdocs-a;
           location = / { return 200 "backend a \$scheme\n"; } }
  server { listen $B_IP:80; listen $B_IP:443 ssl; root $WORK/htdocs-b;
           location = / { return 200 "backend b \$scheme\n"; } }
  server { listen $AGENT_IP:8088 proxy_protocol; location = / { return 200 "client \$proxy_protocol_addr:\$proxy_protocol_port\n"; } }
  server { listen $AGENT_IP:8081; location = / { return 200 "agent-routed x\n"; } }
NGINX
wait_for 10 "nginx" ip netns exec "$NS_A" bash -c "ss -ltn | grep -q '$B_IP:443 '"

log "one TCP :80 (HTTP Host) and one TCP :443 (TLS SNI) for both tunnels, by delayed binding"
dpctl entry add tcp 80 --route http > /dev/null
dpctl entry add tcp 443 --route sni > /dev/null
dpctl ingress add app-a.example web-a --target "$AGENT_IP" > /dev/null
dpctl ingress add app-b.example web-b --target "$B_IP" > /dev/null
dpctl ingress add '*.wild.example' web-b --target "$B_IP" > /dev/null
dpctl ingress add pp.example web-a --target "$AGENT_IP:8088" --proxy-protocol > /dev/null
dpctl ingress add '*.agent.example' web-a > /dev/null  # no target: agent-1 picks it by the hostname
tcp_rules() { [ "$(gw_stats | jq '.ingress.rules // 0')" -eq 5 ]; }
wait_for 10 "dpgw compiled the TCP rules" tcp_rules
# get SCHEME NAME [PATH]: the body (curl resolves NAME to the gateway's public address)
get() {
  local port=80; [ "$1" = https ] && port=443
  timeout 20 ip netns exec "$NS_C" curl -sk --max-time 15 --resolve "$2:$port:$GW_PUBLIC" "$1://$2${3:-/}"
}
for scheme in http https; do
  [ "$(get $scheme app-a.example)" = "backend a $scheme" ] || fail "$scheme app-a.example: '$(get $scheme app-a.example)'"
  [ "$(get $scheme app-b.example)" = "backend b $scheme" ] || fail "$scheme app-b.example: '$(get $scheme app-b.example)'"
  [ "$(get $scheme deep.x.wild.example)" = "backend b $scheme" ] || fail "$scheme wildcard"
done
log "  app-a.example -> a, app-b.example and *.wild.example -> b, over http and https"
code=$(timeout 20 ip netns exec "$NS_C" curl -s -o /dev/null -w '%{http_code}' --max-time 10 --resolve "nobody.example:80:$GW_PUBLIC" http://nobody.example/)
[ "$code" = 502 ] || fail "an HTTP name without a rule got $code, not 502"
rc=0; timeout 20 ip netns exec "$NS_C" curl -sk --max-time 10 --resolve "nobody.example:443:$GW_PUBLIC" https://nobody.example/ > /dev/null 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "a TLS name without a rule got through"
[ "$(gw_stats | jq '.totals.drops.no_rule')" -ge 2 ] || fail "no_rule not counted"
log "  a name without a rule: HTTP 502, TLS reset (curl exit $rc), counted"

log "a client that sends its request and closes its side at once (FIN with the request) gets its answer"
halfclose=$(timeout 20 ip netns exec "$NS_C" python3 -c '
import socket, sys
s = socket.create_connection(("'"$GW_PUBLIC"'", 80), timeout=10)
s.sendall(b"GET / HTTP/1.0\r\nHost: app-a.example\r\n\r\n")
s.shutdown(socket.SHUT_WR)
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.decode(errors="replace").split("\r\n\r\n", 1)[-1])
')
[ "$halfclose" = "backend a http" ] || fail "request + FIN: '$halfclose'"

log "agent-side routing: a rule without a target, the agent's --route names and its --fallback"
[ "$(get http x.agent.example)" = "agent-routed x" ] || fail "x.agent.example (agent route): '$(get http x.agent.example)'"
[ "$(get http other.agent.example)" = "backend b http" ] || fail "other.agent.example (agent fallback, :80)"
[ "$(get https other.agent.example)" = "backend b https" ] || fail "other.agent.example (agent fallback, :443)"
kill -USR1 "$AGENT1_PID"  # dpagent prints its counters as a JSON line
sleep 0.5
[ "$(tail -1 "$WORK/agent-1.out" | jq '.routed_flows')" -ge 3 ] || fail "agent-1's routed flows: $(tail -1 "$WORK/agent-1.out")"
log "  x.agent.example -> agent-1's route, other.agent.example -> its fallback (:80 and :443)"

log "large downloads through the splice (sequence, window and timestamp translation at speed)"
want=$(sha256sum < "$WORK/htdocs-a/big.bin" | cut -d' ' -f1)
for scheme in http https; do
  got=$(get $scheme app-b.example /big.bin | sha256sum | cut -d' ' -f1)
  [ "$got" = "$want" ] || fail "$scheme 4 MB download through the splice is corrupt or short"
done

log "a ClientHello larger than one segment (a long ALPN list)"
alpn=$(for i in $(seq 1 120); do printf 'proto-%03d-padding-xx,' "$i"; done)http/1.1
printf 'GET / HTTP/1.1\r\nHost: app-a.example\r\nConnection: close\r\n\r\n' |
  timeout 20 ip netns exec "$NS_C" openssl s_client -quiet -connect "$GW_PUBLIC:443" -servername app-a.example \
    -alpn "$alpn" > "$WORK/bighello.out" 2> "$WORK/bighello.err" || true
grep -q "backend a https" "$WORK/bighello.out" || fail "big ClientHello: $(tail -3 "$WORK/bighello.err")"

log "the PROXY protocol v2 header gives the target the client's address"
pp=$(get http pp.example)
echo "$pp" | matches -E '^client 10\.99\.1\.2:[0-9]+$' || fail "PROXY protocol: target saw '$pp'"

log "handshake options in packet captures: the client's side (dpgw's SYN-ACK) and the target's (dpgw's SYN)"
ip netns exec "$NS_C" timeout 15 tcpdump -nn -i c0 -c 2 -w "$WORK/client.pcap" 'tcp port 443 and tcp[tcpflags] & tcp-syn != 0' > /dev/null 2>&1 &
cap1=$!
ip netns exec "$NS_A" timeout 15 tcpdump -nn -i any -c 2 -w "$WORK/server.pcap" "tcp dst port 443 and host $AGENT_IP and tcp[tcpflags] & tcp-syn != 0" > /dev/null 2>&1 &
cap2=$!
sleep 1
get https app-a.example > /dev/null
wait $cap1 $cap2 || true
synack=$(tcpdump -nn -r "$WORK/client.pcap" 2>/dev/null | awk '!n && /Flags \[S\.\]/ { print; n = 1 }')
echo "$synack" | matches 'mss 1388' && echo "$synack" | matches 'sackOK' && echo "$synack" | matches 'TS val' &&
  echo "$synack" | matches 'wscale 7' || fail "dpgw's SYN-ACK to the client: $synack"
syn=$(tcpdump -nn -r "$WORK/server.pcap" 2>/dev/null | awk '!n && /Flags \[S\]/ { print; n = 1 }')
client_syn=$(tcpdump -nn -r "$WORK/client.pcap" 2>/dev/null | awk '!n && /Flags \[S\]/ { print; n = 1 }')
cws=$(echo "$client_syn" | grep -o 'wscale [0-9]*')
echo "$syn" | matches 'sackOK' && echo "$syn" | matches 'TS val' && echo "$syn" | matches "$cws" &&
  echo "$syn" | matches -E 'mss (1388|13[0-9][0-9])' || fail "dpgw's SYN to the target: $syn (client sent: $client_syn)"
log "  to client: $(echo "$synack" | grep -o 'options.*')"
log "  to target: $(echo "$syn" | grep -o 'options.*')"

log "clients that only send SYNs leave no state; a bounded SYN flood does not stop real requests"
before_started=$(gw_stats | jq '[.workers[].bindings_started] | add')
before_cookies=$(gw_stats | jq '[.workers[].syn_cookies_sent] | add')
timeout 10 ip netns exec "$NS_C" hping3 -q -S -p 443 -c 20 -i u10000 "$GW_PUBLIC" > /dev/null 2>&1 || true
[ "$(gw_stats | jq '[.workers[].syn_cookies_sent] | add')" -ge $((before_cookies + 20)) ] || fail "SYN cookies not sent"
[ "$(gw_stats | jq '[.workers[].bindings_started] | add')" -eq "$before_started" ] || fail "SYNs alone created state"
timeout 20 ip netns exec "$NS_C" hping3 -q -S -p 443 -c 30000 -i u100 --rand-source "$GW_PUBLIC" > /dev/null 2>&1 &
flood=$!
ok=0
for i in $(seq 1 10); do [ "$(get https app-a.example)" = "backend a https" ] && ok=$((ok + 1)); done
wait $flood || true
[ "$ok" -eq 10 ] || fail "only $ok of 10 requests succeeded during the SYN flood"
log "  10/10 requests during 30000 SYNs; bindings held: $(gw_stats | jq '[.workers[].flows_active] | add') flows"

log "slow clients (one byte, then nothing) take every binding buffer: the slowest give way, requests go on"
# 1100 connections against 1024 buffers per worker, each holding one byte of a request for up to 10 s.
evicted_before=$(gw_stats | jq '[.workers[].bindings_evicted] | add')
timeout 60 ip netns exec "$NS_C" /usr/bin/python3 "$ROOT/tests/e2e/slow_clients.py" "$GW_PUBLIC" 80 1100 6 \
  > "$WORK/slow.json" 2> "$WORK/slow.log" &
slow=$!
opened() { grep -q opened "$WORK/slow.log"; }
wait_for 40 "1100 slow connections opened" opened
ok=0
for i in $(seq 1 5); do [ "$(get http app-a.example)" = "backend a http" ] && ok=$((ok + 1)); done
wait $slow || true
[ "$ok" -eq 5 ] || fail "only $ok of 5 requests succeeded with every binding buffer taken"
evicted=$(( $(gw_stats | jq '[.workers[].bindings_evicted] | add') - evicted_before ))
[ "$evicted" -ge 76 ] || fail "bindings_evicted grew by $evicted, expected at least 76 (1100 + 5 - 1024 + ...)"
[ "$(jq .reset "$WORK/slow.json")" -ge 70 ] || fail "evicted slow clients were not reset: $(cat "$WORK/slow.json")"
log "  5/5 requests; slow clients: $(cat "$WORK/slow.json"), bindings_evicted +$evicted"

log "one UDP :443 for both tunnels, routed by the SNI of the QUIC Initial"
dpctl entry add udp 443 --route quic --keepalive --ttl 30 | matches "routed by quic" || fail "entry add --route quic"
dpctl ingress add quic-a.example web-a --target "$AGENT_IP:4431" > /dev/null
dpctl ingress add '.b.example' web-b --target "$AGENT_IP:4432" > /dev/null
dpctl ingress add secret.example web-a --target "$AGENT_IP:4431" --private > /dev/null
rules_compiled() { [ "$(gw_stats | jq '.ingress.rules // 0')" -eq 8 ]; }
wait_for 10 "dpgw compiled the 8 rules" rules_compiled

# The client resolves every test name to the gateway's public address (its SNI is then the name).
netns_hosts "$NS_C" "$GW_PUBLIC quic-a.example QUIC-A.Example www.b.example b.example nothing.example secret.example quic.agent.example"
# quic_get NAME [gtlsclient options]: fetches https://NAME/index.html over HTTP/3 through the gateway; prints the page.
quic_get() {
  rm -rf "$WORK/dl" && mkdir -p "$WORK/dl"
  timeout 10 ip netns exec "$NS_C" gtlsclient -q --no-pmtud --max-udp-payload-size=1200 --handshake-timeout=3s \
    --exit-on-all-streams-close --download="$WORK/dl" "${@:2}" "$1" 443 "https://$1/index.html" \
    > "$WORK/quic-client.log" 2>&1 || true
  cat "$WORK/dl/index.html" 2>/dev/null || true
}
drops() { gw_stats | jq ".totals.drops.$1"; }
[ "$(quic_get quic-a.example)" = "backend a" ] || fail "quic-a.example did not reach backend a: $(cat "$WORK/quic-client.log")"
[ "$(quic_get www.b.example)" = "backend b" ] || fail "www.b.example (wildcard) did not reach backend b"
[ "$(quic_get b.example)" = "backend b" ] || fail "b.example (the wildcard's own domain) did not reach backend b"
[ "$(quic_get QUIC-A.Example)" = "backend a" ] || fail "names are case-insensitive"
log "  quic-a.example -> backend a, www.b.example and b.example -> backend b"
[ "$(gw_stats | jq '[.workers[].quic_initials.found] | add')" -ge 4 ] || fail "Initials not counted as found"

no_rule_before=$(drops no_rule)
[ -z "$(quic_get nothing.example)" ] || fail "a name without a rule got through"
[ "$(drops no_rule)" -gt "$no_rule_before" ] || fail "no_rule not counted"
private_before=$(drops private_rule)
[ -z "$(quic_get secret.example)" ] || fail "a private rule was reachable from the public entry point"
[ "$(drops private_rule)" -gt "$private_before" ] || fail "private_rule not counted"
log "  a name without a rule and a private rule: refused and counted"

[ "$(quic_get quic.agent.example)" = "backend a" ] || fail "quic.agent.example (agent-side routing over QUIC)"
log "  quic.agent.example -> agent-1's route (the name rides the first datagrams to the agent)"

log "a ClientHello over two Initials"
worker_sum() { gw_stats | jq "[.workers[].$1] | add"; }
# GnuTLS with an FFDHE-8192 key share first: a 1.3 kB ClientHello in two Initials and a real HTTP/3 exchange. Its
# name is in the first Initial: routed at once, the second follows the flow (no hold).
[ "$(quic_get quic-a.example --groups=-GROUP-ALL:+GROUP-FFDHE8192:+GROUP-X25519)" = "backend a" ] \
  || fail "a two-Initial ClientHello (FFDHE key share) did not reach backend a: $(cat "$WORK/quic-client.log")"
# The server name only in the second Initial (tests/e2e/quic_probe.py): dpgw holds the first until the second
# names the host, then sends both on. The probe's ClientHello is one the server must refuse, and only a server
# that got all of it can: its CONNECTION_CLOSE carries a TLS alert (0x100 + alert).
PROBE="/usr/bin/python3 $ROOT/tests/e2e/quic_probe.py $GW_PUBLIC 443 quic-a.example"
# tls_alert JSON: true when the probe's answer is a CONNECTION_CLOSE with a TLS alert (QUIC error 0x100-0x1ff).
tls_alert() { local c; c=$(jq -r .close_error <<<"$1"); [[ "$c" =~ ^[0-9]+$ ]] && [ "$c" -ge 256 ] && [ "$c" -le 511 ]; }
# probe_held ORDER NAME: runs the probe; checks dpgw held the flow and sent exactly one held datagram on.
probe_held() {
  local held=$(worker_sum quic_flows_held) sent=$(worker_sum quic_held_sent)
  r=$(ip netns exec "$NS_C" /usr/bin/python3 "$ROOT/tests/e2e/quic_probe.py" "$GW_PUBLIC" 443 "$2" "$1" 3)
  [ "$(worker_sum quic_flows_held)" -eq $((held + 1)) ] || fail "$1 $2: the flow was not held once: $r"
  [ "$(worker_sum quic_held_sent)" -eq $((sent + 1)) ] || fail "$1 $2: not one held datagram sent on: $r"
}
probe_held in-order quic-a.example
tls_alert "$r" || fail "name in the second Initial: the server did not get the whole ClientHello: $r"
log "  name in the second Initial: held, sent on, the server read all of it (TLS alert $(( $(jq .close_error <<<"$r") - 256 ))): $r"
# Through a rule without a target: the held datagrams carry the name to the agent, which picks the server.
probe_held in-order quic.agent.example
tls_alert "$r" || fail "name in the second Initial, agent-side routing: $r"
log "  the same through agent-side routing: $r"
# The other way round the server gets the datagrams in that order: ngtcp2 answers a first Initial that does not
# start the ClientHello with a Retry, which comes back through the flow.
probe_held reversed quic-a.example
[ "$(jq -r .close_error <<<"$r")" = retry ] || fail "reversed Initials: expected the server's Retry: $r"
log "  the same, second datagram first: $r"
# Only the first part: held, never sent on.
r=$(ip netns exec "$NS_C" $PROBE first-only 2)
[ "$(jq -r .replies <<<"$r")" = 0 ] || fail "an incomplete ClientHello was sent on: $r"
# The second part 3.5 s later: the hold was given up after 3 s, so it starts a new hold and completes nothing.
held=$(worker_sum quic_flows_held)
r=$(ip netns exec "$NS_C" $PROBE late-second:3.5 2)
[ "$(jq -r .replies <<<"$r")" = 0 ] || fail "a hold outlived its 3 s: $r"
[ "$(worker_sum quic_flows_held)" -eq $((held + 2)) ] || fail "the late second Initial did not start a new hold"
log "  only the first part: held, never sent on; the second 3.5 s later: the hold was over ($r)"
# A client that starts over on the same port (a new connection, another DCID) while its first one is held.
held=$(worker_sum quic_flows_held)
r=$(ip netns exec "$NS_C" $PROBE restart 3)
tls_alert "$r" || fail "a client that started over on the same port: $r"
[ "$(worker_sum quic_flows_held)" -eq $((held + 2)) ] || fail "the new connection did not replace the hold"
log "  a client that starts over on the same port replaces its hold: $r"
# More holds than the pool has (1024 per worker): the oldest make room, and clients still get through.
evicted=$(worker_sum quic_holds_evicted)
ip netns exec "$NS_C" $PROBE hold-flood:1100 1 > /dev/null
[ "$(worker_sum quic_holds_evicted)" -gt "$evicted" ] || fail "a full hold pool did not make room"
probe_held in-order quic-a.example
tls_alert "$r" || fail "after 1100 held Initials, a client with a two-Initial ClientHello: $r"
[ "$(quic_get quic-a.example)" = "backend a" ] || fail "after 1100 held Initials, HTTP/3 to quic-a.example"
log "  1100 incomplete Initials: $(( $(worker_sum quic_holds_evicted) - evicted )) oldest holds gave way; clients still served"

log "rules change at runtime: the name moves to the other tunnel"
dpctl ingress del quic-a.example > /dev/null
dpctl ingress add quic-a.example web-b --target "$AGENT_IP:4432" > /dev/null
moved() { [ "$(quic_get quic-a.example)" = "backend b" ]; }
wait_for 10 "quic-a.example served by backend b" moved

# The whole run on one control connection each: the agents ping every 10 s, dpctld answers, and an agent that hears
# nothing for 30 s reconnects.
for n in 1 2; do
  regs=$(grep -c "registered with dpctld" "$WORK/agent-$n.log")
  [ "$regs" -eq 1 ] && ! grep -q "control connection to dpctld .* lost" "$WORK/agent-$n.log" ||
    fail "agent-$n's control connection did not stay up ($regs registrations): $(grep dpctld "$WORK/agent-$n.log" | tail -3)"
done
log "the agents' control connections stayed up the whole run ($(( $(date +%s) - agents_since )) s, pings answered)"
log "PASS"
