#!/usr/bin/env bash
# Installs everything dptun needs to build, test, demo, fuzz and benchmark.
# Idempotent, apt only: packages already present are not touched. Exit status: 0 when every package is
# installed afterwards, 1 when something is missing and cannot be installed (not root, apt failed).
# An existing /usr/sbin/policy-rc.d is left as it is; one this script creates (so that packages with
# services, nginx and coturn, do not start them on the host) is removed on every way out.
# The services of the packages this run installed are also disabled at boot (systemd hosts): the tests start their
# own nginx and turnserver, and nothing of dptun's may listen on the host on its own.
# DPTUN_POLICY_RC and DPTUN_SYSTEMD_DIR override the policy path and systemd's run directory
# (tests/scripts/test_install_deps.sh; the system is not touched).
set -euo pipefail

policy=${DPTUN_POLICY_RC:-/usr/sbin/policy-rc.d}
systemd_dir=${DPTUN_SYSTEMD_DIR:-/run/systemd/system}

PKGS=(
  build-essential g++ pkg-config meson ninja-build ccache
  libdpdk-dev dpdk dpdk-dev dpdk-doc wireguard-go wireguard-tools
  libhyperscan-dev libconfig++-dev libcmocka-dev libssl-dev libipsec-mb-dev nlohmann-json3-dev
  libnuma-dev libpcap-dev
  clang-14 libclang-rt-14-dev libfuzzer-14-dev lld
  iperf3 iproute2 iputils-ping ethtool jq procps kmod openssl tcpdump python3 python3-cryptography nftables valgrind
  libngtcp2-dev libngtcp2-crypto-gnutls-dev libgnutls28-dev libnghttp3-dev libnghttp2-dev libhttp-parser-dev python3-h2
  ngtcp2-client ngtcp2-server nginx-light curl hping3 bind9-dnsutils libmicrohttpd-dev dnsmasq-base chrony socat
  zlib1g-dev stun-client coturn
)

missing=()
for p in "${PKGS[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages are installed"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: run as root to install: ${missing[*]}" >&2
  exit 1
fi

own_policy=0
remove_own_policy() {
  if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi
}
trap remove_own_policy EXIT

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  own_policy=1
fi
if ! apt-get update -qq; then
  echo "install-deps: apt-get update failed" >&2
  exit 1
fi
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
  echo "install-deps: apt-get install failed for: ${missing[*]}" >&2
  exit 1
fi
services=()
for p in "${missing[@]}"; do
  case "$p" in
    nginx-light) services+=(nginx) ;;
    coturn) services+=(coturn) ;;
  esac
done
if [ ${#services[@]} -gt 0 ] && [ -d "$systemd_dir" ]; then
  systemctl disable --quiet "${services[@]}" ||
    echo "install-deps: could not disable ${services[*]}: they may start at the next boot" >&2
fi
echo "install-deps: done"
exit 0
