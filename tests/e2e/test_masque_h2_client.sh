#!/usr/bin/env bash
# dpagent udp's HTTP/2 fallback (issue 12, docs/masque.md "The client: dpagent udp") against an independent server:
# tests/e2e/h2_connect_udp_server.py (python3-h2, not nghttp2), TLS 1.3 with tests/e2e/pki.sh's certificates and ALPN
# h2 on TCP 127.0.0.1:443 inside a namespace of its own, where UDP 443 is closed. It offers extended CONNECT
# (SETTINGS_ENABLE_CONNECT_PROTOCOL), answers CONNECT-UDP to echo.corp.test:7 with 200 and echoes each DATAGRAM
# capsule prefixed with "echo:", and answers any other target 404 with a Proxy-Status.
# - --http auto (the default): HTTP/3 first; the closed UDP port (ICMP port unreachable) makes dpagent log once that
#   it uses HTTP/2 over TCP, the first request is accepted over HTTP/2 at start; datagrams of two local sources (one
#   bigger than any QUIC packet) come back echoed, each source on its own connection and request; counters name the
#   protocol. With UDP 443 silently dropped (no ICMP), the fallback comes after 3 s.
# - A target the server does not serve: 404, dpagent ends with status 1 and names the status and Proxy-Status.
# - --http 3 against the closed UDP port: no fallback (dpagent keeps retrying HTTP/3, the server sees nothing).
# - --http 2: HTTP/2 at once, no HTTP/3 attempt. TLS failures over TCP classified as over QUIC: a --ca that does
#   not verify the server (untrusted_server_cert), a client certificate the server refuses (client_cert_rejected):
#   status 1 with the advice.
source "$(dirname "$0")/lib.sh"
NS=$DPT_PREFIX-h2c
EXTRA_NETNS+=("$NS")
PY=/usr/bin/python3  # Debian's python3-h2 (not a pyenv python3 on PATH)
[ -x "$DPAGENT" ] || fail "dpagent not built ($DPAGENT)"
"$PY" -c 'import h2' 2> /dev/null || fail "python3-h2 missing for $PY (Debian package python3-h2; scripts/install-deps.sh)"
ip netns add "$NS"
ip -n "$NS" link set lo up
netns_hosts "$NS" "127.0.0.1 gw.h2.test"
bash "$ROOT/tests/e2e/pki.sh" "$WORK/pki" 127.0.0.1

ip netns exec "$NS" "$PY" "$ROOT/tests/e2e/h2_connect_udp_server.py" --listen 127.0.0.1:443 \
  --cert "$WORK/pki/server.pem" --key "$WORK/pki/server.key" --ca "$WORK/pki/ca.pem" --target echo.corp.test:7 \
  > "$WORK/server.log" 2>&1 &
PIDS+=($!)
tcp_listening() { ip netns exec "$NS" ss -ltn | matches '127.0.0.1:443 '; }
wait_for 10 "the HTTP/2 server listening on tcp 443" tcp_listening
ip netns exec "$NS" ss -lun | matches ':443 ' && fail "something listens on UDP 443"

# The request's :authority is gw.h2.test:443 (--via); the server's certificate names dpctld.test.
UDP_ARGS=(--via https://gw.h2.test:443 --server-name dpctld.test --cert "$WORK/pki/agent1.pem" --key "$WORK/pki/agent1.key"
          --ca "$WORK/pki/ca.pem")
# udp_stats PID OUT: the JSON line dpagent prints on SIGUSR1
udp_stats() {
  local pid=$1 out=$2 n
  n=$(grep -c '^{' "$out" || true)
  kill -USR1 "$pid"
  for _ in $(seq 50); do
    [ "$(grep -c '^{' "$out" || true)" -gt "$n" ] && break
    sleep 0.1
  done
  grep '^{' "$out" | tail -1
}

log "--http auto: UDP 443 closed (ICMP), dpagent falls back to HTTP/2 over TCP and the first request is accepted"
ip netns exec "$NS" "$DPAGENT" udp "${UDP_ARGS[@]}" --target echo.corp.test:7 --listen 127.0.0.1:5300 \
  --log-level debug > "$WORK/auto.out" 2> "$WORK/auto.log" &
AUTO_PID=$!
PIDS+=("$AUTO_PID")
auto_accepted() { matches -F "gateway accepted CONNECT-UDP to echo.corp.test:7 (HTTP/2, status 200" < "$WORK/auto.log"; }
wait_for 10 "dpagent udp logs the 200 over HTTP/2" auto_accepted
[ "$(grep -c 'gateway unreachable over HTTP/3 (UDP): using HTTP/2 over TCP' "$WORK/auto.log")" = 1 ] ||
  fail "the fallback was not logged once: $(cat "$WORK/auto.log")"
