#!/usr/bin/env bash
# The mTLS matrix over QUIC (issue 11): dpctld's agent_quic_listen against ngtcp2's own example client with
# GnuTLS (gtlsclient, Debian's ngtcp2-client: an independent QUIC stack), inside a namespace of its own (loopback
# only), certificates from tests/e2e/pki.sh. A valid certificate completes the handshake (gtlsclient says so; no
# failure line); expired, not yet valid, unknown CA, revoked (CRL), no certificate and a client that never
# finishes each give exactly one JSON line with the right reason and "transport":"quic", the counter +1 and no
# session. Garbage datagrams are counted by reason, give no line, and dpctld stays up.
source "$(dirname "$0")/lib.sh"
DPCTLD=$BUILD/control/dpctld
NS=$DPT_PREFIX-quic
TUNNEL=$TUNNEL_ID
EXTRA_NETNS+=("$NS")
command -v gtlsclient > /dev/null || fail "gtlsclient missing (Debian package ngtcp2-client; scripts/install-deps.sh)"
ip netns add "$NS"
ip -n "$NS" link set lo up

bash "$ROOT/tests/e2e/pki.sh" "$WORK/pki" 127.0.0.1
cat > "$WORK/dpctld.conf" <<CONF
dpctld = {
  agent_listen = "127.0.0.1:7443";
  agent_quic_listen = "127.0.0.1:7444";
  tls = { ca = "$WORK/pki/ca.pem"; cert = "$WORK/pki/server.pem"; key = "$WORK/pki/server.key";
          crl = "$WORK/pki/crl.pem"; handshake_timeout = 2; max_pending_per_source = 8; };
  failure_log = "$WORK/failures.jsonl";
  api_socket = "$WORK/dpctld.sock";            # never the host's /run/dptun or /var/lib/dptun
  state_file = "$WORK/state/dpctld.state";
  metrics_listen = "127.0.0.1:9108";
  gateway_endpoint = "10.99.2.1:51900";
};
tunnels = (
  { id = "$TUNNEL"; name = "iperf"; allow = [ "CN=agent-1", "CN=agent-expired", "CN=agent-notyet", "CN=agent-revoked" ]; }
);
CONF
log "--check validates agent_quic_listen: file, line and key in the error"
sed 's/agent_quic_listen = "127.0.0.1:7444";/agent_quic_listen = "127.0.0.1";/' "$WORK/dpctld.conf" > "$WORK/bad.conf"
if "$DPCTLD" --config "$WORK/bad.conf" --check > "$WORK/check.out" 2>&1; then fail "--check accepted a bad agent_quic_listen"; fi
line=$(grep -n 'agent_quic_listen' "$WORK/bad.conf" | cut -d: -f1)
matches -F "$WORK/bad.conf:$line" < "$WORK/check.out" || fail "--check: no file:line: $(cat "$WORK/check.out")"
matches "dpctld.agent_quic_listen" < "$WORK/check.out" || fail "--check: key not named: $(cat "$WORK/check.out")"
"$DPCTLD" --config "$WORK/dpctld.conf" --check > /dev/null || fail "config rejected"

ip netns exec "$NS" "$DPCTLD" --config "$WORK/dpctld.conf" > "$WORK/dpctld.out" 2> "$WORK/dpctld.log" &
DPCTLD_PID=$!
PIDS+=("$DPCTLD_PID")
quic_listening() { ip netns exec "$NS" ss -lun | matches ':7444 '; }
wait_for 10 "dpctld listening on udp 7444" quic_listening

source "$ROOT/tests/e2e/handshake_failures.sh"
# client ARGS...: one gtlsclient run (HTTP/3 ALPN, SNI = the tunnel id, as agents send it), bounded in time.
# gtlsclient sends "localhost" as the SNI of an IP address, whatever --sni says: it connects to the tunnel id as a
# host name, which the namespace's hosts file resolves to 127.0.0.1.
netns_hosts "$NS" "127.0.0.1 $TUNNEL" "127.0.0.1 dpctld.test" "127.0.0.1 wrong.test"
client() {
  timeout 10 ip netns exec "$NS" gtlsclient --timeout=3s --handshake-timeout=5s "$@" "$TUNNEL" 7444 \
    > "$WORK/client.out" 2>&1 || true
}
# check CASE REASON COMMAND...: exactly one new QUIC line with REASON, the counter +1, no session
check() { check_failure quic "$@"; }

