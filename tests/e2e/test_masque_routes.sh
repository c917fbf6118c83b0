#!/usr/bin/env bash
# udp+https routes for CONNECT-UDP clients (docs/masque.md), through a real dpctld and dpctl: a route from
# dpctld.conf and routes added with dpctl are listed (table and --json), shown with their tunnel, refused with a
# clear one-line error when wrong (scheme, port, host, tunnel, identity, duplicates; usage errors exit 2, dpctld's
# refusals exit 1), kept in the state file across dpctld restarts, added by a SIGHUP reload of the config, and
# removed with dpctl route del or with their tunnel (--force). A bad route in the config names the file, the
# line and the key. dpctl stats and the metrics carry the routes and the CONNECT-UDP refusal counters.
# No dpgw: routes are dpctld's alone until the HTTP/3 front end exists (docs/masque.md, "Plan").
source "$(dirname "$0")/lib.sh"
STATE=$WORK/state/dpctld.state
CORP=6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f

topology_up
bash "$ROOT/tests/e2e/pki.sh" "$WORK/pki" "$GW_UNDERLAY"
write_dpctld_conf "127.0.0.1:7443"
cp "$WORK/dpctld.conf" "$WORK/base.conf"
cat >> "$WORK/dpctld.conf" <<CONF
tunnels = ( { id = "$CORP"; name = "corp"; allow = [ "*" ]; } );
routes = (
  { from = "udp+https://Time.Corp.Example.com:123"; tunnel = "corp"; to = "udp://10.0.0.5:123";
    allow = [ "CN=alice" ]; }
);
CONF

