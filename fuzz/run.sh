#!/usr/bin/env bash
# `make fuzz`: runs each libFuzzer harness of $FUZZ_BUILD (built by `ninja -C $FUZZ_BUILD fuzzers`) for a bounded
# time, one after the other, starting from its committed corpus fuzz/corpus/<harness>/ (not pending/), and
# prints what each did. docs/testing.md, "Fuzzing".
#   FUZZ_SECONDS  seconds per harness (default 60)
#   FUZZERS       which harnesses, separated by spaces (default: all of fuzz/corpus/*)
#   FUZZ_MERGE=1  afterwards, add the inputs that found new coverage to fuzz/corpus/<harness>/ (to commit)
#   FUZZ_TIMEOUT  seconds one input may take before it counts as a hang (default 10)
#   FUZZ_ARGS     more libFuzzer flags, e.g. "-jobs=2 -workers=2" or "-only_ascii=1"
# Work files (the growing corpus, crash inputs, logs) stay in $FUZZ_BUILD/fuzz-work/<harness>/.
# Exit status 1 when a harness found something: its input is in fuzz-work/<harness>/crashes/.
set -uo pipefail
cd "$(dirname "$0")/.."
FUZZ_BUILD=${FUZZ_BUILD:-build-san}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-10}
FUZZ_MERGE=${FUZZ_MERGE:-0}
FUZZ_ARGS=${FUZZ_ARGS:-}
if [[ -z "${FUZZERS:-}" ]]; then
  FUZZERS=$(cd fuzz/corpus && ls -d */ | tr -d /)
fi
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/fuzz/lsan.supp:print_suppressions=0}

# Longest input per harness: past the limits the parser enforces (ClientHello and HTTP head 32 kB, a QUIC
# connection's datagrams), 4 kB elsewhere.
max_len() {
  case "$1" in
    client_hello|http_host) echo 40000 ;;
    quic_initial|relay_frame|quic_short_header) echo 8192 ;;
    quic_handshake) echo 2048 ;;
    *) echo 4096 ;;
  esac
}

summary=()
found=0
for h in $FUZZERS; do
  bin="$FUZZ_BUILD/fuzz/fuzz_$h"
  if [[ ! -x "$bin" ]]; then
    echo "run.sh: $bin missing (ninja -C $FUZZ_BUILD fuzzers)" >&2
    exit 2
  fi
  work="$FUZZ_BUILD/fuzz-work/$h"
  mkdir -p "$work/corpus" "$work/crashes"
  # The committed corpus seeds the work corpus; libFuzzer adds to the work corpus only.
  find "fuzz/corpus/$h" -maxdepth 1 -type f -exec cp -n -t "$work/corpus" {} +
  dict=()
  [[ -f "fuzz/dict/$h.dict" ]] && dict=(-dict="fuzz/dict/$h.dict")
  echo "=== $h: $FUZZ_SECONDS s"
  # shellcheck disable=SC2086  # FUZZ_ARGS is a list of flags
  "$bin" -max_total_time="$FUZZ_SECONDS" -timeout="$FUZZ_TIMEOUT" -rss_limit_mb=2048 -max_len="$(max_len "$h")" \
    -print_final_stats=1 -artifact_prefix="$work/crashes/" "${dict[@]}" $FUZZ_ARGS "$work/corpus" \
    >"$work/log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/log" | tail -1)
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$work/log" | tail -1)
  corpus=$(find "$work/corpus" -type f | wc -l)
  if [[ $rc -ne 0 ]]; then
    found=1
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error|.*fuzz property violated|.*deadly signal|.*Test unit written)' \
      "$work/log" | head -8
    summary+=("$(printf '%-18s FOUND SOMETHING (exit %d): see %s/log, input in %s/crashes/' "$h" "$rc" "$work" "$work")")
  else
    summary+=("$(printf '%-18s ok  %10s execs  %7s exec/s  %-20s corpus %d' "$h" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$corpus")")
  fi
  if [[ "$FUZZ_MERGE" == 1 && $rc -eq 0 ]]; then
    # Merge into a copy of the committed corpus (never into fuzz/corpus itself: pending/ must not be read), then
    # copy over what the merge added.
    rm -rf "$work/merge" && mkdir -p "$work/merge"
    find "fuzz/corpus/$h" -maxdepth 1 -type f -exec cp -t "$work/merge" {} +
    "$bin" -merge=1 -timeout="$FUZZ_TIMEOUT" -max_len="$(max_len "$h")" "$work/merge" "$work/corpus" >"$work/merge.log" 2>&1
    added=0
    for f in "$work/merge"/*; do
      [[ -e "fuzz/corpus/$h/$(basename "$f")" ]] && continue
      cp "$f" "fuzz/corpus/$h/" && added=$((added + 1))
    done
    summary+=("$(printf '%-18s merged: %d new inputs in fuzz/corpus/%s/' "" "$added" "$h")")
  fi
done
echo
printf '%s\n' "${summary[@]}"
exit $found