registered=0

log "a valid certificate completes the QUIC handshake (ALPN h3), with no failure line"
before=$(lines)
client --cert="$WORK/pki/agent1.pem" --key="$WORK/pki/agent1.key"
matches -i "handshake.*complet" < "$WORK/client.out" || fail "gtlsclient did not complete the handshake: $(tail -20 "$WORK/client.out")"
logged_h3() { matches -F "QUIC handshake done (ALPN h3, SNI $TUNNEL, CN=agent-1)" < "$WORK/dpctld.log"; }
wait_for 5 "dpctld logs the QUIC handshake" logged_h3
[ "$(metric dptun_agent_quic_handshakes_total)" = 1 ] || fail "QUIC handshakes counter: $(metric dptun_agent_quic_handshakes_total)"
[ "$(lines)" -eq "$before" ] || fail "the valid handshake logged a failure: $(tail -1 "$WORK/failures.jsonl")"
log "  gtlsclient: $(grep -i -m1 'handshake.*complet' "$WORK/client.out")"

log "mTLS failures over QUIC, one JSON line each"
check "expired certificate" expired client --cert="$WORK/pki/expired.pem" --key="$WORK/pki/expired.key"
jq -e '.certificate.subject == "CN=agent-expired" and .certificate.issuer == "CN=dptun test CA" and
       (.certificate.serial | length > 0) and .certificate.not_after == "2021-01-01T00:00:00Z" and
       .tunnel == "'"$TUNNEL"'" and .sni == "'"$TUNNEL"'" and .offered_versions == ["TLSv1.3"] and
       .offered_alpn == ["h3"] and .verify_error == "certificate has expired"' "$WORK/last.json" > /dev/null ||
  fail "expired: fields: $(cat "$WORK/last.json")"
check "not yet valid" not_yet_valid client --cert="$WORK/pki/notyet.pem" --key="$WORK/pki/notyet.key"
check "unknown CA" unknown_ca client --cert="$WORK/pki/rogue.pem" --key="$WORK/pki/rogue.key"
jq -e '.certificate.issuer == "CN=rogue CA"' "$WORK/last.json" > /dev/null || fail "unknown CA: issuer not logged"
check "revoked (CRL)" revoked client --cert="$WORK/pki/revoked.pem" --key="$WORK/pki/revoked.key"
check "no certificate" no_client_cert client
jq -e '.certificate == null' "$WORK/last.json" > /dev/null || fail "no certificate: certificate should be null"
# A client whose ClientHello never completes (only its first Initial is sent): handshake_timeout (2 s).
silent() { timeout 10 ip netns exec "$NS" python3 "$ROOT/tests/e2e/quic_probe.py" 127.0.0.1 7444 "$TUNNEL" first-only 1 > /dev/null; }
check "silent client" timeout silent

log "garbage datagrams: counted by reason, no failure line, dpctld stays up"
before=$(lines)
not_quic_before=$(metric dptun_agent_quic_datagrams_dropped_total 'reason="not_quic"')
ip netns exec "$NS" python3 - <<'PY'
import os, socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
dst = ("127.0.0.1", 7444)
s.sendto(b"", dst)                                                    # empty
for n in (1, 5, 20, 100, 1200, 1500):                                 # random bytes of several sizes
    for _ in range(20):
        s.sendto(os.urandom(n), dst)
for _ in range(50):                                                   # short headers for no connection
    s.sendto(bytes([0x40 | (os.urandom(1)[0] & 0x3f)]) + os.urandom(60), dst)
for version in (0x00000002, 0xff00001d, 0x1a2a3a4a):                  # other versions, padded to 1200
    s.sendto(struct.pack("!BI", 0xc0, version) + bytes([8]) + os.urandom(8) + bytes([8]) + os.urandom(8) + bytes(1180), dst)
hdr = struct.pack("!BI", 0xc3, 1) + bytes([8]) + os.urandom(8) + bytes([8]) + os.urandom(8)
s.sendto(hdr + b"\x00\x41\x00" + os.urandom(40), dst)                 # an Initial under 1200 bytes
for _ in range(20):                                                   # Initials of 1200 bytes that do not decrypt
    s.sendto(struct.pack("!BI", 0xc3, 1) + bytes([8]) + os.urandom(8) + bytes([8]) + os.urandom(8) + b"\x00\x44\x9a" + os.urandom(1180), dst)
