#!/usr/bin/env bash
# MASQUE CONNECT-UDP datagrams on dpgw's fast path (issue 12 slice 3, docs/masque.md "Datagrams on the fast path"):
# dpctld in the gateway namespace with agent_quic_listen on dpgw's underlay address, UDP/443 (reached through dpgw's
# kernel path); an agent registered over TCP serves tunnel corp; a route udp+https://echo.corp.test:7 leads to a UDP
# echo service on the agent's host. `dpagent udp` (in the agent's namespace, an HTTP/3 client over ngtcp2) asks for
# the route; dpctld answers 200 and hands the connection to dpgw, whose workers then carry every HTTP Datagram: its
# UDP payload to the target through the tunnel and the echo back as an HTTP Datagram (masque_datagrams_rx/tx, one
# visitor flow). An echo too big for one packet to the client on the 1500-byte link (1441 bytes of UDP payload: 28 +
# 13 + 3 + 1441 + 16 > 1500) is dropped masque_too_large, never fragmented; the next datagram goes on.
source "$(dirname "$0")/lib.sh"

topology_up
bash "$ROOT/tests/e2e/pki.sh" "$WORK/pki" "$GW_UNDERLAY"
GW_STATIC=0 GW_KERNEL_IF=dpgw-under write_gw_conf 1 false
DPCTLD_QUIC_LISTEN="$GW_UNDERLAY:443" write_dpctld_conf "$GW_UNDERLAY:7443"
start_gw
start_dpctld "$NS_G"
gateway_connected() { dpctl --json stats | jq -e '.gateway_connected' > /dev/null; }
wait_for 10 "dpctld connected to dpgw" gateway_connected
dpctl tunnel add corp --allow CN=agent-1 > /dev/null
dpctl route add udp+https://echo.corp.test:7 --tunnel corp --to "udp://$AGENT_IP:7" --allow CN=agent-1 > /dev/null
# The echo service, bound to the agent's address (its answers come from the address the agent reached).
ip netns exec "$NS_A" python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("'"$AGENT_IP"'", 7))
while True:
    d, a = s.recvfrom(65535)
    s.sendto(b"echo:" + d, a)
' > "$WORK/echo.log" 2>&1 &
PIDS+=($!)
ip netns exec "$NS_A" "$DPAGENT" --server "$GW_UNDERLAY:7443" --tunnel corp --name agent-1 \
  --cert "$WORK/pki/agent1.pem" --key "$WORK/pki/agent1.key" --ca "$WORK/pki/ca.pem" > "$WORK/agent.out" 2> "$WORK/agent.log" &
PIDS+=($!)
wait_for 15 "the agent registered" grep -q "registered with dpctld" "$WORK/agent.log"

log "dpagent udp asks for echo.corp.test:7; dpctld accepts and hands the connection to dpgw"
ip netns exec "$NS_A" "$DPAGENT" udp --via "https://$GW_UNDERLAY:443" --server-name dpctld.test \
  --listen 127.0.0.1:5300 --target echo.corp.test:7 --cert "$WORK/pki/agent1.pem" --key "$WORK/pki/agent1.key" \
  --ca "$WORK/pki/ca.pem" > "$WORK/udp.out" 2> "$WORK/udp.log" &
PIDS+=($!)
wait_for 10 "dpagent udp accepted" grep -q "gateway accepted CONNECT-UDP" "$WORK/udp.log"
wait_for 10 "dpctld handed the connection over" grep -q "handed over to dpgw" "$WORK/dpctld.log"

log "datagrams through dpgw's fast path: echoed whole, one too big for the client's link dropped"
ip netns exec "$NS_A" python3 - > "$WORK/client.txt" 2>&1 <<'PY' || fail "client: $(cat "$WORK/client.txt")"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2.0)
def ask(payload):
    s.sendto(payload, ("127.0.0.1", 5300))
    try:
        d, _ = s.recvfrom(65535)
        return d
    except socket.timeout:
        return None
for i in range(5):
    want = b"echo:query %d" % i
    got = ask(b"query %d" % i)
    if got != want: sys.exit("datagram %d: %r" % (i, got))
big = bytes(range(256)) * 3 + bytes(232)  # 1000 bytes
if ask(big) != b"echo:" + big: sys.exit("the 1000-byte datagram did not come back whole")
if ask(b"y" * 1436) is not None: sys.exit("an echo of 1441 bytes came back: fragmented or oversized")
if ask(b"after") != b"echo:after": sys.exit("no answer after the dropped one")
print("ok")
PY
stats=$(gw_stats | jq -c '[.workers[] | {masque_datagrams_rx, masque_datagrams_tx, visitor_flows, too_large: .drops.masque_too_large}] | .[0]')
log "  dpgw: $stats"
jq -e '.masque_datagrams_rx == 8 and .masque_datagrams_tx == 7 and .visitor_flows == 1 and .too_large == 1' <<< "$stats" \
  > /dev/null || fail "dpgw's counters: $stats"
log PASS
