#!/usr/bin/env bash
# UDP services through MASQUE CONNECT-UDP end to end (issue 12, docs/masque.md): a client in its own namespace runs
# `dpagent udp` against the gateway's public address, UDP/443; dpctld (its QUIC port reached through dpgw's kernel
# path on the public port) answers the CONNECT-UDP request from the udp+https routes and hands the connection to
# dpgw, whose workers carry each HTTP Datagram as a visitor flow of the route's tunnel to an agent (registered with
# dpctld) and the target's replies back, no userspace hop per datagram.
# - DNS: dnsmasq behind the agent; dig through dpagent udp's local listener gets an A record, and a TXT answer of
#   over 1232 bytes over EDNS0 (no truncation; each dig try comes from a new source port, so a new connection and
#   request each: dpagent udp holds its datagrams until dpgw has the connection). DNS over TCP cannot take this path: dig +tcp to the local listener is
#   refused (nothing listens for TCP there: documented in docs/masque.md).
# - NTP: chronyd serving behind the agent; `chronyd -Q` through the local listener measures an offset.
# - iperf3 UDP through CONNECT-UDP (its control connection through a TCP entry point, socat) against the same flow
#   through a UDP entry point, same run: the ratio is logged (docs/performance.md); every datagram counted.
# - dpctl session list shows each listener's session as connect-udp, handed over to dpgw; dpgw's counters show the
#   datagrams both ways (a datagram of another request stream or context ID: tests/unit/test_masque.cpp).
source "$(dirname "$0")/lib.sh"
command -v chronyd > /dev/null || fail "chronyd missing (scripts/install-deps.sh)"
command -v socat > /dev/null || fail "socat missing (scripts/install-deps.sh)"
DPAGENT=$BUILD/agent/dpagent
CLIENT_IP=10.99.1.2

topology_up
bash "$ROOT/tests/e2e/pki.sh" "$WORK/pki" "$GW_UNDERLAY"
GW_STATIC=0 GW_KERNEL_IF=dpgw-under write_gw_conf 1 false
# The public port gets a kernel path too: clients' Initials for UDP/443 reach dpctld there.
sed -i "s|address = \"$GW_PUBLIC/24\"; }|address = \"$GW_PUBLIC/24\"; kernel_interface = \"dpgw-pub\"; }|" "$WORK/gw.conf"
matches 'kernel_interface = "dpgw-pub"' < "$WORK/gw.conf" || fail "gw.conf: no kernel path on the public port"
DPCTLD_QUIC_LISTEN="0.0.0.0:443" write_dpctld_conf "$GW_UNDERLAY:7443"
metric() {  # metric 'NAME{LABELS}' -> value (dpctld's)
  ip netns exec "$NS_G" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9108; printf "GET /metrics HTTP/1.0\r\n\r\n" >&3; cat <&3' |
    W="$1" awk '$1 == ENVIRON["W"] { print $2 }'
}
start_gw
start_dpctld "$NS_G"
wait_for 10 "dpctld connected to dpgw" bash -c "\"$DPCTL\" --socket \"$WORK/dpctld.sock\" --json stats | jq -e .gateway_connected"

log "a tunnel, its agent (registered with dpctld), and the services behind it: dnsmasq, chronyd, iperf3"
dpctl tunnel add corp --allow CN=agent-1 > /dev/null
corp=$(dpctl --json tunnel list | jq -r '.tunnels[] | select(.name == "corp") | .id')
ip netns exec "$NS_A" "$DPAGENT" --server "$GW_UNDERLAY:7443" --cert "$WORK/pki/agent1.pem" --key "$WORK/pki/agent1.key" \
  --ca "$WORK/pki/ca.pem" --tunnel corp --name agent-1 --keepalive 1 > "$WORK/agent.out" 2> "$WORK/agent.log" &
PIDS+=($!)
wait_for 15 "the agent registered" grep -q "registered with dpctld" "$WORK/agent.log"
# A TXT answer of 5 x 240 bytes: about 1320 with its headers, over EDNS0's 1232 and still within one packet to the
# client on a 1500-byte link (a bigger one is dropped masque_too_large, never fragmented: test_masque_fast_path.sh).
big=$(printf 'x%.0s' $(seq 1 240))
txt=()
for i in 1 2 3 4 5; do txt+=(--txt-record="big.corp.test,$i$big"); done
ip netns exec "$NS_A" dnsmasq --no-daemon --no-resolv --no-hosts --bind-interfaces --listen-address="$AGENT_IP" \
  --port=53 --log-queries --edns-packet-max=4096 --address=/svc.corp.test/10.1.2.3 "${txt[@]}" --pid-file="$WORK/dnsmasq.pid" \
  --log-facility="$WORK/dnsmasq.log" > /dev/null 2>&1 &