hs = struct.pack("!BI", 0xe3, 1) + bytes([8]) + os.urandom(8) + bytes([8]) + os.urandom(8)
s.sendto(hs + b"\x41\x00" + os.urandom(256), dst)                    # a Handshake packet for no connection
PY
# Another version in 1200 bytes is answered with a Version Negotiation packet (RFC 9000 §17.2.1) naming version 1,
# its connection IDs those of the packet swapped.
ip netns exec "$NS" python3 - > "$WORK/vn.out" <<'PY'
import os, socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
dcid, scid = os.urandom(8), os.urandom(5)
s.sendto(struct.pack("!BI", 0xc0, 0x1a2a3a4a) + bytes([8]) + dcid + bytes([5]) + scid + bytes(1200), ("127.0.0.1", 7444))
r = s.recv(2048)
ok = r[0] & 0x80 and r[1:5] == b"\0\0\0\0" and r[5] == 5 and r[6:11] == scid and r[11] == 8 and r[12:20] == dcid
versions = [struct.unpack("!I", r[i:i + 4])[0] for i in range(20, len(r), 4)]
print("ok" if ok and 1 in versions else "bad", [hex(v) for v in versions])
PY
matches '^ok' < "$WORK/vn.out" || fail "no Version Negotiation: $(cat "$WORK/vn.out")"
log "  version negotiation: $(cat "$WORK/vn.out")"
sleep 1
kill -0 "$DPCTLD_PID" 2>/dev/null || fail "dpctld died on garbage"
[ "$(lines)" -eq "$before" ] || fail "garbage gave failure lines: $(tail -2 "$WORK/failures.jsonl")"
for reason in not_quic unsupported_version unknown_connection bad_initial; do
  v=$(metric dptun_agent_quic_datagrams_dropped_total "reason=\"$reason\"")
  [ "${v:-0}" -gt 0 ] || fail "no datagram counted as $reason"
  log "  dropped $reason: $v"
done
[ "$(metric dptun_agent_quic_datagrams_dropped_total 'reason="not_quic"')" -gt "$not_quic_before" ] || fail "not_quic not counted"
[ "$(metric dptun_agent_quic_connections)" = 0 ] || fail "garbage left connections: $(metric dptun_agent_quic_connections)"
[ "$(metric dptun_agent_quic_indexes_reserved)" = 0 ] || fail "garbage left session indexes reserved: $(metric dptun_agent_quic_indexes_reserved)"

log "after the garbage, a valid certificate still completes its handshake"
client --cert="$WORK/pki/agent1.pem" --key="$WORK/pki/agent1.key"
matches -i "handshake.*complet" < "$WORK/client.out" || fail "no handshake after garbage: $(tail -20 "$WORK/client.out")"
two_handshakes() { [ "$(metric dptun_agent_quic_handshakes_total)" = 2 ]; }
wait_for 5 "second QUIC handshake counted" two_handshakes

log "registration over QUIC (ALPN dptun, one stream): the same registered / refused / pong replies as over TCP"
reg() {  # reg CERT LINE...: quic_register_client (ngtcp2 + GnuTLS; verifies dpctld's certificate for its DNS name) until one reply
  local who=$1; shift
  timeout 15 ip netns exec "$NS" "$BUILD/tests/quic_register_client" --server 127.0.0.1:7444 --ca "$WORK/pki/ca.pem" \
    --cert "$WORK/pki/$who.pem" --key "$WORK/pki/$who.key" --sni "$TUNNEL" --verify-name dpctld.test "$@" > "$WORK/reg.out" 2> "$WORK/reg.err" || true
}
before=$(lines)
# --hold 1: the client stays a second, so it acknowledges both replies and dpctld hands the connection over (to a
# dpgw that is not there: test_quic_handover.sh has one).
reg agent1 --replies 2 --hold 1 '{"type":"register","version":1,"tunnel":"iperf","weight":3,"name":"agent-1"}' '{"type":"ping"}'
jq -se '.[0] | .type == "registered" and .session >= 32768 and .gateway == "10.99.2.1:51900" and .weight == 3 and
        .framing == "quic"' "$WORK/reg.out" > /dev/null ||
  fail "no registration over QUIC: $(cat "$WORK/reg.out" "$WORK/reg.err")"
