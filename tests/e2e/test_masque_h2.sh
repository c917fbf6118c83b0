#!/usr/bin/env bash
# CONNECT-UDP over HTTP/2 and HTTP/1.1 on TCP (issue 12 slice 5, docs/masque.md "HTTP/2 and HTTP/1.1 fallback"):
# dpctld's masque_tcp_listen in a namespace of its own (loopback only), certificates from tests/e2e/pki.sh, routes
# from dpctld.conf and dpctl. The client is tests/e2e/masque_h2_client.py on Debian's python3-h2 (an independent
# HTTP/2 implementation: it waits for SETTINGS_ENABLE_CONNECT_PROTOCOL and sends the extended CONNECT) and, for
# HTTP/1.1, a plain TLS socket with the Upgrade request.
# - 503 before an agent serves the route's tunnel; then 200 (HTTP/2) and 101 (HTTP/1.1) for an allowed route, each a
#   session that dpctl session list shows (role connect-udp, transport h2 / http/1.1) while the stream is open and
#   that goes with it; the client's DATAGRAM capsules read and counted (no dpgw here: dropped gateway_away).
# - 404 unknown target, 403 a certificate the route does not allow, 400 a path that is no target, each with its
#   Proxy-Status, over HTTP/2 and HTTP/1.1 (there with Connection: close), counted and logged; a certificate of another
#   CA fails its handshake as an agent's does (the failure log).
# - Hostile capsules: one over 64 KiB, one with context ID 7, an unknown type, then a malformed one: counted
#   (too_large, context, malformed), the HTTP/2 stream reset (PROTOCOL_ERROR) and the connection still serving, the
#   HTTP/1.1 connection closed; 17 streams on one connection: the 17th answered 429.
# - A route removed with dpctl cuts the open stream (RST_STREAM CANCEL) and its session.
# - Slow clients (half a request over HTTP/1.1, only the preface over HTTP/2) are closed after 10 s.
# Then (unless MASQUE_H2_DATA=0) the full topology with dpgw, a UDP echo service behind an agent, and datagrams
# through dpctld and dpgw (masque_datagrams both ways) to it and back over HTTP/2 and HTTP/1.1, from the python
# client and from dpagent udp --http 2.
source "$(dirname "$0")/lib.sh"
DPAGENT=$BUILD/agent/dpagent
CLIENT=(/usr/bin/python3 "$ROOT/tests/e2e/masque_h2_client.py")
NS=$DPT_PREFIX-h2
TUNNEL=$TUNNEL_ID
EXTRA_NETNS+=("$NS")
/usr/bin/python3 -c 'import h2' 2> /dev/null || fail "python3-h2 missing for /usr/bin/python3 (scripts/install-deps.sh)"
[ -x "$DPAGENT" ] || fail "$DPAGENT not built"
ip netns add "$NS"
ip -n "$NS" link set lo up

bash "$ROOT/tests/e2e/pki.sh" "$WORK/pki" 127.0.0.1
cat > "$WORK/dpctld.conf" <<CONF
dpctld = {
  agent_listen = "127.0.0.1:7443";
  masque_tcp_listen = "127.0.0.1:8443";
  tls = { ca = "$WORK/pki/ca.pem"; cert = "$WORK/pki/server.pem"; key = "$WORK/pki/server.key";
          crl = "$WORK/pki/crl.pem"; handshake_timeout = 2; };
  failure_log = "$WORK/failures.jsonl";
  api_socket = "$WORK/dpctld.sock";            # never the host's /run/dptun or /var/lib/dptun
  state_file = "$WORK/state/dpctld.state";
  metrics_listen = "127.0.0.1:9108";
  gateway_endpoint = "10.99.2.1:51900";
};
tunnels = ( { id = "$TUNNEL"; name = "corp"; allow = [ "*" ]; } );
routes = (
  { from = "udp+https://dns.corp.test:53"; tunnel = "corp"; to = "udp://10.0.0.53:53"; allow = [ "CN=agent-1" ]; },
  { from = "udp+https://ntp.corp.test:123"; tunnel = "corp"; to = "udp://10.0.0.123:123"; allow = [ "CN=nobody" ]; }
);
CONF
"$DPCTLD" --config "$WORK/dpctld.conf" --check > /dev/null || fail "config rejected"
# A bad value names the file, the line and the key.
sed 's/masque_tcp_listen = "127.0.0.1:8443"/masque_tcp_listen = "8443"/' "$WORK/dpctld.conf" > "$WORK/bad.conf"
"$DPCTLD" --config "$WORK/bad.conf" --check > "$WORK/bad.out" 2>&1 && fail "a bad masque_tcp_listen was accepted"
matches -E "bad.conf:[0-9]+.*masque_tcp_listen" < "$WORK/bad.out" || fail "the error does not name the key: $(cat "$WORK/bad.out")"

