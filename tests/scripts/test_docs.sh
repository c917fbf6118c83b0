#!/usr/bin/env bash
# The docs name what the programs can say: every drop reason `dpgw stats` can print is in docs/operations.md's
# table, every handshake failure reason, registration refusal reason and agent-side TLS failure in
# docs/control-plane.md, every control message and command name in either; dataplane/README.md names every
# file of the data path. The names are read from the sources, so a new reason or name without a line in the
# docs, or a new stage file missing from the README, fails.
set -uo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
fails=0
# names FILE: the string each `case ...: return "name";` of FILE returns
names() { grep -oE 'case [A-Za-z:]+: return "[a-z0-9_]+";' "$here/$1" | sed -E 's/.*return "([a-z0-9_]+)";/\1/' | sort -u; }
check() {  # check WHAT SOURCE DOC
  local n=0 missing=() tables
  tables=$(grep -E '^\|' "$here/$3")
  for name in $(names "$2"); do
    n=$((n + 1))
    grep -qE "(^|[^a-z0-9_])$name([^a-z0-9_]|$)" <<< "$tables" || missing+=("$name")
  done
  if [ "$n" -lt 3 ]; then echo "FAIL $1: read only $n names from $2"; fails=$((fails + 1));
  elif [ ${#missing[@]} -gt 0 ]; then echo "FAIL $1 missing from $3's tables: ${missing[*]}"; fails=$((fails + 1));
  else echo "ok   $1: all $n in $3"; fi
}
check "drop reasons" dataplane/tables/counters.cpp docs/operations.md
check "handshake failure reasons" control/handshake_failure.cpp docs/control-plane.md
check "agent-side TLS failures" agent/tls_failure.cpp docs/control-plane.md
refusals=$(grep -oE 'case Refusal::[A-Za-z]+: return "[a-z_]+";' "$here/control/dpctld.cpp" | sed -E 's/.*"([a-z_]+)";/\1/')
missing=()
for r in $refusals; do grep -q "\`$r\`" "$here/docs/control-plane.md" || missing+=("$r"); done
if [ -z "$refusals" ]; then echo "FAIL refusal reasons: none read"; fails=$((fails + 1));
elif [ ${#missing[@]} -gt 0 ]; then echo "FAIL refusal reasons missing from docs/control-plane.md: ${missing[*]}"; fails=$((fails + 1));
else echo "ok   refusal reasons: all in docs/control-plane.md"; fi
# Every name a control message or command carries (proto/control_names.hpp) is in control-plane.md or
# operations.md, quoted or in backticks.
missing=()
n=0
for name in $(grep -oE 'case [A-Za-z:]+: return "[a-z0-9_.]+";' "$here/proto/control_names.hpp" | sed -E 's/.*"([a-z0-9_.]+)";/\1/'); do
  n=$((n + 1))
  grep -qE "[\`\"]${name//./\\.}[\`\"]" "$here/docs/control-plane.md" "$here/docs/operations.md" || missing+=("$name")
done
if [ "$n" -lt 30 ]; then echo "FAIL control names: read only $n from proto/control_names.hpp"; fails=$((fails + 1));
elif [ ${#missing[@]} -gt 0 ]; then echo "FAIL control names missing from the docs: ${missing[*]}"; fails=$((fails + 1));
else echo "ok   control names: all $n of proto/control_names.hpp in the docs"; fi
# dataplane/README.md names every source file of dpgw's data path, as folder/stem (the .hpp/.cpp pair is one entry).
missing=()
n=0
while IFS= read -r f; do
  n=$((n + 1))
  rel=${f#"$here/dataplane/"}
  stem=${rel%.*}
  grep -qE "\`${stem}(\.|\`)" "$here/dataplane/README.md" || missing+=("$rel")
done < <(find "$here/dataplane" -name '*.cpp' -o -name '*.hpp' | sort)
if [ "$n" -lt 20 ]; then echo "FAIL dataplane/README.md: found only $n source files"; fails=$((fails + 1));
elif [ ${#missing[@]} -gt 0 ]; then echo "FAIL dataplane/README.md does not name: ${missing[*]}"; fails=$((fails + 1));
else echo "ok   dataplane/README.md names all $n source files of dataplane/"; fi
# docs/testing.md's rule for e2e scripts (under pipefail): `cmd | matches`, not `cmd | grep -q` (SIGPIPE to cmd).
bad=$(grep -nE '\| *grep +-[A-Za-z]*q' "$here"/tests/e2e/*.sh "$here"/scripts/demo*.sh | grep -v 'bash -c' || true)
if [ -n "$bad" ]; then echo "FAIL '| grep -q' in e2e scripts (use '| matches', docs/testing.md):"; echo "$bad"; fails=$((fails + 1));
else echo "ok   e2e scripts check output with matches, not grep -q"; fi
[ "$fails" = 0 ] || exit 1
