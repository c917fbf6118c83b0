# Shared helpers for the end-to-end tests: namespaces from scripts/topology.sh, real dpgw / dpagent /
# iperf3 processes, bounded waits, and cleanup on every exit path (trap).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}
DPGW=$BUILD/dataplane/dpgw
DPAGENT=$BUILD/agent/dpagent
export DPT_PREFIX=${DPT_PREFIX:-dpte2e}
# One run per prefix at a time on a host: a second run with the same prefix (CI next to a developer's run)
# would tear down this one's namespaces and DPDK files, so it waits here, saying so. Processes a test starts
# inherit the descriptor; cleanup kills them.
if [ "${DPT_LOCK_HELD:-}" != "$DPT_PREFIX" ]; then
  exec {DPT_LOCK_FD}>"/run/lock/dptun-$DPT_PREFIX.lock"
  if ! flock -n "$DPT_LOCK_FD"; then
    echo "[$(basename "$0" .sh)] waiting for another run with prefix $DPT_PREFIX (/run/lock/dptun-$DPT_PREFIX.lock)" >&2
    flock -w 1800 "$DPT_LOCK_FD" || { echo "[$(basename "$0" .sh)] gave up after 30 min" >&2; exit 1; }
  fi
  export DPT_LOCK_HELD=$DPT_PREFIX
fi
NS_C=$DPT_PREFIX-client
NS_G=$DPT_PREFIX-gw
NS_A=$DPT_PREFIX-agent
NS_L=$DPT_PREFIX-lan
LAN_HOST=10.99.4.2
GW_PUBLIC=10.99.1.1
GW_UNDERLAY=10.99.2.1
AGENT_IP=10.99.2.2
TUNNEL_ID=6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f
PSK=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
WORK=$(mktemp -d /tmp/dptun-e2e.XXXXXX)
PIDS=()
EXTRA_NETNS=()  # namespaces a test adds beyond scripts/topology.sh; removed on exit
EXTRA_DPDK_PREFIXES=()  # EAL file prefixes of further dpgw processes a test runs; their runtime files removed on exit
FAILED=0
TEST_NAME=$(basename "$0" .sh)

log() { echo "[$TEST_NAME] $*"; }

# cmd | matches [grep options] PATTERN: grep -q that reads all of its input first. grep -q at the end of a pipe stops
# reading at the first match, and a cmd still writing then dies of SIGPIPE, which pipefail reports as a
# failed check (dpctl --help, a metrics page, under load).
matches() { local input; input=$(cat); grep -q "$@" <<< "$input"; }

fail() {
  echo "[$TEST_NAME] FAIL: $*" >&2
  FAILED=1
  exit 1
}

