#!/usr/bin/env bash
# MTU handling through the tunnel (underlay MTU 1500, 72 bytes of encapsulation):
# a UDP datagram that no longer fits one frame travels as inner IPv4 fragments, one frame each, when DF is clear
# (dpagent puts it together; the receiver gets it whole), and is answered with ICMP fragmentation-needed (MTU 1428)
# when DF is set -- never silently dropped. Bigger datagrams, both ways: test_fragments.sh.
source "$(dirname "$0")/lib.sh"
PROBE="/usr/bin/python3 $ROOT/tests/e2e/udp_probe.py"

topology_up
write_gw_conf 1 false
start_gw
start_agent agent
wait_for 15 "tunnel up" tunnel_up

log "1472-byte UDP payload (1500-byte IP packet) with DF clear: inner fragments, delivered whole"
ip netns exec "$NS_A" timeout 20 $PROBE recv "$AGENT_IP" 5300 4 > "$WORK/recv-nodf.out" &
recv=$!
sleep 0.5
ip netns exec "$NS_C" timeout 20 $PROBE send "$GW_PUBLIC" 5300 1472 20 nodf > "$WORK/send-nodf.out"
wait "$recv"
log "  sender: $(cat "$WORK/send-nodf.out")  receiver: $(cat "$WORK/recv-nodf.out")"
jq -e '.datagrams >= 18 and .sizes == [1472]' "$WORK/recv-nodf.out" > /dev/null || fail "datagrams not delivered whole"
gw_stats | jq -e '.workers[0].fragments_tx >= 36' > /dev/null || fail "gateway did not fragment: $(gw_stats | jq -c .workers[0])"

log "same with DF set: ICMP fragmentation-needed tells the client the tunnel MTU"
ip netns exec "$NS_C" ip route flush cache
ip netns exec "$NS_C" timeout 20 $PROBE send "$GW_PUBLIC" 5300 1472 5 df > "$WORK/send-df.out"
log "  sender: $(cat "$WORK/send-df.out")"
gw_stats | jq -e '.workers[0].icmp_frag_needed >= 1 and .totals.drops.too_big >= 1' > /dev/null ||
  fail "no ICMP fragmentation-needed: $(gw_stats | jq -c '{w: .workers[0], d: .totals.drops}')"
jq -e '.emsgsize >= 1' "$WORK/send-df.out" > /dev/null || fail "the client never learned the smaller path MTU"
ip netns exec "$NS_C" ip route get "$GW_PUBLIC" | matches "mtu 1428" || fail "client route has no mtu 1428: $(ip netns exec "$NS_C" ip route get "$GW_PUBLIC")"

log "a datagram that fits (1400-byte payload) with DF set goes through unfragmented"
ip netns exec "$NS_A" timeout 20 $PROBE recv "$AGENT_IP" 5300 3 > "$WORK/recv-fit.out" &
recv=$!
sleep 0.5
ip netns exec "$NS_C" timeout 20 $PROBE send "$GW_PUBLIC" 5300 1400 10 df > /dev/null
wait "$recv"
jq -e '.datagrams >= 9 and .sizes == [1400]' "$WORK/recv-fit.out" > /dev/null || fail "fitting datagrams lost: $(cat "$WORK/recv-fit.out")"
log "PASS"
