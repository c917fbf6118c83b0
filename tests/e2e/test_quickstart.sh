#!/usr/bin/env bash
# The README's quick start, exactly as written (issue #8, items 6 and 7): its three blocks are read from
# README.md and run line by line -- the gateway block in the gateway's namespace, whose interfaces are named
# eth1/eth2 as the sample config expects; the agent block in the agent's namespace, in a directory holding the
# three files the README says to copy; the client block in the client's namespace. The one thing the test adds
# is isolation: it runs in a private mount namespace where /usr/local and /etc are overlays and /run/dptun,
# /var/lib/dptun and /var/log/dptun are empty tmpfs, so `make install` and /etc/dptun never touch this host.
set -euo pipefail
if [ -z "${DPT_QUICKSTART_INNER:-}" ]; then
  # /run/dptun must exist to mount over it; made here (an empty runtime directory) if it is not there, and
  # removed again.
  made_run=0
  [ -d /run/dptun ] || { mkdir -p /run/dptun; made_run=1; }
  rc=0
  DPT_QUICKSTART_INNER=1 unshare --mount --propagation private bash "$0" || rc=$?
  [ "$made_run" = 0 ] || rmdir /run/dptun 2>/dev/null || true
  exit $rc
fi
source "$(dirname "$0")/lib.sh"

# The private view of the host.
for d in /usr/local /etc /var/lib /var/log; do
  o=$WORK/overlay${d//\//_}
  mkdir -p "$o.upper" "$o.work"
  mount -t overlay overlay -o "lowerdir=$d,upperdir=$o.upper,workdir=$o.work" "$d"
done
mount -t tmpfs tmpfs /run/dptun
# The sample config's DPDK file_prefix is "dpgw": its runtime directory goes too, whatever happens.
# (set +e first: lib.sh's errexit would end the trap at `(exit $rc)` before cleanup ran.)
trap 'rc=$?; set +e; rm -rf /run/dpdk/dpgw 2>/dev/null; (exit $rc); cleanup' EXIT
[ ! -e /etc/dptun ] || fail "/etc/dptun exists on this host; the quick start assumes a clean host"

# The README's blocks: the fenced block after each "<!-- quickstart: NAME -->".
block() { awk -v want="<!-- quickstart: $1 -->" '$0 == want { on = 1; next } on && /^```/ { if (fence) exit; fence = 1; next } on && fence' "$ROOT/README.md"; }
for b in gateway agent client; do [ -n "$(block $b)" ] || fail "README.md has no quick start block '$b'"; done

topology_up
# The gateway's interfaces get the names of the sample config.
ip netns exec "$NS_G" nft delete table netdev dptun_dpdk_owned
for pair in "gc eth1" "ga eth2"; do
  set -- $pair
  ip -n "$NS_G" link set "$1" down
  ip -n "$NS_G" link set "$1" name "$2"
  ip -n "$NS_G" link set "$2" up
done
ip netns exec "$NS_G" nft -f - <<NFT
table netdev dptun_dpdk_owned {
  chain eth1 { type filter hook ingress device "eth1" priority 0; policy drop; }
  chain eth2 { type filter hook ingress device "eth2" priority 0; policy drop; }
}
NFT
# The web server the quick start's entry point names, on the agent host.
ip -n "$NS_A" addr add 10.0.0.10/32 dev lo
mkdir -p "$WORK/www" && echo "hello through dptun" > "$WORK/www/index.html"
ip netns exec "$NS_A" python3 -m http.server 80 --bind 10.0.0.10 --directory "$WORK/www" > /dev/null 2>&1 &
PIDS+=("$!")

# run_block NAMESPACE DIR NAME: each line of the block, as an operator would type it. A line ending in '&'
# starts a daemon: the next line waits (like the operator) until that daemon answers.
run_block() {
  local ns=$1 dir=$2 name=$3 line
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    log "  $name\$ $line"
    local code=${line%%#*}
    code="${code%"${code##*[![:space:]]}"}"
    if [ "${code: -1}" = "&" ]; then
      (cd "$dir" && exec ip netns exec "$ns" bash -c "exec ${code%&}") >> "$WORK/$name-daemons.log" 2>&1 &
      PIDS+=("$!")
      case $code in
        dpgw*) wait_for 30 "dpgw from the quick start" ip netns exec "$ns" dpgw stats ;;
        dpctld*) wait_for 30 "dpctld from the quick start" ip netns exec "$ns" dpctl stats ;;
        dpagent*) wait_for 30 "the quick start's agent registered" grep -q "registered with dpctld" "$WORK/$name-daemons.log" ;;
      esac
    else
      (cd "$dir" && ip netns exec "$ns" bash -c "$code") > "$WORK/step.out" 2>&1 ||
        { cat "$WORK/step.out" >&2; fail "README quick start, $name: '$line' failed"; }
      sed 's/^/      /' "$WORK/step.out" | head -8
    fi
  done < <(block "$name")
}

log "the gateway block (README.md)"
run_block "$NS_G" "$ROOT" gateway
command -v dpgw | matches "^/usr/local/bin/dpgw$" || fail "make install did not put dpgw in /usr/local/bin"

log "the agent block, with ca.pem, agent-1.pem and agent-1.key copied from the gateway"
mkdir -p "$WORK/agent-host"
cp /etc/dptun/pki/ca.pem /etc/dptun/pki/agent-1.pem /etc/dptun/pki/agent-1.key "$WORK/agent-host/"
run_block "$NS_A" "$WORK/agent-host" agent

log "the client block"
client_ok() { [ "$(ip netns exec "$NS_C" bash -c "$(block client)" 2>/dev/null)" = "hello through dptun" ]; }
wait_for 20 "the client's request answered through the tunnel" client_ok
log "  client: $(ip netns exec "$NS_C" bash -c "$(block client)")"
grep -q '"agent_tls_handshake_failed"' /var/log/dptun/agent-handshake-failures.jsonl 2>/dev/null &&
  fail "handshake failures in the quick start: $(cat /var/log/dptun/agent-handshake-failures.jsonl)"
log "PASS"
