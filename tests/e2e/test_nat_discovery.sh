#!/usr/bin/env bash
# Endpoint discovery for direct paths (docs/nat-traversal.md), through NATs the test builds with nftables. A home
# network (namespace <P>-home, 192.168.77.0/24) sits behind the agent namespace, which routes it to the underlay
# and masquerades it there as home routers do: the source port kept where it is free, and nothing comes in that
# is not an answer. Agents in the home network ask dpgw's STUN server (its STUN and tunnel ports: the default) or
# coturn (a STUN server behind dpgw's kernel path on 10.99.2.1:3479) and report what they learned to dpctld;
# `dpctl session list` shows it:
# - behind the port-preserving masquerade, asking dpgw: endpoint-independent, srflx 10.99.2.2 with the agent's own
#   --direct-port, the home address as the host candidate;
# - asking coturn alone: the same srflx (coturn's answer read), the mapping unknown (one server tells no behaviour);
# - no NAT (an agent in the agent namespace itself): none;
# - behind `masquerade fully-random` (a symmetric NAT): endpoint-dependent, two srflx candidates, other ports;
# - a forged report over a real registration (loopback candidate) is ignored and counted; the session goes on.
source "$(dirname "$0")/lib.sh"
command -v turnserver > /dev/null || fail "turnserver is missing (scripts/install-deps.sh installs coturn)"
NS_H=$DPT_PREFIX-home
HOME_IP=192.168.77.2
NAT_IP=$AGENT_IP  # the home router's address on the underlay
COTURN=$GW_UNDERLAY:3479

topology_up
ip netns add "$NS_H"
EXTRA_NETNS+=("$NS_H")
ip link add h0 netns "$NS_H" type veth peer name hn netns "$NS_A"
ip -n "$NS_H" link set lo up
ip -n "$NS_H" addr add "$HOME_IP/24" dev h0
ip -n "$NS_A" addr add 192.168.77.1/24 dev hn
ip -n "$NS_H" link set h0 up
ip -n "$NS_A" link set hn up
ip -n "$NS_H" route add default via 192.168.77.1
ip netns exec "$NS_A" sysctl -qw net.ipv4.ip_forward=1
# home_nat [fully-random]: the home router's NAT (replaced whole each time)
home_nat() {
  ip netns exec "$NS_A" nft delete table ip dptun_home 2>/dev/null || true
  ip netns exec "$NS_A" nft -f - <<NFT
table ip dptun_home {
  chain postrouting { type nat hook postrouting priority srcnat; policy accept;
    ip saddr 192.168.77.0/24 oifname "a0" masquerade ${1:-}; }
  chain forward { type filter hook forward priority filter; policy accept;
    iifname "a0" ct state established,related accept;
    iifname "a0" counter drop; }
}
NFT
}
home_nat

bash "$ROOT/tests/e2e/pki.sh" "$WORK/pki" "$GW_UNDERLAY"
GW_STATIC=0 GW_KERNEL_IF=dpgw-under write_gw_conf 1 false
write_dpctld_conf "$GW_UNDERLAY:7443"
start_gw
start_dpctld "$NS_G"
wait_for 10 "dpgw's kernel path address" ip -n "$NS_G" addr show dev dpgw-under
ip netns exec "$NS_G" turnserver -n --stun-only -L "$GW_UNDERLAY" -p 3479 --no-tcp --no-tls --no-dtls --no-cli \
  --no-software-attribute --userdb "$WORK/turndb" --log-file "$WORK/coturn.log" --simple-log --no-stdout-log \
  --pidfile "$WORK/turnserver.pid" > /dev/null 2>&1 &
PIDS+=("$!")
dpctl tunnel add web --allow CN=agent-1 --allow CN=agent-2 > /dev/null

# agent NS NAME CERT ARGS...: a registered agent of "web"
agent() {
  local ns=$1 name=$2 cert=$3; shift 3
  ip netns exec "$ns" "$DPAGENT" --server "$GW_UNDERLAY:7443" --ca "$WORK/pki/ca.pem" --cert "$WORK/pki/$cert.pem" \
    --key "$WORK/pki/$cert.key" --tunnel web --name "$name" --tun "t-$name" "$@" \
    > "$WORK/$name.out" 2> "$WORK/$name.log" &
  PIDS+=("$!")
  eval "PID_${name//-/_}=$!"
}
# nat_of NAME: the session's NAT report ({mapping, candidates}) as dpctl --json shows it
nat_of() { dpctl --json session list | jq -c --arg n "$1" '.sessions[] | select(.agent == $n) | .nat'; }
reported() { [ "$(nat_of "$1" | jq -r '.mapping // empty')" = "$2" ]; }
srflx() { nat_of "$1" | jq -r '[.candidates[]? | select(.type == "srflx") | .address] | join(" ")'; }
hosts() { nat_of "$1" | jq -r '[.candidates[]? | select(.type == "host") | .address] | join(" ")'; }
has_srflx() { [ -n "$(srflx "$1")" ]; }

