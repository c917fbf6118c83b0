#!/usr/bin/env bash
# Two workers (two af_packet queue pairs spread by the kernel's fanout hash) on hugepage memory:
# several parallel TCP and UDP flows must get through whichever worker receives each direction
# (handoff of frames to the session's RX worker and of inner packets to the flow's owner).
source "$(dirname "$0")/lib.sh"

free=$(bash "$ROOT/scripts/hugepages.sh" 512)
[ "$free" -ge 256 ] || fail "only $free free 2 MB hugepages after scripts/hugepages.sh"

topology_up
write_gw_conf 2 true
start_gw
grep -q -- "--no-huge" "$WORK/dpgw.log" && fail "dpgw ran with --no-huge although hugepages = true"
ls /dev/hugepages/ | matches "^${DPT_PREFIX}map_" || fail "no hugepage files for prefix $DPT_PREFIX"
start_agent agent
start_iperf_server
wait_for 15 "tunnel up" tunnel_up

log "iperf3 TCP, 4 parallel streams, 3 s"
iperf_client "$WORK/tcp.json" -c "$GW_PUBLIC" -t 3 -P 4
rx=$(json_get "$WORK/tcp.json" '.end.sum_received.bytes')
[ "$rx" -gt 0 ] || fail "TCP: received $rx bytes"
jq -e '[.end.streams[].receiver.bytes] | all(. > 0)' "$WORK/tcp.json" > /dev/null || fail "a TCP stream carried nothing"
log "  received $rx bytes"

log "iperf3 UDP, 2 parallel streams at 20 Mbit/s each, 3 s"
iperf_client "$WORK/udp.json" -c "$GW_PUBLIC" -u -b 20M -t 3 -P 2
lost=$(json_get "$WORK/udp.json" '.end.sum.lost_percent')
awk -v l="$lost" 'BEGIN { exit !(l < 10) }' || fail "UDP loss ${lost}%"
log "  lost ${lost}%"

gw_stats > "$WORK/stats.out"
log "  per worker rx/handoff: $(jq -c '[.workers[] | {id, rx_packets, handoff_tx, handoff_rx, flows_created}]' "$WORK/stats.out")"
jq -e '.workers | length == 2' "$WORK/stats.out" > /dev/null || fail "expected 2 workers"
jq -e '.totals.drops.handoff_full == 0 and .totals.drops.auth_fail == 0' "$WORK/stats.out" > /dev/null ||
  fail "unexpected drops: $(jq -c .totals.drops "$WORK/stats.out")"
stop_gw
log "PASS"
