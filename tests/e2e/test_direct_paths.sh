#!/usr/bin/env bash
# Direct paths between a visitor and an agent through NATs the test builds (docs/nat-traversal.md): the agent in
# <P>-home-a behind NAT A (<P>-nat-a, public 10.99.5.2), the visitor in <P>-home-v behind NAT V (<P>-nat-v, public
# 10.99.6.2); the agent namespace routes between them and dpgw's underlay, as the Internet would. Each NAT is an
# nftables masquerade that keeps the source port where it is free and drops what comes in unasked (conntrack), as
# home routers do (to the router itself too: a check that arrived before the NAT's own host sent one must leave no
# connection behind, or the NAT would give that host's check another port); "symmetric" is `masquerade fully-random`
# (a new port per destination). dpctld pairs the visitor
# with the agent and both check each other's candidates (hole punching); dpctl session list shows the pair's path:
# - endpoint-independent on both sides: direct (the checks open both NATs);
# - a drop rule in NAT A mid-stream (the peer goes silent): relayed (consent_lost) within a bounded time, measured;
#   the rule removed: direct again;
# - symmetric NAT V: relayed (checks_unanswered): the visitor's checks leave NAT V from ports no STUN server saw, so
#   NAT A, which only lets in answers to what it sent, drops them, and the agent's checks reach V's NAT at a
#   mapping made for dpgw, which takes nothing from elsewhere;
# - symmetric on both sides: relayed;
# - checks with a wrong key to the agent are counted (auth_failures) and never answered;
# - dpgw stopped for 4 s: a direct pair's new flows (curl) and its checks go on without it.
# The pair's data: flows a visitor starts while its pair is direct travel in pair frames straight to the agent (dpgw
# sees none of them: its visitor counters stay still); others go through dpgw as visitor frames. In each case curl
# (visitor "visitor", nginx) and iperf3 (visitor "visitor-perf", a second pair) work through the visitors. A download
# on the direct path survives the drop rule (its frames go through dpgw, which forwards them unopened:
# pair_frames_relayed) and the way back to direct: it completes with every byte right.
# The agent runs two data-path threads first (they hand the pairs' packets to its main loop; with
# DIRECT_PATHS_TSAN=DIR that agent is DIR's ThreadSanitizer build, and any report fails the test), then one (the pair
# path on the loop that also reads the TUN), each with curl and iperf3 (both ways) on a direct pair.
source "$(dirname "$0")/lib.sh"
AGENT_THREADS_BIN=$DPAGENT
if [ -n "${DIRECT_PATHS_TSAN:-}" ]; then
  AGENT_THREADS_BIN=$DIRECT_PATHS_TSAN/agent/dpagent
  [ -x "$AGENT_THREADS_BIN" ] || fail "DIRECT_PATHS_TSAN=$DIRECT_PATHS_TSAN: no dpagent there"
  export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1"
  # A race ends that dpagent, and then whatever the test was doing fails: say first that the sanitizer found one.
  eval "lib_fail() $(declare -f fail | tail -n +2)"
  fail() {
    if grep -q "WARNING: ThreadSanitizer" "$WORK"/agent-a*.log 2> /dev/null; then
      grep -h -A30 "WARNING: ThreadSanitizer" "$WORK"/agent-a*.log | head -60 >&2
      lib_fail "ThreadSanitizer reported a problem in dpagent (above); then: $*"
    fi
    lib_fail "$@"
  }
fi
NS_NA=$DPT_PREFIX-nat-a NS_NV=$DPT_PREFIX-nat-v NS_HA=$DPT_PREFIX-home-a NS_HV=$DPT_PREFIX-home-v
NAT_A=10.99.5.2 NAT_V=10.99.6.2 HOME_A=192.168.77.2 HOME_V=192.168.78.2

