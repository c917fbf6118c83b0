#!/usr/bin/env bash
# Visitors (dpagent visit) and private rules end to end: a private hostname rule is refused from the public
# entry point and reached by a visitor holding the tunnel's id; a visitor reaches a public rule of its tunnel
# too, but never another tunnel's; direct mode (a visitor naming an address, no rule) is refused while the
# gateway's direct_mode is off and works once it is on.
source "$(dirname "$0")/lib.sh"

topology_up
bash "$ROOT/tests/e2e/pki.sh" "$WORK/pki" "$GW_UNDERLAY"
GW_STATIC=0 GW_SESSION_TIMEOUT=1.5 GW_KERNEL_IF=dpgw-under write_gw_conf 1 false
write_dpctld_conf "$GW_UNDERLAY:7443"
start_gw
start_dpctld "$NS_G"

B_IP=10.99.2.3
ip -n "$NS_A" addr add "$B_IP/24" dev a0
start_nginx "$NS_A" <<NGINX
  server { listen $AGENT_IP:80; location = / { return 200 "backend a\\n"; } }
  server { listen $B_IP:80; location = / { return 200 "backend b\\n"; } }
NGINX

id_a=$(dpctl --json tunnel add web-a --allow CN=agent-1 | jq -r .tunnel.id)
dpctl tunnel add web-b --allow CN=agent-2 > /dev/null
for n in 1 2; do
  t=$([ $n = 1 ] && echo web-a || echo web-b)
  ip netns exec "$NS_A" "$DPAGENT" --server "$GW_UNDERLAY:7443" --ca "$WORK/pki/ca.pem" --cert "$WORK/pki/agent$n.pem" \
    --key "$WORK/pki/agent$n.key" --tunnel "$t" --name "agent-$n" > "$WORK/agent-$n.out" 2> "$WORK/agent-$n.log" &
  PIDS+=("$!")
done
dpctl entry add tcp 80 --route http > /dev/null
dpctl ingress add intranet.example web-a --target "$AGENT_IP" --private > /dev/null
dpctl ingress add app-a.example web-a --target "$AGENT_IP" > /dev/null
dpctl ingress add app-b.example web-b --target "$B_IP" > /dev/null
agents_live() { [ "$(dpctl --json session list | jq '[.sessions[] | select(.live and .role == "agent")] | length')" -eq 2 ]; }
wait_for 20 "both agents live" agents_live
rules() { [ "$(gw_stats | jq '.ingress.rules // 0')" -eq 3 ]; }
wait_for 10 "rules compiled" rules
drops() { gw_stats | jq ".totals.drops.$1"; }

log "a private rule is refused from the public entry point"
code=$(timeout 20 ip netns exec "$NS_C" curl -s -o /dev/null -w '%{http_code}' --max-time 10 \
  --resolve "intranet.example:80:$GW_PUBLIC" http://intranet.example/)
[ "$code" = 502 ] || fail "intranet.example from the public entry point: HTTP $code, not 502"
[ "$(drops private_rule)" -ge 1 ] || fail "private_rule not counted"
[ "$(timeout 20 ip netns exec "$NS_C" curl -s --max-time 10 --resolve "app-a.example:80:$GW_PUBLIC" http://app-a.example/)" = "backend a" ] ||
  fail "the public rule of the same tunnel does not work from the entry point"

# visit NAME TUN NET ARGS...: a visitor (any certificate of the CA) with its own TUN. --no-direct: this test is about
# dpgw's visitor path; visitors beside their agents would reach them straight on a direct path
# (test_direct_paths.sh), and dpgw would see none of their flows.
visit() {
  local name=$1 tun=$2 net=$3; shift 3
  ip netns exec "$NS_A" "$DPAGENT" visit --server "$GW_UNDERLAY:7443" --ca "$WORK/pki/ca.pem" \
    --cert "$WORK/pki/agent2.pem" --key "$WORK/pki/agent2.key" --tunnel "$id_a" --name "$name" --tun "$tun" \
    --tun-net "$net" --no-direct "$@" > "$WORK/$name.out" 2> "$WORK/$name.log" &
  PIDS+=("$!")
}
visitors_live() { [ "$(dpctl --json session list | jq "[.sessions[] | select(.live and .role == \"visitor\")] | length")" -eq "$1" ]; }
# fetch URL: through a visitor, from the agent host
fetch() { timeout 15 ip netns exec "$NS_A" curl -s --max-time 8 "$1" || true; }

log "visitors of web-a: the private rule, a public rule of the tunnel, and another tunnel's rule"
# (The rules' targets have no port: a visitor's connection goes to the port of its --local address.)
visit visit-private dpv0 100.96.0.1/16 --host intranet.example --local 100.96.0.10:80
visit visit-public dpv1 100.97.0.1/16 --host app-a.example --local 100.97.0.10:80
visit visit-other dpv2 100.98.0.1/16 --host app-b.example --local 100.98.0.10:80
wait_for 20 "three visitors live" visitors_live 3
dpctl session list | matches -E "^[0-9]+ +web-a +visitor +CN=agent-2" || fail "session list: $(dpctl session list)"
[ "$(fetch http://100.96.0.10/)" = "backend a" ] || fail "the visitor did not reach the private rule"
[ "$(fetch http://100.97.0.10/)" = "backend a" ] || fail "the visitor did not reach its tunnel's public rule"
no_rule=$(drops no_rule)
[ -z "$(fetch http://100.98.0.10/)" ] || fail "a visitor of web-a reached web-b's rule"
[ "$(drops no_rule)" -gt "$no_rule" ] || fail "another tunnel's rule: not counted as no_rule"
[ "$(gw_stats | jq '[.workers[].visitor_flows] | add')" -ge 2 ] || fail "visitor flows not counted"
log "  intranet.example (private) and app-a.example reached; app-b.example (web-b) refused"

log "direct mode: refused while off; after a dpgw restart with direct_mode = true, the address is reached"
visit visit-direct dpv3 100.99.0.1/16 --target "$B_IP:80" --local 100.99.0.10:8080
wait_for 20 "four visitors live" visitors_live 4
[ -z "$(fetch http://100.99.0.10:8080/)" ] || fail "direct mode worked while off"
[ "$(drops direct_disabled)" -ge 1 ] || fail "direct_disabled not counted"
stop_gw
GW_STATIC=0 GW_SESSION_TIMEOUT=1.5 GW_KERNEL_IF=dpgw-under GW_DIRECT=true write_gw_conf 1 false
start_gw
wait_for 20 "agents and visitors back" visitors_live 4
wait_for 20 "agents back" agents_live
direct_ok() { [ "$(fetch http://100.99.0.10:8080/)" = "backend b" ]; }
wait_for 15 "the direct visitor reaches $B_IP:80 through web-a" direct_ok
[ "$(fetch http://100.96.0.10/)" = "backend a" ] || fail "the private visitor after the dpgw restart"
log "PASS"
