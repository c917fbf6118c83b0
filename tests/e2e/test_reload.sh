#!/usr/bin/env bash
# Reloads and lifecycle (issue #8, items 4, 5, 18): with traffic flowing through a registered agent,
#   - CRLs of a chain: an agent certificate issued by an intermediate CA needs the intermediate's CRL;
#     dpctld --check names a CA whose CRL is missing and refuses an expired CRL; a handshake refused for want
#     of a CRL is logged as crl_missing with the CA named;
#   - SIGHUP on dpctld: a CRL that now revokes a registered agent cuts it off (session dropped at dpgw), the
#     other agent keeps its session and its traffic; config changes (an entry point, an allow entry) apply live;
#   - a CRL replaced on disk is picked up without a signal; one due soon is warned about and exported;
#   - SIGHUP on dpgw: static tunnels, peers and entry points apply live, other changes are named as needing a
#     restart; SIGTERM stops it cleanly with its counters and leaves no DPDK runtime directory; a second dpgw
#     with the same file_prefix is refused with the pid that holds it;
#   - allow entries on DNS names match without regard to case, and a refusal names the identities checked.
source "$(dirname "$0")/lib.sh"
PKI=$WORK/pki

topology_up
bash "$ROOT/tests/e2e/pki.sh" "$PKI" "$GW_UNDERLAY"
GW_STATIC=0 GW_SESSION_TIMEOUT=1.5 GW_KERNEL_IF=dpgw-under write_gw_conf 1 false
write_dpctld_conf "$GW_UNDERLAY:7443"
sed -i "s|tls = { ca = \"$PKI/ca.pem\";|tls = { crl = \"$WORK/crl.pem\"; ca = \"$PKI/ca-bundle.pem\";|" "$WORK/dpctld.conf"
cat >> "$WORK/dpctld.conf" <<CONF
tunnels = ( { id = "$TUNNEL_ID"; name = "web"; allow = [ "CN=agent-1", "DNS:agent3.test" ]; } );
entry_points = ( { proto = "tcp"; port = 8080; tunnel = "web"; target = "$AGENT_IP:8080"; } );
CONF
metric() {
  ip netns exec "$NS_G" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9108; printf "GET /metrics HTTP/1.0\r\n\r\n" >&3; cat <&3' |
    W="$1" awk 'index($0, ENVIRON["W"]) == 1 { print $NF }'
}

log "CRLs of a chain: dpctld --check names the CA whose CRL is missing, and refuses an expired CRL"
cp "$PKI/crl.pem" "$WORK/crl.pem"   # the root's CRL only
"$DPCTLD" --config "$WORK/dpctld.conf" --check > /dev/null 2> "$WORK/check.err" && fail "--check passed without the intermediate's CRL"
grep -q "has no CRL from CN=dptun test intermediate" "$WORK/check.err" || fail "--check: $(cat "$WORK/check.err")"
cp "$PKI/crl-expired.pem" "$WORK/crl.pem"
"$DPCTLD" --config "$WORK/dpctld.conf" --check > /dev/null 2> "$WORK/check.err" && fail "--check passed an expired CRL"
grep -q "the CRL of CN=dptun test CA expired at 2021-01-01" "$WORK/check.err" || fail "--check: $(cat "$WORK/check.err")"
cp "$PKI/crl-all.pem" "$WORK/crl.pem"
"$DPCTLD" --config "$WORK/dpctld.conf" --check > /dev/null || fail "--check refused both CRLs"

start_gw
start_dpctld "$NS_G"
mkdir -p "$WORK/www" && echo ok > "$WORK/www/ok"
ip netns exec "$NS_A" python3 -m http.server 8080 --bind "$AGENT_IP" --directory "$WORK/www" > /dev/null 2>&1 &
PIDS+=("$!")
start_reg_agent() {  # NAME CERT KEY TUN TUN_NET
  ip netns exec "$NS_A" "$DPAGENT" --server "$GW_UNDERLAY:7443" --ca "$PKI/ca.pem" --cert "$2" --key "$3" \
    --tunnel web --name "$1" --keepalive 0.5 --tun "$4" --tun-net "$5" >> "$WORK/$1.out" 2>> "$WORK/$1.log" &
  PIDS+=("$!")
}
start_reg_agent agent-1 "$PKI/agent1.pem" "$PKI/agent1.key" dpt0 100.64.0.1/16
# agent-3 on a TUN of its own: once cut off it must not read (and drop) agent-1's replies from a shared one
start_reg_agent agent-3 "$PKI/agent3-chain.pem" "$PKI/agent3.key" dpt3 100.65.0.1/16
sessions_of() { dpctl --json session list | jq -r --arg c "$1" '[.sessions[] | select(.certificate == $c) | .index] | join(",")'; }
wait_for 15 "both agents registered" bash -c "[ -n \"\$($DPCTL --socket $WORK/dpctld.sock --json session list | jq -r '.sessions[] | select(.certificate == \"CN=agent-3\") | .index')\" ] && [ -n \"\$($DPCTL --socket $WORK/dpctld.sock --json session list | jq -r '.sessions[] | select(.certificate == \"CN=agent-1\") | .index')\" ]"
log "  agent-3 (intermediate CA, allowed as DNS:agent3.test, its certificate says DNS:Agent3.Test) registered"
curl_ok() { ip netns exec "$NS_C" curl -sf -m 2 "http://$GW_PUBLIC:8080/ok" > /dev/null; }
wait_for 15 "traffic through the tunnel" curl_ok
ip netns exec "$NS_C" bash -c "while :; do curl -sf -m 2 -o /dev/null http://$GW_PUBLIC:8080/ok && echo ok || echo FAIL; sleep 0.2; done" \
  > "$WORK/loop.log" 2>/dev/null &