# expect_error EXIT_CODE TEXT COMMAND...: the command must fail with that status and say TEXT in one line
expect_error() {
  local want=$1 text=$2 rc=0; shift 2
  "$@" > "$WORK/err.out" 2> "$WORK/err.txt" || rc=$?
  [ "$rc" -eq "$want" ] || fail "'$*' exited $rc, expected $want: $(cat "$WORK/err.txt")"
  grep -qF -- "$text" "$WORK/err.txt" || fail "'$*' did not say '$text': $(cat "$WORK/err.txt")"
  [ "$(grep -c '^dpctl' "$WORK/err.txt")" -eq 1 ] || fail "'$*' said more than one error line: $(cat "$WORK/err.txt")"
  [ -s "$WORK/err.out" ] && fail "'$*' printed on stdout: $(cat "$WORK/err.out")"
  return 0
}
metrics() { ip netns exec "$NS_G" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9108; printf "GET /metrics HTTP/1.0\r\n\r\n" >&3; cat <&3'; }
restart_dpctld() {
  kill "$DPCTLD_PID"
  wait "$DPCTLD_PID" 2>/dev/null || true
  start_dpctld "$NS_G"
}

log "a bad route in dpctld.conf: dpctld --check names the file, the line and the key"
bad_conf() {  # bad_conf FROM TUNNEL TO ALLOW -> the error of dpctld --check
  { cat "$WORK/base.conf"
    echo "tunnels = ( { id = \"$CORP\"; name = \"corp\"; allow = [ \"*\" ]; } );"
    echo "routes = ("
    echo "  { from = \"$1\"; tunnel = \"$2\";"
    echo "    to = \"$3\"; allow = [ \"$4\" ]; }"
    echo ");"; } > "$WORK/bad.conf"
  local line; line=$(grep -n 'from = ' "$WORK/bad.conf" | cut -d: -f1)
  if "$DPCTLD" --config "$WORK/bad.conf" --check > /dev/null 2> "$WORK/check.txt"; then
    fail "dpctld --check accepted a route $*"
  fi
  BAD_LINE=$line
}
bad_conf "https://time.example:123" corp "udp://10.0.0.5:123" "*"
grep -qF "$WORK/bad.conf:$BAD_LINE: key 'routes.[0].from': 'https://time.example:123' is not udp+https://HOST:PORT" "$WORK/check.txt" ||
  fail "bad scheme: $(cat "$WORK/check.txt")"
bad_conf "udp+https://time.example:70000" corp "udp://10.0.0.5:123" "*"
grep -qF "$WORK/bad.conf:$BAD_LINE: key 'routes.[0].from': 'udp+https://time.example:70000': the port '70000' is not 1..65535" "$WORK/check.txt" ||
  fail "bad port: $(cat "$WORK/check.txt")"
bad_conf "udp+https://time.example:123" nope "udp://10.0.0.5:123" "*"
grep -qF "$WORK/bad.conf:$BAD_LINE: key 'routes.[0].tunnel': no tunnel with id or name 'nope'" "$WORK/check.txt" ||
  fail "unknown tunnel: $(cat "$WORK/check.txt")"
bad_conf "udp+https://time.example:123" corp "udp://10.0.0.5:123" "alice"
grep -qF "key 'routes.[0].allow.[0]': expected \"CN=...\"" "$WORK/check.txt" || fail "bad allow: $(cat "$WORK/check.txt")"
"$DPCTLD" --config "$WORK/dpctld.conf" --check > /dev/null || fail "the good config failed --check"

start_dpctld "$NS_G"

log "dpctl route: help and usage errors (exit 2)"
"$DPCTL" --help | matches "route add udp+https://NAME:PORT" || fail "dpctl --help does not list route add"
for c in "route add" "route del" "route list"; do
  # shellcheck disable=SC2086
  "$DPCTL" $c --help | matches "^usage: dpctl $c" || fail "dpctl $c --help"
done
expect_error 2 "expected add|del|list" dpctl route show x
expect_error 2 "--tunnel TUNNEL is required" dpctl route add udp+https://ntp.corp.example.com:123 --to udp://10.0.0.5:123 --allow '*'
expect_error 2 "--to udp://HOST:PORT is required" dpctl route add udp+https://ntp.corp.example.com:123 --tunnel corp --allow '*'
expect_error 2 "--allow IDENTITY is required" dpctl route add udp+https://ntp.corp.example.com:123 --tunnel corp --to udp://10.0.0.5:123
expect_error 2 "unknown option '--target'" dpctl route add udp+https://x.example:1 --target 10.0.0.1
expect_error 2 "missing arguments" dpctl route add --tunnel corp --to udp://10.0.0.5:123 --allow '*'

log "dpctld's refusals (exit 1): scheme, port, host, tunnel, identity, duplicates"
add() { dpctl route add "$@"; }
expect_error 1 "'https://ntp.corp.example.com:123' is not udp+https://HOST:PORT" \
  add https://ntp.corp.example.com:123 --tunnel corp --to udp://10.0.0.5:123 --allow '*'
expect_error 1 "the port '0' is not 1..65535" add udp+https://ntp.corp.example.com:0 --tunnel corp --to udp://10.0.0.5:123 --allow '*'
expect_error 1 "the port '65536' is not 1..65535" add udp+https://ntp.corp.example.com:123 --tunnel corp --to udp://10.0.0.5:65536 --allow '*'
expect_error 1 "'udp+https://ntp.corp.example.com' has no port" add udp+https://ntp.corp.example.com --tunnel corp --to udp://10.0.0.5:123 --allow '*'
expect_error 1 "'ntp_1.corp.example.com' is not a DNS name or an IPv4 address" \
  add udp+https://ntp_1.corp.example.com:123 --tunnel corp --to udp://10.0.0.5:123 --allow '*'
expect_error 1 "IPv6 addresses are not supported" add udp+https://[2001:db8::1]:123 --tunnel corp --to udp://10.0.0.5:123 --allow '*'
expect_error 1 "--to 'tcp://10.0.0.5:123' is not udp://HOST:PORT" add udp+https://ntp.corp.example.com:123 --tunnel corp --to tcp://10.0.0.5:123 --allow '*'
expect_error 1 "'10.0.0.300' is not a DNS name or an IPv4 address" add udp+https://ntp.corp.example.com:123 --tunnel corp --to udp://10.0.0.300:123 --allow '*'
expect_error 1 "no tunnel 'nope'" add udp+https://ntp.corp.example.com:123 --tunnel nope --to udp://10.0.0.5:123 --allow '*'
expect_error 1 "--allow: expected \"CN=...\"" add udp+https://ntp.corp.example.com:123 --tunnel corp --to udp://10.0.0.5:123 --allow alice
expect_error 1 "a route for udp+https://time.corp.example.com:123 exists already" \
  add udp+https://TIME.corp.example.com:123 --tunnel corp --to udp://10.0.0.9:123 --allow '*'
expect_error 1 "route udp+https://time.corp.example.com:123 comes from $WORK/dpctld.conf" dpctl route del udp+https://time.corp.example.com:123
expect_error 1 "no route for 'udp+https://none.example:53'" dpctl route del udp+https://none.example:53
[ -e "$STATE" ] && jq -e '(.routes // []) | length == 0' "$STATE" > /dev/null || [ ! -e "$STATE" ] ||
  fail "a refused route reached the state file: $(cat "$STATE")"

log "routes added with dpctl: listed, shown with their tunnel, counted"
dpctl tunnel add lab --allow '*' > /dev/null
add udp+https://DNS.corp.example.com:53 --tunnel corp --to udp://resolver.internal:53 --allow CN=alice --allow DNS:laptop.corp.example.com \
  > "$WORK/add.txt" || fail "route add: $(cat "$WORK/add.txt")"
grep -qF "route udp+https://dns.corp.example.com:53 -> corp -> udp://resolver.internal:53 added, allowed: CN=alice DNS:laptop.corp.example.com" \
  "$WORK/add.txt" || fail "route add said: $(cat "$WORK/add.txt")"
add udp+https://10.1.2.3:5353 --tunnel "\$$CORP" --to udp://10.0.0.7:5353 --allow '*' | matches -F "(private) added" ||
  fail "a \$UUID route is not private"
add udp+https://ops.corp.example.com:514 --tunnel lab --to udp://10.0.0.8:514 --private --allow URI:spiffe://corp/ops |
  matches -F -- "-> lab -> udp://10.0.0.8:514 (private) added" || fail "a --private route"
dpctl route list > "$WORK/list.txt"
grep -qE "^udp\+https://time.corp.example.com:123 +corp +udp://10.0.0.5:123 +no +CN=alice +config" "$WORK/list.txt" &&
  grep -qE "^udp\+https://dns.corp.example.com:53 +corp +udp://resolver.internal:53 +no +CN=alice DNS:laptop.corp.example.com +dpctl" "$WORK/list.txt" &&
  grep -qE "^udp\+https://10.1.2.3:5353 +corp +udp://10.0.0.7:5353 +yes +\* +dpctl" "$WORK/list.txt" &&
  grep -qE "^udp\+https://ops.corp.example.com:514 +lab +udp://10.0.0.8:514 +yes " "$WORK/list.txt" ||
  fail "route list: $(cat "$WORK/list.txt")"
dpctl --json route list | jq -e --arg corp "$CORP" '.routes | length == 4 and .[1].tunnel == $corp and .[1].tunnel_name == "corp"
  and .[1].allow == ["CN=alice", "DNS:laptop.corp.example.com"] and .[3].private == true' > /dev/null ||
  fail "route list --json: $(dpctl --json route list)"
dpctl tunnel show corp | matches -F "udp+https://10.1.2.3:5353 -> udp://10.0.0.7:5353 (private)" || fail "tunnel show: $(dpctl tunnel show corp)"
dpctl stats | matches "udp routes: *4; CONNECT-UDP accepted 0, refused: bad_request 0 dns_error 0 no_agent 0 not_allowed 0 private_route 0 unknown_target 0" ||
  fail "stats: $(dpctl stats)"
metrics > "$WORK/metrics.txt"
grep -q '^dptun_masque_routes 4$' "$WORK/metrics.txt" && grep -q '^dptun_masque_refusals_total{reason="not_allowed"} 0$' "$WORK/metrics.txt" &&
  grep -q '^dptun_masque_refusals_total{reason="unknown_target"} 0$' "$WORK/metrics.txt" || fail "metrics: $(grep masque "$WORK/metrics.txt")"

log "dpctld restarts: the routes come back from the state file"
jq -e '.routes | length == 3 and .[0].from == "udp+https://dns.corp.example.com:53" and .[0].to == "udp://resolver.internal:53"' "$STATE" > /dev/null ||
  fail "state file: $(cat "$STATE")"
dpctl --json route list | jq -S '.routes' > "$WORK/before.json"
restart_dpctld
dpctl --json route list | jq -S '.routes' > "$WORK/after.json"
cmp -s "$WORK/before.json" "$WORK/after.json" || fail "routes changed in the restart: $(diff "$WORK/before.json" "$WORK/after.json")"

log "route del, and a tunnel in use goes only with --force, its routes with it"
dpctl route del udp+https://DNS.corp.example.com:53 | matches "route udp+https://dns.corp.example.com:53 removed" || fail "route del"
expect_error 1 "no route for 'udp+https://dns.corp.example.com:53'" dpctl route del udp+https://dns.corp.example.com:53
expect_error 1 "tunnel lab is in use (1 route)" dpctl tunnel del lab
dpctl tunnel del lab --force > "$WORK/del.txt"
grep -qF "with its routes: udp+https://ops.corp.example.com:514" "$WORK/del.txt" || fail "tunnel del --force said: $(cat "$WORK/del.txt")"
restart_dpctld
dpctl --json route list | jq -e '[.routes[].from] == ["udp+https://time.corp.example.com:123", "udp+https://10.1.2.3:5353"]' > /dev/null ||
  fail "routes after del and restart: $(dpctl --json route list)"

log "SIGHUP: a route added to dpctld.conf is applied; one that is also in the state file is refused, nothing changes"
sed -i 's|^);$|  , { from = "udp+https://ntp.corp.example.com:123"; tunnel = "corp"; to = "udp://10.0.0.6:123"; allow = [ "*" ]; }\n);|' "$WORK/dpctld.conf"
kill -HUP "$DPCTLD_PID"
wait_for 10 "the reloaded route" bash -c "'$DPCTL' --socket '$WORK/dpctld.sock' --json route list | jq -e '.routes | length == 3' > /dev/null"
dpctl route list | matches -E "^udp\+https://ntp.corp.example.com:123 .* config$" || fail "reloaded route: $(dpctl route list)"
sed -i 's|udp+https://ntp.corp.example.com:123|udp+https://10.1.2.3:5353|' "$WORK/dpctld.conf"
kill -HUP "$DPCTLD_PID"
wait_for 10 "the refused reload logged" grep -q "reload: route udp+https://10.1.2.3:5353 is both in $WORK/dpctld.conf and added with dpctl; nothing changed" "$WORK/dpctld.log"
dpctl --json route list | jq -e '.routes | length == 3' > /dev/null || fail "a refused reload changed the routes: $(dpctl route list)"
log "PASS"