matches -F "answered ICMP port unreachable" < "$WORK/auto.log" || fail "the fallback did not say why: $(cat "$WORK/auto.log")"
log "  $(grep -m1 -o 'gateway unreachable over HTTP/3.*' "$WORK/auto.log")"
# What the independent server read: extended CONNECT with the CONNECT-UDP fields, over TLS with ALPN h2 and our
# client certificate.
matches -F "CONNECTION ('127.0.0.1'" < "$WORK/server.log" || fail "server: $(cat "$WORK/server.log")"
matches -F "alpn h2 client agent-1" < "$WORK/server.log" || fail "server: $(cat "$WORK/server.log")"
matches -F "REQUEST :method=CONNECT :protocol=connect-udp :scheme=https :authority=gw.h2.test:443 :path=/.well-known/masque/udp/echo.corp.test/7/ capsule-protocol=?1" \
  < "$WORK/server.log" || fail "the server read another request: $(grep REQUEST "$WORK/server.log")"

log "--http auto: datagrams of two local sources echoed through DATAGRAM capsules, one connection and request each"
ip netns exec "$NS" "$PY" - > "$WORK/client.out" 2>&1 <<'PY' || fail "local client: $(cat "$WORK/client.out")"
import socket
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
a.settimeout(5)
b.settimeout(5)
sent_a = [b"query %d" % i for i in range(3)] + [bytes(range(256)) * 12]  # 3072 bytes: more than a QUIC packet holds
for d in sent_a:
    a.sendto(d, ("127.0.0.1", 5300))
b.sendto(b"from b", ("127.0.0.1", 5300))
got_a = [a.recvfrom(65535)[0] for _ in sent_a]
got_b = b.recvfrom(65535)[0]
assert got_a == [b"echo:" + d for d in sent_a], got_a
assert got_b == b"echo:from b", got_b
print("echoes ok:", len(got_a) + 1)
PY
log "  $(cat "$WORK/client.out")"
udp_stats "$AUTO_PID" "$WORK/auto.out" > "$WORK/auto-stats.json"
jq -e '.http == "auto" and .protocol == "h2" and .fallbacks == 1 and .connections_h3 == 1 and .connections_h2 == 2 and
       .open_h2 == 2 and .open_h3 == 0 and .sources == 2 and .accepted == 2 and .refused == 0 and
       .datagrams_tx == 5 and .datagrams_rx == 5 and .capsules_rx == 5 and .bytes_tx == 3099 and
       .bytes_rx == 3124 and .drops.congested == 0 and .drops.context == 0' "$WORK/auto-stats.json" > /dev/null ||
  fail "dpagent udp counters: $(cat "$WORK/auto-stats.json")"
log "  $(jq -c '{protocol, fallbacks, connections_h3, connections_h2, open_h2, datagrams_tx, datagrams_rx}' "$WORK/auto-stats.json")"
[ "$(grep -c '^ANSWER 200' "$WORK/server.log")" = 2 ] || fail "server answers: $(grep ANSWER "$WORK/server.log")"
kill "$AUTO_PID"
rc=0
wait "$AUTO_PID" || rc=$?
[ "$rc" = 0 ] || fail "dpagent udp exited $rc on SIGTERM"
grep '^{' "$WORK/auto.out" | tail -1 | jq -e '.datagrams_rx == 5' > /dev/null || fail "no counters at exit"

log "a target the server does not serve: 404 over HTTP/2, dpagent ends with status 1 and says why"
rc=0
timeout 10 ip netns exec "$NS" "$DPAGENT" udp "${UDP_ARGS[@]}" --target nowhere.corp.test:53 --listen 127.0.0.1:5301 \
  > "$WORK/refused.out" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "dpagent udp (unknown target) ended with $rc: $(tail -5 "$WORK/refused.out")"
matches -F "dpagent: gateway refused CONNECT-UDP to nowhere.corp.test:53: 404 (h2test; error=destination_not_found" \
  < "$WORK/refused.out" || fail "dpagent udp did not name the 404 and its Proxy-Status: $(cat "$WORK/refused.out")"
matches -F "no route on the gateway serves nowhere.corp.test:53" < "$WORK/refused.out" ||
  fail "dpagent udp did not say what to change: $(cat "$WORK/refused.out")"
log "  $(grep -m1 -o 'dpagent: gateway refused.*' "$WORK/refused.out" | cut -c1-150)"

log "TLS over TCP classified as over QUIC: a --ca that does not verify the server, a certificate it refuses: status 1"
rc=0
timeout 10 ip netns exec "$NS" "$DPAGENT" udp --via https://gw.h2.test:443 --server-name dpctld.test --http 2 \
  --cert "$WORK/pki/agent1.pem" --key "$WORK/pki/agent1.key" --ca "$WORK/pki/rogue-ca.pem" \
  --target echo.corp.test:7 --listen 127.0.0.1:5305 > "$WORK/badca.out" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "dpagent udp (wrong --ca) ended with $rc: $(tail -5 "$WORK/badca.out")"
