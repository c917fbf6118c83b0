#!/usr/bin/env bash
# dpgw's encap pipeline against DPDK's IPsec security gateway (examples/ipsec-secgw, built here from the source
# Debian's dpdk-doc ships), in the same run, fed identically: the same pcap of client UDP packets replayed by
# net_pcap (infinite_rx=1) on port 0, encrypted traffic out of port 1 (net_pcap without a TX file: packets are
# counted and dropped), AES-128-GCM through intel-ipsec-mb (ipsec-secgw via crypto_aesni_gcm; dpgw twice: its
# default ipsec-mb engine and its cryptodev engine on the same crypto_aesni_gcm), the packet work on one core
# (SECGW_CPU). Each process's output is counted the same way: the TX packets of its port 1, read from its DPDK
# telemetry socket. The processes run one after the other (never two at once), SECGW_ROUNDS alternating rounds,
# medians.
# Before measuring, each configuration runs once over a finite copy of the input with a TX pcap, and every packet
# it sent is decrypted (bench/vdev_feed.py check): both really encrypt the clients' packets.
# docs/performance.md ("Against a real peer") describes the two gateways' work and the figures.
# Skips (exit 0, a line saying why) when something it needs is missing. Bounded: every process runs under timeout.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
ROUNDS=${SECGW_ROUNDS:-3}
MEASURE=${SECGW_SECONDS:-3}      # seconds counted per run
WARMUP=${SECGW_WARMUP:-1}        # seconds after the first packet out before counting
SIZES=${SECGW_SIZES:-"64 1400"}  # client frames on the wire (Ethernet, without FCS), as bench_gateway's
HUGE=${SECGW_HUGEPAGES:-0}       # 1: both on hugepages (scripts/hugepages.sh first); 0: both --no-huge
RESULTS=${RESULTS:-}             # a file JSON lines are appended to (bench/run.sh passes its own)
SRC=${SECGW_SRC:-/usr/share/dpdk/examples}
FEED="$ROOT/bench/vdev_feed.py"
DPGW="$BUILD/dataplane/dpgw"

skip() {
  echo "ipsec-secgw comparison skipped: $*"
  exit 0
}
[ -f "$SRC/ipsec-secgw/ipsec-secgw.c" ] || skip "no ipsec-secgw source in $SRC (Debian package dpdk-doc)"
pkg-config --exists libdpdk || skip "pkg-config finds no libdpdk (Debian package libdpdk-dev)"
command -v make > /dev/null || skip "no make"
python3 -c 'import cryptography' 2> /dev/null || skip "python3 cannot import cryptography (python3-cryptography)"
[ -x "$DPGW" ] || skip "no $DPGW (make all first)"
CPU=${SECGW_CPU:-$(( $(nproc) > 1 ? 1 : 0 ))}  # the core that does the packet work, in both
MAIN_CPU=0                                     # dpgw's main lcore (control: sleeps while there is no work)

# --- ipsec-secgw, built once per DPDK version into the build tree ---------------------------------------------
# One change to the example: its default port configuration asks for RX checksum offload, which no vdev has
# (net_pcap, net_ring, net_null, net_memif); ipsec-secgw never reads the checksum flags, so the offload is dropped.
SG_DIR="$BUILD/bench/ipsec-secgw"
SG_BIN="$SG_DIR/ipsec-secgw/build/ipsec-secgw"
doc_version=$(dpkg-query -W -f='${Version}' dpdk-doc 2> /dev/null || echo unknown)
stamp="$doc_version $(pkg-config --modversion libdpdk) rx-cksum-off"
if [ ! -x "$SG_BIN" ] || [ "$(cat "$SG_DIR/stamp" 2> /dev/null)" != "$stamp" ]; then
  echo "building ipsec-secgw from $SRC/ipsec-secgw into $SG_DIR"
  rm -rf "$SG_DIR"
  mkdir -p "$SG_DIR"
  cp -r "$SRC/ipsec-secgw" "$SRC/common" "$SG_DIR/"
  note='dptun bench: vdevs have no RX checksum offload'
  sed -i "s|^\t\t\.offloads = RTE_ETH_RX_OFFLOAD_CHECKSUM,\$|\t\t.offloads = 0, /* $note */|" \
    "$SG_DIR/ipsec-secgw/ipsec-secgw.c"
  grep -qF "$note" "$SG_DIR/ipsec-secgw/ipsec-secgw.c" ||
    skip "ipsec-secgw.c changed: its port configuration's RX checksum offload line was not found"
  if ! make -C "$SG_DIR/ipsec-secgw" > "$SG_DIR/build.log" 2>&1; then
    tail -5 "$SG_DIR/build.log"
    skip "ipsec-secgw did not build (log: $SG_DIR/build.log)"
  fi
  echo "$stamp" > "$SG_DIR/stamp"
