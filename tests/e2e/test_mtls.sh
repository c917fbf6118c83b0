#!/usr/bin/env bash
# The agent port's mTLS matrix, with certificates made by the openssl CLI (tests/e2e/pki.sh) and real
# openssl s_client connections to a real dpctld, inside a namespace of its own (loopback only):
# valid, expired, not yet valid, unknown CA, revoked (CRL), no certificate, a TLS 1.2-only client, plain HTTP
# and a client that never finishes. Each failure must give exactly one JSON line with the right reason and
# fields, bump its counter, and never register a session; the valid certificate registers.
source "$(dirname "$0")/lib.sh"
DPCTLD=$BUILD/control/dpctld
NS=$DPT_PREFIX-ctl
TUNNEL=$TUNNEL_ID
EXTRA_NETNS+=("$NS")
ip netns add "$NS"
ip -n "$NS" link set lo up

bash "$ROOT/tests/e2e/pki.sh" "$WORK/pki" 127.0.0.1
cat > "$WORK/dpctld.conf" <<CONF
dpctld = {
  agent_listen = "127.0.0.1:7443";
  tls = { ca = "$WORK/pki/ca.pem"; cert = "$WORK/pki/server.pem"; key = "$WORK/pki/server.key";
          crl = "$WORK/pki/crl.pem"; handshake_timeout = 2; };
  failure_log = "$WORK/failures.jsonl";
  api_socket = "$WORK/dpctld.sock";            # never the host's /run/dptun or /var/lib/dptun
  state_file = "$WORK/state/dpctld.state";
  metrics_listen = "127.0.0.1:9108";
  gateway_endpoint = "10.99.2.1:51900";
};
tunnels = (
  { id = "$TUNNEL"; name = "iperf"; allow = [ "CN=agent-1", "CN=agent-expired", "CN=agent-notyet", "CN=agent-revoked" ]; },
  { id = "0b7c5c3e-1111-4c7d-8e9f-0a1b2c3d4e5f"; name = "other"; allow = [ "DNS:nobody.test" ]; }
);
CONF
"$DPCTLD" --config "$WORK/dpctld.conf" --check > /dev/null || fail "config rejected"
ip netns exec "$NS" "$DPCTLD" --config "$WORK/dpctld.conf" > "$WORK/dpctld.out" 2> "$WORK/dpctld.log" &
DPCTLD_PID=$!
PIDS+=("$DPCTLD_PID")
wait_for 10 "dpctld listening" ip netns exec "$NS" bash -c "ss -ltn | grep -q ':7443 '"

source "$ROOT/tests/e2e/handshake_failures.sh"
# client ARGS...: one s_client handshake, closed after 1 s; with STDIN_FILE, that message is sent and the connection
# stays open until dpctld's answer line arrived (at most 8 s: a loaded machine may take longer than a fixed sleep)
client() {
  : > "$WORK/client.out"
  { if [ -n "${STDIN_FILE:-}" ]; then
      cat "$STDIN_FILE"
      for _ in $(seq 80); do [ -s "$WORK/client.out" ] && break; sleep 0.1; done
      sleep 0.2
    else
      sleep 1
    fi; } |
    timeout 10 ip netns exec "$NS" openssl s_client -connect 127.0.0.1:7443 -servername "$TUNNEL" \
      -CAfile "$WORK/pki/ca.pem" -quiet -no_ign_eof "$@" > "$WORK/client.out" 2> "$WORK/client.err" || true
}
# check CASE REASON S_CLIENT_ARGS... : exactly one new line with REASON, the counter +1, no session
check() { check_failure tcp "$@"; }
registered=0

log "mTLS failures, one JSON line each"
check "expired certificate" expired client -cert "$WORK/pki/expired.pem" -key "$WORK/pki/expired.key"
jq -e '.certificate.subject == "CN=agent-expired" and .certificate.issuer == "CN=dptun test CA" and
       (.certificate.serial | length > 0) and .certificate.not_after == "2021-01-01T00:00:00Z" and
       .tunnel == "'"$TUNNEL"'" and .sni == "'"$TUNNEL"'" and (.offered_versions | index("TLSv1.3") != null) and
       .verify_error == "certificate has expired"' "$WORK/last.json" > /dev/null || fail "expired: fields: $(cat "$WORK/last.json")"
