#!/usr/bin/env bash
# Frames the kernel drops in front of dpgw's socket devices are counted (docs/operations.md, "Counters"): dpgw is
# stopped (SIGSTOP) while the client sends 20000 datagrams to it, far more than a socket's receive ring holds, and
# continued. Every frame the client's veth sent in that time must be either received by dpgw (`rx_packets`) or
# counted as dropped in front of it (`socket_rx_dropped`), in the JSON stats, the text stats and the metrics; on
# net_af_packet (PACKET_STATISTICS) and on net_af_xdp (XDP_STATISTICS) when this kernel runs dpgw on it.
source "$(dirname "$0")/lib.sh"
SENT=20000

c0_tx() { ip -n "$NS_C" -j -s link show c0 | jq '.[0].stats64.tx.packets'; }
port_field() { gw_stats | jq ".ports[0].$1"; }
counted() { [ "$(port_field socket_rx_dropped)" -gt 0 ]; }

run_case() {
  local vdev=$1
  export GW_VDEV=$vdev
  topology_up
  write_gw_conf 1 false
  ip netns exec "$NS_G" "$DPGW" --config "$WORK/gw.conf" > "$WORK/dpgw-$vdev.out" 2> "$WORK/dpgw-$vdev.log" &
  GW_PID=$!
  PIDS+=("$GW_PID")
  local up=0
  for _ in $(seq 1 50); do
    if gw_stats > /dev/null 2>&1; then up=1; break; fi
    kill -0 "$GW_PID" 2>/dev/null || break
    sleep 0.2
  done
  if [ "$up" = 0 ]; then
    [ "$vdev" = af_xdp ] || fail "dpgw did not start on $vdev: $(tail -3 "$WORK/dpgw-$vdev.log")"
    log "  af_xdp: dpgw does not start on it here ($(grep -m1 -iE 'error|cannot' "$WORK/dpgw-$vdev.log")): skipped"
    stop_gw
    return 0
  fi
  [ "$(port_field socket_rx_dropped)" = 0 ] || fail "$vdev: socket_rx_dropped before any traffic: $(port_field socket_rx_dropped)"
  ip netns exec "$NS_C" ping -c 1 -W 2 "$GW_PUBLIC" > /dev/null || fail "$vdev: dpgw does not answer ping"
  local rx0 tx0
  rx0=$(port_field rx_packets)
  tx0=$(c0_tx)
  kill -STOP "$GW_PID"
  timeout 30 ip netns exec "$NS_C" python3 -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range($SENT):
    s.sendto(b'x' * 100, ('$GW_PUBLIC', 5201))
" || { kill -CONT "$GW_PID"; fail "$vdev: the client could not send"; }
  sleep 0.3
  kill -CONT "$GW_PID"
  wait_for 10 "$vdev: dpgw counts the frames its socket dropped" counted
  sleep 0.5  # (the last of the ring's frames read, the statistics read again)
  local rx dropped tx
  rx=$(( $(port_field rx_packets) - rx0 ))
  dropped=$(port_field socket_rx_dropped)
  tx=$(( $(c0_tx) - tx0 ))
  log "  $vdev: the client's veth sent $tx frames; dpgw received $rx, socket_rx_dropped $dropped"
  [ "$tx" -ge "$SENT" ] || fail "$vdev: the client's veth sent only $tx frames"
  [ $((rx + dropped)) -eq "$tx" ] || fail "$vdev: received $rx + dropped $dropped != sent $tx"
  "$DPGW" stats --socket "$WORK/dpgw.sock" | matches "port public: $dropped frames dropped by the kernel in front of dpgw" ||
    fail "$vdev: the text stats do not say it: $("$DPGW" stats --socket "$WORK/dpgw.sock" | head -5)"
  ip netns exec "$NS_G" curl -sf -m 2 "http://127.0.0.1:9109/metrics" |
    matches -E "^dptun_gw_port_socket_rx_dropped_total\{port=\"public\"\} $dropped$" || fail "$vdev: no metric"
  stop_gw
}

log "af_packet: dpgw stopped while the client sends $SENT datagrams"
run_case af_packet
log "af_xdp: the same"
run_case af_xdp
log "PASS"