fi

WORK=$(mktemp -d /tmp/dptun-secgw.XXXXXX)
PID=""
SG_PREFIX="dptun_secgw_$$"
GW_PREFIX="dptun_dpgw_$$"
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2> /dev/null; then
    kill -TERM "$PID" 2> /dev/null || true
    wait "$PID" 2> /dev/null || true
  fi
  rm -rf "$WORK" "/var/run/dpdk/$SG_PREFIX" "/var/run/dpdk/$GW_PREFIX"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the input and the two configurations ----------------------------------------------------------------------
SA_KEY=07:07:07:07:07:07:07:07:07:07:07:07:07:07:07:07:5a:5a:5a:5a  # AES-128 key, then the 4-byte salt (RFC 4106)
PSK=$(printf '07%.0s' $(seq 32))                                   # dpgw's peer key (32 bytes)
python3 "$FEED" arp "$WORK/arp.pcap"
for size in $SIZES; do
  python3 "$FEED" clients "$WORK/c$size.pcap" "$size" 256
  python3 "$FEED" clients "$WORK/check$size.pcap" "$size" 256 20 100000
done

# Outbound: clients' packets to 10.99.1.0/24 (port 0, protected) leave ESP tunnel mode to 10.99.2.2 on port 1.
# (ipsec-secgw wants an inbound SA and policy too when a port is unprotected; no ESP comes in here.)
write_sa() {  # $1: outbound SA type (no-offload = cryptodev enqueue/dequeue; cpu-crypto = synchronous CPU crypto)
  local type=""
  [ "$1" = cpu-crypto ] && type=" type cpu-crypto"
  cat > "$WORK/sa-$1.cfg" << CFG
sp ipv4 out esp protect 5 pri 1 dst 10.99.1.0/24 sport 0:65535 dport 0:65535
sp ipv4 in esp protect 6 pri 1 src 10.99.1.0/24 sport 0:65535 dport 0:65535
sa out 5 aead_algo aes-128-gcm aead_key $SA_KEY mode ipv4-tunnel src 10.99.2.1 dst 10.99.2.2$type
sa in 6 aead_algo aes-128-gcm aead_key $SA_KEY mode ipv4-tunnel src 10.99.2.2 dst 10.99.2.1
rt ipv4 dst 10.99.2.0/24 port 1
rt ipv4 dst 10.99.0.0/16 port 0
neigh port 1 02:00:00:00:00:09
neigh port 0 02:00:00:00:00:02
CFG
}
write_sa no-offload
write_sa cpu-crypto

# dpgw: a static tunnel whose peer (the agent 10.99.2.2:51900) is known up front, and a UDP entry point 5201 to a
# target behind it. The ARP requests on port 1 tell dpgw the agent's MAC.
write_gw() {  # $1: name, $2: port 0 device, $3: port 1 device, $4: crypto engine
  local eal_mem="hugepages = false; memory_mb = 1024;"
  [ "$HUGE" = 1 ] && eal_mem="hugepages = true; memory_mb = 1024;"
  cat > "$WORK/$1.conf" << CONF
dpgw = {
  workers = 1;
  eal = { $eal_mem file_prefix = "$GW_PREFIX"; lcores = "0@$MAIN_CPU,1@$CPU"; log_level = "*:notice"; };
  ports = (
    { name = "public";   device = "$2"; address = "10.99.1.1/24"; },
    { name = "underlay"; device = "$3"; address = "10.99.2.1/24"; }
  );
  control_socket = "$WORK/dpgw.sock";
  metrics_listen = "";
  crypto = { engine = "$4"; device = "crypto_aesni_gcm0"; cipher = "aes-128-gcm"; };
};
tunnels = ( { id = "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f"; name = "bench";
              peers = ( { index = 1; psk = "$PSK"; endpoint = "10.99.2.2:51900"; } ); } );
entry_points = ( { proto = "udp"; port = 5201; tunnel = "bench"; target = "10.99.2.2:5201"; keepalive = true;
                   ttl = 600; } );
CONF
}

