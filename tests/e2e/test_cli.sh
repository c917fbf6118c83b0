#!/usr/bin/env bash
# Operator-facing errors of the real binaries: bad config names file, line and key; bad arguments say
# what is wrong and exit non-zero; --help tells the truth about the options the binaries accept.
source "$(dirname "$0")/lib.sh"

expect_fail() {  # expect_fail PATTERN COMMAND...: non-zero exit and PATTERN on stderr
  local pattern=$1; shift
  set +e
  "$@" > "$WORK/out.log" 2> "$WORK/err.log"
  local rc=$?
  set -e
  [ $rc -ne 0 ] || fail "'$*' exited 0"
  grep -qE -- "$pattern" "$WORK/err.log" || fail "'$*': stderr lacks /$pattern/: $(cat "$WORK/err.log")"
}

write_gw_conf 1 false
"$DPGW" --config "$WORK/gw.conf" --check | matches "OK" || fail "valid config rejected"
# The shipped example is valid as it is, on a host with none of its files (the README's quick start uses it).
"$DPGW" --config "$ROOT/conf/dptun.conf" --check | matches "OK" || fail "conf/dptun.conf no longer loads"
# ... and with its examples uncommented (a key file swapped for an inline key).
sed -e '1,/^# edge = {/ { s/^# \(tunnels\|entry_points\) = (/\1 = (/; s/^#   /  /; s/^# );/);/; }' \
    -e "s|psk_file = \"/etc/dptun/site-1.psk\";|psk = \"$PSK\";|" "$ROOT/conf/dptun.conf" > "$WORK/example.conf"
"$DPGW" --config "$WORK/example.conf" --check | matches "OK (2 ports, 1 workers, 1 tunnels, 2 entry points)" ||
  fail "conf/dptun.conf's examples no longer load: $("$DPGW" --config "$WORK/example.conf" --check 2>&1)"
# ... and its edge example (on the sample's ports: the targets on "public", the concentrator behind a gateway).
edge_psk=$(printf '%064x' 7)
sed -e '/^# edge = {/,/^# };/ s/^# //' -e 's/lan_port = "lan";/lan_port = "public";/' \
    -e 's|# gateway = "10.99.2.254";|gateway = "10.99.2.254";|' \
    -e "s|psk_file = \"/etc/dptun/edge-7.psk\";|psk = \"$edge_psk\";|" "$ROOT/conf/dptun.conf" > "$WORK/edge-example.conf"
"$DPGW" --config "$WORK/edge-example.conf" --check |
  matches -F "OK (2 ports, 1 workers, 0 tunnels, 0 entry points, edge: session 7 to concentrator 198.51.100.1:51900)" ||
  fail "conf/dptun.conf's edge example no longer loads: $("$DPGW" --config "$WORK/edge-example.conf" --check 2>&1)"
# A port address without its prefix length is an error, not a /32.
sed 's|address = "10.99.1.1/24"|address = "10.99.1.1"|' "$WORK/gw.conf" > "$WORK/noprefix.conf"
expect_fail "noprefix.conf:[0-9]+: key 'dpgw.ports.\[0\].address': expected address/prefix like 10.0.1.1/24" \
  "$DPGW" --config "$WORK/noprefix.conf" --check
# Durations print as people write them.
sed 's/session_timeout = 6;/session_timeout = 9000;/' "$WORK/gw.conf" > "$WORK/duration.conf"
expect_fail "value 9000 s out of range 0.5..3600 s" "$DPGW" --config "$WORK/duration.conf" --check
expect_fail "--keepalive expects a number of seconds between 0.1 and 3600" "$DPAGENT" --keepalive 0 --gateway 10.0.0.1:1
# Every program says its version.
for p in "$DPGW" "$DPAGENT" "$BUILD/control/dpctld" "$BUILD/control/dpctl"; do
  "$p" --version | matches -E "^(dpgw|dpagent|dpctld|dpctl) [0-9]+\.[0-9]+\.[0-9]+ \(.+\)$" || fail "$p --version: $("$p" --version 2>&1)"
done

sed 's/address = "10.99.1.1\/24"/adress = "10.99.1.1\/24"/' "$WORK/gw.conf" > "$WORK/typo.conf"
line=$(grep -n adress "$WORK/typo.conf" | cut -d: -f1)
expect_fail "typo.conf:$line: key 'dpgw.ports.\[0\].adress': unknown key" "$DPGW" --config "$WORK/typo.conf" --check

sed 's/target = "10.99.2.2:5201"; }/target = "10.99.2.2:99999"; }/' "$WORK/gw.conf" > "$WORK/port.conf"
line=$(grep -n 99999 "$WORK/port.conf" | cut -d: -f1)
expect_fail "port.conf:$line: key 'entry_points.\[0\].target'" "$DPGW" --config "$WORK/port.conf" --check

