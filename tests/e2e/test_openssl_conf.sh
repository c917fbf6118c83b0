#!/usr/bin/env bash
# OpenSSL configuration files for dpctld (dpctld.openssl_conf) and dpagent (--openssl-conf): with a file that
# activates the default provider explicitly, both log the provider they got, the agent registers over TLS 1.3
# and iperf3 TCP crosses its tunnel. Files that are missing, do not parse, activate a provider whose module is
# not there, or load only providers without AES-GCM: a clear error (the file, OpenSSL's reason; dpctld: the
# config file, line and key too) and a non-zero exit.
source "$(dirname "$0")/lib.sh"

topology_up
bash "$ROOT/tests/e2e/pki.sh" "$WORK/pki" "$GW_UNDERLAY"
GW_STATIC=0 GW_KERNEL_IF=dpgw-under write_gw_conf 1 false
write_dpctld_conf "$GW_UNDERLAY:7443"

# OpenSSL configuration files (openssl.cnf syntax).
cat > "$WORK/default.cnf" <<CNF
openssl_conf = dptun_openssl
[dptun_openssl]
providers = dptun_providers
[dptun_providers]
default = dptun_default
[dptun_default]
activate = 1
CNF
printf 'openssl_conf = dptun_openssl\n[dptun_openssl\nproviders = x\n' > "$WORK/syntax.cnf"
cat > "$WORK/nomodule.cnf" <<CNF
openssl_conf = dptun_openssl
[dptun_openssl]
providers = dptun_providers
[dptun_providers]
qatprovider = dptun_qat
[dptun_qat]
module = $WORK/no-such-dir/qatprovider.so
activate = 1
CNF
sed 's/^default = dptun_default/base = dptun_default/' "$WORK/default.cnf" > "$WORK/base-only.cnf"

# expect_fail TEXT COMMAND...: the command must exit non-zero and say TEXT on stderr
expect_fail() {
  local text=$1 rc=0; shift
  "$@" > "$WORK/fail.out" 2> "$WORK/fail.err" || rc=$?
  [ "$rc" -ne 0 ] || fail "'$*' succeeded"
  grep -qF -- "$text" "$WORK/fail.err" || fail "'$*' did not say '$text': $(cat "$WORK/fail.err")"
  log "  exit $rc: $(head -c 400 "$WORK/fail.err")"
}

log "broken OpenSSL configurations: dpctld --check and dpagent refuse them"
agent_args=(--server "$GW_UNDERLAY:7443" --cert "$WORK/pki/agent1.pem" --key "$WORK/pki/agent1.key"
            --ca "$WORK/pki/ca.pem" --tunnel iperf)
for bad in syntax nomodule base-only missing; do
  sed "s|^  keepalive = 0.5;|&\n  openssl_conf = \"$WORK/$bad.cnf\";|" "$WORK/dpctld.conf" > "$WORK/dpctld-$bad.conf"
  line=$(grep -n "openssl_conf" "$WORK/dpctld-$bad.conf" | cut -d: -f1)
  case $bad in
    syntax) why="missing close square bracket (line 2)" ;;
    nomodule) why="provider 'qatprovider' (module $WORK/no-such-dir/qatprovider.so) is activated here but did not load: error:12800067:DSO support routines::could not load the shared library" ;;
    base-only) why="no provider it loads offers AES-128-GCM (providers: base" ;;
    missing) why="$WORK/missing.cnf: cannot read the OpenSSL configuration: No such file or directory" ;;
  esac
  expect_fail "$WORK/dpctld-$bad.conf:$line: key 'dpctld.openssl_conf': $WORK/$bad.cnf: " \
    "$DPCTLD" --config "$WORK/dpctld-$bad.conf" --check
  grep -qF -- "$why" "$WORK/fail.err" || fail "dpctld did not give the reason '$why'"
  expect_fail "dpagent: --openssl-conf $WORK/$bad.cnf: " \
    ip netns exec "$NS_A" timeout 20 "$DPAGENT" "${agent_args[@]}" --openssl-conf "$WORK/$bad.cnf"
  grep -qF -- "$why" "$WORK/fail.err" || fail "dpagent did not give the reason '$why'"
done

log "the default provider activated explicitly: dpctld and dpagent run on it end to end"
sed -i "s|^  keepalive = 0.5;|&\n  openssl_conf = \"$WORK/default.cnf\";|" "$WORK/dpctld.conf"
"$DPCTLD" --config "$WORK/dpctld.conf" --check > /dev/null || fail "dpctld --check refused the default provider's file"
start_gw
start_dpctld "$NS_G"
grep -q "providers: default (OpenSSL Default Provider .*) ($WORK/default.cnf)" "$WORK/dpctld.log" ||
  fail "dpctld did not log the provider it loaded: $(grep -i openssl "$WORK/dpctld.log")"
dpctl tunnel add iperf --allow CN=agent-1 > /dev/null
dpctl entry add tcp 5201 iperf "$AGENT_IP:5201" > /dev/null
ip netns exec "$NS_A" "$DPAGENT" "${agent_args[@]}" --keepalive 1 --openssl-conf "$WORK/default.cnf" \
  > "$WORK/agent.out" 2> "$WORK/agent.log" &
PIDS+=("$!")
wait_for 15 "the agent registered" grep -q "registered with dpctld" "$WORK/agent.log"
grep -q "providers: default (OpenSSL Default Provider .*) ($WORK/default.cnf)" "$WORK/agent.log" ||
  fail "dpagent did not log the provider it loaded: $(grep -i openssl "$WORK/agent.log")"
[ "$(grep -c "providers:" "$WORK/agent.log")" -eq 1 ] || fail "dpagent logged its providers more than once"
log "  $(grep -o 'OpenSSL .*' "$WORK/agent.log" | head -1)"
start_iperf_server
live() { dpctl --json session list | jq -e '[.sessions[] | select(.live)] | length >= 1' > /dev/null; }
wait_for 15 "the agent's session live" live
iperf_client "$WORK/tcp.json" -c "$GW_PUBLIC" -t 2
rx=$(json_get "$WORK/tcp.json" '.end.sum_received.bytes')
[ "$rx" -gt 100000 ] || fail "TCP through the agent's tunnel: $rx bytes"
log "  iperf3 TCP: $rx bytes"
log "PASS"