log "behind an endpoint-independent NAT, asking dpgw (its STUN and tunnel ports)"
agent "$NS_H" eim agent1 --direct-port 41000
wait_for 20 "eim reported endpoint-independent" reported eim endpoint-independent
[ "$(srflx eim)" = "$NAT_IP:41000" ] || fail "eim: srflx '$(srflx eim)', not $NAT_IP:41000: $(nat_of eim)"
[ "$(hosts eim)" = "$HOME_IP:41000" ] || fail "eim: host candidates '$(hosts eim)': $(nat_of eim)"
dpctl session list | matches -E "web +agent +CN=agent-1 .* endpoint-independent " || fail "session list: $(dpctl session list)"
log "  $(nat_of eim)"

log "asking coturn alone"
agent "$NS_H" coturn agent2 --direct-port 41001 --stun "$COTURN"
wait_for 20 "coturn's answer reported" has_srflx coturn
[ "$(srflx coturn)" = "$NAT_IP:41001" ] || fail "coturn: srflx '$(srflx coturn)', not $NAT_IP:41001: $(nat_of coturn)"
# (eim's TUN, t-eim, is in the same namespace: a point-to-point link is no host candidate)
[ "$(hosts coturn)" = "$HOME_IP:41001" ] || fail "coturn: host candidates '$(hosts coturn)': $(nat_of coturn)"
reported coturn unknown || fail "coturn alone: mapping should be unknown (one server): $(nat_of coturn)"
log "  $(nat_of coturn)"

log "no NAT: an agent on the underlay itself"
agent "$NS_A" open agent2
wait_for 20 "open reported none" reported open none
[ -z "$(srflx open)" ] || fail "open: a srflx candidate that repeats a host one: $(nat_of open)"
hosts open | matches -F "$AGENT_IP:" || fail "open: $AGENT_IP is not a host candidate: $(nat_of open)"
log "  $(nat_of open)"

log "the agent's counters: requests answered, nothing stray"
kill -USR1 "$PID_eim"
wait_for 5 "eim's counters" grep -q '"direct"' "$WORK/eim.out"
direct=$(grep '"direct"' "$WORK/eim.out" | tail -1 | jq -c '.direct')
jq -e '.answers >= 2 and .requests >= .answers and .stray == 0 and .nat == "endpoint-independent"' <<< "$direct" > /dev/null ||
  fail "eim's direct counters: $direct"

log "behind a symmetric NAT (masquerade fully-random)"
home_nat fully-random
agent "$NS_H" sym agent1 --direct-port 41002
wait_for 20 "sym reported endpoint-dependent" reported sym endpoint-dependent
read -r -a mapped <<< "$(srflx sym)"
[ "${#mapped[@]}" = 2 ] && [ "${mapped[0]}" != "${mapped[1]}" ] || fail "sym: two srflx candidates expected: $(nat_of sym)"
for m in "${mapped[@]}"; do [[ $m == "$NAT_IP:"* ]] || fail "sym: srflx $m is not the NAT's address"; done
log "  $(nat_of sym)"

log "a forged report over a real registration: ignored, counted, the session goes on"
ip netns exec "$NS_A" python3 - "$GW_UNDERLAY" "$WORK/pki" > "$WORK/forger.out" 2>&1 <<'PY' || fail "forger: $(cat "$WORK/forger.out")"
import json, socket, ssl, sys
gw, pki = sys.argv[1], sys.argv[2]
ctx = ssl.create_default_context(cafile=pki + "/ca.pem")
ctx.load_cert_chain(pki + "/agent2.pem", pki + "/agent2.key")
with ctx.wrap_socket(socket.create_connection((gw, 7443), timeout=5), server_hostname=gw) as s:
    f = s.makefile("rwb")
    def send(m):
        f.write((json.dumps(m) + "\n").encode()); f.flush()
    send({"type": "register", "version": 1, "tunnel": "web", "name": "forger"})
    assert json.loads(f.readline())["type"] == "registered"
    send({"type": "candidates", "nat": "none", "candidates": [{"type": "host", "address": "127.0.0.1:22"}]})
    send({"type": "ping"})
    reply = json.loads(f.readline())
    assert reply["type"] == "pong", reply
    print("pong after the forged report")
PY
stats=$(dpctl --json stats)
jq -e '.candidate_reports_rejected == 1 and .candidate_reports >= 4' <<< "$stats" > /dev/null ||
  fail "dpctld's candidate counters: $(jq -c '{candidate_reports, candidate_reports_rejected}' <<< "$stats")"
grep -q "candidates ignored: .*'address'" "$WORK/dpctld.log" || fail "no log line for the forged report"
ip netns exec "$NS_G" curl -sf -m 2 http://127.0.0.1:9108/metrics |
  matches -E '^dptun_candidate_reports_total\{result="rejected"\} 1$' || fail "no dptun_candidate_reports_total metric"
log "PASS"
