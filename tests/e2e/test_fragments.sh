#!/usr/bin/env bash
# Datagrams bigger than the tunnel MTU, both ways, through real dpgw (2 workers) and dpagent:
# (a) dig +bufsize=4096 from the client to dnsmasq behind the agent: TXT answers of about 1.5, 1.75, 3.2 and 4 KB
#     arrive complete (no TC): the agent's kernel fragments them into the TUN, and dpgw towards the client;
# (b) UDP datagrams of 3000, 9000 and 65507 bytes (DF clear) go to an echo server behind the agent and come back
#     whole and intact, all on one flow;
# (c) with 2 workers, the fragments of each client datagram are put together on one worker (steered there when
#     they come in elsewhere), as the counters show;
# (d) hostile fragments (an overlap, a datagram past 65535 bytes, a misaligned fragment, a flood of datagrams
#     that never complete) are counted and dropped while a datagram stream goes on; what is left times out.
# The public port is a DPDK TAP bridged to the client's link (lib.sh GW_PUBLIC_TAP: af_packet would reassemble
# client fragments in the kernel before dpgw sees them).
source "$(dirname "$0")/lib.sh"
PROBE="/usr/bin/python3 $ROOT/tests/e2e/udp_probe.py"
ATTACK="/usr/bin/python3 $ROOT/tests/e2e/frag_attack.py"

topology_up
GW_PUBLIC_TAP=1 write_gw_conf 2 false
start_gw
public_tap_bridge
start_agent agent
wait_for 15 "tunnel up" tunnel_up
gw_field() { gw_stats | jq "$1"; }
sum_workers() { gw_stats | jq "[.workers[].$1] | add"; }

log "(a) dig +bufsize through the UDP entry point to dnsmasq behind the agent"
# TXT records of about a given RDATA length, and the count of x's dig should print. (No shell parses these
# arguments: dnsmasq keeps the quotes as text, and splits strings longer than 255 bytes itself.)
python3 - "$WORK/dns.args" "$WORK/dns.expect" <<'PY'
import sys
args, expect = [], []
for name, rdata in [("s1500", 1470), ("s1750", 1690), ("s3200", 3180), ("s4000", 3980)]:
    parts, left = [], rdata
    while left > 0:
        n = min(255, left - 1)
        parts.append("x" * n)
        left -= n + 1
    args.append("--txt-record=%s.test,%s" % (name, ",".join('"%s"' % p for p in parts)))
    expect.append("%s %d" % (name, sum(len(p) for p in parts)))
open(sys.argv[1], "w").write("\n".join(args) + "\n")
open(sys.argv[2], "w").write("\n".join(expect) + "\n")
PY
mapfile -t dns_args < "$WORK/dns.args"
ip netns exec "$NS_A" dnsmasq --keep-in-foreground --no-resolv --no-hosts --port=5300 --listen-address="$AGENT_IP" \
  --bind-interfaces --edns-packet-max=65535 --pid-file="$WORK/dnsmasq.pid" "${dns_args[@]}" \
  > "$WORK/dnsmasq.log" 2>&1 &
PIDS+=("$!")
wait_for 10 "dnsmasq" ip netns exec "$NS_A" bash -c "ss -lun | grep -q '$AGENT_IP:5300 '"
while read -r name want; do
  ip netns exec "$NS_C" dig @"$GW_PUBLIC" -p 5300 +bufsize=4096 +ignore +tries=2 +time=3 "$name.test" TXT \
    > "$WORK/dig-$name.out" 2>&1 || true
  size=$(sed -n 's/.*MSG SIZE *rcvd: \([0-9]*\).*/\1/p' "$WORK/dig-$name.out")
  got=$(sed -n '/ANSWER SECTION/,/^$/p' "$WORK/dig-$name.out" | tr -cd x | wc -c)
  grep -q "status: NOERROR" "$WORK/dig-$name.out" || fail "$name: no answer: $(cat "$WORK/dig-$name.out")"
  grep -q "flags:[^;]* tc" "$WORK/dig-$name.out" && fail "$name: truncated (TC) answer"
  [ "$got" = "$want" ] || fail "$name: $got of $want bytes of TXT data arrived"
  log "  $name.test TXT: $size-byte answer, complete"
done < "$WORK/dns.expect"
[ "$(gw_field '.totals.drops.bad_inner')" = 0 ] || fail "bad_inner drops at dpgw"