PIDS+=($!)
cat > "$WORK/chrony-server.conf" <<CONF
bindaddress $AGENT_IP
port 123
allow all
local stratum 8
pidfile $WORK/chronyd-server.pid
cmdport 0
bindcmdaddress /
CONF
ip netns exec "$NS_A" chronyd -d -x -f "$WORK/chrony-server.conf" > "$WORK/chronyd-server.log" 2>&1 &
PIDS+=($!)
start_iperf_server

log "routes: dns, ntp and iperf over CONNECT-UDP; the same iperf3 server through UDP and TCP entry points"
dpctl route add udp+https://dns.corp.test:53 --tunnel corp --to "udp://$AGENT_IP:53" --allow CN=agent-2 > /dev/null
dpctl route add udp+https://ntp.corp.test:123 --tunnel corp --to "udp://$AGENT_IP:123" --allow CN=agent-2 > /dev/null
dpctl route add udp+https://iperf.corp.test:5201 --tunnel corp --to "udp://$AGENT_IP:5201" --allow CN=agent-2 > /dev/null
dpctl entry add udp 5201 corp "$AGENT_IP:5201" > /dev/null
dpctl entry add tcp 5201 corp "$AGENT_IP:5201" > /dev/null

# udp_listener NAME TARGET PORT: dpagent udp in the client namespace, listening on 127.0.0.1:PORT
udp_listener() {
  ip netns exec "$NS_C" "$DPAGENT" udp --via "https://$GW_PUBLIC:443" --server-name "$GW_UNDERLAY" --target "$2" \
    --listen "127.0.0.1:$3" --cert "$WORK/pki/agent2.pem" --key "$WORK/pki/agent2.key" --ca "$WORK/pki/ca.pem" \
    > "$WORK/$1.out" 2> "$WORK/$1.log" &
  UDP_PID=$!
  PIDS+=("$UDP_PID")
  wait_for 10 "dpagent udp ($1) accepted" grep -qi "accepted" "$WORK/$1.log"
}
udp_listener dns dns.corp.test:53 5353
sigpipe_inherited || ignores_sigpipe "$UDP_PID" || fail "dpagent udp does not ignore SIGPIPE (common/broken_pipes.hpp)"
connect_udp_sessions() { dpctl --json session list | jq '[.sessions[] | select(.role == "connect-udp" and .handed_over)] | length'; }
session_handed_over() { [ "$(connect_udp_sessions)" -ge 1 ]; }
wait_for 10 "the CONNECT-UDP session handed over to dpgw" session_handed_over

log "DNS through CONNECT-UDP: an A record, and a TXT answer over 1232 bytes (EDNS0, no truncation)"
a=$(ip netns exec "$NS_C" dig +short +time=2 +tries=3 @127.0.0.1 -p 5353 svc.corp.test A || true)
[ "$a" = 10.1.2.3 ] || fail "dig svc.corp.test: '$a' ($(tail -3 "$WORK/dns.log")); dpgw: $(gw_stats | jq -c '.workers[0] | {masque_datagrams_rx, masque_datagrams_tx, visitor_flows, drops: (.drops | with_entries(select(.value > 0)))}')"
ip netns exec "$NS_C" dig +time=2 +tries=3 +bufsize=4096 +ignore @127.0.0.1 -p 5353 big.corp.test TXT > "$WORK/big.txt" ||
  fail "dig big.corp.test TXT: no answer ($(tail -3 "$WORK/big.txt")); dpgw: $(gw_stats | jq -c '.workers[0] | {masque_datagrams_rx, masque_datagrams_tx, visitor_flows, drops: (.drops | with_entries(select(.value > 0)))}')"
size=$(sed -n 's/.*MSG SIZE  rcvd: \([0-9]*\).*/\1/p' "$WORK/big.txt")
[ "${size:-0}" -gt 1232 ] || fail "the big TXT answer: ${size:-none} bytes: $(tail -5 "$WORK/big.txt")"
matches -E 'flags:[^;]* tc' < "$WORK/big.txt" && fail "the big answer came truncated: $(grep flags "$WORK/big.txt")"
[ "$(grep -cE '^big\.corp\.test\.[[:space:]]+[0-9]+[[:space:]]+IN[[:space:]]+TXT' "$WORK/big.txt")" = 5 ] || fail "the big answer lacks records: $(grep -c TXT "$WORK/big.txt")"
log "  A svc.corp.test = $a; TXT big.corp.test: $size bytes over UDP"
log "DNS over TCP does not take CONNECT-UDP: dig +tcp to the listener is refused"
if ip netns exec "$NS_C" dig +tcp +time=1 +tries=1 @127.0.0.1 -p 5353 svc.corp.test A > "$WORK/tcp.txt" 2>&1; then
  matches 'connection refused' < "$WORK/tcp.txt" || fail "dig +tcp got an answer through a UDP listener: $(cat "$WORK/tcp.txt")"