ip netns exec "$NS" "$DPCTLD" --config "$WORK/dpctld.conf" > "$WORK/dpctld.out" 2> "$WORK/dpctld.log" &
DPCTLD_PID=$!
PIDS+=("$DPCTLD_PID")
tcp_listening() { ip netns exec "$NS" ss -ltn | matches '127.0.0.1:8443 '; }
wait_for 10 "dpctld listening on tcp 8443" tcp_listening
metric() {  # metric NAME [LABELS] -> value
  local want=$1
  [ -n "${2:-}" ] && want="$1{$2}"
  ip netns exec "$NS" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9108; printf "GET /metrics HTTP/1.0\r\n\r\n" >&3; cat <&3' |
    W="$want" awk '$1 == ENVIRON["W"] { print $2 }'
}
refusals() { metric dptun_masque_refusals_total "reason=\"$1\""; }
drops() { metric dptun_masque_capsule_drops_total "reason=\"$1\""; }
dpctl() { ip netns exec "$NS" "$DPCTL" --socket "$WORK/dpctld.sock" "$@"; }
# client [CERT] ARGS...: the python client against dpctld's TCP port (agent1's certificate unless CERT is given)
client() {
  local cert=agent1
  case "${1:-}" in agent1|agent2|rogue) cert=$1; shift ;; esac
  timeout 30 ip netns exec "$NS" "${CLIENT[@]}" --connect 127.0.0.1:8443 --cert "$WORK/pki/$cert.pem" \
    --key "$WORK/pki/$cert.key" --ca "$WORK/pki/ca.pem" --server-name dpctld.test "$@"
}

log "HTTP/2: no agent serves the tunnel yet: 503 destination_unavailable"
client --mode refusal --target dns.corp.test:53 > "$WORK/c.out" 2>&1 || fail "client: $(cat "$WORK/c.out")"
matches -x "status 503" < "$WORK/c.out" || fail "no 503: $(cat "$WORK/c.out")"
matches -F "proxy-status dptun; error=destination_unavailable" < "$WORK/c.out" || fail "no Proxy-Status: $(cat "$WORK/c.out")"
[ "$(refusals no_agent)" = 1 ] || fail "no_agent refusals: $(refusals no_agent)"

# An agent serving the routes' tunnel: registered over TCP (no dpgw here).
ip netns exec "$NS" "$DPAGENT" --server 127.0.0.1:7443 --server-name dpctld.test --tunnel corp --name agent-1 \
  --cert "$WORK/pki/agent1.pem" --key "$WORK/pki/agent1.key" --ca "$WORK/pki/ca.pem" > "$WORK/agent.out" 2> "$WORK/agent.log" &
PIDS+=($!)
wait_for 15 "the agent registered" grep -q "registered with dpctld" "$WORK/agent.log"

log "HTTP/2: an allowed route: 200 with capsule-protocol; capsules read; the session listed while the stream is open"
client --mode send --target dns.corp.test:53 --count 5 --wait 3 > "$WORK/send.out" 2>&1 &
SEND_PID=$!
session_listed() { dpctl --json session list | jq -e '[.sessions[] | select(.role == "connect-udp")] | length == 1' > /dev/null; }
wait_for 5 "the HTTP/2 client's session in dpctl session list" session_listed
dpctl --json session list | jq -c '.sessions[] | select(.role == "connect-udp") | {agent, control_transport, framing, masque}' > "$WORK/session.json"
log "  session: $(cat "$WORK/session.json")"
jq -e '.control_transport == "h2" and .framing == "capsules" and .masque.request_id == 1 and .masque.target == "dns.corp.test:53" and .masque.to == "10.0.0.53:53"' "$WORK/session.json" \
  > /dev/null || fail "session: $(cat "$WORK/session.json")"
