#!/usr/bin/env bash
# Installs everything dptun needs to build, test, demo and benchmark.
# Idempotent, apt only: packages already present are not touched.
set -euo pipefail

PKGS=(
  build-essential g++ pkg-config meson ninja-build
  libdpdk-dev dpdk
  libhyperscan-dev libconfig++-dev libcmocka-dev libssl-dev libipsec-mb-dev nlohmann-json3-dev
  libnuma-dev libpcap-dev
  iperf3 iproute2 iputils-ping ethtool jq procps kmod openssl tcpdump python3 python3-cryptography nftables valgrind
  ngtcp2-client ngtcp2-server nginx-light curl hping3
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Packages with services (nginx) must not start them on the host: tests run their own, in namespaces.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && own_policy=1
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" || { [ $own_policy = 1 ] && rm -f "$policy"; exit 1; }
  [ $own_policy = 1 ] && rm -f "$policy"
fi
