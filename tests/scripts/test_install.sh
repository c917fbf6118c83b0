#!/usr/bin/env bash
# `make install` staged in a temporary DESTDIR (the real system is not touched): the programs, dptun-pki and
# hugepages.sh, the sample configs (never written over an operator's file), the systemd units (checked by
# systemd-analyze where it exists, against the staged programs) and the docs.
set -uo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
fails=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fails=$((fails + 1)); fi; }

make -C "$here" --no-print-directory install DESTDIR="$dest" > "$dest.log" 2>&1 || { cat "$dest.log"; echo "FAIL make install"; exit 1; }
p=$dest/usr/local
check "programs installed and runnable" \
  'for b in dpgw dpctld dpctl dpagent; do "$p/bin/$b" --version > /dev/null || exit 1; done'
check "dptun-pki and hugepages.sh installed" '[ -x "$p/bin/dptun-pki" ] && [ -x "$p/lib/dptun/hugepages.sh" ]'
check "sample configs in /etc/dptun, mode 640" \
  '[ "$(stat -c %a "$dest/etc/dptun/dptun.conf")" = 640 ] && [ "$(stat -c %a "$dest/etc/dptun/dpctld.conf")" = 640 ]'
check "the installed dpgw accepts the installed sample config" \
  '"$p/bin/dpgw" --config "$dest/etc/dptun/dptun.conf" --check > /dev/null'
check "systemd units installed" \
  'for u in dpgw.service dpctld.service dpagent@.service; do [ -f "$dest/etc/systemd/system/$u" ] || exit 1; done'
check "docs installed" '[ -f "$p/share/doc/dptun/operations.md" ] && [ -f "$p/share/doc/dptun/README.md" ]'
echo "# mine" >> "$dest/etc/dptun/dptun.conf"
make -C "$here" --no-print-directory install DESTDIR="$dest" > "$dest.log" 2>&1
check "a second install keeps the operator's edited config" 'tail -1 "$dest/etc/dptun/dptun.conf" | grep -q "^# mine$"'
if command -v systemd-analyze > /dev/null; then
  # The units as installed, with their programs found in the staged tree (which has no systemd targets and no
  # /bin/kill: what that alone causes is not a fault of the units). Unknown keys, bad values, missing programs are.
  check "systemd-analyze verify finds nothing wrong in the units" \
    'out=$(systemd-analyze verify --root="$dest" --man=no "$dest/etc/systemd/system/dpgw.service" \
            "$dest/etc/systemd/system/dpctld.service" 2>&1 | grep -v -e "Unit sysinit.target not found" \
            -e "Command /bin/kill is not executable" -e "Cannot add dependency job" -e "^$"); \
     [ -z "$out" ] || { echo "$out"; false; }'
  sed 's/^Restart=on-failure/Restart=sometimes/' "$dest/etc/systemd/system/dpgw.service" \
    > "$dest/etc/systemd/system/broken.service"
  check "... and it would find a fault (a bad Restart= value)" \
    '{ systemd-analyze verify --root="$dest" --man=no "$dest/etc/systemd/system/broken.service" 2>&1 || true; } |
       grep -q "sometimes"'
fi
rm -f "$dest.log"
[ "$fails" = 0 ] || { echo "test_install: $fails check(s) failed"; exit 1; }
echo "test_install: all checks pass"