wait "$SEND_PID" || fail "client: $(cat "$WORK/send.out")"
matches -x "status 200" < "$WORK/send.out" || fail "no 200: $(cat "$WORK/send.out")"
matches -x "capsule-protocol ?1" < "$WORK/send.out" || fail "no capsule-protocol: $(cat "$WORK/send.out")"
no_capsule_session() { ! session_listed; }
wait_for 5 "the session gone with the stream" no_capsule_session
matches -E "CONNECT-UDP to dns.corp.test:53 \(h2 stream 1, request 1\) accepted" < "$WORK/dpctld.log" ||
  fail "dpctld did not log the acceptance: $(tail -5 "$WORK/dpctld.log")"
matches -E "session [0-9]+: client .*CONNECT-UDP \(h2 stream 1\) ended" < "$WORK/dpctld.log" || fail "no end logged"
[ "$(metric dptun_masque_capsule_datagrams_total 'direction="from_client"')" = 5 ] ||
  fail "from_client: $(metric dptun_masque_capsule_datagrams_total 'direction="from_client"')"
[ "$(drops gateway_away)" = 5 ] || fail "gateway_away drops (no dpgw here): $(drops gateway_away)"
[ "$(metric dptun_masque_requests_accepted_by_protocol_total 'protocol="h2"')" = 1 ] || fail "h2 accepted"

log "HTTP/1.1: an allowed route: 101 Switching Protocols, capsules read"
client --http1 --mode send --target dns.corp.test:53 --count 2 --wait 1 > "$WORK/h1.out" 2>&1 || fail "client: $(cat "$WORK/h1.out")"
matches -x "status 101" < "$WORK/h1.out" || fail "no 101: $(cat "$WORK/h1.out")"
matches -x "upgrade connect-udp" < "$WORK/h1.out" || fail "no Upgrade: $(cat "$WORK/h1.out")"
matches -x "capsule-protocol ?1" < "$WORK/h1.out" || fail "no Capsule-Protocol: $(cat "$WORK/h1.out")"
client --http1 --no-alpn --mode send --target dns.corp.test:53 --count 1 --wait 0.5 > "$WORK/h1n.out" 2>&1 ||
  fail "client without ALPN: $(cat "$WORK/h1n.out")"
matches -x "status 101" < "$WORK/h1n.out" || fail "no 101 without ALPN: $(cat "$WORK/h1n.out")"
[ "$(metric dptun_masque_requests_accepted_by_protocol_total 'protocol="http/1.1"')" = 2 ] || fail "http/1.1 accepted"
[ "$(metric dptun_masque_capsule_datagrams_total 'direction="from_client"')" = 8 ] || fail "from_client after HTTP/1.1"

log "refusals with Proxy-Status: 404 unknown target, 403 not allowed, 400 no target; over HTTP/2 and HTTP/1.1"
expect() {  # expect STATUS PROXY_ERROR CLIENT_ARGS...
  local status=$1 err=$2; shift 2
  client --mode refusal "$@" > "$WORK/r.out" 2>&1 || fail "client $*: $(cat "$WORK/r.out")"
  matches -x "status $status" < "$WORK/r.out" || fail "$*: not $status: $(cat "$WORK/r.out")"
  matches -F "error=$err" < "$WORK/r.out" || fail "$*: no Proxy-Status $err: $(cat "$WORK/r.out")"
  log "  $* -> $(tr '\n' ' ' < "$WORK/r.out")"
}
expect 404 destination_not_found --target nowhere.corp.test:53
expect 403 http_request_denied --target ntp.corp.test:123
expect 400 http_request_error --target dns.corp.test:0
expect 404 destination_not_found --http1 --target nowhere.corp.test:53
matches -x "connection close" < "$WORK/r.out" || fail "HTTP/1.1 refusal without Connection: close"
expect 403 http_request_denied --http1 --target ntp.corp.test:123
[ "$(refusals unknown_target)" = 2 ] || fail "unknown_target refusals: $(refusals unknown_target)"
[ "$(refusals not_allowed)" = 2 ] || fail "not_allowed refusals: $(refusals not_allowed)"
matches -F "CONNECT-UDP to ntp.corp.test:123 (h2 stream 1) refused: 403 not_allowed" < "$WORK/dpctld.log" ||
  fail "no refusal log line: $(grep refused "$WORK/dpctld.log" | tail -3)"
