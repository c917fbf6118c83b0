#!/usr/bin/env bash
# dpctld's HTTP/3 front end for CONNECT-UDP clients (issue 12, docs/masque.md): the QUIC port on UDP/443 with ALPN
# h3, inside a namespace of its own (loopback only), certificates from tests/e2e/pki.sh, routes from dpctld.conf.
# - An independent HTTP/3 client (gtlsclient: ngtcp2's example client on nghttp3, Debian's ngtcp2-client) reads
#   dpctld's SETTINGS and QPACK-encoded answers: its GET is answered 405 with a Proxy-Status, counted as
#   bad_request and logged.
# - dpagent udp (slice 4), when built: an allowed route is answered 200 at start, before any local traffic, and
#   dpagent keeps running (an agent registered over TCP serves the routes' tunnel; before it, 503 no_agent, which
#   dpagent retries); local datagrams from two sources go out as HTTP Datagrams, each source on a connection
#   and request of its own (the first on the one made at start), one over the datagram room dropped and counted
#   (too_large); its counters on SIGUSR1 and at exit. An unknown target 404 and a certificate the route does not
#   allow 403, each ending dpagent with status 1 and a line naming the status and the Proxy-Status, counted by
#   reason in dptun_masque_refusals_total and logged by dpctld. A client certificate the CA did not sign
#   (client_cert_rejected) and a --ca that does not verify dpctld (untrusted_server_cert) end it with status 1 and
#   the advice. dpctld's datagram path is slice 3: nothing comes back yet.
source "$(dirname "$0")/lib.sh"
DPCTLD=$BUILD/control/dpctld
DPAGENT=$BUILD/agent/dpagent
NS=$DPT_PREFIX-h3
TUNNEL=$TUNNEL_ID
EXTRA_NETNS+=("$NS")
command -v gtlsclient > /dev/null || fail "gtlsclient missing (Debian package ngtcp2-client; scripts/install-deps.sh)"
ip netns add "$NS"
ip -n "$NS" link set lo up

