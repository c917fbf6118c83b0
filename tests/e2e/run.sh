#!/usr/bin/env bash
# Runs every end-to-end test (tests/e2e/test_*.sh) one after the other; needs root (namespaces, af_packet).
set -uo pipefail
dir=$(cd "$(dirname "$0")" && pwd)
[ "$(id -u)" -eq 0 ] || { echo "e2e tests need root (network namespaces, DPDK af_packet)" >&2; exit 1; }
failed=()
for t in "$dir"/test_*.sh; do
  name=$(basename "$t" .sh)
  echo "=== $name"
  start=$(date +%s)
  if timeout 600 bash "$t"; then
    echo "=== $name passed in $(( $(date +%s) - start )) s"
  else
    echo "=== $name FAILED"
    failed+=("$name")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "e2e failures: ${failed[*]}"
  exit 1
fi
echo "all e2e tests passed"