fi

log "NTP through CONNECT-UDP: chronyd -Q measures the server behind the agent"
udp_listener ntp ntp.corp.test:123 12300
timeout 20 ip netns exec "$NS_C" chronyd -Q -t 15 "server 127.0.0.1 port 12300 iburst maxsamples 2" > "$WORK/ntp.txt" 2>&1 ||
  fail "chronyd -Q through CONNECT-UDP failed: $(cat "$WORK/ntp.txt")"
# chronyd -Q says how far the clock here is from the server's, measured through the tunnel (and sets nothing).
matches 'System clock wrong by' < "$WORK/ntp.txt" || fail "chronyd -Q: no measurement: $(cat "$WORK/ntp.txt")"
log "  chronyd -Q: $(grep -m1 -o 'System clock wrong by.*' "$WORK/ntp.txt")"

log "iperf3 UDP: through CONNECT-UDP against a UDP entry point, same run (control connection through TCP entry point)"
udp_listener iperf iperf.corp.test:5201 5201
ip netns exec "$NS_C" socat TCP-LISTEN:5201,bind=127.0.0.1,reuseaddr,fork "TCP:$GW_PUBLIC:5201" > /dev/null 2>&1 &
PIDS+=($!)
wait_for 5 "socat listening" bash -c "ip netns exec $NS_C ss -ltn | grep -q 127.0.0.1:5201"
# 2 Gbit/s offered, more than either path carries on this machine: what arrives is what each path can do.
iperf_client "$WORK/masque.json" -c 127.0.0.1 -p 5201 -u -b 2G -l 1200 -t 3
iperf_client "$WORK/entry.json" -c "$GW_PUBLIC" -p 5201 -u -b 2G -l 1200 -t 3
received() { jq '.end.sum.bits_per_second * (.end.sum.packets - .end.sum.lost_packets) / .end.sum.packets' "$1"; }
m=$(received "$WORK/masque.json")
e=$(received "$WORK/entry.json")
ml=$(json_get "$WORK/masque.json" '.end.sum.lost_packets'); mp=$(json_get "$WORK/masque.json" '.end.sum.packets')
el=$(json_get "$WORK/entry.json" '.end.sum.lost_packets'); ep=$(json_get "$WORK/entry.json" '.end.sum.packets')
log "  received: CONNECT-UDP $(awk -v b="$m" 'BEGIN { printf "%.0f", b / 1e6 }') Mbit/s ($ml of $mp lost), UDP entry point $(awk -v b="$e" 'BEGIN { printf "%.0f", b / 1e6 }') Mbit/s ($el of $ep lost): ratio $(awk -v a="$m" -v b="$e" 'BEGIN { printf "%.2f", a / b }')"
awk -v a="$m" 'BEGIN { exit !(a > 1e6) }' || fail "iperf3 through CONNECT-UDP: $m bit/s"
# Where the datagrams that did not arrive were lost: dpagent udp's own counters (its socket, the congestion window).
kill -USR1 "$UDP_PID"
sleep 0.3
log "  dpagent udp: $(grep '^{' "$WORK/iperf.out" | tail -1)"

log "dpctl and dpgw: the connect-udp sessions (one per local source) handed over; the datagrams counted both ways"
n=$(connect_udp_sessions)
[ "$n" -ge 3 ] || fail "connect-udp sessions: $(dpctl session list)"
log "  $n connect-udp sessions: $(dpctl --json session list | jq -c '[.sessions[] | select(.role == "connect-udp") | .masque.target] | group_by(.) | map({(.[0]): length}) | add')"
stats=$(gw_stats | jq -c '[.workers[] | {masque_datagrams_rx, masque_datagrams_tx, visitor_flows, drops: (.drops | with_entries(select(.key | startswith("masque"))))}] | .[0]')
log "  dpgw: $stats"
jq -e '.masque_datagrams_rx > 0 and .masque_datagrams_tx > 0' <<< "$stats" > /dev/null || fail "dpgw's counters: $stats"
log "  dpctld: accepted $(metric dptun_masque_requests_accepted_total), handovers $(metric dptun_agent_quic_handovers_total)"
log "PASS"