bash "$ROOT/tests/e2e/pki.sh" "$WORK/pki" 127.0.0.1
cat > "$WORK/dpctld.conf" <<CONF
dpctld = {
  agent_listen = "127.0.0.1:7443";
  agent_quic_listen = "127.0.0.1:443";
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
ip netns exec "$NS" "$DPCTLD" --config "$WORK/dpctld.conf" > "$WORK/dpctld.out" 2> "$WORK/dpctld.log" &
DPCTLD_PID=$!
PIDS+=("$DPCTLD_PID")
quic_listening() { ip netns exec "$NS" ss -lun | matches '127.0.0.1:443 '; }
wait_for 10 "dpctld listening on udp 443" quic_listening
netns_hosts "$NS" "127.0.0.1 gw.corp.test"
metric() {  # metric NAME [LABELS] -> value
  local want=$1
  [ -n "${2:-}" ] && want="$1{$2}"
  ip netns exec "$NS" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9108; printf "GET /metrics HTTP/1.0\r\n\r\n" >&3; cat <&3' |
    W="$want" awk '$1 == ENVIRON["W"] { print $2 }'
}
refusals() { metric dptun_masque_refusals_total "reason=\"$1\""; }

log "an independent HTTP/3 client (gtlsclient, nghttp3): SETTINGS and QPACK read, its GET answered 405"
timeout 15 ip netns exec "$NS" gtlsclient --timeout=3s --handshake-timeout=5s --exit-on-all-streams-close \
  --cert="$WORK/pki/agent1.pem" --key="$WORK/pki/agent1.key" gw.corp.test 443 https://gw.corp.test/index.html \
  > "$WORK/get.out" 2>&1 || true
matches -i "handshake.*complet" < "$WORK/get.out" || fail "gtlsclient: no handshake: $(tail -20 "$WORK/get.out")"
# gtlsclient prints the settings it received and the answer's fields as nghttp3 decoded them.
matches -E ':status: 405' < "$WORK/get.out" || fail "gtlsclient: no 405: $(grep -i -E 'http|status' "$WORK/get.out" | tail -20)"
matches -E 'proxy-status: dptun; error=http_request_error' < "$WORK/get.out" ||
  fail "gtlsclient: no Proxy-Status: $(grep -i -E 'header' "$WORK/get.out" | tail -20)"
log "  gtlsclient: $(grep -m1 -E ':status: 405' "$WORK/get.out" | sed 's/^ *//')"
[ "$(refusals bad_request)" = 1 ] || fail "bad_request refusals: $(refusals bad_request)"
matches -F "HTTP/3 request (stream 0) refused: 405 bad_request" < "$WORK/dpctld.log" ||
  fail "dpctld did not log the refusal: $(tail -5 "$WORK/dpctld.log")"
if matches "HTTP/3 error" < "$WORK/dpctld.log"; then fail "an HTTP/3 connection error with gtlsclient: $(grep 'HTTP/3 error' "$WORK/dpctld.log")"; fi

if [ -x "$DPAGENT" ] && "$DPAGENT" udp --help > /dev/null 2>&1; then
  # dpctld's certificate names dpctld.test; the request's :authority is gw.corp.test (--via).
  UDP_ARGS=(--via https://gw.corp.test:443 --server-name dpctld.test --listen 127.0.0.1:5300)
  # udp_client CERT TARGET [ARGS...]: dpagent udp against the front end for at most 3 s; its exit status in $UDP_RC
  udp_client() {
    local cert=$1 target=$2; shift 2
    UDP_RC=0
    timeout 3 ip netns exec "$NS" "$DPAGENT" udp "${UDP_ARGS[@]}" --target "$target" \
      --cert "$WORK/pki/$cert.pem" --key "$WORK/pki/$cert.key" --ca "$WORK/pki/ca.pem" "$@" > "$WORK/udp.out" 2>&1 || UDP_RC=$?
  }
  log "dpagent udp: a route whose tunnel no agent serves is answered 503, which dpagent retries (it keeps running)"
  udp_client agent1 dns.corp.test:53
  [ "$UDP_RC" = 124 ] || fail "dpagent udp (no agent) ended with $UDP_RC: $(tail -5 "$WORK/udp.out")"
  matches -F "gateway refused CONNECT-UDP to dns.corp.test:53: 503 (dptun; error=destination_unavailable" < "$WORK/udp.out" ||
    fail "dpagent udp did not name the 503: $(cat "$WORK/udp.out")"
  [ "$(grep -c 'gateway refused CONNECT-UDP to dns.corp.test:53: 503' "$WORK/udp.out")" -ge 2 ] ||
    fail "the 503 was not retried: $(cat "$WORK/udp.out")"
  [ "$(refusals no_agent)" -ge 2 ] || fail "no_agent refusals: $(refusals no_agent)"
  # An agent serving the routes' tunnel: registered over TCP (no dpgw here).
  ip netns exec "$NS" "$DPAGENT" --server 127.0.0.1:7443 --server-name dpctld.test --tunnel corp --name agent-1 \
    --cert "$WORK/pki/agent1.pem" --key "$WORK/pki/agent1.key" --ca "$WORK/pki/ca.pem" > "$WORK/agent.out" 2> "$WORK/agent.log" &
  PIDS+=($!)
  wait_for 15 "the agent registered" grep -q "registered with dpctld" "$WORK/agent.log"
  log "dpagent udp: an allowed route is accepted (200) at start, and dpagent keeps running"
  ip netns exec "$NS" "$DPAGENT" udp "${UDP_ARGS[@]}" --target dns.corp.test:53 --log-level debug \
    --cert "$WORK/pki/agent1.pem" --key "$WORK/pki/agent1.key" --ca "$WORK/pki/ca.pem" > "$WORK/udp-run.out" 2> "$WORK/udp-run.log" &
  UDP_PID=$!
  PIDS+=("$UDP_PID")
  udp_accepted() { matches -F "gateway accepted CONNECT-UDP to dns.corp.test:53 (HTTP/3, status 200" < "$WORK/udp-run.log"; }
  wait_for 10 "dpagent udp logs the 200" udp_accepted
  matches -F "CONNECT-UDP to dns.corp.test:53 (stream 0) accepted" < "$WORK/dpctld.log" ||
    fail "dpctld did not log the acceptance: $(tail -5 "$WORK/dpctld.log")"
  [ "$(metric dptun_masque_requests_accepted_total)" = 1 ] || fail "accepted: $(metric dptun_masque_requests_accepted_total)"
  log "  $(grep -m1 -o 'gateway accepted CONNECT-UDP.*' "$WORK/udp-run.log")"

  log "dpagent udp: datagrams of two local sources, one connection and request each; one over the room dropped"
  ip netns exec "$NS" python3 - <<'PY'
import socket
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(3):
    a.sendto(b"query %d" % i, ("127.0.0.1", 5300))
a.sendto(b"x" * 1500, ("127.0.0.1", 5300))  # over the room of a 1500-byte path (--mtu): never fragmented
b.sendto(b"from b", ("127.0.0.1", 5300))    # waits for b's own request to be answered, then goes out
PY
  # udp_stats: the JSON line dpagent prints on SIGUSR1
  udp_stats() {
    local n; n=$(grep -c '^{' "$WORK/udp-run.out" || true)
    kill -USR1 "$UDP_PID"
    for _ in $(seq 50); do
      [ "$(grep -c '^{' "$WORK/udp-run.out" || true)" -gt "$n" ] && break
      sleep 0.1
    done
    grep '^{' "$WORK/udp-run.out" | tail -1
  }
  udp_sent() { udp_stats | jq -e '.accepted == 2 and .datagrams_tx == 4' > /dev/null; }
  wait_for 10 "dpagent udp sent 4 datagrams on 2 accepted requests" udp_sent
  udp_stats > "$WORK/udp-stats.json"
  jq -e '.sources == 2 and .connections == 2 and .refused == 0 and .drops.too_large == 1 and .drops.held_full == 0 and
         .drops.connection_failed == 0 and .bytes_tx == 27' "$WORK/udp-stats.json" > /dev/null ||
    fail "dpagent udp counters: $(cat "$WORK/udp-stats.json")"
  [ "$(metric dptun_masque_requests_accepted_total)" = 2 ] || fail "accepted: $(metric dptun_masque_requests_accepted_total)"
  log "  $(jq -c '{sources, connections, accepted, datagrams_tx, bytes_tx, too_large: .drops.too_large}' "$WORK/udp-stats.json")"
  kill -0 "$UDP_PID" 2>/dev/null || fail "dpagent udp ended: $(tail -5 "$WORK/udp-run.log")"
  kill "$UDP_PID"
  rc=0
  wait "$UDP_PID" || rc=$?
  [ "$rc" = 0 ] || fail "dpagent udp exited $rc on SIGTERM"
  grep '^{' "$WORK/udp-run.out" | tail -1 | jq -e '.datagrams_tx == 4' > /dev/null || fail "no counters at exit"
  if matches -E "HTTP/3 error|dpagent (warn|error)" < "$WORK/udp-run.log"; then
    fail "dpagent udp warned: $(grep -E 'warn|error' "$WORK/udp-run.log")"
  fi

  log "dpctl: the two CONNECT-UDP sessions are listed; a reload without their route cuts them off"
  dpctl() { "$BUILD/control/dpctl" --socket "$WORK/dpctld.sock" "$@"; }
  connect_udp_sessions() {
    dpctl --json session list | jq '[.sessions[] | select(.masque.target == "dns.corp.test:53")] | length'
  }
  [ "$(connect_udp_sessions)" = 2 ] || fail "dpctl session list: $(dpctl session list)"
  cp "$WORK/dpctld.conf" "$WORK/dpctld.conf.orig"
  sed -i 's|{ from = "udp+https://dns.corp.test:53"; tunnel = "corp"; to = "udp://10.0.0.53:53"; allow = \[ "CN=agent-1" \]; },||' \
    "$WORK/dpctld.conf"
  ! matches -F 'dns.corp.test' < "$WORK/dpctld.conf" || fail "the test's sed left the dns route in dpctld.conf"
  kill -HUP "$DPCTLD_PID"
  no_sessions() { [ "$(connect_udp_sessions)" = 0 ]; }
  wait_for 5 "the CONNECT-UDP sessions cut off" no_sessions
  matches -F "its route udp+https://dns.corp.test:53 no longer serves it (unknown_target); disconnected" < "$WORK/dpctld.log" ||
    fail "dpctld did not say why: $(tail -3 "$WORK/dpctld.log")"
  cp "$WORK/dpctld.conf.orig" "$WORK/dpctld.conf"
  kill -HUP "$DPCTLD_PID"
  wait_for 5 "the dns route back" bash -c "\"$BUILD/control/dpctl\" --socket \"$WORK/dpctld.sock\" route list | grep -q dns.corp.test"

  log "dpagent udp: an unknown target is answered 404, dpagent ends with status 1"
  udp_client agent1 nowhere.corp.test:53
  [ "$UDP_RC" = 1 ] || fail "dpagent udp (unknown target) ended with $UDP_RC: $(tail -5 "$WORK/udp.out")"
  matches -F "gateway refused CONNECT-UDP to nowhere.corp.test:53: 404 (dptun; error=destination_not_found" < "$WORK/udp.out" ||
    fail "dpagent udp did not name the 404 and its Proxy-Status: $(cat "$WORK/udp.out")"
  matches -F "dpagent: gateway refused CONNECT-UDP to nowhere.corp.test:53: 404" < "$WORK/udp.out" ||
    fail "no last line saying what to change: $(cat "$WORK/udp.out")"
  matches -F "check --target against \`dpctl route list\`" < "$WORK/udp.out" || fail "no advice: $(cat "$WORK/udp.out")"
  [ "$(refusals unknown_target)" = 1 ] || fail "unknown_target refusals: $(refusals unknown_target)"
  log "  $(grep -m1 -o 'gateway refused.*' "$WORK/udp.out")"

  log "dpagent udp: a certificate the route does not allow is answered 403"
  udp_client agent1 ntp.corp.test:123
  [ "$UDP_RC" = 1 ] || fail "dpagent udp (not allowed) ended with $UDP_RC: $(tail -5 "$WORK/udp.out")"
  matches -F "gateway refused CONNECT-UDP to ntp.corp.test:123: 403 (dptun; error=http_request_denied" < "$WORK/udp.out" ||
    fail "dpagent udp did not name the 403: $(cat "$WORK/udp.out")"
  matches -F "add one of its identities to the route's allow list" < "$WORK/udp.out" || fail "no advice: $(cat "$WORK/udp.out")"
  [ "$(refusals not_allowed)" = 1 ] || fail "not_allowed refusals: $(refusals not_allowed)"
  matches -F "CONNECT-UDP to ntp.corp.test:123 (stream 0) refused: 403 not_allowed" < "$WORK/dpctld.log" ||
    fail "dpctld did not log the 403: $(tail -5 "$WORK/dpctld.log")"

  log "dpagent udp: a client certificate the CA did not sign fails TLS, dpagent ends with status 1"
  udp_client rogue dns.corp.test:53
  [ "$UDP_RC" = 1 ] || fail "dpagent udp (rogue certificate) ended with $UDP_RC: $(tail -5 "$WORK/udp.out")"
  matches -F "TLS with the gateway gw.corp.test:443 failed (client_cert_rejected)" < "$WORK/udp.out" ||
    fail "dpagent udp did not say its certificate was refused: $(cat "$WORK/udp.out")"
  rogue_logged() { tail -1 "$WORK/failures.jsonl" | jq -e '.reason == "unknown_ca" and .offered_alpn == ["h3"]' > /dev/null; }
  wait_for 5 "dpctld's failure line (unknown_ca)" rogue_logged
  log "  $(grep -m1 -o 'dpagent: TLS.*' "$WORK/udp.out" | cut -c1-150)"

  log "dpagent udp: a --ca that does not verify dpctld's certificate, status 1"
  udp_client agent1 dns.corp.test:53 --ca "$WORK/pki/rogue-ca.pem"
  [ "$UDP_RC" = 1 ] || fail "dpagent udp (wrong --ca) ended with $UDP_RC: $(tail -5 "$WORK/udp.out")"
  matches -F "failed (untrusted_server_cert): --ca $WORK/pki/rogue-ca.pem does not verify" < "$WORK/udp.out" ||
    fail "dpagent udp did not name the CA: $(cat "$WORK/udp.out")"
  [ "$(metric dptun_masque_requests_accepted_total)" = 2 ] || fail "a refused client got through"
else
  log "dpagent udp not built yet: its cases are skipped"
fi

kill -0 "$DPCTLD_PID" 2>/dev/null || fail "dpctld died"
log "PASS"