topology_up
ip netns exec "$NS_A" sysctl -qw net.ipv4.ip_forward=1
# site NAT_NS HOME_NS LINK_NET HOME_NET ROUTER_IF: a NAT router joined to the agent namespace ("the Internet") on
# LINK_NET.1 (there) / .2 (the NAT's public address), with a home network HOME_NET.1 (router) / .2 (host) behind it
site() {
  local nat=$1 home=$2 link=$3 net=$4 rif=$5
  ip netns add "$nat"
  ip netns add "$home"
  EXTRA_NETNS+=("$nat" "$home")
  ip link add "$rif" netns "$NS_A" type veth peer name pub netns "$nat"
  ip link add lan netns "$nat" type veth peer name h0 netns "$home"
  ip -n "$NS_A" addr add "$link.1/24" dev "$rif"
  ip -n "$nat" addr add "$link.2/24" dev pub
  ip -n "$nat" addr add "$net.1/24" dev lan
  ip -n "$home" addr add "$net.2/24" dev h0
  for x in "$NS_A $rif" "$nat pub" "$nat lan" "$nat lo" "$home h0" "$home lo"; do
    set -- $x
    ip -n "$1" link set "$2" up
  done
  ip -n "$nat" route add default via "$link.1"
  ip -n "$home" route add default via "$net.1"
  ip netns exec "$nat" sysctl -qw net.ipv4.ip_forward=1
}
site "$NS_NA" "$NS_HA" 10.99.5 192.168.77 ia
site "$NS_NV" "$NS_HV" 10.99.6 192.168.78 iv
# nat NS [fully-random]: the NAT's rules, replaced whole (connections it tracks keep their mappings)
nat() {
  ip netns exec "$1" nft delete table ip dptun_nat 2>/dev/null || true
  ip netns exec "$1" nft -f - <<NFT
table ip dptun_nat {
  chain postrouting { type nat hook postrouting priority srcnat; policy accept; oifname "pub" masquerade ${2:-}; }
  chain forward { type filter hook forward priority filter; policy accept;
    iifname "pub" ct state established,related accept;
    iifname "pub" counter drop; }
  chain input { type filter hook input priority filter; policy accept;
    iifname "pub" ct state established,related accept;
    iifname "pub" counter drop; }
}
NFT
}
nat "$NS_NA"
nat "$NS_NV"

bash "$ROOT/tests/e2e/pki.sh" "$WORK/pki" "$GW_UNDERLAY"
GW_STATIC=0 GW_KERNEL_IF=dpgw-under GW_UNDERLAY_GATEWAY=$AGENT_IP write_gw_conf 1 false
write_dpctld_conf "$GW_UNDERLAY:7443"
start_gw
wait_for 10 "dpgw's kernel path" ip -n "$NS_G" addr show dev dpgw-under
for net in 10.99.5.0/24 10.99.6.0/24; do ip -n "$NS_G" route add "$net" via "$AGENT_IP" dev dpgw-under; done
start_dpctld "$NS_G"
tunnel_id=$(dpctl --json tunnel add web --allow CN=agent-1 | jq -r .tunnel.id)
dpctl ingress add svc.example web --target "$HOME_A" --private > /dev/null
dpctl ingress add perf.example web --target "$HOME_A:5201" --private > /dev/null
mkdir -p "$WORK/www"
head -c $((6 << 20)) /dev/urandom > "$WORK/www/big"
big_sum=$(sha256sum < "$WORK/www/big")
start_nginx "$NS_HA" <<NGINX
  server { listen $HOME_A:80; root $WORK/www; location = / { return 200 "service at home-a\\n"; }
           location = /big { limit_rate 400k; } }
NGINX
ip netns exec "$NS_HA" iperf3 -s -B "$HOME_A" > "$WORK/iperf3-server.log" 2>&1 &
PIDS+=("$!")

