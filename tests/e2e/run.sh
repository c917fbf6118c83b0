#!/usr/bin/env bash
# Runs every end-to-end test (tests/e2e/test_*.sh) one after the other; needs root (namespaces, af_packet).
# Each test's output is also kept in E2E_LOG_DIR (default: a new /tmp/dptun-e2e-logs.* directory); at the end, the
# reasons of the failed tests are printed again, last, so that the tail of a CI log says what failed and why.
set -uo pipefail
dir=$(cd "$(dirname "$0")" && pwd)
[ "$(id -u)" -eq 0 ] || { echo "e2e tests need root (network namespaces, DPDK af_packet)" >&2; exit 1; }
logdir=${E2E_LOG_DIR:-$(mktemp -d /tmp/dptun-e2e-logs.XXXXXX)}
mkdir -p "$logdir"
failed=()
for t in "$dir"/test_*.sh; do
  name=$(basename "$t" .sh)
  echo "=== $name"
  start=$(date +%s)
  if timeout 600 bash "$t" 2>&1 | tee "$logdir/$name.log"; then
    echo "=== $name passed in $(( $(date +%s) - start )) s"
  else
    echo "=== $name FAILED after $(( $(date +%s) - start )) s"
    failed+=("$name")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  for name in "${failed[@]}"; do
    log=$logdir/$name.log
    echo "---- $name: the steps before its failure, and the failure (whole log: $log)"
    first=$(grep -n -m1 -E '\] FAIL: |^timeout|Terminated' "$log" | cut -d: -f1)
    if [ -n "$first" ]; then
      head -n "$first" "$log" | tail -n 12
    else
      echo "(no FAIL line: killed by the 600 s timeout or exited early; its last lines)"
      tail -n 12 "$log"
    fi
  done
  echo "e2e failures: ${failed[*]}"
  exit 1
fi
echo "all e2e tests passed"
