#!/usr/bin/env bash
# End to end through real processes: client ns -> dpgw (af_packet) -> dpagent (TUN + NAT) -> iperf3 server.
# iperf3 TCP (both directions) and UDP through the TCP and UDP entry points, a dpagent killed and restarted
# during a UDP stream, ARP/ICMP, and the operator-facing errors of dpagent.
source "$(dirname "$0")/lib.sh"

topology_up
write_gw_conf 1 false
start_gw
start_agent agent --lan-nat
start_iperf_server
ip netns exec "$NS_L" iperf3 -s -J -B "$LAN_HOST" -p 5202 > "$WORK/iperf3-lan.log" 2>&1 &
PIDS+=("$!")
wait_for 15 "tunnel up (agent keepalive answered)" tunnel_up

log "ARP + ICMP echo on both gateway addresses"
ip netns exec "$NS_C" ping -c 2 -i 0.2 -W 2 "$GW_PUBLIC" > /dev/null || fail "no echo reply from $GW_PUBLIC"
ip netns exec "$NS_A" ping -c 2 -i 0.2 -W 2 "$GW_UNDERLAY" > /dev/null || fail "no echo reply from $GW_UNDERLAY"

log "iperf3 TCP client -> server, 3 s"
iperf_client "$WORK/tcp.json" -c "$GW_PUBLIC" -t 3
rx=$(json_get "$WORK/tcp.json" '.end.sum_received.bytes')
[ "$rx" -gt 0 ] || fail "TCP: server received $rx bytes"
log "  received $rx bytes ($(json_get "$WORK/tcp.json" '.end.sum_received.bits_per_second / 1e6 | floor') Mbit/s)"

log "iperf3 TCP server -> client (-R), 3 s"
iperf_client "$WORK/tcp-r.json" -c "$GW_PUBLIC" -t 3 -R
rx=$(json_get "$WORK/tcp-r.json" '.end.sum_received.bytes')
[ "$rx" -gt 0 ] || fail "TCP -R: client received $rx bytes"
log "  received $rx bytes"

log "a target on the agent's LAN (another host), through dpagent --lan-nat"
iperf_client "$WORK/tcp-lan.json" -c "$GW_PUBLIC" -p 5202 -t 2
rx=$(json_get "$WORK/tcp-lan.json" '.end.sum_received.bytes')
[ "$rx" -gt 0 ] || fail "LAN target: received $rx bytes"
log "  received $rx bytes"

log "MSS clamped for the tunnel overhead (underlay MTU 1500 - 72 - 40 = 1388)"
mss=$(json_get "$WORK/tcp.json" '.start.tcp_mss_default // 0')
[ "$mss" -gt 0 ] && [ "$mss" -le 1388 ] || fail "client connection MSS is $mss, expected <= 1388"

log "iperf3 UDP 50 Mbit/s, 3 s"
iperf_client "$WORK/udp.json" -c "$GW_PUBLIC" -u -b 50M -t 3
rx=$(json_get "$WORK/udp.json" '.end.sum.bytes')
lost=$(json_get "$WORK/udp.json" '.end.sum.lost_percent')
log "  sent $rx bytes, lost ${lost}%"
[ "$rx" -gt 0 ] || fail "UDP: no bytes"
awk -v l="$lost" 'BEGIN { exit !(l < 10) }' || fail "UDP loss ${lost}% >= 10%"

log "dpagent killed (SIGKILL) and restarted during a UDP stream: traffic resumes"
timeout 60 ip netns exec "$NS_C" iperf3 -J -c "$GW_PUBLIC" -u -b 10M -t 9 --get-server-output \
  > "$WORK/udp-restart.json" 2> "$WORK/udp-restart.err" &
client=$!
sleep 2.5
kill -9 "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null || true
sleep 1
start_agent agent2 --lan-nat
wait "$client" || { cat "$WORK/udp-restart.err" >&2; fail "iperf3 UDP client failed across the agent restart"; }
# Per-second bytes the server received; the seconds after the restart (5..8) must all carry data.
jq -c '[.server_output_json.intervals[].sum.bytes]' "$WORK/udp-restart.json" > "$WORK/udp-restart-intervals.out"
log "  server bytes per second: $(cat "$WORK/udp-restart-intervals.out")"
jq -e '[.server_output_json.intervals[5:8][].sum.bytes] | length == 3 and all(. > 0)' "$WORK/udp-restart.json" \
  > /dev/null || fail "UDP traffic did not resume after the agent restart"
