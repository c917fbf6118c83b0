#!/usr/bin/env bash
# dpgw's STUN server (docs/operations.md "STUN"), asked by Debian's STUN clients from the client namespace:
# stun-client's `stun` (an RFC 3489 client: no magic cookie, answered with MAPPED-ADDRESS) on the STUN port, from a
# source port it is given, and coturn's turnutils_stunclient (RFC 5389/8489: XOR-MAPPED-ADDRESS) on the STUN port,
# the tunnel port and the QUIC port, its source port read off the wire with tcpdump. Each client must show its own
# address and that port. Then a datagram that is no STUN is counted, and dpgw's counters read in `dpgw stats --json`
# and the metrics: as many responses as requests, stun_malformed 1.
source "$(dirname "$0")/lib.sh"
CLIENT_IP=10.99.1.2
STUN_PORT=3478  # the default dpgw.stun_port
for tool in stun turnutils_stunclient tcpdump; do
  command -v "$tool" > /dev/null || fail "$tool is missing (scripts/install-deps.sh installs stun-client, coturn, tcpdump)"
done

topology_up
write_gw_conf 1 false
start_gw

log "stun (RFC 3489 client) to $GW_PUBLIC:$STUN_PORT from port 34780"
out=$(timeout 10 ip netns exec "$NS_C" stun "$GW_PUBLIC:$STUN_PORT" 1 -v -p 34780 2>&1) ||
  fail "stun exited with an error: $(tail -5 <<< "$out")"
matches -F "MappedAddress = $CLIENT_IP:34780" <<< "$out" || fail "stun does not show $CLIENT_IP:34780: $(tail -8 <<< "$out")"

for port in "$STUN_PORT" 51900 443; do
  log "turnutils_stunclient to $GW_PUBLIC:$port"
  ip netns exec "$NS_C" timeout 10 tcpdump -i c0 -n -l -c 1 "udp and dst host $GW_PUBLIC and dst port $port" \
    > "$WORK/tcpdump-$port.out" 2> "$WORK/tcpdump-$port.log" &
  tcpdump_pid=$!
  PIDS+=("$tcpdump_pid")
  wait_for 5 "tcpdump listening on c0" grep -q "listening on" "$WORK/tcpdump-$port.log"
  out=$(timeout 10 ip netns exec "$NS_C" turnutils_stunclient -p "$port" "$GW_PUBLIC" 2>&1) ||
    fail "turnutils_stunclient -p $port exited with an error: $(tail -5 <<< "$out")"
  wait "$tcpdump_pid" || fail "tcpdump saw no request to port $port"
  addr=$(grep -oE 'UDP reflexive addr: [0-9.]+:[0-9]+' <<< "$out" | head -1 | sed 's/.*addr: //')
  sport=$(grep -oE "$CLIENT_IP\.[0-9]+ >" "$WORK/tcpdump-$port.out" | head -1 | sed -E 's/.*\.([0-9]+) >/\1/')
  [ -n "$sport" ] || fail "no source port in tcpdump's line: $(cat "$WORK/tcpdump-$port.out")"
  [ "$addr" = "$CLIENT_IP:$sport" ] || fail "turnutils_stunclient -p $port shows '$addr', sent from $CLIENT_IP:$sport: $out"
  log "  reflexive address $addr"
done

log "a datagram that is no STUN, to the STUN port"
ip netns exec "$NS_C" python3 -c "
import socket
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'this is not a STUN message, not at all', ('$GW_PUBLIC', $STUN_PORT))"
counted() { [ "$(gw_stats | jq '.workers[0].drops.stun_malformed')" = 1 ]; }
wait_for 5 "stun_malformed counted" counted
stats=$(gw_stats | jq -c '.workers[0] | {stun_requests, stun_responses, stun_not_request: .drops.stun_not_request}')
log "  dpgw: $stats"
jq -e '.stun_requests >= 4 and .stun_responses == .stun_requests and .stun_not_request == 0' <<< "$stats" > /dev/null ||
  fail "dpgw's STUN counters: $stats"
requests=$(jq '.stun_requests' <<< "$stats")
ip netns exec "$NS_G" curl -sf -m 2 "http://127.0.0.1:9109/metrics" |
  matches -E "^dptun_gw_worker_stun_responses_total\{worker=\"0\"\} $requests$" || fail "no stun_responses metric"
log "PASS"