matches -F "CONNECT-UDP to nowhere.corp.test:53 (http/1.1) refused: 404 unknown_target" < "$WORK/dpctld.log" ||
  fail "no HTTP/1.1 refusal log line"
matches -F "HTTP/2 request (stream 1) refused: 400 bad_request" < "$WORK/dpctld.log" || fail "no 400 log line"

log "a certificate of another CA: its handshake fails as an agent's does (failure log)"
if client rogue --mode refusal --target dns.corp.test:53 > "$WORK/rogue.out" 2>&1; then
  fail "the rogue certificate got an answer: $(cat "$WORK/rogue.out")"
fi
wait_for 5 "the failure log names the client" grep -q "agent_tls_handshake_failed" "$WORK/failures.jsonl"
log "  $(tail -1 "$WORK/failures.jsonl" | jq -c '{reason, client}' 2> /dev/null)"

log "hostile capsules: over 64 KiB, context ID 7, an unknown type, then a malformed one"
client --mode hostile --target dns.corp.test:53 --wait 3 > "$WORK/hostile.out" 2>&1 || fail "client: $(cat "$WORK/hostile.out")"
matches -x "reset 1" < "$WORK/hostile.out" || fail "the stream was not reset PROTOCOL_ERROR: $(cat "$WORK/hostile.out")"
matches -x "after: status 200" < "$WORK/hostile.out" || fail "the connection did not serve on: $(cat "$WORK/hostile.out")"
client --http1 --mode hostile --target dns.corp.test:53 --wait 3 > "$WORK/hostile1.out" 2>&1 ||
  fail "HTTP/1.1 client: $(cat "$WORK/hostile1.out")"
[ "$(drops too_large)" = 2 ] || fail "too_large: $(drops too_large)"
[ "$(drops context)" = 2 ] || fail "context: $(drops context)"
[ "$(drops malformed)" = 2 ] || fail "malformed: $(drops malformed)"
[ "$(metric dptun_masque_capsules_skipped_total)" = 2 ] || fail "skipped: $(metric dptun_masque_capsules_skipped_total)"
log "  drops: too_large $(drops too_large), context $(drops context), malformed $(drops malformed)"

log "17 CONNECT-UDP streams on one HTTP/2 connection: the 17th answered 429"
client --mode limit --count 17 --target dns.corp.test:53 > "$WORK/limit.out" 2>&1 || fail "client: $(cat "$WORK/limit.out")"
[ "$(grep -c 'status 200$' "$WORK/limit.out")" = 16 ] || fail "not 16 accepted: $(cat "$WORK/limit.out")"
matches -x "stream 33 status 429" < "$WORK/limit.out" || fail "no 429: $(cat "$WORK/limit.out")"
[ "$(metric dptun_masque_h2_streams_over_limit_total)" = 1 ] || fail "over limit: $(metric dptun_masque_h2_streams_over_limit_total)"

