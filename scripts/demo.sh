#!/usr/bin/env bash
# The dptun demo: builds the namespace topology, runs dpgw and dpagent, measures iperf3 TCP and UDP
# through the encrypted tunnel and, in the same run, over a plain veth path, prints both side by side,
# and tears everything down.
export DPT_PREFIX=${DPT_PREFIX:-dptdemo}
source "$(dirname "$0")/../tests/e2e/lib.sh"
SECS=${DEMO_SECONDS:-5}

topology_up
write_gw_conf 1 false
start_gw
start_agent agent
start_iperf_server
# A second server on the plain veth path (10.99.3.1 <-> 10.99.3.2), no tunnel, no DPDK.
ip netns exec "$NS_A" iperf3 -s -J -B 10.99.3.2 -p 5202 > "$WORK/iperf3-plain.log" 2>&1 &
PIDS+=("$!")
wait_for 15 "tunnel up" tunnel_up
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
"$DPGW" stats --socket "$WORK/dpgw.sock"