gw_stats | jq -e '.tunnels[0].sessions[0].endpoint_changes >= 1' > /dev/null ||
  fail "gateway did not follow the restarted agent's new UDP endpoint"

log "counters readable while running, and sane"
gw_stats > "$WORK/stats.out"
jq -e '.tunnels[0].to_agent_packets > 0 and .tunnels[0].from_agent_packets > 0 and .totals.drops.auth_fail == 0 and
       .totals.drops.parse_error == 0 and .tunnels[0].flows_created >= 4' "$WORK/stats.out" > /dev/null ||
  fail "unexpected gateway counters: $(jq -c '{t: .tunnels[0], d: .totals.drops}' "$WORK/stats.out")"

log "an agent with the wrong key: frames fail authentication, counted by both sides, reported, no tunnel"
echo "ff${PSK:2}" > "$WORK/wrong.psk"
ip netns exec "$NS_A" "$DPAGENT" --gateway "$GW_UNDERLAY:51900" --session 1 --psk-file "$WORK/wrong.psk" \
  --tun dptbad --tun-net 100.65.0.1/16 --keepalive 0.3 > "$WORK/wrong-agent.out" 2> "$WORK/wrong-agent.log" &
wrong=$!
PIDS+=("$wrong")
wait_for 10 "auth_fail counted by dpgw" bash -c "'$DPGW' stats --socket '$WORK/dpgw.sock' --json | jq -e '.tunnels[0].auth_fail > 0'"
wait_for 10 "wrong-key agent reports no authenticated answer" grep -q "no authenticated answer" "$WORK/wrong-agent.log"
wait_for 10 "dpgw logs authentication failures" grep -q "failed authentication" "$WORK/dpgw.log"
kill "$wrong"
wait "$wrong" 2>/dev/null || true
# The good agent still carries traffic.
iperf_client "$WORK/tcp-after.json" -c "$GW_PUBLIC" -t 1
[ "$(json_get "$WORK/tcp-after.json" '.end.sum_received.bytes')" -gt 0 ] || fail "traffic broken after the wrong-key agent"

log "dpagent errors: nothing listening, unreachable gateway, no TUN permission, --lan-nat without nft"
set +e
timeout 5 ip netns exec "$NS_A" "$DPAGENT" --gateway "$AGENT_IP:9" --session 1 --psk-file "$WORK/psk" \
  --tun dptref --tun-net 100.66.0.1/16 --keepalive 0.3 > /dev/null 2> "$WORK/refused.log"
timeout 3 ip netns exec "$NS_A" "$DPAGENT" --gateway 10.99.2.77:51900 --session 1 --psk-file "$WORK/psk" \
  --tun dptunr --tun-net 100.67.0.1/16 --keepalive 0.3 > /dev/null 2> "$WORK/unreachable.log"
ip netns exec "$NS_A" setpriv --reuid=65534 --regid=65534 --clear-groups "$DPAGENT" --gateway "$GW_UNDERLAY:51900" \
  --session 1 --psk-file /dev/null > /dev/null 2> "$WORK/noperm.log"
cp "$WORK/psk" "$WORK/psk-readable" && chmod 644 "$WORK/psk-readable" && chmod 755 "$WORK"
ip netns exec "$NS_A" setpriv --reuid=65534 --regid=65534 --clear-groups "$DPAGENT" --gateway "$GW_UNDERLAY:51900" \
  --session 1 --psk-file "$WORK/psk-readable" --tun dptperm > /dev/null 2> "$WORK/noperm.log"
noperm_rc=$?
timeout 5 ip netns exec "$NS_A" env PATH=/nonexistent "$DPAGENT" --gateway "$GW_UNDERLAY:51900" --session 1 \
  --psk-file "$WORK/psk" --tun dptnonft --tun-net 100.68.0.1/16 --lan-nat > /dev/null 2> "$WORK/nonft.log"