cleanup() {
  local rc=$?
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  sleep 0.5
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  bash "$ROOT/scripts/topology.sh" down "$DPT_PREFIX"
  rm -rf /etc/netns/"$DPT_PREFIX"-* 2>/dev/null || true  # per-namespace /etc/hosts (netns_hosts)
  for ns in "${EXTRA_NETNS[@]:-}"; do
    [ -n "$ns" ] && ip netns del "$ns" 2>/dev/null || true
  done
  for prefix in "$DPT_PREFIX" "${EXTRA_DPDK_PREFIXES[@]:-}"; do
    [ -n "$prefix" ] || continue
    rm -f /dev/hugepages/${prefix}map_* 2>/dev/null || true
    rm -rf "/var/run/dpdk/$prefix" 2>/dev/null || true
  done
  if [ $rc -ne 0 ] || [ $FAILED -ne 0 ]; then
    echo "[$TEST_NAME] logs from $WORK:" >&2
    for f in "$WORK"/*.log "$WORK"/*.out "$WORK"/*.jsonl; do
      [ -f "$f" ] || continue
      echo "---- $(basename "$f") (last 40 lines)" >&2
      tail -n 40 "$f" >&2
    done
  fi
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

topology_up() { bash "$ROOT/scripts/topology.sh" up "$DPT_PREFIX"; }

# netns_hosts NAMESPACE "IP NAME..." ...: an /etc/hosts for programs run in that namespace (ip netns exec
# bind-mounts /etc/netns/NAMESPACE/hosts); removed on exit.
netns_hosts() {
  local ns=$1; shift
  mkdir -p "/etc/netns/$ns"
  printf '127.0.0.1 localhost\n' > "/etc/netns/$ns/hosts"
  for line in "$@"; do echo "$line" >> "/etc/netns/$ns/hosts"; done
}

# gw_vdev INDEX IFACE QUEUES: the DPDK vdev for a veth of the gateway namespace, of the kind $GW_VDEV names
# (af_packet by default; af_xdp: the kernel's XDP socket, native XDP on veth; without the kernel's preferred busy
# polling, which would make each empty poll of the backing-off worker a recvfrom call: docs/operations.md)
gw_vdev() {
  case "${GW_VDEV:-af_packet}" in
    af_packet) echo "net_af_packet$1,iface=$2,framecnt=2048$([ "$3" -gt 1 ] && echo ",qpairs=$3")" ;;
    af_xdp) echo "net_af_xdp$1,iface=$2,start_queue=0,queue_count=$3,busy_budget=0" ;;
    *) fail "GW_VDEV=${GW_VDEV}: af_packet or af_xdp" ;;
  esac
}

# write_gw_conf [workers] [hugepages true|false] -> $WORK/gw.conf
# With GW_STATIC=0 the gateway has no tunnels of its own: dpctld brings them. GW_KERNEL_IF=NAME gives the
# underlay port a kernel path (a TAP of that name in the gateway namespace); GW_DIRECT=true turns on direct mode
# for visitors; GW_CRYPTO='engine = "..."; device = "...";' is dpgw.crypto (default: absent). GW_PUBLIC_TAP=1
# makes the public port a DPDK TAP (net_tap) that public_tap_bridge joins to the client's link: af_packet's
# fanout (DPDK sets PACKET_FANOUT_FLAG_DEFRAG) reassembles IPv4 fragments in the kernel and cuts what exceeds its
# 2048-byte frames, so tests of dpgw's own reassembly need fragments to reach it whole.
# GW_VDEV=af_xdp drives gc and ga through net_af_xdp instead of net_af_packet (gw_vdev).
# GW_UNDERLAY_GATEWAY=IP: the underlay port's next hop for addresses beyond its subnet.
write_gw_conf() {
  local workers=${1:-1} huge=${2:-false} kif="" pub crypto=""
  [ -n "${GW_CRYPTO:-}" ] && crypto="crypto = { $GW_CRYPTO };"
  [ -n "${GW_KERNEL_IF:-}" ] && kif=" kernel_interface = \"$GW_KERNEL_IF\";"
  [ -n "${GW_UNDERLAY_GATEWAY:-}" ] && kif="$kif gateway = \"$GW_UNDERLAY_GATEWAY\";"
  pub=$(gw_vdev 0 gc "$workers")
  [ "${GW_PUBLIC_TAP:-0}" = 1 ] && pub="net_tap0,iface=dptap"
  cat > "$WORK/gw.conf" <<CONF
dpgw = {
  workers = $workers;
  eal = { memory_mb = 512; hugepages = $huge; file_prefix = "$DPT_PREFIX"; log_level = "*:notice"; };
  ports = (
    { name = "public"; device = "$pub"; address = "$GW_PUBLIC/24"; },
    { name = "underlay"; device = "$(gw_vdev 1 ga "$workers")"; address = "$GW_UNDERLAY/24";$kif }
  );
  idle = { backoff = true; max_sleep_us = 100; };
  control_socket = "$WORK/dpgw.sock";
  session_timeout = ${GW_SESSION_TIMEOUT:-6};
  direct_mode = ${GW_DIRECT:-false};
  $crypto
};
CONF
  if [ "${GW_STATIC:-1}" = 1 ]; then
    cat >> "$WORK/gw.conf" <<CONF
tunnels = ( { id = "$TUNNEL_ID"; name = "iperf";
              peers = ( { index = 1; psk_file = "$WORK/psk"; } ); } );
entry_points = (
  { proto = "tcp"; port = 5201; tunnel = "iperf"; target = "$AGENT_IP:5201"; },
  { proto = "udp"; port = 5201; tunnel = "iperf"; target = "$AGENT_IP:5201"; keepalive = true; },
  { proto = "udp"; port = 5300; tunnel = "iperf"; target = "$AGENT_IP:5300"; keepalive = true; },
  { proto = "tcp"; port = 5202; tunnel = "iperf"; target = "$LAN_HOST:5202"; }
);
CONF
  fi
  echo "$PSK" > "$WORK/psk"
}

gw_stats() { "$DPGW" stats --socket "$WORK/dpgw.sock" --json; }

# ignores_sigpipe PID: the process has SIGPIPE ignored (/proc/PID/status SigIgn, bit 13 - 1), as every daemon must
# (common/broken_pipes.hpp: a peer closing as the daemon writes must not end it without a word). Fails the test when
# the process is gone. sigpipe_inherited: this shell already ignores SIGPIPE (a runner started that way), so its
# children would too whatever their code does, and the check cannot tell.
ignores_sigpipe() {
  local mask
  mask=$(awk '/^SigIgn:/ { print $2 }' "/proc/$1/status" 2> /dev/null) || true
  [ -n "$mask" ] || fail "process $1 is gone (checking its SIGPIPE disposition)"
  (( 0x$mask & 0x1000 ))
}
sigpipe_inherited() { ignores_sigpipe $$; }

# The control plane: dpctld with dpctl's API socket and state file in $WORK.
DPCTLD=$BUILD/control/dpctld
DPCTL=$BUILD/control/dpctl
dpctl() { "$DPCTL" --socket "$WORK/dpctld.sock" "$@"; }

# write_dpctld_conf AGENT_LISTEN -> $WORK/dpctld.conf, with no tunnels (dpctl adds them); PKI from pki.sh.
# DPCTLD_QUIC_LISTEN=IP:PORT adds agent_quic_listen (agents over QUIC); DPCTLD_MASQUE_TCP_LISTEN=IP:PORT adds
# masque_tcp_listen (CONNECT-UDP over HTTP/2 and HTTP/1.1).
write_dpctld_conf() {
  local quic=""
  [ -n "${DPCTLD_QUIC_LISTEN:-}" ] && quic="agent_quic_listen = \"$DPCTLD_QUIC_LISTEN\";"
  [ -n "${DPCTLD_MASQUE_TCP_LISTEN:-}" ] && quic="$quic masque_tcp_listen = \"$DPCTLD_MASQUE_TCP_LISTEN\";"
  cat > "$WORK/dpctld.conf" <<CONF
dpctld = {
  agent_listen = "$1";
  $quic
  tls = { ca = "$WORK/pki/ca.pem"; cert = "$WORK/pki/server.pem"; key = "$WORK/pki/server.key"; };
  failure_log = "$WORK/failures.jsonl";
  metrics_listen = "127.0.0.1:9108";
  api_socket = "$WORK/dpctld.sock";
  state_file = "$WORK/state/dpctld.state";
  gateway_socket = "$WORK/dpgw.sock";
  gateway_endpoint = "$GW_UNDERLAY:51900";
  keepalive = 0.5;
};
CONF
}

# start_dpctld NAMESPACE: runs dpctld there and waits for its API socket; sets DPCTLD_PID
start_dpctld() {
  ip netns exec "$1" "$DPCTLD" --config "$WORK/dpctld.conf" >> "$WORK/dpctld.out" 2>> "$WORK/dpctld.log" &
  DPCTLD_PID=$!
  PIDS+=("$DPCTLD_PID")
  wait_for 10 "dpctld API socket" dpctl stats
}

start_gw() {
  ip netns exec "$NS_G" "$DPGW" --config "$WORK/gw.conf" ${GW_ARGS:-} > "$WORK/dpgw.out" 2> "$WORK/dpgw.log" &
  GW_PID=$!
  PIDS+=("$GW_PID")
  for _ in $(seq 1 100); do
    gw_stats > /dev/null 2>&1 && return 0
    kill -0 "$GW_PID" 2>/dev/null || fail "dpgw exited during start-up"
    sleep 0.2
  done
  fail "dpgw stats socket did not come up within 20 s"
}

# With GW_PUBLIC_TAP=1, after start_gw: a bridge in the gateway namespace joins the client's link (gc) to dpgw's
# TAP, whose kernel side gets a MAC of its own (the bridge must not take dpgw's MAC for a local one).
public_tap_bridge() {
  ip netns exec "$NS_G" nft delete chain netdev dptun_dpdk_owned gc
  ip -n "$NS_G" link set dptap address 02:00:00:00:0d:01
  ip -n "$NS_G" link add dpbr type bridge
  ip -n "$NS_G" link set gc master dpbr
  ip -n "$NS_G" link set dptap master dpbr
  ip -n "$NS_G" link set dptap up
  ip -n "$NS_G" link set dpbr up
  wait_for 10 "the client reaching dpgw through the TAP" ip netns exec "$NS_C" ping -c 1 -W 1 "$GW_PUBLIC"
}

stop_gw() {
  kill "$GW_PID" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 0.1; done
  wait "$GW_PID" 2>/dev/null || true
}

# start_agent NAME [extra dpagent args...]; sets AGENT_PID
start_agent() {
  local name=$1; shift
  ip netns exec "$NS_A" "$DPAGENT" --gateway "$GW_UNDERLAY:51900" --session 1 --psk-file "$WORK/psk" \
    --keepalive 1 "$@" > "$WORK/$name.out" 2> "$WORK/$name.log" &
  AGENT_PID=$!
  PIDS+=("$AGENT_PID")
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls every 0.2 s
wait_for() {
  local secs=$1 what=$2; shift 2
  local tries=$((secs * 5))
  for _ in $(seq 1 "$tries"); do
    "$@" > /dev/null 2>&1 && return 0
    sleep 0.2
  done
  fail "timed out after ${secs}s waiting for: $what"
}

tunnel_up() { gw_stats | jq -e '.tunnels[0].sessions[0].last_rx_age_s != null and .tunnels[0].sessions[0].last_rx_age_s < 2' > /dev/null; }

start_iperf_server() {
  ip netns exec "$NS_A" iperf3 -s -J -B "$AGENT_IP" > "$WORK/iperf3-server.log" 2>&1 &
  PIDS+=("$!")
  wait_for 10 "iperf3 server" ip netns exec "$NS_A" bash -c "ss -ltn | grep -q ':5201 '"
}

# iperf_client OUTFILE ARGS...: runs iperf3 -J in the client namespace, bounded in time
iperf_client() {
  local out=$1; shift
  timeout 60 ip netns exec "$NS_C" iperf3 -J "$@" > "$out" 2> "$out.err" || {
    cat "$out.err" >&2
    jq -r '.error // empty' "$out" >&2 || true
    fail "iperf3 $* failed"
  }
}

json_get() { jq -r "$2" "$1"; }

# start_nginx NS: runs nginx (Debian's) in namespace NS with the http-block directives read from stdin (servers,
# certificates); its files stay under $WORK/nginx.
start_nginx() {
  mkdir -p "$WORK/nginx"
  {
    cat <<NGINX
daemon off;
user root;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 512; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx;
NGINX
    cat
    echo "}"
  } > "$WORK/nginx/nginx.conf"
  ip netns exec "$1" nginx -c "$WORK/nginx/nginx.conf" > "$WORK/nginx.log" 2>&1 &
  PIDS+=("$!")
}