log "(b) UDP datagrams of 3000, 9000 and 65507 bytes both ways (DF clear), on one flow"
ip netns exec "$NS_A" timeout 60 $PROBE echo "$AGENT_IP" 5201 40 > "$WORK/echo.out" &
echo_pid=$!
sleep 0.5
flows_before=$(sum_workers flows_created)
ip netns exec "$NS_C" timeout 60 $PROBE ping "$GW_PUBLIC" 5201 3000,9000,65507 8 > "$WORK/ping.out"
log "  $(cat "$WORK/ping.out")"
jq -e '.sent == 24 and .intact == 24 and .sizes == [3000, 9000, 65507]' "$WORK/ping.out" > /dev/null ||
  fail "datagrams lost or damaged: $(cat "$WORK/ping.out")"
[ "$(( $(sum_workers flows_created) - flows_before ))" = 1 ] || fail "the probe's datagrams made more than one flow"
agent_stats() { kill -USR1 "$AGENT_PID"; sleep 0.5; tail -n 1 "$WORK/agent.out"; }
agent_stats > "$WORK/agent-stats.json"
log "  agent: $(jq -c '{fragments_tx, reassembly}' "$WORK/agent-stats.json")"
jq -e '.reassembly.from_gateway.reassembled >= 24 and .reassembly.from_tun.reassembled >= 24 and .bad_inner == 0' \
  "$WORK/agent-stats.json" > /dev/null || fail "the agent did not put the datagrams together"

log "(c) two workers: each client datagram reassembled on one worker"
gw_stats > "$WORK/stats-c.json"
log "  $(jq -c '[.workers[] | {id, frag_rx, frag_steered, frag_reassembled, inner_frag_reassembled, fragments_tx}]' "$WORK/stats-c.json")"
jq -e '([.workers[].frag_reassembled] | add) >= 24 and ([.workers[] | select(.frag_reassembled > 0)] | length) == 2
       and ([.workers[].frag_steered] | add) > 0 and .totals.drops.frag_timeout == 0
       and .totals.drops.frag_evicted == 0 and .totals.drops.frag_overlap == 0' "$WORK/stats-c.json" > /dev/null ||
  fail "fragments were not put together one worker per datagram: $(jq -c '.workers, .totals.drops' "$WORK/stats-c.json")"

log "(d) hostile fragments while a stream of 3000-byte datagrams goes on"
ip netns exec "$NS_C" timeout 60 $PROBE ping "$GW_PUBLIC" 5201 3000 40 > "$WORK/ping-d.out" &
ping_pid=$!
ip netns exec "$NS_C" $ATTACK overlap "$GW_PUBLIC" 5201 > /dev/null
ip netns exec "$NS_C" $ATTACK oversize "$GW_PUBLIC" 5201 > /dev/null
ip netns exec "$NS_C" $ATTACK misaligned "$GW_PUBLIC" 5201 > /dev/null
for _ in 1 2 3; do ip netns exec "$NS_C" $ATTACK flood "$GW_PUBLIC" 5201 4000 > /dev/null; sleep 0.2; done
wait "$ping_pid" || fail "the probe failed during the attack"
log "  stream: $(cat "$WORK/ping-d.out")"
jq -e '.intact == 40' "$WORK/ping-d.out" > /dev/null || fail "legitimate datagrams lost during the attack"
gw_stats > "$WORK/stats-d.json"
log "  drops: $(jq -c '.totals.drops | with_entries(select(.key | startswith("frag")))' "$WORK/stats-d.json")"
jq -e '.totals.drops.frag_overlap >= 2 and .totals.drops.frag_oversize >= 1 and .totals.drops.frag_malformed >= 1
       and .totals.drops.frag_evicted > 0 and ([.workers[].frag_evictions] | add) > 0' "$WORK/stats-d.json" > /dev/null ||
  fail "hostile fragments not counted: $(jq -c .totals.drops "$WORK/stats-d.json")"
log "  what is left times out (reassembly.timeout 2 s)"
wait_for 10 "reassembly timeouts" bash -c "$DPGW stats --socket $WORK/dpgw.sock --json | jq -e '.totals.drops.frag_timeout > 0' > /dev/null"
ip netns exec "$NS_C" timeout 30 $PROBE ping "$GW_PUBLIC" 5201 9000 5 > "$WORK/ping-after.out"
jq -e '.intact == 5' "$WORK/ping-after.out" > /dev/null || fail "datagrams lost after the attack: $(cat "$WORK/ping-after.out")"
kill "$echo_pid" 2>/dev/null || true
kill -0 "$GW_PID" || fail "dpgw died"
log "PASS"