nonft_rc=$?
# An nft that fails and says which signals it was started with ignoring: dpagent ignores SIGPIPE itself, its child
# must get the default back (common/broken_pipes.hpp).
mkdir -p "$WORK/fakebin"
printf '#!/bin/sh\nawk '"'"'/^SigIgn:/ { print "nft SigIgn " $2 }'"'"' /proc/$$/status\nexit 1\n' > "$WORK/fakebin/nft"
chmod +x "$WORK/fakebin/nft"
timeout 5 ip netns exec "$NS_A" env PATH="$WORK/fakebin:/usr/bin:/bin" "$DPAGENT" --gateway "$GW_UNDERLAY:51900" \
  --session 1 --psk-file "$WORK/psk" --tun dptfakenft --tun-net 100.68.0.1/16 --lan-nat \
  > /dev/null 2> "$WORK/fakenft.log"
set -e
[ "$nonft_rc" = 1 ] && grep -q -- "--lan-nat needs the nft command" "$WORK/nonft.log" ||
  fail "--lan-nat without nft: exit status $nonft_rc (1 expected), stderr: $(cat "$WORK/nonft.log")"
nft_sigign=$(sed -n 's/.*nft SigIgn \([0-9a-f]*\).*/\1/p' "$WORK/fakenft.log" | head -1)
[ -n "$nft_sigign" ] || fail "the fake nft's output did not reach dpagent's error: $(cat "$WORK/fakenft.log")"
sigpipe_inherited || (( (0x$nft_sigign & 0x1000) == 0 )) || fail "dpagent's nft child was started with SIGPIPE ignored"
grep -q "port unreachable" "$WORK/refused.log" || fail "no 'port unreachable' report: $(cat "$WORK/refused.log")"
grep -q "no authenticated answer" "$WORK/unreachable.log" || fail "no unreachable report: $(cat "$WORK/unreachable.log")"
[ "$noperm_rc" -ne 0 ] || fail "dpagent without CAP_NET_ADMIN exited 0"
grep -q "CAP_NET_ADMIN" "$WORK/noperm.log" || fail "no CAP_NET_ADMIN hint: $(cat "$WORK/noperm.log")"

log "IPv6 frames are parsed, counted and dropped without harm"
ip netns exec "$NS_C" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.c0.disable_ipv6=0
sleep 2  # link-local address (DAD)
ip netns exec "$NS_C" ping -6 -c 3 -i 0.2 -W 1 -I c0 ff02::1 > /dev/null 2>&1 || true
wait_for 10 "IPv6 counted as dropped" bash -c "'$DPGW' stats --socket '$WORK/dpgw.sock' --json | jq -e '.totals.drops.ipv6 > 0'"
ip netns exec "$NS_C" ping -c 1 -W 2 "$GW_PUBLIC" > /dev/null || fail "gateway stopped answering after IPv6"

log "idle flows expire (UDP TTL 5 s, closed TCP 5 s)"
wait_for 20 "all flows expired" bash -c "'$DPGW' stats --socket '$WORK/dpgw.sock' --json | jq -e '.totals.flows_active == 0'"
gw_stats | jq -e '[.workers[].flows_expired] | add >= 4' > /dev/null || fail "flows_expired not counted"

log "dpgw prints its counters on exit"
stop_gw
grep -q "dpgw final counters" "$WORK/dpgw.out" || fail "no final counters on stdout"

log "dpgw restarted under a running agent: the static session comes back by itself"
mv "$WORK/dpgw.log" "$WORK/dpgw-first-run.log"
start_gw
wait_for 15 "tunnel up after the gateway restart" tunnel_up
iperf_client "$WORK/tcp-gw-restart.json" -c "$GW_PUBLIC" -t 1
[ "$(json_get "$WORK/tcp-gw-restart.json" '.end.sum_received.bytes')" -gt 0 ] || fail "no traffic after the gateway restart"
gw_stats | jq -e '.totals.drops.auth_fail == 0' > /dev/null || fail "authentication failures after the gateway restart"
log "PASS"
