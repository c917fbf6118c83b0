#!/usr/bin/env bash
# Builds or removes the test/demo network: three namespaces joined by veth pairs.
#
#   <P>-client  c0 10.99.1.2/24 ==== gc  <P>-gw (dpgw owns gc and ga through af_packet) ga ==== a0 10.99.2.2/24  <P>-agent
#               cp 10.99.3.1/24 ======================== plain veth path ======================== ap 10.99.3.2/24
#                                                                            <P>-lan  l1 10.99.4.2/24 ==== l0 10.99.4.1/24
#   (<P>-lan is a host on the agent's LAN: a target that is not on the agent's own host)
#
# dpgw's addresses: 10.99.1.1 (public side), 10.99.2.1 (underlay side).
# usage: topology.sh up|down [PREFIX]     PREFIX defaults to $DPT_PREFIX or "dpt"
set -euo pipefail

cmd=${1:-}
P=${2:-${DPT_PREFIX:-dpt}}
C=$P-client G=$P-gw A=$P-agent L=$P-lan

offloads_off() {  # ns ifname: software checksums and no GSO/GRO, or af_packet sees partial checksums
  ip netns exec "$1" ethtool -K "$2" tx off tso off gso off gro off >/dev/null 2>&1 || true
}

down() {
  for ns in "$C" "$G" "$A" "$L"; do
    ip netns del "$ns" 2>/dev/null || true
  done
}

up() {
  down
  ip netns add "$C"
  ip netns add "$G"
  ip netns add "$A"
  ip netns add "$L"
  ip link add c0 netns "$C" type veth peer name gc netns "$G"
  ip link add a0 netns "$A" type veth peer name ga netns "$G"
  ip link add cp netns "$C" type veth peer name ap netns "$A"
  ip link add l0 netns "$A" type veth peer name l1 netns "$L"
  for ns in "$C" "$G" "$A" "$L"; do ip -n "$ns" link set lo up; done
  ip -n "$C" addr add 10.99.1.2/24 dev c0
  ip -n "$C" addr add 10.99.3.1/24 dev cp
  ip -n "$A" addr add 10.99.2.2/24 dev a0
  ip -n "$A" addr add 10.99.3.2/24 dev ap
  ip -n "$A" addr add 10.99.4.1/24 dev l0
  ip -n "$L" addr add 10.99.4.2/24 dev l1
  for pair in "$C c0" "$C cp" "$G gc" "$G ga" "$A a0" "$A ap" "$A l0" "$L l1"; do
    set -- $pair
    ip -n "$1" link set "$2" up
    offloads_off "$1" "$2"
  done
  ip -n "$C" route add default via 10.99.1.1 dev c0
  # The gateway namespace's kernel must stay out of the way, as it would with a NIC that DPDK owns: af_packet
  # takes dpgw's copy of each frame before the netdev ingress hook, which then drops the kernel's copy. (Without
  # this, the kernel would answer for the addresses dpgw gives its kernel-path TAP, behind dpgw's back.)
  ip netns exec "$G" nft -f - <<NFT
table netdev dptun_dpdk_owned {
  chain gc { type filter hook ingress device "gc" priority 0; policy drop; }
  chain ga { type filter hook ingress device "ga" priority 0; policy drop; }
}
NFT
  ip netns exec "$G" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 || true
  ip netns exec "$C" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 || true
  ip netns exec "$A" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 || true
  ip netns exec "$L" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 || true
}

case "$cmd" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down [PREFIX]" >&2; exit 2 ;;
esac