# start KIND NAME PORT0 PORT1: runs ipsec-secgw (KIND no-offload|cpu-crypto) or dpgw (KIND dpgw: its default
# engine, ipsec-mb; dpgw-cryptodev: DPDK's CPU crypto on crypto_aesni_gcm0, as ipsec-secgw's) in the background (PID).
start() {
  local kind=$1 name=$2 p0=$3 p1=$4 limit=$((WARMUP + MEASURE + 60))
  if [ "${kind%-cryptodev}" = dpgw ]; then
    local engine=ipsec-mb
    [ "$kind" = dpgw-cryptodev ] && engine=cryptodev
    write_gw "$name" "$p0" "$p1" "$engine"
    timeout -k 5 "$limit" "$DPGW" --config "$WORK/$name.conf" > "$WORK/$name.log" 2>&1 &
  else
    local mem=(--no-huge -m 1024) lib=()
    [ "$HUGE" = 1 ] && mem=(-m 1024)
    [ "$kind" = cpu-crypto ] && lib=(-l)  # CPU crypto exists only on the librte_ipsec path
    timeout -k 5 "$limit" "$SG_BIN" -l "$CPU" "${mem[@]}" --no-pci --file-prefix "$SG_PREFIX" \
      --vdev "$p0" --vdev "$p1" --vdev crypto_aesni_gcm0 --log-level '*:notice' -- \
      -p 0x3 -P -u 0x2 --config "(0,0,$CPU),(1,0,$CPU)" -f "$WORK/sa-$kind.cfg" "${lib[@]}" \
      > "$WORK/$name.log" 2>&1 &
  fi
  PID=$!
}
stop() {
  kill -TERM "$PID" 2> /dev/null || true
  wait "$PID" 2> /dev/null || true
  PID=""
  rm -rf "/var/run/dpdk/$SG_PREFIX" "/var/run/dpdk/$GW_PREFIX"
}
is_dpgw() { [ "${1%-cryptodev}" = dpgw ]; }
prefix_of() { is_dpgw "$1" && echo "$GW_PREFIX" || echo "$SG_PREFIX"; }
label() {
  case $1 in
    no-offload) echo "ipsec-secgw (cryptodev enqueue/dequeue)" ;;
    cpu-crypto) echo "ipsec-secgw -l, cpu-crypto" ;;
    dpgw) echo "dpgw (ipsec-mb)" ;;
    dpgw-cryptodev) echo "dpgw (cryptodev)" ;;
  esac
}