LOOP=$!
PIDS+=("$LOOP")

log "a refused registration names the identities it checked"
ip netns exec "$NS_A" "$DPAGENT" --server "$GW_UNDERLAY:7443" --ca "$PKI/ca.pem" --cert "$PKI/agent2.pem" \
  --key "$PKI/agent2.key" --tunnel web --tun dptx0 > /dev/null 2> "$WORK/agent-2.log" && fail "agent-2 was not refused"
grep -q "identities CN=agent-2 are not in the tunnel's allow list" "$WORK/agent-2.log" ||
  fail "refusal: $(tail -2 "$WORK/agent-2.log")"
grep -q '"event":"agent_registration_refused".*"reason":"not_allowed"' "$WORK/failures.jsonl" || fail "no refusal line"
refused_counted() { [ "$(metric 'dptun_registrations_refused_total{reason="not_allowed"}')" = 1 ]; }
wait_for 3 "the refusal counted by reason (metrics are published every second)" refused_counted

log "SIGHUP on dpctld with a CRL that revokes agent-3: it is cut off; agent-1 keeps its session and its traffic"
a1=$(sessions_of CN=agent-1)
(cd "$PKI" && openssl ca -batch -config inter.cnf -revoke agent3.pem 2>/dev/null &&
  openssl ca -batch -config inter.cnf -gencrl -out inter-crl.pem 2>/dev/null)
cat "$PKI/crl.pem" "$PKI/inter-crl.pem" > "$WORK/crl.pem"
kill -HUP "$DPCTLD_PID"
wait_for 10 "agent-3 cut off" bash -c "grep -q 'CN=agent-3): its certificate no longer verifies: certificate revoked; disconnected' '$WORK/dpctld.log'"
wait_for 10 "agent-3's retry refused as revoked" grep -q '"reason":"revoked"' "$WORK/failures.jsonl"
[ -z "$(sessions_of CN=agent-3)" ] || fail "agent-3 still has a session"
[ "$(sessions_of CN=agent-1)" = "$a1" ] || fail "agent-1's session changed across the reload: $a1 -> $(sessions_of CN=agent-1)"
kill -0 "$DPCTLD_PID" || fail "SIGHUP ended dpctld"

log "config changes apply live: an entry point added, a restart-only change named"
sed -i "s|^entry_points = ( |entry_points = ( { proto = \"tcp\"; port = 8081; tunnel = \"web\"; target = \"$AGENT_IP:8080\"; }, |" "$WORK/dpctld.conf"
sed -i 's|api_socket = "\(.*\)";|api_socket = "\1"; # changed\n  failure_log_rate = 50;|' "$WORK/dpctld.conf"
sed -i "s|agent_listen = \"$GW_UNDERLAY:7443\"|agent_listen = \"$GW_UNDERLAY:7444\"|" "$WORK/dpctld.conf"
kill -HUP "$DPCTLD_PID"
wait_for 10 "dpctld reloaded again" bash -c "[ \$(grep -c 'reloaded $WORK/dpctld.conf' '$WORK/dpctld.log') -ge 2 ]"
grep "reloaded $WORK/dpctld.conf" "$WORK/dpctld.log" | tail -1 | matches "2 entry point(s) (was 1).*need a restart and were not applied: agent_listen" ||
  fail "reload summary: $(grep reloaded "$WORK/dpctld.log" | tail -1)"
wait_for 10 "tcp/8081 at the gateway" bash -c "'$DPGW' stats --socket '$WORK/dpgw.sock' --json | jq -e '[.entry_points[] | select(.port == 8081)] | length == 1'"
ip netns exec "$NS_C" curl -sf -m 3 "http://$GW_PUBLIC:8081/ok" > /dev/null || fail "the reloaded entry point does not carry traffic"