log "a connection error (DATA on stream 0): the GOAWAY and close end every tunnel of the connection, sessions removed"
capsule_sessions() { dpctl --json session list | jq '[.sessions[] | select(.role == "connect-udp")] | length'; }
[ "$(capsule_sessions)" = 0 ] || fail "capsule sessions before: $(dpctl session list)"
client --mode goaway --count 3 --wait 2 --target dns.corp.test:53 > "$WORK/goaway.out" 2>&1 &
GOAWAY_PID=$!
three_sessions() { [ "$(capsule_sessions)" = 3 ]; }
wait_for 5 "the three sessions of the connection" three_sessions
wait "$GOAWAY_PID" || fail "client: $(cat "$WORK/goaway.out")"
[ "$(grep -c 'status 200$' "$WORK/goaway.out")" = 3 ] || fail "not 3 accepted: $(cat "$WORK/goaway.out")"
matches -x "closed" < "$WORK/goaway.out" || fail "dpctld did not close the connection: $(cat "$WORK/goaway.out")"
no_sessions() { [ "$(capsule_sessions)" = 0 ]; }
wait_for 5 "the connection's sessions gone" no_sessions
# Ended with their connection, not found later by dpctld's check for sessions whose connection is gone.
! matches -F "connection is gone; session removed" < "$WORK/dpctld.log" || fail "sessions outlived their connection"

log "a route removed with dpctl cuts the open stream and its session"
dpctl route add udp+https://echo.corp.test:7 --tunnel corp --to udp://10.0.0.7:7 --allow CN=agent-1 > /dev/null
client --mode send --target echo.corp.test:7 --count 1 --wait 8 > "$WORK/cut.out" 2>&1 &
CUT_PID=$!
wait_for 5 "the echo client's session" session_listed
dpctl route del udp+https://echo.corp.test:7 > /dev/null
wait "$CUT_PID" || fail "client: $(cat "$WORK/cut.out")"
matches -x "reset 8" < "$WORK/cut.out" || fail "the stream was not cut (RST_STREAM CANCEL): $(cat "$WORK/cut.out")"
wait_for 5 "the cut session gone" no_capsule_session
matches -F "no longer serves it" < "$WORK/dpctld.log" || fail "no revocation logged"

log "slow clients: half a request (HTTP/1.1), only the preface (HTTP/2): closed after 10 s without a stream"
client --http1 --mode slow --target dns.corp.test:53 --wait 15 > "$WORK/slow1.out" 2>&1 &
SLOW1=$!
client --mode slow --target dns.corp.test:53 --wait 15 > "$WORK/slow2.out" 2>&1 || fail "HTTP/2 slow client: $(cat "$WORK/slow2.out")"
wait "$SLOW1" || fail "HTTP/1.1 slow client: $(cat "$WORK/slow1.out")"
log "  HTTP/1.1: $(cat "$WORK/slow1.out"); HTTP/2: $(cat "$WORK/slow2.out")"
[ "$(metric dptun_masque_tcp_connections_closed_total 'reason="idle"')" -ge 2 ] ||
  fail "idle closes: $(metric dptun_masque_tcp_connections_closed_total 'reason="idle"')"
kill -0 "$DPCTLD_PID" || fail "dpctld exited"
dpctl stats > "$WORK/stats.txt" || fail "dpctl stats"
matches -E "^udp over tcp: +0 connection\(s\) \(h2 10, http/1.1 6 so far\); datagrams from clients 11" < "$WORK/stats.txt" ||
  fail "dpctl stats: $(grep -A1 'udp routes' "$WORK/stats.txt")"
log "  $(dpctl --json stats | jq -c '.masque_tcp | {connections, h2, "http/1.1", drops}')"

if [ "${MASQUE_H2_DATA:-1}" = 1 ]; then
  log "datagrams through dpctld and dpgw to a UDP echo service behind an agent, over HTTP/2 and HTTP/1.1"
  kill "$DPCTLD_PID" 2> /dev/null
  wait "$DPCTLD_PID" 2> /dev/null
  topology_up
  rm -rf "$WORK/pki"
  bash "$ROOT/tests/e2e/pki.sh" "$WORK/pki" "$GW_UNDERLAY"
  GW_STATIC=0 GW_KERNEL_IF=dpgw-under write_gw_conf 1 false
  DPCTLD_MASQUE_TCP_LISTEN="$GW_UNDERLAY:8443" write_dpctld_conf "$GW_UNDERLAY:7443"
  start_gw
  start_dpctld "$NS_G"
  unset -f dpctl
  dpctl() { "$DPCTL" --socket "$WORK/dpctld.sock" "$@"; }
  gateway_connected() { dpctl --json stats | jq -e '.gateway_connected' > /dev/null; }
  wait_for 10 "dpctld connected to dpgw" gateway_connected
  dpctl tunnel add corp --allow CN=agent-1 > /dev/null
  dpctl route add udp+https://echo.corp.test:7 --tunnel corp --to "udp://$AGENT_IP:7" --allow CN=agent-1 > /dev/null
  ip netns exec "$NS_A" python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("'"$AGENT_IP"'", 7))