check "not yet valid" not_yet_valid client -cert "$WORK/pki/notyet.pem" -key "$WORK/pki/notyet.key"
check "unknown CA" unknown_ca client -cert "$WORK/pki/rogue.pem" -key "$WORK/pki/rogue.key"
jq -e '.certificate.issuer == "CN=rogue CA"' "$WORK/last.json" > /dev/null || fail "unknown CA: issuer not logged"
check "revoked (CRL)" revoked client -cert "$WORK/pki/revoked.pem" -key "$WORK/pki/revoked.key"
check "no certificate" no_client_cert client
jq -e '.certificate == null' "$WORK/last.json" > /dev/null || fail "no certificate: certificate should be null"
check "TLS 1.2-only client" protocol_version client -tls1_2 -cert "$WORK/pki/agent1.pem" -key "$WORK/pki/agent1.key"
jq -e '.offered_versions == ["TLSv1.2"]' "$WORK/last.json" > /dev/null || fail "TLS 1.2: offered versions: $(cat "$WORK/last.json")"
http() { timeout 5 ip netns exec "$NS" bash -c 'exec 3<>/dev/tcp/127.0.0.1/7443; printf "GET / HTTP/1.1\r\nHost: x\r\n\r\n" >&3; cat <&3 > /dev/null 2>&1' || true; }
check "plain HTTP" not_tls http
silent() { timeout 5 ip netns exec "$NS" bash -c 'exec 3<>/dev/tcp/127.0.0.1/7443; sleep 3' || true; }
check "silent client" timeout silent

log "a valid certificate registers (and produces no failure line)"
before=$(lines)
echo '{"type":"register","version":1,"tunnel":"iperf","weight":3,"name":"agent-1"}' > "$WORK/register.json"
STDIN_FILE="$WORK/register.json" client -cert "$WORK/pki/agent1.pem" -key "$WORK/pki/agent1.key"
grep -q '"type":"registered"' "$WORK/client.out" || fail "valid certificate not registered: $(cat "$WORK/client.out")"
jq -e 'select(.type == "registered") | .session >= 32768 and .gateway == "10.99.2.1:51900"' "$WORK/client.out" > /dev/null ||
  fail "registered reply: $(cat "$WORK/client.out")"
[ "$(lines)" -eq "$before" ] || fail "the valid handshake logged a failure: $(lines_after "$before")"
[ "$(metric dptun_registrations_total 'result="ok"')" = 1 ] || fail "registrations counter"

log "a valid certificate that may not serve the tunnel is refused (TLS fine, registration not)"
echo '{"type":"register","version":1,"tunnel":"other","weight":1}' > "$WORK/register.json"
STDIN_FILE="$WORK/register.json" client -cert "$WORK/pki/agent2.pem" -key "$WORK/pki/agent2.key"
grep -q '"type":"refused"' "$WORK/client.out" || fail "not refused: $(cat "$WORK/client.out")"
grep -q "may not serve tunnel" "$WORK/client.out" || fail "refusal reason: $(cat "$WORK/client.out")"
[ "$(metric dptun_registrations_total 'result="refused"')" = 1 ] || fail "refused counter"
[ "$(lines)" -eq "$before" ] || fail "a refused registration logged a handshake failure: $(lines_after "$before")"
grep '"event":"agent_registration_refused"' "$WORK/failures.jsonl" | tail -1 |
  jq -e '.reason == "not_allowed" and .certificate.subject == "CN=agent-2" and (.detail | test("identities CN=agent-2"))' > /dev/null ||
  fail "the refusal's line: $(grep agent_registration_refused "$WORK/failures.jsonl" | tail -1)"

