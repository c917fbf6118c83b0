#!/usr/bin/env bash
# dpgw's AEAD engines with real traffic: the default (no crypto section: ipsec-mb's GCM API on each worker, no
# crypto device created), the cryptodev op-API engine (crypto.engine = "cryptodev-async": rte_crypto_op bursts on
# crypto_aesni_gcm, the path QAT takes; a queue pair per worker) and DPDK's CPU crypto (crypto.engine =
# "cryptodev"), each with two workers: TCP and UDP through the tunnel to a dpagent, whose AES-GCM is its own.
# Before that, the config errors for a crypto device that does not exist and for one without AES-GCM: dpgw names
# the file, line and key and exits without serving.
source "$(dirname "$0")/lib.sh"

topology_up

for dev in crypto_nosuchdriver0 crypto_null0; do
  log "crypto.device = \"$dev\": dpgw refuses to start and says where"
  GW_CRYPTO="engine = \"cryptodev-async\"; device = \"$dev\";" write_gw_conf 1 false
  line=$(grep -n "device = \"$dev\"" "$WORK/gw.conf" | cut -d: -f1)
  rc=0
  ip netns exec "$NS_G" timeout 60 "$DPGW" --config "$WORK/gw.conf" > "$WORK/bad-$dev.out" 2> "$WORK/bad-$dev.log" ||
    rc=$?
  [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "dpgw with device $dev: exit status $rc"
  msg=$(grep "key 'dpgw.crypto.device'" "$WORK/bad-$dev.log" || true)
  log "  $msg"
  case "$msg" in
    *"$WORK/gw.conf:$line: key 'dpgw.crypto.device': "*) ;;
    *) fail "no error naming $WORK/gw.conf:$line and dpgw.crypto.device" ;;
  esac
done
grep -q "crypto_nosuchdriver0'.*crypto devices present" "$WORK/bad-crypto_nosuchdriver0.log" ||
  fail "the missing device's error does not list the devices present"
grep -q "crypto_null0 (crypto_null) lacks AES-GCM" "$WORK/bad-crypto_null0.log" ||
  fail "the null device's error does not say it lacks AES-GCM"

start_iperf_server
for engine in ipsec-mb cryptodev-async cryptodev; do
  log "engine $engine, 2 workers: real traffic"
  if [ "$engine" = ipsec-mb ]; then
    write_gw_conf 2 false  # the default
  else
    GW_CRYPTO="engine = \"$engine\"; device = \"crypto_aesni_gcm0\";" write_gw_conf 2 false
  fi
  start_gw
  grep -q "AEAD engine: $engine " "$WORK/dpgw.log" || fail "dpgw does not say it runs the $engine engine"
  case $engine in
    ipsec-mb)
      grep -qE "ipsec-mb: [a-z0-9-]+ code" "$WORK/dpgw.log" || fail "dpgw does not say which ipsec-mb code it runs"
      ! grep -q crypto_aesni_gcm "$WORK/dpgw.log" ||
        fail "the ipsec-mb engine made a crypto device: $(grep crypto_aesni_gcm "$WORK/dpgw.log")" ;;
    cryptodev-async)
      grep -q "crypto_aesni_gcm0 (crypto_aesni_gcm), 2 queue pair(s)" "$WORK/dpgw.log" ||
        fail "no queue pair per worker: $(grep cryptodev-async "$WORK/dpgw.log")" ;;
  esac
  start_agent "agent-$engine"
  wait_for 15 "tunnel up" tunnel_up

  log "iperf3 TCP, 4 parallel streams, 3 s"
  iperf_client "$WORK/tcp-$engine.json" -c "$GW_PUBLIC" -t 3 -P 4
  rx=$(json_get "$WORK/tcp-$engine.json" '.end.sum_received.bytes')
  [ "$rx" -gt 1000000 ] || fail "TCP: received $rx bytes"
  log "  received $rx bytes ($(json_get "$WORK/tcp-$engine.json" '.end.sum_received.bits_per_second / 1e6 | floor') Mbit/s)"

  log "iperf3 UDP 20 Mbit/s, 3 s"
  iperf_client "$WORK/udp-$engine.json" -c "$GW_PUBLIC" -u -b 20M -t 3
  lost=$(json_get "$WORK/udp-$engine.json" '.end.sum.lost_percent')
  awk -v l="$lost" 'BEGIN { exit !(l < 10) }' || fail "UDP loss ${lost}%"
  log "  lost ${lost}%"

  gw_stats > "$WORK/stats.out"
  log "  encap/decap per worker: $(jq -c '[.workers[] | {id, encap_packets, decap_packets}]' "$WORK/stats.out")"
  jq -e '([.workers[].encap_packets] | add) > 1000 and ([.workers[].decap_packets] | add) > 1000' "$WORK/stats.out" \
    > /dev/null || fail "too little crossed the tunnel: $(jq -c '[.workers[] | {encap_packets, decap_packets}]' "$WORK/stats.out")"
  jq -e '.totals.drops.auth_fail == 0 and .totals.drops.crypto_error == 0' "$WORK/stats.out" > /dev/null ||
    fail "AEAD failures: $(jq -c .totals.drops "$WORK/stats.out")"
  stop_gw
  kill "$AGENT_PID" 2> /dev/null || true
  wait "$AGENT_PID" 2> /dev/null || true
done
log "PASS"