while True:
    d, a = s.recvfrom(65535)
    s.sendto(b"echo:" + d, a)
' > "$WORK/echo.log" 2>&1 &
  PIDS+=($!)
  ip netns exec "$NS_A" "$DPAGENT" --server "$GW_UNDERLAY:7443" --tunnel corp --name agent-1 \
    --cert "$WORK/pki/agent1.pem" --key "$WORK/pki/agent1.key" --ca "$WORK/pki/ca.pem" > "$WORK/agent2.out" 2> "$WORK/agent2.log" &
  PIDS+=($!)
  echo_listening() { ip netns exec "$NS_A" ss -lun | matches -F "$AGENT_IP:7 "; }
  wait_for 5 "the echo service listening" echo_listening
  wait_for 15 "the agent registered" grep -q "registered with dpctld" "$WORK/agent2.log"
  data_client() {
    timeout 30 ip netns exec "$NS_A" "${CLIENT[@]}" --connect "$GW_UNDERLAY:8443" --cert "$WORK/pki/agent1.pem" \
      --key "$WORK/pki/agent1.key" --ca "$WORK/pki/ca.pem" --server-name dpctld.test --target echo.corp.test:7 "$@"
  }
  data_client --mode send --count 5 --size 100 --wait 5 > "$WORK/data2.out" 2>&1 || fail "HTTP/2: $(cat "$WORK/data2.out")"
  matches -x "received 5" < "$WORK/data2.out" || fail "HTTP/2: the echoes did not all come back: $(cat "$WORK/data2.out")"
  matches -E "^reply 0 echo:dptun-0-" < "$WORK/data2.out" || fail "HTTP/2: not the echo: $(cat "$WORK/data2.out")"
  data_client --http1 --mode send --count 3 --size 1200 --wait 3 > "$WORK/data1.out" 2>&1 || fail "HTTP/1.1: $(cat "$WORK/data1.out")"
  matches -x "received 3" < "$WORK/data1.out" || fail "HTTP/1.1: the echoes did not all come back: $(cat "$WORK/data1.out")"
  log "dpagent udp --http 2 (dptun's own HTTP/2 client) against dpctld's listener: an echo through dpgw"
  ip netns exec "$NS_A" "$DPAGENT" udp --http 2 --via "https://$GW_UNDERLAY:8443" --server-name dpctld.test \
    --listen 127.0.0.1:5300 --target echo.corp.test:7 --cert "$WORK/pki/agent1.pem" --key "$WORK/pki/agent1.key" \
    --ca "$WORK/pki/ca.pem" > "$WORK/udp.out" 2> "$WORK/udp.log" &
  PIDS+=($!)
  wait_for 10 "dpagent udp accepted over HTTP/2" grep -q "gateway accepted CONNECT-UDP" "$WORK/udp.log"
  ip netns exec "$NS_A" python3 - > "$WORK/via.txt" 2>&1 <<'PY' || fail "dpagent udp: $(cat "$WORK/via.txt"; tail -5 "$WORK/udp.log")"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
for i in range(3):
    s.sendto(b"via dpagent %d" % i, ("127.0.0.1", 5300))
    try:
        d, _ = s.recvfrom(65535)
    except socket.timeout:
        continue
    if d == b"echo:via dpagent %d" % i:
        print("ok"); sys.exit(0)
    sys.exit("got %r" % d)
sys.exit("no echo")
PY
  log "  $(dpctl --json stats | jq -c '.masque_tcp | {datagrams_from_client, datagrams_to_gateway, datagrams_to_client, drops}')"
else
  log "(datagrams to a target through dpgw skipped: MASQUE_H2_DATA=0)"
fi
log PASS
