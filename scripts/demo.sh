#!/usr/bin/env bash
# The dptun demo, the way an operator runs it: dpgw owns the gateway's ports, dpctld listens on dpgw's own
# address through the kernel path, `dpctl tunnel add` prints the dpagent command that registers an agent,
# `dpctl entry add` publishes the service. Then iperf3 TCP and UDP through the encrypted tunnel and, in the
# same run, over a plain veth path, side by side; everything is torn down at the end.
export DPT_PREFIX=${DPT_PREFIX:-dptdemo}
source "$(dirname "$0")/../tests/e2e/lib.sh"
SECS=${DEMO_SECONDS:-5}
show() { echo "+ $*" | sed "s|$WORK|\$WORK|g"; }

topology_up
log "certificates with dptun-pki: a CA, dpctld's certificate for the address agents use, one agent's"
for step in "init $WORK/pki" "server $WORK/pki server --ip $GW_UNDERLAY" "agent $WORK/pki agent-1"; do
  # shellcheck disable=SC2086
  show dptun-pki $step
  # shellcheck disable=SC2086
  bash "$ROOT/scripts/dptun-pki" $step
done
GW_STATIC=0 GW_KERNEL_IF=dpgw-under write_gw_conf 1 false
write_dpctld_conf "$GW_UNDERLAY:7443"
log "dpgw on the gateway's two ports (kernel path dpgw-under on 10.99.2.1), dpctld listening on 10.99.2.1:7443"
start_gw
start_dpctld "$NS_G"

show dpctl tunnel add iperf --allow CN=agent-1
dpctl tunnel add iperf --allow CN=agent-1 | tee "$WORK/add.txt"
cmd=$(grep -E '^  dpagent ' "$WORK/add.txt" | sed 's/^  //')
cmd=${cmd//AGENT.pem/$WORK/pki/agent-1.pem}
cmd=${cmd//AGENT.key/$WORK/pki/agent-1.key}
log "running that command in the agent's namespace (with the agent's certificate)"
# shellcheck disable=SC2086
ip netns exec "$NS_A" "$BUILD/agent/"$cmd > "$WORK/agent.out" 2> "$WORK/agent.log" &
PIDS+=("$!")
show dpctl entry add tcp 5201 iperf "$AGENT_IP:5201"
dpctl entry add tcp 5201 iperf "$AGENT_IP:5201"
show dpctl entry add udp 5201 iperf "$AGENT_IP:5201" --keepalive
dpctl entry add udp 5201 iperf "$AGENT_IP:5201" --keepalive
agent_live() { dpctl --json session list | jq -e '[.sessions[] | select(.live)] | length > 0'; }
wait_for 15 "the agent's session live" agent_live
start_iperf_server
# A second server on the plain veth path (10.99.3.1 <-> 10.99.3.2), no tunnel, no DPDK.
ip netns exec "$NS_A" iperf3 -s -J -B 10.99.3.2 -p 5202 > "$WORK/iperf3-plain.log" 2>&1 &
PIDS+=("$!")
show dpctl session list
dpctl session list
sleep 0.5

measure() {  # measure NAME ARGS... -> prints "Mbit/s loss%"
  local name=$1; shift
  iperf_client "$WORK/$name.json" "$@"
  jq -r 'if .start.test_start.protocol == "UDP" then
           "\((.end.sum_received.bits_per_second // .end.sum.bits_per_second) / 1e6 | floor) \(.end.sum.lost_percent * 10 | floor / 10)"
         else
           "\(.end.sum_received.bits_per_second / 1e6 | floor) -"
         end' "$WORK/$name.json"
}

log "measuring ${SECS}s each: TCP and UDP (1 Gbit/s offered), through dptun and over a plain veth"
read -r t_tun _ <<< "$(measure tcp-tunnel -c "$GW_PUBLIC" -t "$SECS")"
read -r t_veth _ <<< "$(measure tcp-veth -c 10.99.3.2 -p 5202 -t "$SECS")"
read -r u_tun u_tun_loss <<< "$(measure udp-tunnel -c "$GW_PUBLIC" -u -b 1G -t "$SECS")"
read -r u_veth u_veth_loss <<< "$(measure udp-veth -c 10.99.3.2 -p 5202 -u -b 1G -t "$SECS")"

echo
printf '%-34s %18s %18s\n' "" "dptun tunnel" "plain veth (*)"
printf '%-34s %13s Mb/s %13s Mb/s\n' "iperf3 TCP" "$t_tun" "$t_veth"
printf '%-34s %13s Mb/s %13s Mb/s\n' "iperf3 UDP, 1 Gbit/s offered" "$u_tun" "$u_veth"
printf '%-34s %16s%% %16s%%\n' "iperf3 UDP loss" "$u_tun_loss" "$u_veth_loss"
echo
echo "tunnel: client 10.99.1.2 -> dpgw 10.99.1.1:5201 (DPDK af_packet, AES-128-GCM relay frames)"
echo "        -> dpagent 10.99.2.2 (TUN + NAT) -> iperf3 server 10.99.2.2:5201"
echo "(*) the kernel alone, with offloads off like the tunnel's veths. The tunnel adds AES-GCM, two extra"
echo "    hops through AF_PACKET sockets on veth and a userspace agent, all on this machine's $(nproc) cores."
echo
show dpctl tunnel list
dpctl tunnel list
echo
"$DPGW" stats --socket "$WORK/dpgw.sock"
