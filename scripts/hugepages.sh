#!/usr/bin/env bash
# Reserves 2 MB hugepages and mounts hugetlbfs at /dev/hugepages (idempotent).
# usage: hugepages.sh [PAGES]   default 512 (1 GiB); 0 does nothing (dpgw with eal.hugepages = false, the
# default, needs none). Prints the number of pages now available.
set -euo pipefail
pages=${1:-512}
[[ "$pages" =~ ^[0-9]+$ ]] || { echo "hugepages.sh: PAGES must be a number, got '$pages'" >&2; exit 2; }
[ "$pages" -gt 0 ] || exit 0
mnt=/dev/hugepages
mkdir -p "$mnt"
if ! mountpoint -q "$mnt"; then
  mount -t hugetlbfs nodev "$mnt"
fi
nr=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
cur=$(cat "$nr")
if [ "$cur" -lt "$pages" ]; then
  echo "$pages" > "$nr"
fi
free=$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages)
echo "$free"