log "malformed registrations (wrong types, junk) are refused; dpctld stays up"
for msg in '{"type":"register","version":"1","tunnel":"iperf"}' '{"type":"register","version":1,"tunnel":"iperf","weight":"x"}' \
           '{"type":"register","version":1,"tunnel":"iperf","weight":1e300}' '{"type":"register","version":1,"tunnel":7}' \
           '{"type":"register","version":1,"tunnel":"iperf","name":[1]}' 'not json at all'; do
  echo "$msg" > "$WORK/register.json"
  STDIN_FILE="$WORK/register.json" client -cert "$WORK/pki/agent1.pem" -key "$WORK/pki/agent1.key"
  grep -q '"type":"refused"' "$WORK/client.out" || fail "'$msg' not refused: $(cat "$WORK/client.out")"
  kill -0 "$DPCTLD_PID" 2>/dev/null || fail "dpctld died on '$msg'"
done
[ "$(metric dptun_registrations_total 'result="refused"')" = 7 ] || fail "refused counter after malformed registrations"

log "dpagent's own TLS failures: each classified with advice, exit status 1 at the first registration; dpctld logs its side"
netns_hosts "$NS" "127.0.0.1 dpctld.test" "127.0.0.1 wrong.test"
# agent_tls CASE WANT_EXIT WANT_TEXT [dpagent args...]: dpagent run until it ends (or 8 s) against this dpctld
agent_tls() {
  local name=$1 want=$2 text=$3 rc=0; shift 3
  timeout 8 ip netns exec "$NS" "$DPAGENT" --tunnel iperf --tun dptls0 "$@" > "$WORK/agent-tls.out" 2> "$WORK/agent-tls.log" || rc=$?
  [ "$rc" -eq "$want" ] || fail "$name: dpagent exited $rc, expected $want: $(tail -3 "$WORK/agent-tls.log")"
  grep -q -- "$text" "$WORK/agent-tls.log" || fail "$name: dpagent did not say '$text': $(tail -3 "$WORK/agent-tls.log")"
  log "  $name: $(grep -m1 -o 'cannot register with dpctld.*' "$WORK/agent-tls.log" | cut -c1-170)"
}
good=(--cert "$WORK/pki/agent1.pem" --key "$WORK/pki/agent1.key")
before=$(lines)
agent_tls "wrong --ca" 1 "untrusted_server_cert: --ca $WORK/pki/rogue-ca.pem does not verify dpctld's certificate" \
  --server dpctld.test:7443 --ca "$WORK/pki/rogue-ca.pem" "${good[@]}"
wait_for 5 "dpctld's line for the wrong --ca" bash -c "tail -n +$((before + 1)) '$WORK/failures.jsonl' | grep -q peer_rejected_server_cert"
agent_tls "name mismatch" 1 "name_mismatch: dpctld's certificate (.*) does not carry 'wrong.test'; it names DNS:dpctld.test, IP:127.0.0.1" \
  --server wrong.test:7443 --ca "$WORK/pki/ca.pem" "${good[@]}"
agent_tls "refused client certificate" 1 "client_cert_rejected: dpctld refused this agent's certificate" \
  --server dpctld.test:7443 --ca "$WORK/pki/ca.pem" --cert "$WORK/pki/expired.pem" --key "$WORK/pki/expired.key"
agent_tls "missing certificate file" 1 "$WORK/pki/none.pem" --server dpctld.test:7443 --ca "$WORK/pki/ca.pem" \
  --cert "$WORK/pki/none.pem" --key "$WORK/pki/agent1.key"
ip netns exec "$NS" ip link show dptls0 > /dev/null 2>&1 && fail "dpagent made its TUN before reading its certificate files"
[ "$(metric dptun_agent_handshake_failures_total 'reason="peer_rejected_server_cert"')" -ge 2 ] ||
  fail "dpctld did not count the agents' refusals of its certificate"
log "  a name for --server is resolved (dpctld.test via /etc/hosts): the agent registers"
agent_tls "by name" 124 "registered with dpctld: session" --server dpctld.test:7443 --ca "$WORK/pki/ca.pem" "${good[@]}"
log "PASS"