jq -se '.[1].type == "pong"' "$WORK/reg.out" > /dev/null || fail "no pong after the registration: $(cat "$WORK/reg.out")"
log "  registered: $(head -1 "$WORK/reg.out" | jq -c '{session, tunnel, weight, cipher, framing}'), then $(tail -1 "$WORK/reg.out")"
handed_over() { [ "$(metric dptun_agent_quic_handovers_total)" = 1 ]; }
wait_for 5 "the connection handed over once both replies were acknowledged" handed_over
registered=1
[ "$(metric dptun_sessions "tunnel=\"$TUNNEL\",name=\"iperf\"")" = 1 ] || fail "no session after the QUIC registration"
[ "$(metric dptun_registrations_total 'result="ok"')" = 1 ] || fail "registrations counter"
matches "QUIC handshake done (ALPN dptun" < "$WORK/dpctld.log" || fail "dpctld did not log the dptun handshake"
"$BUILD/control/dpctl" --socket "$WORK/dpctld.sock" --json session list > "$WORK/sessions.json"
jq -e '.sessions[0] | .control_transport == "quic" and .framing == "quic" and .handed_over and (.control_connected | not) and
       .certificate == "CN=agent-1"' "$WORK/sessions.json" > /dev/null || fail "dpctl session list: $(cat "$WORK/sessions.json")"
log "a QUIC client that takes no DATAGRAM frames registers with relay framing; dpctld keeps its connection"
reg agent1 --no-datagrams '{"type":"register","version":1,"tunnel":"iperf","weight":1,"name":"agent-1b"}'
jq -e '.type == "registered" and .framing == "relay"' "$WORK/reg.out" > /dev/null ||
  fail "no relay-framed registration: $(cat "$WORK/reg.out" "$WORK/reg.err")"
matches "relay framing: dpgw cannot take its QUIC connection over (it does not take DATAGRAM frames)" < "$WORK/dpctld.log" ||
  fail "dpctld did not say why the connection stays"
registered=2
log "one whose DATAGRAM frames are too small for a tunnel's packets (max_datagram_frame_size 500) too, saying why"
reg agent1 --max-datagram 500 '{"type":"register","version":1,"tunnel":"iperf","weight":1,"name":"agent-1c"}'
jq -e '.type == "registered" and .framing == "relay"' "$WORK/reg.out" > /dev/null ||
  fail "no relay-framed registration: $(cat "$WORK/reg.out" "$WORK/reg.err")"
matches "relay framing: dpgw cannot take its QUIC connection over (its transport parameters (max_udp_payload_size [0-9]*, max_datagram_frame_size 500) leave room for inner packets of 487 bytes in a DATAGRAM frame; the QUIC framing needs 576)" < "$WORK/dpctld.log" ||
  fail "dpctld did not say why: $(grep 'relay framing' "$WORK/dpctld.log")"
registered=3
"$BUILD/control/dpctl" --socket "$WORK/dpctld.sock" --json session list > "$WORK/sessions.json"
jq -e '[.sessions[] | select(.control_transport == "quic" and .control_connected and .framing == "relay")] | length == 2' \
  "$WORK/sessions.json" > /dev/null || fail "dpctl session list: $(cat "$WORK/sessions.json")"
"$BUILD/control/dpctl" --socket "$WORK/dpctld.sock" session list | matches '127\.0\.0\.1:[0-9]* (quic)' ||
  fail "dpctl session list does not show the QUIC control connection"
[ "$(metric dptun_agent_quic_handovers_total)" = 1 ] || fail "the relay-framed connection was handed over"
reg agent2 '{"type":"register","version":1,"tunnel":"iperf","weight":1}'
jq -e 'select(.type == "refused") | .reason | test("may not serve tunnel")' "$WORK/reg.out" > /dev/null ||
  fail "agent-2 not refused over QUIC: $(cat "$WORK/reg.out" "$WORK/reg.err")"