KINDS=(no-offload cpu-crypto dpgw dpgw-cryptodev)
# check KIND SIZE: the finite input through, every packet out decrypted.
check() {
  local kind=$1 size=$2 out="$WORK/out-$1-$2.pcap" mode key
  start "$kind" "check-$kind" "net_pcap0,rx_pcap=$WORK/check$size.pcap" \
    "net_pcap1,rx_pcap=$WORK/arp.pcap,tx_pcap=$out"
  local n=0 last=-1
  for _ in $(seq 1 60); do  # until its output stops growing, at most 18 s
    sleep 0.3
    n=$(stat -c %s "$out" 2> /dev/null || echo 0)
    [ "$n" -gt 24 ] && [ "$n" = "$last" ] && break
    last=$n
    kill -0 "$PID" 2> /dev/null || break
  done
  if ! kill -0 "$PID" 2> /dev/null; then
    tail -5 "$WORK/check-$kind.log"
    is_dpgw "$kind" && { echo "dpgw exited during the check run" >&2; exit 1; }
    skip "$(label "$kind") exited during its check run (log above)"
  fi
  stop
  if is_dpgw "$kind"; then mode=relay key=$PSK; else mode=esp key=${SA_KEY//:/}; fi
  if ! python3 "$FEED" check "$mode" "$out" "$WORK/check$size.pcap" "$key" > "$WORK/check.json"; then
    cat "$WORK/check.json"
    echo "$(label "$kind") at $size B: what it sent did not decrypt to the clients' packets" >&2
    exit 1
  fi
  echo "  check $(label "$kind"), $size B: $(jq -r \
    '"\(.decrypted) packets decrypted, \(.clients_seen) of \(.clients) clients"' "$WORK/check.json")"
}

# measure KIND SIZE -> Mpps in MEASURED (not in a subshell: the EXIT trap must see the process it starts)
MEASURED=""
measure() {
  local kind=$1 size=$2
  start "$kind" "run-$kind-$size" "net_pcap0,rx_pcap=$WORK/c$size.pcap,infinite_rx=1" "net_pcap1,rx_pcap=$WORK/arp.pcap"
  local r
  if ! r=$(python3 "$FEED" rate "$(prefix_of "$kind")" 1 "$WARMUP" "$MEASURE"); then
    tail -5 "$WORK/run-$kind-$size.log" >&2
    stop
    return 1
  fi
  stop
  MEASURED=$(jq -r .mpps <<< "$r")
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "cores: packet work on CPU $CPU (one core each), dpgw's main lcore on CPU $MAIN_CPU;" \
  "$([ "$HUGE" = 1 ] && echo hugepages || echo --no-huge); $ROUNDS rounds of ${MEASURE} s per gateway and size"
for size in $SIZES; do
  for kind in "${KINDS[@]}"; do check "$kind" "$size"; done
done

declare -A MPPS
for size in $SIZES; do
  for ((round = 1; round <= ROUNDS; round++)); do
    for kind in "${KINDS[@]}"; do
      if ! measure "$kind" "$size"; then
        is_dpgw "$kind" && { echo "dpgw: no rate measured" >&2; exit 1; }
        skip "$(label "$kind") sent nothing measurable (log above)"
      fi
      MPPS[$kind,$size]="${MPPS[$kind,$size]:+${MPPS[$kind,$size]} }$MEASURED"
    done
  done
done

printf '%-6s %11s %15s %11s %16s %11s %10s %10s\n' frame "secgw Mpps" "secgw-cpu Mpps" "dpgw Mpps" \
  "dpgw-cdev Mpps" "dpgw/secgw" "dpgw/cpu" "cdev/secgw"
for size in $SIZES; do
  # shellcheck disable=SC2086
  a=$(median ${MPPS[no-offload,$size]}) b=$(median ${MPPS[cpu-crypto,$size]}) g=$(median ${MPPS[dpgw,$size]}) \
    d=$(median ${MPPS[dpgw-cryptodev,$size]})
  printf '%-6s %11.2f %15.2f %11.2f %16.2f %11.2f %10.2f %10.2f\n' "$size" "$a" "$b" "$g" "$d" "$(jq -n "$g / $a")" \
    "$(jq -n "$g / $b")" "$(jq -n "$d / $a")"
  line=$(jq -cn --argjson size "$size" --argjson a "$a" --argjson b "$b" --argjson g "$g" --argjson d "$d" \
    --arg ra "${MPPS[no-offload,$size]}" --arg rb "${MPPS[cpu-crypto,$size]}" --arg rg "${MPPS[dpgw,$size]}" \
    --arg rd "${MPPS[dpgw-cryptodev,$size]}" \
    '{bench: "secgw_peer", frame_bytes: $size, secgw_mpps: $a, secgw_cpu_crypto_mpps: $b, dpgw_mpps: $g,
      dpgw_cryptodev_mpps: $d, ratio: ($g / $a), ratio_cpu_crypto: ($g / $b), ratio_cryptodev: ($d / $a),
      rounds: {secgw: $ra, secgw_cpu_crypto: $rb, dpgw: $rg, dpgw_cryptodev: $rd}}')
  if [ -n "$RESULTS" ]; then echo "$line" >> "$RESULTS"; fi
done