# start_agent_a PORT [THREADS BINARY OPTION...] / start_visitor PORT: the two ends, each with its direct-path socket on PORT
# (the agent's log of each start kept: agent-a.log, agent-a-PORT.log before)
start_agent_a() {
  [ -f "$WORK/agent-a.log" ] && mv "$WORK/agent-a.log" "$WORK/agent-a-$(date +%s%N).log"
  ip netns exec "$NS_HA" "${3:-$DPAGENT}" --server "$GW_UNDERLAY:7443" --ca "$WORK/pki/ca.pem" \
    --cert "$WORK/pki/agent1.pem" --key "$WORK/pki/agent1.key" --tunnel web --name agent-a --direct-port "$1" \
    ${2:+--threads "$2"} "${@:4}" --stats-interval 1 > "$WORK/agent-a.out" 2> "$WORK/agent-a.log" &
  AGENT_A_PID=$!
  PIDS+=("$AGENT_A_PID")
}
start_visitor() {
  ip netns exec "$NS_HV" "$DPAGENT" visit --server "$GW_UNDERLAY:7443" --ca "$WORK/pki/ca.pem" \
    --cert "$WORK/pki/agent2.pem" --key "$WORK/pki/agent2.key" --tunnel "$tunnel_id" --name visitor \
    --host svc.example --local 100.96.0.10:80 --direct-port "$1" --stats-interval 1 \
    > "$WORK/visitor.out" 2> "$WORK/visitor.log" &
  VISITOR_PID=$!
  PIDS+=("$VISITOR_PID")
  ip netns exec "$NS_HV" "$DPAGENT" visit --server "$GW_UNDERLAY:7443" --ca "$WORK/pki/ca.pem" \
    --cert "$WORK/pki/agent2.pem" --key "$WORK/pki/agent2.key" --tunnel "$tunnel_id" --name visitor-perf \
    --host perf.example --local 100.97.0.10:5201 --tun dpv1 --tun-net 100.97.0.1/16 --direct-port $(($1 + 100)) \
    --stats-interval 1 > "$WORK/visitor-perf.out" 2> "$WORK/visitor-perf.log" &
  VISITOR_PERF_PID=$!
  PIDS+=("$VISITOR_PERF_PID")
}
stop_visitors() { stop_pid "$VISITOR_PID"; stop_pid "$VISITOR_PERF_PID"; }
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
# pair_path: the visitor's pair as dpctl --json shows it
pair() { dpctl --json session list | jq -c '.sessions[] | select(.agent == "visitor" and .control_connected) | .direct[0] // empty'; }
path_is() { [ "$(pair | jq -r .path)" = "$1" ]; }
perf_path_is() {
  [ "$(dpctl --json session list | jq -r '.sessions[] | select(.agent == "visitor-perf" and .control_connected) |
       .direct[0].path // empty')" = "$1" ]
}
fetch() { timeout 15 ip netns exec "$NS_HV" curl -s --max-time 8 http://100.96.0.10/ || true; }
# visitor_stat NAME JQ: a dpagent's latest counters (--stats-interval 1)
visitor_stat() { tail -1 "$WORK/$1.out" | jq -r "$2"; }
gw_total() { gw_stats | jq "[.workers[].$1] | add"; }
# iperf_through_perf [-R]: 2 s of TCP through visitor-perf to iperf3 at home-a (-R: from it); prints the bits per
# second received
iperf_through_perf() {
  timeout 30 ip netns exec "$NS_HV" iperf3 -J -c 100.97.0.10 -p 5201 -t 2 "$@" > "$WORK/iperf3.json" 2> "$WORK/iperf3.err" ||
    fail "iperf3 through visitor-perf: $(cat "$WORK/iperf3.err") $(jq -r '.error // empty' "$WORK/iperf3.json")"
  jq '.end.sum_received.bits_per_second | floor' "$WORK/iperf3.json"
}

log "endpoint-independent NATs on both sides: direct (the agent with two data-path threads)"
start_agent_a 41000 2 "$AGENT_THREADS_BIN"
start_visitor 42000
wait_for 30 "the pair direct" path_is direct
p=$(pair)
log "  $p"
jq -e --arg a "$NAT_A:41000" '.this_end.remote == $a and .peer_end.remote == "'"$NAT_V"':42000"' <<< "$p" > /dev/null ||
  fail "the visitor's pair: $p"
dpctl session list | matches -E "visitor +CN=agent-2 .* endpoint-independent +direct $NAT_A:41000 " ||
  fail "session list: $(dpctl session list)"
two_pairs() { dpctl --json stats | jq -e '.direct_pairs.pairs == 2' > /dev/null; }
wait_for 10 "two pairs (both visitors)" two_pairs
jq -e '.data == true and (.block | type) == "number"' <<< "$p" > /dev/null || fail "the pair carries no data: $p"

log "the pair's data goes direct: curl and iperf3 through the visitors, dpgw sees none of it"
gw_visitor_before=$(gw_total visitor_packets)
sleep 1.2  # (the visitors' counters: a line a second)
tx_before=$(visitor_stat visitor .pair_data.frames_tx_direct)
[ "$(fetch)" = "service at home-a" ] || fail "the visitor does not reach its service"
wait_for 5 "the perf visitor's pair direct" perf_path_is direct
bps=$(iperf_through_perf)
log "  iperf3 through visitor-perf, direct: $bps bit/s"
[ "$bps" -gt 1000000 ] || fail "iperf3 through the direct path: $bps bit/s"
agent_tx_before=$(tail -1 "$WORK/agent-a.out" | jq .pair_data.bytes_tx_direct)
bps=$(iperf_through_perf -R)
log "  iperf3 -R (the agent's threads hand its main loop the target's stream): $bps bit/s"
[ "$bps" -gt 1000000 ] || fail "iperf3 -R through the direct path: $bps bit/s"
# Datagrams bigger than a frame, both ways: fragmented by the sender's kernel into its TUN, put together and cut into
# frames of the pair by that dpagent, put together again at the other end.
for dir in "" -R; do
  timeout 20 ip netns exec "$NS_HV" iperf3 -J -c 100.97.0.10 -p 5201 -u -b 40M -l 4000 -t 1 $dir > "$WORK/iperf3-udp.json" 2> "$WORK/iperf3-udp.err" ||
    fail "iperf3 -u -l 4000 $dir: $(cat "$WORK/iperf3-udp.err") $(jq -r '.error // empty' "$WORK/iperf3-udp.json")"
  got=$(jq -c '.end.sum | {packets, lost_packets, lost_percent}' "$WORK/iperf3-udp.json")
  log "  iperf3 -u -l 4000 $dir (each datagram in 3 fragments): $got"
  jq -e '.end.sum.packets > 500 and .end.sum.lost_percent < 20' "$WORK/iperf3-udp.json" > /dev/null ||
    fail "4000-byte datagrams through the pair $dir: $got"
done
sleep 1.2
# A datagram to a port nothing listens on at the target: the target's ICMP error comes back into the agent's TUN,
# to the pair flow's address, and is counted by reason (not passed on, as dpgw does not tell visitors' programs).
ip netns exec "$NS_HV" python3 -c "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('100.96.0.10', 80))"
agent_port_unreachable() { [ "$(tail -1 "$WORK/agent-a.out" | jq .unreachable.port_unreachable)" -ge 1 ]; }
wait_for 5 "the agent counting the target's port unreachable" agent_port_unreachable
for side in pair_frames pair_from_tun; do
  [ "$(tail -1 "$WORK/agent-a.out" | jq ".reassembly.$side.reassembled")" -gt 100 ] ||
    fail "the agent put together no datagram in $side: $(tail -1 "$WORK/agent-a.out" | jq -c .reassembly)"
done
[ "$(tail -1 "$WORK/agent-a.out" | jq .pair_data.bytes_tx_direct)" -gt "$((agent_tx_before + 10000000))" ] ||
  fail "the agent sent iperf3 -R's stream not on the pair: $(tail -1 "$WORK/agent-a.out" | jq -c .pair_data)"
tx_after=$(visitor_stat visitor .pair_data.frames_tx_direct)
[ "$tx_after" -gt "$tx_before" ] || fail "the visitor sent no pair frame direct ($tx_before -> $tx_after)"
[ "$(visitor_stat visitor-perf .pair_data.bytes_tx_direct)" -gt 1000000 ] ||
  fail "visitor-perf: $(visitor_stat visitor-perf .pair_data)"
[ "$(visitor_stat visitor .pair_data.flows.started_on_pair)" -ge 1 ] || fail "visitor: $(visitor_stat visitor .pair_data)"
[ "$(gw_total visitor_packets)" = "$gw_visitor_before" ] ||
  fail "dpgw carried visitor packets on a direct path: $gw_visitor_before -> $(gw_total visitor_packets)"
[ "$(tail -1 "$WORK/agent-a.out" | jq .pair_data.frames_rx_direct)" -gt 0 ] || fail "agent: $(tail -1 "$WORK/agent-a.out" | jq -c .pair_data)"
[ "$(tail -1 "$WORK/agent-a.out" | jq .pair_data.frames_tx_direct)" -gt 0 ] || fail "agent: $(tail -1 "$WORK/agent-a.out" | jq -c .pair_data)"
grep -q "2 data-path threads" "$WORK/agent-a.log" || fail "the agent does not run two data-path threads: $(grep -m1 data-path "$WORK/agent-a.log")"
log "  visitor: $(visitor_stat visitor .pair_data | jq -c '{frames_tx_direct, frames_rx_direct, flows}')"

log "dpgw stopped (SIGSTOP) for 4 s: a direct pair's new flows and its checks do not need it"
kill -STOP "$GW_PID"
trap_cont() { kill -CONT "$GW_PID" 2>/dev/null || true; }
sleep 1
[ "$(fetch)" = "service at home-a" ] || { trap_cont; fail "the visitor lost its service on a direct pair while dpgw was stopped"; }
sleep 3
path_is direct || { trap_cont; fail "the pair was not direct while dpgw was stopped: $(pair)"; }
kill -CONT "$GW_PID"

log "checks with a wrong key, to the agent's host candidate, from its own network: counted, not answered"
pair_id=$(pair | jq -r .pair)
ip netns exec "$NS_HA" python3 - "$pair_id" "$HOME_A" > "$WORK/forged-checks.out" 2>&1 <<'PY' || fail "forged checks: $(cat "$WORK/forged-checks.out")"
import os, socket, struct, sys, zlib
pair, agent = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.3)
answers = 0
for i in range(5):
    user = (pair + ":c").encode()
    attrs = struct.pack("!HH", 0x0006, len(user)) + user + b"\0\0"
    attrs += struct.pack("!HH", 0x001C, 32) + os.urandom(32)  # MESSAGE-INTEGRITY-SHA256 without the key
    head = struct.pack("!HHI", 0x0001, len(attrs) + 8, 0x2112A442) + os.urandom(12)
    fp = (zlib.crc32(head + attrs) ^ 0x5354554E) & 0xFFFFFFFF
    s.sendto(head + attrs + struct.pack("!HHI", 0x8028, 4, fp), (agent, 41000))
    try:
        s.recvfrom(2048)
        answers += 1
    except socket.timeout:
        pass
print("answers", answers)
sys.exit(1 if answers else 0)
PY
auth_failed() { [ "$(tail -1 "$WORK/agent-a.out" | jq '.direct.checks.auth_failures')" -ge 5 ]; }
wait_for 5 "5 auth_failures counted by the agent" auth_failed

log "the direct path dies (a drop rule in NAT A) during a download that started direct: relayed within a bounded time"
relayed_before=$(gw_total pair_frames_relayed)
timeout 60 ip netns exec "$NS_HV" curl -s --max-time 50 -o "$WORK/big.got" http://100.96.0.10/big &  # (15 s: nginx sends 400 kB/s)
DOWNLOAD_PID=$!
sleep 2
ip netns exec "$NS_NA" nft -f - <<NFT
table ip dptun_cut {
  chain forward { type filter hook forward priority filter - 10; policy accept;
    ip saddr $NAT_V counter drop; ip daddr $NAT_V counter drop; }
}
NFT
t0=$(date +%s.%N)
wait_for 15 "the pair relayed" path_is relayed
t1=$(date +%s.%N)
fallback=$(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }")
p=$(pair)
log "  relayed after ${fallback}s: $p"
grep -q '"consent_lost"' <<< "$p" || fail "not relayed for consent_lost: $p"
[ "$(fetch)" = "service at home-a" ] || fail "the visitor lost its service when the direct path died"
relayed_now() { [ "$(gw_total pair_frames_relayed)" -gt "$((relayed_before + 50))" ]; }
wait_for 10 "dpgw relaying the download's pair frames" relayed_now
log "  dpgw relayed $(( $(gw_total pair_frames_relayed) - relayed_before )) pair frames so far"

log "the rule removed: direct again"
ip netns exec "$NS_NA" nft delete table ip dptun_cut
t0=$(date +%s.%N)
wait_for 30 "the pair direct again" path_is direct
t1=$(date +%s.%N)
log "  direct again after $(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }")s"
wait "$DOWNLOAD_PID" || fail "the download broke across the switches (curl exit $?)"
[ "$(sha256sum < "$WORK/big.got")" = "$big_sum" ] || fail "the download's bytes differ ($(stat -c %s "$WORK/big.got") bytes)"
sleep 1.2
log "  the download completed intact: $(visitor_stat visitor .pair_data | jq -c '{frames_tx_direct, frames_tx_relayed, frames_rx_direct, frames_rx_relayed}')"
[ "$(visitor_stat visitor .pair_data.frames_rx_relayed)" -gt 0 ] || fail "the visitor received nothing relayed"
fallbacks=$(tail -1 "$WORK/agent-a.out" | jq '.direct.checks.fallbacks')
[ "$fallbacks" -ge 1 ] || fail "the agent counted no fallback"
dpctl --json stats | jq -e '.direct_pairs.became_direct >= 2 and .direct_pairs.fallbacks >= 1' > /dev/null ||
  fail "dpctld's pair counters: $(dpctl --json stats | jq -c .direct_pairs)"