wait_for 5 "the refusal's line" bash -c "grep agent_registration_refused '$WORK/failures.jsonl' | tail -1 | jq -e '.reason == \"not_allowed\" and .certificate.subject == \"CN=agent-2\"' > /dev/null"
reg agent1 'not json at all'
matches '"type":"refused"' < "$WORK/reg.out" || fail "junk over QUIC not refused: $(cat "$WORK/reg.out" "$WORK/reg.err")"
[ "$(metric dptun_registrations_total 'result="refused"')" = 2 ] || fail "refused counter"
[ "$(lines)" -eq "$before" ] || fail "registrations over QUIC logged handshake failures"
# An agent whose --ca does not verify dpctld's certificate closes with a TLS alert: dpctld's line says so.
wrong_ca() {
  timeout 15 ip netns exec "$NS" "$BUILD/tests/quic_register_client" --server 127.0.0.1:7444 --ca "$WORK/pki/rogue-ca.pem" \
    --cert "$WORK/pki/agent1.pem" --key "$WORK/pki/agent1.key" --sni "$TUNNEL" --verify-name dpctld.test --seconds 3 x \
    > /dev/null 2>&1 || true
}
check "agent refuses dpctld's certificate" peer_rejected_server_cert wrong_ca

log "dpagent --transport quic registers over QUIC; its TLS failures get the same classification and advice as over TCP"
# agent_quic WANT_EXIT WANT_TEXT [dpagent args...]: dpagent until it ends (or AGENT_TIMEOUT s, 6) against dpctld's QUIC
# port
agent_quic() {
  local want=$1 text=$2 rc=0; shift 2
  timeout "${AGENT_TIMEOUT:-6}" ip netns exec "$NS" "$DPAGENT" --tunnel iperf --tun dpq0 --transport quic "$@" \
    > "$WORK/agent.out" 2> "$WORK/agent.log" || rc=$?
  [ "$rc" -eq "$want" ] || fail "dpagent exited $rc, expected $want: $(tail -3 "$WORK/agent.log")"
  matches -- "$text" < "$WORK/agent.log" || fail "dpagent did not say '$text': $(tail -3 "$WORK/agent.log")"
  log "  $(grep -m1 -o -e 'registered with dpctld.*' -e 'failed (.*' "$WORK/agent.log" | cut -c1-150)"
}
good=(--cert "$WORK/pki/agent1.pem" --key "$WORK/pki/agent1.key")
agent_quic 124 "registered with dpctld: session" --server dpctld.test:7444 --ca "$WORK/pki/ca.pem" "${good[@]}"
matches -F "QUIC handshake done (ALPN dptun, SNI iperf, CN=agent-1)" < "$WORK/dpctld.log" || fail "dpctld did not log dpagent's QUIC handshake"
agent_quic 1 "untrusted_server_cert: --ca $WORK/pki/rogue-ca.pem does not verify dpctld's certificate" \
  --server dpctld.test:7444 --ca "$WORK/pki/rogue-ca.pem" "${good[@]}"
agent_quic 1 "name_mismatch: dpctld's certificate (.*) does not carry 'wrong.test'; it names DNS:dpctld.test, IP:127.0.0.1" \
  --server wrong.test:7444 --ca "$WORK/pki/ca.pem" "${good[@]}"
agent_quic 1 "client_cert_rejected: dpctld refused this agent's certificate" \
  --server dpctld.test:7444 --ca "$WORK/pki/ca.pem" --cert "$WORK/pki/expired.pem" --key "$WORK/pki/expired.key"
grep agent_tls_handshake_failed "$WORK/failures.jsonl" | tail -1 | jq -e '.reason == "expired" and .transport == "quic" and .sni == "iperf"' > /dev/null ||
  fail "dpctld's line for dpagent's expired certificate: $(tail -1 "$WORK/failures.jsonl")"
# Nothing on the UDP port (a newcomer's wrong port): the handshake's timeout names the ICMP refusal.
AGENT_TIMEOUT=14 agent_quic 124 "nothing listens on UDP 127.0.0.1:7449 .ICMP port unreachable.: is it dpctld's agent_quic_listen" \
  --server dpctld.test:7449 --ca "$WORK/pki/ca.pem" "${good[@]}"
kill -0 "$DPCTLD_PID" 2>/dev/null || fail "dpctld died"

