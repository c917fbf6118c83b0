#!/usr/bin/env bash
# dpagent --transport quic's data path against a standard QUIC stack on the far side: tests/support/
# quic_datagram_peer (ngtcp2 + GnuTLS, built here; it stands where dpctld and dpgw stand) answers the registration
# with "framing":"quic" and sends inner UDP packets in DATAGRAM frames, byte by byte as docs/protocol.md lays them
# out; echo servers behind the agent's TUN answer, and the agent must send the echoes back as DATAGRAM frames:
# a packet of the TUN's full MTU in one DATAGRAM frame (1440 bytes: --mtu 1500 less 60), an echo bigger than the
# TUN's MTU in inner IPv4 fragments, keep-alive PINGs while idle. When the peer goes silent, the agent's idle timeout
# ends the connection (4 keepalive intervals without a packet) and it registers again; a peer that answers without
# "framing" gets relay frames.
# (The end-to-end test with dpctld and dpgw is test_quic_framing.sh.)
source "$(dirname "$0")/lib.sh"
PEER=$BUILD/tests/quic_datagram_peer
PEER_IP=10.99.3.1  # the client namespace's end of the cp/ap link to the agent

topology_up
bash "$ROOT/tests/e2e/pki.sh" "$WORK/pki" "$PEER_IP"
# Echo servers behind the agent's TUN: 7777 answers with the payload, 7778 with the payload three times.
cat > "$WORK/echo.py" <<'PY'
import select, socket
socks = {}
for port, times in ((7777, 1), (7778, 3)):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("10.99.2.2", port))  # (bound to 0.0.0.0, replies would come from the TUN's address)
    socks[s] = times
while True:
    for s in select.select(list(socks), [], [])[0]:
        data, addr = s.recvfrom(65535)
        s.sendto(data * socks[s], addr)
PY
ip netns exec "$NS_A" python3 "$WORK/echo.py" &
PIDS+=("$!")
wait_for 10 "the echo servers" ip netns exec "$NS_A" bash -c "ss -lun | grep -q ':7777 ' && ss -lun | grep -q ':7778 '"

# start_peer NAME ARGS...: the peer in the client namespace, on $PEER_IP:443
start_peer() {
  local name=$1; shift
  ip netns exec "$NS_C" "$PEER" --listen "$PEER_IP:443" --cert "$WORK/pki/server.pem" --key "$WORK/pki/server.key" \
    --gateway "$PEER_IP:443" --flow 5 --source 10.99.1.2:40000 --target "$AGENT_IP:7777" "$@" \
    > "$WORK/$name.out" 2> "$WORK/$name.log" &
  PEER_PID=$!
  PIDS+=("$PEER_PID")
  wait_for 5 "$name listening" grep -q listening "$WORK/$name.out"
}
agent_line() { tail -1 "$WORK/agent.out"; }

log "a peer hands the connection over (\"framing\":\"quic\"): inner packets cross as DATAGRAM frames both ways"
start_peer peer1 --session 77 --sizes 64,1000,1428,1400x3 --hold 30
ip netns exec "$NS_A" "$DPAGENT" --transport quic --server "$PEER_IP:443" --ca "$WORK/pki/ca.pem" \
  --cert "$WORK/pki/agent1.pem" --key "$WORK/pki/agent1.key" --tunnel iperf --stats-interval 0.5 \
  > "$WORK/agent.out" 2> "$WORK/agent.log" &
AGENT_PID=$!
PIDS+=("$AGENT_PID")
wait_for 15 "every echo" grep -q "all echoed" "$WORK/peer1.out"
sed 's/^/  /' "$WORK/peer1.out" | grep echo | while read -r l; do log "$l"; done
matches "1 data-path thread: --transport quic" < "$WORK/agent.log" || fail "no single-thread line: $(head -3 "$WORK/agent.log")"
matches "TUN dpt0 100.64.0.1/16 mtu 1428" < "$WORK/agent.log" || fail "the TUN's MTU is not 1500 - 72"
matches "data as QUIC DATAGRAM frames on this connection" < "$WORK/agent.log" || fail "no hand-over line"
matches "QUIC connection to gateway $PEER_IP:443 answers (session 77): tunnel up" < "$WORK/agent.log" ||
  fail "no tunnel-up line: $(tail -3 "$WORK/agent.log")"
# A packet of the TUN's MTU went back in one DATAGRAM frame of 12 + 1428 bytes; the one three times bigger in
# fragments (one DATAGRAM frame each), none bigger than that.
matches "^echo 1428 ok (1 datagrams, largest 1440 bytes)" < "$WORK/peer1.out" || fail "$(grep 'echo 1428' "$WORK/peer1.out")"
matches -E "^echo 1400x3 ok \([3-9] datagrams, largest 14[0-4][0-9] bytes\)" < "$WORK/peer1.out" ||
  fail "$(grep 'echo 1400x3' "$WORK/peer1.out")"
sleep 1
agent_line | jq -e '.framing == "quic" and .session == 77 and .datagrams_rx >= 4 and .datagrams_tx >= 6 and
  .fragments_tx >= 3 and .frames_tx == 0 and .datagram_drops == {"congestion":0,"too_big":0,"closed":0} and
  .reassembly.from_tun.reassembled >= 1' > /dev/null || fail "agent counters: $(agent_line)"

log "idle, the agent's ngtcp2 sends keep-alive PINGs (registration's keepalive 0.5 s) and the peer answers"
before=$(agent_line | jq '.quic.packets_tx')
sleep 3
after=$(agent_line | jq '.quic.packets_tx')
log "  $((after - before)) packets in 3 s without data"
[ $((after - before)) -ge 3 ] || fail "no keep-alive packets: $before -> $after"
agent_line | jq -e '.link == "up"' > /dev/null || fail "link not up: $(agent_line)"

log "the peer vanishes: after 4 keepalive intervals of silence the agent drops the connection and registers again"
log "(relay frames now)"
kill -9 "$PEER_PID"
start_peer peer2 --session 78 --framing relay --hold 30
wait_for 10 "the silence noticed" grep -q "carrying the tunnel's data: nothing heard for .* (4 keepalive intervals)" "$WORK/agent.log"
wait_for 10 "a new registration" grep -q "session 78 .*data as relay frames (dpctld does not hand" "$WORK/agent.log"
matches "its QUIC connection is gone" < "$WORK/agent.log" || fail "the data path did not let go of the connection"
sleep 1
agent_line | jq -e '.framing == "relay" and .session == 78 and .sessions_adopted == 2' > /dev/null ||
  fail "after the new registration: $(agent_line)"
kill -0 "$AGENT_PID" 2>/dev/null || fail "dpagent died"
log PASS