matches -F "(untrusted_server_cert)" < "$WORK/badca.out" || fail "wrong --ca not named: $(cat "$WORK/badca.out")"
rc=0
timeout 10 ip netns exec "$NS" "$DPAGENT" udp --via https://gw.h2.test:443 --server-name dpctld.test --http 2 \
  --cert "$WORK/pki/rogue.pem" --key "$WORK/pki/rogue.key" --ca "$WORK/pki/ca.pem" \
  --target echo.corp.test:7 --listen 127.0.0.1:5306 > "$WORK/rogue.out" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "dpagent udp (rogue certificate) ended with $rc: $(tail -5 "$WORK/rogue.out")"
matches -F "(client_cert_rejected)" < "$WORK/rogue.out" || fail "refused certificate not named: $(cat "$WORK/rogue.out")"
log "  $(grep -m1 -o 'dpagent: TLS.*' "$WORK/rogue.out" | cut -c1-150)"

log "--http 3 against the closed UDP port: no fallback, dpagent keeps trying HTTP/3"
conns_before=$(grep -c '^CONNECTION' "$WORK/server.log")
rc=0
timeout 5 ip netns exec "$NS" "$DPAGENT" udp "${UDP_ARGS[@]}" --http 3 --target echo.corp.test:7 --listen 127.0.0.1:5302 \
  > "$WORK/h3only.out" 2>&1 || rc=$?
[ "$rc" = 124 ] || fail "dpagent udp --http 3 ended with $rc (expected to keep retrying): $(tail -5 "$WORK/h3only.out")"
matches -F "HTTP/2" < "$WORK/h3only.out" && fail "dpagent udp --http 3 used HTTP/2: $(cat "$WORK/h3only.out")"
[ "$(grep -c '^CONNECTION' "$WORK/server.log")" = "$conns_before" ] || fail "--http 3 reached the TCP server"
grep '^{' "$WORK/h3only.out" | tail -1 | jq -e '.connections_h2 == 0 and .connections_h3 >= 1 and .protocol == "h3"' > /dev/null ||
  fail "--http 3 counters: $(grep '^{' "$WORK/h3only.out")"

log "--http 2: HTTP/2 over TCP at once"
rc=0
timeout 3 ip netns exec "$NS" "$DPAGENT" udp "${UDP_ARGS[@]}" --http 2 --target echo.corp.test:7 --listen 127.0.0.1:5303 \
  > "$WORK/h2only.out" 2>&1 || rc=$?
[ "$rc" = 124 ] || fail "dpagent udp --http 2 ended with $rc: $(tail -5 "$WORK/h2only.out")"
matches -F "gateway accepted CONNECT-UDP to echo.corp.test:7 (HTTP/2, status 200" < "$WORK/h2only.out" ||
  fail "dpagent udp --http 2: $(cat "$WORK/h2only.out")"
matches -F "gateway unreachable over HTTP/3" < "$WORK/h2only.out" && fail "--http 2 tried HTTP/3"
grep '^{' "$WORK/h2only.out" | tail -1 | jq -e '.connections_h3 == 0 and .connections_h2 == 1 and .accepted == 1' > /dev/null ||
  fail "--http 2 counters: $(grep '^{' "$WORK/h2only.out")"

log "--http auto with UDP 443 silently dropped (no ICMP): the fallback after 3 s without an answer"
if ip netns exec "$NS" nft -f - <<'NFT' 2> "$WORK/nft.err"
table inet h2c {
  chain input { type filter hook input priority 0; udp dport 443 drop; }
}
NFT
then
  rc=0
  timeout 8 ip netns exec "$NS" "$DPAGENT" udp "${UDP_ARGS[@]}" --target echo.corp.test:7 --listen 127.0.0.1:5304 \
    > "$WORK/silent.out" 2>&1 || rc=$?
  [ "$rc" = 124 ] || fail "dpagent udp (UDP dropped) ended with $rc: $(tail -5 "$WORK/silent.out")"
  matches -F "gateway unreachable over HTTP/3 (UDP): using HTTP/2 over TCP" < "$WORK/silent.out" ||
    fail "no fallback without ICMP: $(cat "$WORK/silent.out")"
  matches -F "gave no answer within 3 s" < "$WORK/silent.out" || fail "the fallback did not say why: $(cat "$WORK/silent.out")"
  matches -F "gateway accepted CONNECT-UDP to echo.corp.test:7 (HTTP/2, status 200" < "$WORK/silent.out" ||
    fail "not accepted over HTTP/2 after the fallback: $(cat "$WORK/silent.out")"
else
  log "  nft unavailable ($(head -1 "$WORK/nft.err")): case skipped"
fi
log "passed"
