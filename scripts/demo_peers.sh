# shellcheck shell=bash
# The demo's same-run peers, sourced by scripts/demo.sh after tests/e2e/lib.sh (namespaces, $WORK, PIDS, wait_for):
#   wireguard-go between the client and agent namespaces over the plain veth pair (cp/ap),
#   dpdk-testpmd io-forwarding between gc and ga, in place of dpgw (a wire that does no work),
# and the counters every component keeps of what it dropped (counters_snapshot).

WG_C=${DPT_PREFIX:0:10}-wgc  # interface names: at most 15 bytes; wireguard-go's UAPI socket is /var/run/wireguard/<name>.sock
WG_A=${DPT_PREFIX:0:10}-wga
WG_CLIENT_IP=10.99.5.1
WG_AGENT_IP=10.99.5.2
WG_PIDS=()

# wg_up: a WireGuard tunnel 10.99.5.1 (client) <-> 10.99.5.2 (agent) whose UDP runs over cp/ap (10.99.3.0/24),
# wireguard-go in the foreground on both ends, keys from `wg genkey`, the MTU wireguard's default (1420).
wg_up() {
  local ns ifname ip peer_ip endpoint
  umask 077
  wg genkey > "$WORK/wg-c.key"
  wg genkey > "$WORK/wg-a.key"
  umask 022
  for end in "$NS_C $WG_C $WG_CLIENT_IP wg-c wg-a 10.99.3.2 $WG_AGENT_IP" \
             "$NS_A $WG_A $WG_AGENT_IP wg-a wg-c 10.99.3.1 $WG_CLIENT_IP"; do
    # shellcheck disable=SC2086
    set -- $end
    ns=$1 ifname=$2 ip=$3 endpoint=$6 peer_ip=$7
    WG_PROCESS_FOREGROUND=1 ip netns exec "$ns" wireguard-go -f "$ifname" > "$WORK/wireguard-go-$4.log" 2>&1 &
    WG_PIDS+=("$!")
    PIDS+=("$!")
    wait_for 10 "wireguard-go's $ifname" test -S "/var/run/wireguard/$ifname.sock"
    ip netns exec "$ns" wg set "$ifname" listen-port 51820 private-key "$WORK/$4.key" \
      peer "$(wg pubkey < "$WORK/$5.key")" endpoint "$endpoint:51820" allowed-ips "$peer_ip/32"
    ip -n "$ns" addr add "$ip/24" dev "$ifname"
    ip -n "$ns" link set "$ifname" mtu 1420 up
  done
  wait_for 10 "a WireGuard handshake" ip netns exec "$NS_C" ping -c 1 -W 1 "$WG_AGENT_IP"
}

# wg_down: both ends stopped (their TUN interfaces go with them)
wg_down() {
  local pid
  for pid in "${WG_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${WG_PIDS[@]}"; do
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  WG_PIDS=()
  rm -f "/var/run/wireguard/$WG_C.sock" "/var/run/wireguard/$WG_A.sock"
}

TESTPMD_PID=""

# testpmd_up: dpdk-testpmd io-forwarding between gc and ga through the vdev kind $GW_VDEV names (gw_vdev), one
# forwarding core, no huge pages, no runtime files; the client and agent reach each other's address through it
# with on-link routes (ARP passes the wire too). Returns 1, with the reason in $WORK/testpmd.log, when testpmd
# does not start or no ping crosses it within 5 s.
testpmd_up() {
  mkfifo "$WORK/testpmd.in"
  exec 7<> "$WORK/testpmd.in"  # stdin for testpmd, held open: a newline tells it to stop and close its ports
  ip netns exec "$NS_G" dpdk-testpmd -l 0,1 --no-huge -m 512 --no-pci --no-shconf --file-prefix "$DPT_PREFIX-testpmd" --log-level='*:notice' \
    --vdev "$(gw_vdev 0 gc 1)" --vdev "$(gw_vdev 1 ga 1)" -- \
    --forward-mode=io --nb-cores=1 --rxq=1 --txq=1 --total-num-mbufs=16384 <&7 > "$WORK/testpmd.log" 2>&1 &
  TESTPMD_PID=$!
  PIDS+=("$TESTPMD_PID")
  ip -n "$NS_C" route add "$AGENT_IP/32" dev c0
  ip -n "$NS_A" route add 10.99.1.2/32 dev a0
  for _ in $(seq 1 10); do
    kill -0 "$TESTPMD_PID" 2>/dev/null || return 1
    ip netns exec "$NS_C" ping -c 1 -W 0.5 "$AGENT_IP" > /dev/null 2>&1 && return 0
  done
  return 1
}

# testpmd_down: testpmd stopped (a newline on its stdin: it stops its ports, which takes the XDP program off the
# veths), the routes removed; the veths left without XDP programs for whoever drives them next
testpmd_down() {
  [ -n "$TESTPMD_PID" ] || return 0
  echo >&7 || true
  for _ in $(seq 1 50); do kill -0 "$TESTPMD_PID" 2>/dev/null || break; sleep 0.1; done
  kill "$TESTPMD_PID" 2>/dev/null || true
  sleep 0.2
  kill -9 "$TESTPMD_PID" 2>/dev/null || true
  wait "$TESTPMD_PID" 2>/dev/null || true
  exec 7>&-
  rm -f "$WORK/testpmd.in"
  rm -rf "/var/run/dpdk/$DPT_PREFIX-testpmd"
  TESTPMD_PID=""
  ip -n "$NS_C" route del "$AGENT_IP/32" dev c0 2>/dev/null || true
  ip -n "$NS_A" route del 10.99.1.2/32 dev a0 2>/dev/null || true
  ip -n "$NS_G" link set dev gc xdp off 2>/dev/null || true
  ip -n "$NS_G" link set dev ga xdp off 2>/dev/null || true
}