ip netns exec "$NS_G" curl -sf -m 2 http://127.0.0.1:9108/metrics |
  matches -E '^dptun_direct_pairs_fallbacks_total [1-9][0-9]*$' || fail "no dptun_direct_pairs_fallbacks_total metric"
[ "$(tail -1 "$WORK/agent-a.out" | jq .pair_data.frames_tx_relayed)" -gt 0 ] &&
  [ "$(tail -1 "$WORK/agent-a.out" | jq .pair_data.frames_rx_relayed)" -gt 0 ] &&
  [ "$(tail -1 "$WORK/agent-a.out" | jq .pair_data.relay_frames_sent)" -gt 0 ] ||
  fail "agent, relayed pair frames: $(tail -1 "$WORK/agent-a.out" | jq -c .pair_data)"
log "  agent: $(tail -1 "$WORK/agent-a.out" | jq -c '.pair_data | {frames_tx_direct, frames_tx_relayed, frames_rx_relayed, relay_frames_sent, handoff_drops}')"

log "the agent restarted (one data-path thread now, a smaller --mtu) during a download on the pair: it goes on"
# The visitor keeps its block of tags, so the target sees the flow from the same translated source after the
# agent's restart (stateless); the visitor's flow waits for the next pairing (within kPairGraceNs) and goes on.
timeout 60 ip netns exec "$NS_HV" curl -s --max-time 50 -o "$WORK/big2.got" http://100.96.0.10/big &
DOWNLOAD_PID=$!
sleep 2
old_pair=$(pair | jq -r .pair)
perf_pair() { dpctl --json session list | jq -r '.sessions[] | select(.agent == "visitor-perf" and .control_connected) | .direct[0] // empty'; }
old_perf_pair=$(perf_pair | jq -r .pair)
stop_pid "$AGENT_A_PID"
grep -q "WARNING: ThreadSanitizer" "$WORK"/agent-a*.log && fail "ThreadSanitizer"
start_agent_a 41002 1 "$DPAGENT" --mtu 1400
new_pair_direct() { p=$(pair); [ "$(jq -r .pair <<< "$p")" != "$old_pair" ] && [ "$(jq -r .path <<< "$p")" = direct ]; }
wait_for 30 "a new pair, direct" new_pair_direct
new_perf_pair_direct() {
  p=$(perf_pair); [ "$(jq -r .pair <<< "$p")" != "$old_perf_pair" ] && [ "$(jq -r .path <<< "$p")" = direct ]
}
wait_for 10 "the perf visitor's new pair direct" new_perf_pair_direct
rx_before=$(visitor_stat visitor-perf .pair_data.frames_rx_direct)
[ "$(fetch)" = "service at home-a" ] || fail "the visitor does not reach its service (agent with one thread)"
bps=$(iperf_through_perf)
log "  iperf3 through visitor-perf, direct, agent with one data-path thread: $bps bit/s"
[ "$bps" -gt 1000000 ] || fail "iperf3 through the direct path: $bps bit/s"
sleep 1.2
[ "$(visitor_stat visitor-perf .pair_data.frames_rx_direct)" -gt "$rx_before" ] ||
  fail "visitor-perf received nothing direct: $(visitor_stat visitor-perf .pair_data)"