printf 'dpgw = {\n  workers = ;\n};\n' > "$WORK/syntax.conf"
expect_fail "syntax.conf:2: syntax error" "$DPGW" --config "$WORK/syntax.conf" --check
expect_fail "cannot read config file" "$DPGW" --config "$WORK/missing.conf" --check
expect_fail "unknown argument '--frobnicate'" "$DPGW" --frobnicate
expect_fail "--config FILE is required" "$DPGW"
expect_fail "cannot connect" "$DPGW" stats --socket "$WORK/none.sock"

"$DPGW" --help | matches -- "--check" || fail "dpgw --help lacks --check"
"$DPAGENT" --help | matches -- "--psk-file" || fail "dpagent --help lacks --psk-file"
expect_fail "--gateway IP:PORT \\(static session\\) or --server HOST:PORT \\(dpctld\\) is required" "$DPAGENT" --session 1 --psk-file "$WORK/psk"
expect_fail "--server expects HOST:PORT" "$DPAGENT" --server "gw example:1" --tunnel x
expect_fail "exclude each other" "$DPAGENT" --server 10.0.0.1:7443 --gateway 10.0.0.1:1 --session 1 --psk-file "$WORK/psk"
expect_fail "--server needs --cert, --key and --ca" "$DPAGENT" --server 10.0.0.1:7443 --tunnel x
expect_fail "--gateway expects IP:PORT" "$DPAGENT" --gateway nowhere --session 1 --psk-file "$WORK/psk"
expect_fail "--session expects 1..32767" "$DPAGENT" --gateway 10.0.0.1:1 --session 0 --psk-file "$WORK/psk"
echo "abcd" > "$WORK/short.psk"
expect_fail "expected a 32-byte key" "$DPAGENT" --gateway 10.0.0.1:1 --session 1 --psk-file "$WORK/short.psk"
expect_fail "unknown argument '--bogus'" "$DPAGENT" --bogus x
# Direct paths' options (docs/nat-traversal.md): registered agents and visitors only; a visitor's need one thread.
expect_fail "--no-direct excludes --stun and --direct-port" "$DPAGENT" --server 10.0.0.1:7443 --tunnel x --cert a \
  --key b --ca c --no-direct --stun 10.0.0.1:3478
expect_fail "--stun and --direct-port are for agents registered with dpctld" "$DPAGENT" --gateway 10.0.0.1:1 \
  --session 1 --psk-file "$WORK/psk" --direct-port 41000
expect_fail "--stun and --direct-port are for a visitor's direct paths, which need --threads 1" "$DPAGENT" visit \
  --server 10.0.0.1:7443 --tunnel 6f1c0f8e-3e27-4d7e-9d5a-0c1f2a3b4c5d --cert a --key b --ca c --host h.example \
  --local 100.96.0.10:80 --threads 2 --stun 10.0.0.1:3478
# dpctld: config errors name file, line and key; --help; the shipped example parses up to its TLS files.
DPCTLD=$BUILD/control/dpctld
"$DPCTLD" --help | matches -- "--check" || fail "dpctld --help lacks --check"
expect_fail "cannot read /etc/dptun/pki/ca.pem: No such file or directory \\(dptun-pki makes" "$DPCTLD" --config "$ROOT/conf/dpctld.conf" --check
# ... and so does it with its commented examples (tunnels, ingress rules, UDP routes) uncommented.
sed -E '/^# (tunnels|ingress|routes) = \(/,/^# \);/ s/^# ?//' "$ROOT/conf/dpctld.conf" > "$WORK/ctl-examples.conf"
grep -q '^routes = (' "$WORK/ctl-examples.conf" || fail "conf/dpctld.conf's examples were not uncommented"
expect_fail "cannot read /etc/dptun/pki/ca.pem: No such file or directory \\(dptun-pki makes" "$DPCTLD" --config "$WORK/ctl-examples.conf" --check
sed -e 's/^# tunnels = (/tunnels = (/; s/^#   { id = /  { id = /; s/^#     max_weight = 254; }/    max_weight = 254; }/' \
    -e '/^tunnels = (/,/^# );/ s/^# );/);/' \
    -e 's/allow = \[ "CN=agent-1", "DNS:agent1.example.com" \]/allow = [ "agent-1" ]/' "$ROOT/conf/dpctld.conf" > "$WORK/ctl-allow.conf"
line=$(grep -n 'allow = \[ "agent-1" \]' "$WORK/ctl-allow.conf" | cut -d: -f1)
expect_fail "ctl-allow.conf:$line: key 'tunnels.\[0\].allow.\[0\]': expected \"CN=" "$DPCTLD" --config "$WORK/ctl-allow.conf" --check
expect_fail "--config FILE is required" "$DPCTLD"
log "PASS"
