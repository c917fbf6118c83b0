#!/usr/bin/env bash
# dpgw with the cryptodev op-API engine (crypto.engine = "cryptodev-async": rte_crypto_op bursts on
# crypto_aesni_gcm, the path QAT takes), two workers with a queue pair each: TCP and UDP through the tunnel to a
# dpagent, whose AES-GCM is OpenSSL's. Before that, the config errors for a crypto device that does not exist
# and for one without AES-GCM: dpgw names the file, line and key and exits without serving.
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

log "engine cryptodev-async, 2 workers: real traffic"
GW_CRYPTO='engine = "cryptodev-async"; device = "crypto_aesni_gcm0";' write_gw_conf 2 false
start_gw
grep -q "AEAD engine: cryptodev-async" "$WORK/dpgw.log" || fail "dpgw does not say it runs the cryptodev-async engine"
grep -q "crypto_aesni_gcm0 (crypto_aesni_gcm), 2 queue pair(s)" "$WORK/dpgw.log" ||
  fail "no queue pair per worker: $(grep cryptodev-async "$WORK/dpgw.log")"
start_agent agent
start_iperf_server
wait_for 15 "tunnel up" tunnel_up

log "iperf3 TCP, 4 parallel streams, 3 s"
iperf_client "$WORK/tcp.json" -c "$GW_PUBLIC" -t 3 -P 4
rx=$(json_get "$WORK/tcp.json" '.end.sum_received.bytes')
[ "$rx" -gt 1000000 ] || fail "TCP: received $rx bytes"
log "  received $rx bytes ($(json_get "$WORK/tcp.json" '.end.sum_received.bits_per_second / 1e6 | floor') Mbit/s)"

log "iperf3 UDP 20 Mbit/s, 3 s"
iperf_client "$WORK/udp.json" -c "$GW_PUBLIC" -u -b 20M -t 3
lost=$(json_get "$WORK/udp.json" '.end.sum.lost_percent')
awk -v l="$lost" 'BEGIN { exit !(l < 10) }' || fail "UDP loss ${lost}%"
log "  lost ${lost}%"

gw_stats > "$WORK/stats.out"
log "  encap/decap per worker: $(jq -c '[.workers[] | {id, encap_packets, decap_packets}]' "$WORK/stats.out")"
jq -e '([.workers[].encap_packets] | add) > 1000 and ([.workers[].decap_packets] | add) > 1000' "$WORK/stats.out" \
  > /dev/null || fail "too little crossed the tunnel: $(jq -c '[.workers[] | {encap_packets, decap_packets}]' "$WORK/stats.out")"
jq -e '.totals.drops.auth_fail == 0 and .totals.drops.crypto_error == 0' "$WORK/stats.out" > /dev/null ||
  fail "AEAD failures: $(jq -c .totals.drops "$WORK/stats.out")"
stop_gw
log "PASS"
