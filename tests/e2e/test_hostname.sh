#!/usr/bin/env bash
# Hostname routing end to end: two tunnels served by two agents, one shared public port, the backend chosen by
# the name the client asks for. QUIC (HTTP/3 with ngtcp2's client and server): the SNI of the client's Initial
# picks the rule; a wildcard rule; a name no rule matches; a private rule refused from the public entry point.
source "$(dirname "$0")/lib.sh"

topology_up
bash "$ROOT/tests/e2e/pki.sh" "$WORK/pki" "$GW_UNDERLAY"
GW_STATIC=0 GW_SESSION_TIMEOUT=1.5 GW_KERNEL_IF=dpgw-under write_gw_conf 1 false
write_dpctld_conf "$GW_UNDERLAY:7443"
start_gw
start_dpctld "$NS_G"

dpctl tunnel add web-a --allow CN=agent-1 > /dev/null
dpctl tunnel add web-b --allow CN=agent-2 > /dev/null
for n in 1 2; do
  t=$([ $n = 1 ] && echo web-a || echo web-b)
  ip netns exec "$NS_A" "$DPAGENT" --server "$GW_UNDERLAY:7443" --ca "$WORK/pki/ca.pem" --cert "$WORK/pki/agent$n.pem" \
    --key "$WORK/pki/agent$n.key" --tunnel "$t" --name "agent-$n" > "$WORK/agent-$n.out" 2> "$WORK/agent-$n.log" &
  PIDS+=("$!")
done
two_live() { [ "$(dpctl --json session list | jq '[.sessions[] | select(.live)] | length')" -eq 2 ]; }
wait_for 20 "both agents live" two_live

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

log "one UDP :443 for both tunnels, routed by the SNI of the QUIC Initial"
dpctl entry add udp 443 --route quic --keepalive --ttl 30 | grep -q "routed by quic" || fail "entry add --route quic"
dpctl ingress add quic-a.example web-a --target "$AGENT_IP:4431" > /dev/null
dpctl ingress add '.b.example' web-b --target "$AGENT_IP:4432" > /dev/null
dpctl ingress add secret.example web-a --target "$AGENT_IP:4431" --private > /dev/null
rules_compiled() { [ "$(gw_stats | jq '.ingress.rules // 0')" -eq 3 ]; }
wait_for 10 "dpgw compiled the 3 rules" rules_compiled

# The client resolves every test name to the gateway's public address (its SNI is then the name).
netns_hosts "$NS_C" "$GW_PUBLIC quic-a.example QUIC-A.Example www.b.example b.example nothing.example secret.example"
# quic_get NAME: fetches https://NAME/index.html over HTTP/3 through the gateway; prints the page.
quic_get() {
  rm -rf "$WORK/dl" && mkdir -p "$WORK/dl"
  timeout 10 ip netns exec "$NS_C" gtlsclient -q --no-pmtud --max-udp-payload-size=1200 --handshake-timeout=3s \
    --exit-on-all-streams-close --download="$WORK/dl" "$1" 443 "https://$1/index.html" \
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

log "rules change at runtime: the name moves to the other tunnel"
dpctl ingress del quic-a.example > /dev/null
dpctl ingress add quic-a.example web-b --target "$AGENT_IP:4432" > /dev/null
moved() { [ "$(quic_get quic-a.example)" = "backend b" ]; }
wait_for 10 "quic-a.example served by backend b" moved
log "PASS"
