#!/usr/bin/env bash
# dpctld's HTTP/3 front end for CONNECT-UDP clients (issue 12, docs/masque.md): the QUIC port on UDP/443 with ALPN
# h3, inside a namespace of its own (loopback only), certificates from tests/e2e/pki.sh, routes from dpctld.conf.
# - An independent HTTP/3 client (gtlsclient: ngtcp2's example client on nghttp3, Debian's ngtcp2-client) reads
#   dpctld's SETTINGS and QPACK-encoded answers: its GET is answered 405 with a Proxy-Status, counted as
#   bad_request and logged.
# - dpagent udp (slice 4), when built: an allowed route is answered 200 (dpagent keeps running); an unknown target
#   404 and a certificate the route does not allow 403, each ending dpagent with status 1 and a line naming the
#   status, each counted by reason in dptun_masque_refusals_total and logged by dpctld.
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
  # udp_client CERT TARGET: dpagent udp against the front end for at most 3 s; its exit status in $UDP_RC
  udp_client() {
    UDP_RC=0
    timeout 3 ip netns exec "$NS" "$DPAGENT" udp --via https://gw.corp.test:443 --target "$2" --listen 127.0.0.1:5300 \
      --cert "$WORK/pki/$1.pem" --key "$WORK/pki/$1.key" --ca "$WORK/pki/ca.pem" > "$WORK/udp.out" 2>&1 || UDP_RC=$?
  }
  log "dpagent udp: an allowed route is accepted (200) and dpagent keeps running"
  udp_client agent1 dns.corp.test:53
  [ "$UDP_RC" = 124 ] || fail "dpagent udp (allowed) ended with $UDP_RC: $(tail -5 "$WORK/udp.out")"
  matches -F "CONNECT-UDP to dns.corp.test:53 (stream 0) accepted" < "$WORK/dpctld.log" ||
    fail "dpctld did not log the acceptance: $(tail -5 "$WORK/dpctld.log")"
  [ "$(metric dptun_masque_requests_accepted_total)" = 1 ] || fail "accepted: $(metric dptun_masque_requests_accepted_total)"

  log "dpagent udp: an unknown target is answered 404, dpagent ends with status 1"
  udp_client agent1 nowhere.corp.test:53
  [ "$UDP_RC" = 1 ] || fail "dpagent udp (unknown target) ended with $UDP_RC: $(tail -5 "$WORK/udp.out")"
  matches -F "404" < "$WORK/udp.out" || fail "dpagent udp did not name the 404: $(cat "$WORK/udp.out")"
  matches -F "destination_not_found" < "$WORK/udp.out" || fail "no Proxy-Status error: $(cat "$WORK/udp.out")"
  [ "$(refusals unknown_target)" = 1 ] || fail "unknown_target refusals: $(refusals unknown_target)"

  log "dpagent udp: a certificate the route does not allow is answered 403"
  udp_client agent1 ntp.corp.test:123
  [ "$UDP_RC" = 1 ] || fail "dpagent udp (not allowed) ended with $UDP_RC: $(tail -5 "$WORK/udp.out")"
  matches -F "403" < "$WORK/udp.out" || fail "dpagent udp did not name the 403: $(cat "$WORK/udp.out")"
  [ "$(refusals not_allowed)" = 1 ] || fail "not_allowed refusals: $(refusals not_allowed)"
  matches -F "CONNECT-UDP to ntp.corp.test:123 (stream 0) refused: 403 not_allowed" < "$WORK/dpctld.log" ||
    fail "dpctld did not log the 403: $(tail -5 "$WORK/dpctld.log")"
else
  log "dpagent udp not built yet: its cases are skipped"
fi

kill -0 "$DPCTLD_PID" 2>/dev/null || fail "dpctld died"
log "PASS"