log "a CRL replaced on disk is picked up without a signal; one due in 2 days is warned about and exported"
cat "$PKI/crl-soon.pem" "$PKI/inter-crl.pem" > "$WORK/crl.pem.new" && mv "$WORK/crl.pem.new" "$WORK/crl.pem"
wait_for 15 "the new CRL loaded" grep -q "TLS files changed on disk: reloaded" "$WORK/dpctld.log"
grep -q "the CRL of CN=dptun test CA expires at .* (in [12]\.[0-9] days)" "$WORK/dpctld.log" || fail "no warning for a CRL due soon"
sleep 1.2
next=$(metric 'dptun_crl_next_update_timestamp_seconds{issuer="CN=dptun test CA"}')
[ -n "$next" ] && [ "$next" -gt "$(( $(date +%s) + 86400 ))" ] && [ "$next" -lt "$(( $(date +%s) + 3 * 86400 ))" ] ||
  fail "CRL expiry metric: '$next'"

log "SIGHUP on dpgw: a static tunnel with a peer and an entry point apply live; restart-only changes are named"
cat >> "$WORK/gw.conf" <<CONF
tunnels = ( { id = "11111111-2222-3333-4444-555555555555"; name = "static1"; peers = ( { index = 7; psk_file = "$WORK/psk"; } ); } );
entry_points = ( { proto = "udp"; port = 5999; tunnel = "static1"; target = "$AGENT_IP:5999"; } );
CONF
sed -i 's/session_timeout = 1.5;/session_timeout = 2.5;/' "$WORK/gw.conf"
kill -HUP "$GW_PID"
wait_for 10 "dpgw reloaded" grep -q "reloaded $WORK/gw.conf" "$WORK/dpgw.log"
grep -q "reload: tunnel static1 added" "$WORK/dpgw.log" && grep -q "reload: entry point udp/5999 set" "$WORK/dpgw.log" ||
  fail "dpgw reload: $(grep reload "$WORK/dpgw.log")"
grep "reloaded $WORK/gw.conf" "$WORK/dpgw.log" | matches "need a restart and were not applied: session_timeout" ||
  fail "restart-only change not named: $(grep reloaded "$WORK/dpgw.log")"
gw_stats | jq -e '[.tunnels[] | select(.name == "static1" and .static)] | length == 1' > /dev/null || fail "static1 not in dpgw"
gw_stats | jq -e '[.tunnels[] | select(.name == "web")] | length == 1' > /dev/null || fail "dpctld's tunnel lost in the reload"
log "  the reload takes static1 away again"
sed -i '/^tunnels = ( { id = "11111111/d; /^entry_points = ( { proto = "udp"; port = 5999/d' "$WORK/gw.conf"
kill -HUP "$GW_PID"
wait_for 10 "static1 removed" bash -c "grep -q 'reload: tunnel static1 removed' '$WORK/dpgw.log'"
kill -0 "$GW_PID" || fail "SIGHUP ended dpgw"

sleep 1
kill "$LOOP"
fails=$(grep -c FAIL "$WORK/loop.log" || true)
oks=$(grep -c ok "$WORK/loop.log" || true)
log "  requests during the reloads: $oks answered, $fails failed"
[ "$fails" -eq 0 ] && [ "$oks" -gt 20 ] || fail "requests failed during reloads: $fails of $((oks + fails))"

log "a second dpgw with the same file_prefix is refused with the pid that holds it"
ip netns exec "$NS_G" "$DPGW" --config "$WORK/gw.conf" > /dev/null 2> "$WORK/second.err" && fail "a second dpgw started"
grep -q "another DPDK process (pid $GW_PID) runs with eal.file_prefix '$DPT_PREFIX'" "$WORK/second.err" ||
  fail "second dpgw: $(tail -2 "$WORK/second.err")"

log "SIGTERM: dpgw stops cleanly with its counters and removes its DPDK runtime directory; dpctld exits 0"
[ -d "/var/run/dpdk/$DPT_PREFIX" ] || fail "no runtime directory while dpgw runs?"
kill -TERM "$GW_PID"
rc=0; wait "$GW_PID" || rc=$?
[ "$rc" -eq 0 ] || fail "dpgw exited $rc on SIGTERM"
grep -q "dpgw final counters" "$WORK/dpgw.out" || fail "no final counters"
[ ! -e "/var/run/dpdk/$DPT_PREFIX" ] || fail "dpgw left /var/run/dpdk/$DPT_PREFIX: $(ls "/var/run/dpdk/$DPT_PREFIX")"
kill -TERM "$DPCTLD_PID"
rc=0; wait "$DPCTLD_PID" || rc=$?
[ "$rc" -eq 0 ] || fail "dpctld exited $rc on SIGTERM"
log "PASS"
