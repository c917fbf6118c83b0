#!/usr/bin/env bash
# dpagent's kernel offloads with real traffic, checked byte for byte: TCP uploads reach the server through
# coalesced TUN writes (GRO done by dpagent), TCP downloads leave the server as super-packets dpagent reads and
# segments (TSO), UDP datagrams of one flow are coalesced too (USO, Linux 6.2+), and frames to the gateway go out
# in UDP_SEGMENT batches. The kernel in the agent's namespace finds no checksum error, every transfer arrives
# intact, and the same transfers pass with --no-offload (one TUN read or write per packet).
source "$(dirname "$0")/lib.sh"
CHECK="/usr/bin/python3 $ROOT/tests/e2e/stream_check.py"
BYTES=$((24 << 20))

agent_counters() {  # the JSON line dpagent prints on SIGUSR1
  local before
  before=$(wc -l < "$WORK/agent.out")
  kill -USR1 "$AGENT_PID"
  wait_for 5 "dpagent's counters" bash -c "[ \$(wc -l < '$WORK/agent.out') -gt $before ]"
  tail -1 "$WORK/agent.out"
}

transfers() {  # label: a TCP upload, a TCP download and a UDP stream through the tunnel, each checked
  local label=$1
  ip netns exec "$NS_A" timeout 60 $CHECK tcp-sink "$AGENT_IP" 5201 > /dev/null &
  local srv=$!
  sleep 0.5
  ip netns exec "$NS_C" timeout 60 $CHECK tcp-put "$GW_PUBLIC" 5201 "$BYTES" 7 > "$WORK/put-$label.json" ||
    fail "$label: upload failed"
  wait "$srv"
  jq -e '.echoed == .sha256' "$WORK/put-$label.json" > /dev/null ||
    fail "$label: the server got other bytes than were sent: $(cat "$WORK/put-$label.json")"
  log "  $label: $BYTES bytes up, SHA-256 equal at the server"

  ip netns exec "$NS_A" timeout 60 $CHECK tcp-source "$AGENT_IP" 5201 "$BYTES" 11 &
  srv=$!
  sleep 0.5
  ip netns exec "$NS_C" timeout 60 $CHECK tcp-get "$GW_PUBLIC" 5201 "$BYTES" 11 > "$WORK/get-$label.json" ||
    fail "$label: download failed"
  wait "$srv"
  jq -e ".ok and .received == $BYTES" "$WORK/get-$label.json" > /dev/null ||
    fail "$label: the client got other bytes: $(cat "$WORK/get-$label.json")"
  log "  $label: $BYTES bytes down, byte for byte"

  ip netns exec "$NS_A" timeout 60 $CHECK udp-sink "$AGENT_IP" 5201 2 > "$WORK/udp-$label.json" &
  srv=$!
  sleep 0.5
  ip netns exec "$NS_C" timeout 60 $CHECK udp-send "$GW_PUBLIC" 5201 3000 1200 > /dev/null
  wait "$srv"
  # UDP may lose datagrams under load (each loss is counted by whoever dropped it); none may arrive altered.
  jq -e '.bad == 0 and .datagrams >= 2700' "$WORK/udp-$label.json" > /dev/null ||
    fail "$label: UDP datagrams altered or lost: $(cat "$WORK/udp-$label.json")"
  log "  $label: UDP $(jq -r .datagrams "$WORK/udp-$label.json")/3000 datagrams, none altered"
}

topology_up
write_gw_conf 1 false
start_gw
start_agent agent
wait_for 15 "tunnel up" tunnel_up
grep -q "offloads: checksum on, TCP super-packets read (TSO) on" "$WORK/agent.log" ||
  fail "dpagent did not report its TUN offloads: $(grep -i offload "$WORK/agent.log")"
grep -q "UDP_SEGMENT) on" "$WORK/agent.log" || fail "no UDP segmentation on the gateway socket: $(grep -i udp "$WORK/agent.log")"
log "offloads as dpagent logged them:"
grep -i "offload\|UDP_SEGMENT" "$WORK/agent.log" | sed 's/^/    /'
uso=0
grep -q "UDP super-packets (USO) on" "$WORK/agent.log" && uso=1

log "with offloads"
transfers offload
c=$(agent_counters)
echo "$c" | jq -e '.tun_packets_coalesced > 0 and .tun_writes < .tun_packets_written' > /dev/null ||
  fail "no TUN write carried more than one packet: $c"
echo "$c" | jq -e '.tun_super_packets > 0 and .tun_segments > .tun_super_packets' > /dev/null ||
  fail "no super-packet read from the TUN and segmented: $c"
echo "$c" | jq -e '.socket_tx_sends < .frames_tx' > /dev/null || fail "every frame took its own send: $c"
echo "$c" | jq -e '.tun_gso_malformed == 0 and .tun_write_errors == 0 and .bad_inner == 0' > /dev/null ||
  fail "offload errors: $c"
log "  dpagent: $(echo "$c" | jq -r '"\(.tun_packets_written) packets in \(.tun_writes) TUN writes, \(.tun_super_packets) super-packets read as \(.tun_segments) segments, \(.frames_tx) frames in \(.socket_tx_sends) sends"')"
csum=$(ip netns exec "$NS_A" nstat -asz TcpInCsumErrors UdpInCsumErrors | awk 'NR>1 {s += $2} END {print s + 0}')
[ "$csum" = 0 ] || fail "the kernel found $csum checksum errors in what dpagent wrote: $(ip netns exec "$NS_A" nstat -asz | grep -i csum)"
log "  the agent's kernel: no TCP or UDP checksum errors"
if [ "$uso" = 1 ]; then
  # The UDP stream alone: its datagrams share a flow and a size, so some writes carried several.
  before=$(echo "$c" | jq .tun_packets_coalesced)
  ip netns exec "$NS_A" timeout 60 $CHECK udp-sink "$AGENT_IP" 5201 2 > "$WORK/udp-only.json" &
  srv=$!
  sleep 0.5
  ip netns exec "$NS_C" timeout 60 $CHECK udp-send "$GW_PUBLIC" 5201 3000 1200 > /dev/null
  wait "$srv"
  jq -e '.bad == 0' "$WORK/udp-only.json" > /dev/null || fail "coalesced UDP datagrams altered: $(cat "$WORK/udp-only.json")"
  after=$(agent_counters | jq .tun_packets_coalesced)
  [ "$after" -gt "$before" ] || fail "no UDP datagrams coalesced (USO on): $before -> $after"
  log "  UDP: $((after - before)) datagrams went out in coalesced writes, none altered"
else
  log "  (this kernel has no USO: UDP is written one datagram at a time)"
fi

log "again with --no-offload"
kill "$AGENT_PID"
wait "$AGENT_PID" 2> /dev/null || true
start_agent agent --no-offload
# (the log line first: tunnel_up may still see the agent just killed, which answered less than 2 s ago)
wait_for 10 "dpagent saying offloads are off" grep -q "offloads off (--no-offload)" "$WORK/agent.log"
wait_for 15 "tunnel up" tunnel_up
transfers plain
c=$(agent_counters)
echo "$c" | jq -e '.tun_packets_coalesced == 0 and .tun_writes == .tun_packets_written and .tun_super_packets == 0' \
  > /dev/null || fail "offloads used although turned off: $c"
echo "$c" | jq -e '.socket_tx_sends == .frames_tx + .keepalives_tx' > /dev/null || fail "frames batched although off: $c"
log "PASS"