log "the TCP port is unchanged next to it: its failure lines say \"transport\":\"tcp\""
timeout 10 ip netns exec "$NS" openssl s_client -connect 127.0.0.1:7443 -servername "$TUNNEL" -CAfile "$WORK/pki/ca.pem" \
  -quiet -no_ign_eof -cert "$WORK/pki/expired.pem" -key "$WORK/pki/expired.key" < /dev/null > /dev/null 2>&1 || true
wait_for 5 "the TCP failure line" bash -c "tail -1 '$WORK/failures.jsonl' | jq -e '.transport == \"tcp\" and .reason == \"expired\"' > /dev/null"
kill -0 "$DPCTLD_PID" 2>/dev/null || fail "dpctld died"

log "unfinished handshakes are bounded: 12 from one address with max_pending_per_source = 8, the oldest 4 shed"
shed_before=$(metric dptun_agent_handshake_failures_total 'reason="shed"')
timeout_before=$(metric dptun_agent_handshake_failures_total 'reason="timeout"')
ip netns exec "$NS" python3 "$ROOT/tests/e2e/quic_probe.py" 127.0.0.1 7444 "$TUNNEL" hold-flood:12 1 > /dev/null
sleep 0.5
[ "$(metric dptun_agent_quic_handshakes_in_progress)" = 8 ] || fail "not 8 QUIC handshakes in progress: $(metric dptun_agent_quic_handshakes_in_progress)"
# Each holds a session index from its first Initial; the shed ones gave theirs back.
[ "$(metric dptun_agent_quic_indexes_reserved)" = 8 ] || fail "not 8 indexes reserved: $(metric dptun_agent_quic_indexes_reserved)"
[ "$(metric dptun_agent_handshake_failures_total 'reason="shed"')" -eq $((shed_before + 4)) ] ||
  fail "shed: $shed_before -> $(metric dptun_agent_handshake_failures_total 'reason="shed"'), expected +4"
all_timed_out() { [ "$(metric dptun_agent_handshake_failures_total 'reason="timeout"')" -eq $((timeout_before + 8)) ]; }
wait_for 10 "the 8 others time out" all_timed_out
[ "$(metric dptun_agent_quic_handshakes_in_progress)" = 0 ] || fail "handshakes left after the timeouts"
[ "$(metric dptun_agent_quic_indexes_reserved)" = 0 ] || fail "indexes still reserved after the timeouts"

log "a reload that no longer allows agent-1 cuts off its session registered over QUIC (its QUIC connection closed)"
# A relay-framed QUIC registration, whose connection dpctld keeps, held open for the reload.
timeout 30 ip netns exec "$NS" "$BUILD/tests/quic_register_client" --server 127.0.0.1:7444 --ca "$WORK/pki/ca.pem" \
  --cert "$WORK/pki/agent1.pem" --key "$WORK/pki/agent1.key" --sni "$TUNNEL" --verify-name dpctld.test --no-datagrams \
  --replies 1 --hold 20 '{"type":"register","version":1,"tunnel":"iperf","weight":1}' > "$WORK/held.out" 2> "$WORK/held.err" &
PIDS+=("$!")
held_registered() { jq -e '.type == "registered"' "$WORK/held.out"; }
wait_for 10 "the held client's registration" held_registered
sed -i 's/allow = \[ "CN=agent-1", /allow = [ /' "$WORK/dpctld.conf"
kill -HUP "$DPCTLD_PID"
cut_off() { matches "session [0-9]* (CN=agent-1): tunnel iperf no longer allows its certificate; disconnected" < "$WORK/dpctld.log"; }
wait_for 10 "the QUIC session cut off" cut_off
[ "$(metric dptun_sessions "tunnel=\"$TUNNEL\",name=\"iperf\"")" = 0 ] || fail "the session stayed after the reload"
# The held client acknowledges its refusal; the earlier relay-framed one has gone, and its connection closes 3 s
# later all the same.
no_connections() { [ "$(metric dptun_agent_quic_connections)" = 0 ]; }
wait_for 10 "the QUIC connection closed" no_connections
matches '"type":"refused".*session ended: tunnel iperf no longer allows its certificate' < "$WORK/held.out" ||
  fail "the held client was not told: $(cat "$WORK/held.out" "$WORK/held.err")"
kill -0 "$DPCTLD_PID" 2>/dev/null || fail "dpctld died"
log "PASS"