grep -q "1 data-path thread" "$WORK/agent-a.log" || fail "the agent does not run one data-path thread"
wait "$DOWNLOAD_PID" || fail "the download broke across the agent's restart (curl exit $?)"
[ "$(sha256sum < "$WORK/big2.got")" = "$big_sum" ] ||
  fail "the download across the agent's restart differs ($(stat -c %s "$WORK/big2.got") bytes)"
log "  the download across the agent's restart completed intact"
# (the visitor's SYNs say what its --mtu 1500 fits: the agent lowers them to what its frames of 1400 carry)
[ "$(tail -1 "$WORK/agent-a.out" | jq .pair_data.mss_clamped)" -ge 2 ] ||
  fail "the agent clamped no SYN of a pair flow: $(tail -1 "$WORK/agent-a.out" | jq -c .pair_data)"

log "symmetric NAT V: relayed, the visitors' flows through dpgw"
stop_visitors
nat "$NS_NV" fully-random
start_visitor 42001
nat_v() { [ "$(dpctl --json session list | jq -r '.sessions[] | select(.agent == "visitor" and .control_connected) | .nat.mapping')" = "$1" ]; }
wait_for 20 "the visitor's NAT seen as endpoint-dependent" nat_v endpoint-dependent
wait_for 30 "the pair relayed" path_is relayed
p=$(pair)
log "  $p"
grep -q '"checks_unanswered"' <<< "$p" || fail "not relayed for checks_unanswered: $p"
gw_visitor_before=$(gw_total visitor_packets)
[ "$(fetch)" = "service at home-a" ] || fail "the visitor does not reach its service behind a symmetric NAT"
bps=$(iperf_through_perf)
log "  iperf3 through visitor-perf, relayed: $bps bit/s"
[ "$bps" -gt 1000000 ] || fail "iperf3 through dpgw: $bps bit/s"
[ "$(gw_total visitor_packets)" -gt "$((gw_visitor_before + 100))" ] || fail "dpgw saw no visitor packets"
sleep 1.2
[ "$(visitor_stat visitor .pair_data.frames_tx_direct)" = 0 ] && [ "$(visitor_stat visitor .pair_data.flows.started_on_pair)" = 0 ] ||
  fail "a relayed pair's flow went on the pair: $(visitor_stat visitor .pair_data)"

log "symmetric NATs on both sides: relayed"
old_pair=$(pair | jq -r .pair)
stop_pid "$AGENT_A_PID"
nat "$NS_NA" fully-random
start_agent_a 41001
agent_nat() { [ "$(dpctl --json session list | jq -r '.sessions[] | select(.agent == "agent-a" and .control_connected) | .nat.mapping')" = "$1" ]; }
wait_for 20 "the agent's NAT seen as endpoint-dependent" agent_nat endpoint-dependent
# (the visitor's pair with the agent that went is relayed too: the new pair must be)
new_pair_relayed() { p=$(pair); [ "$(jq -r .pair <<< "$p")" != "$old_pair" ] && [ "$(jq -r .path <<< "$p")" = relayed ]; }
wait_for 30 "the new pair relayed" new_pair_relayed
log "  $(pair)"
[ "$(fetch)" = "service at home-a" ] || fail "the visitor does not reach its service behind two symmetric NATs"
bps=$(iperf_through_perf)
log "  iperf3 through visitor-perf, relayed: $bps bit/s"
log "PASS (fallback measured: ${fallback}s)"
