#!/usr/bin/env bash
# The installer's every path, with fake apt-get/dpkg-query/id/systemctl on PATH: the real system is not touched.
# Each case checks the exit status, what apt-get was asked, and that a policy-rc.d the installer did not
# create survives while one it created is gone afterwards (and was present while apt-get ran).
set -uo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0

make_fakes() { # $1 = installed (all|none)  $2 = uid  $3 = apt-get update rc  $4 = apt-get install rc
  rm -rf "$work/bin"; mkdir -p "$work/bin"; : > "$work/apt.log"
  cat > "$work/bin/dpkg-query" <<F
#!/bin/sh
[ "$1" = all ] && { printf 'install ok installed'; exit 0; }
exit 1
F
  cat > "$work/bin/id" <<F
#!/bin/sh
echo $2
F
  cat > "$work/bin/apt-get" <<F
#!/bin/sh
if [ -e "$work/policy-rc.d" ]; then p=policy; else p=nopolicy; fi
echo "\$1 \$p" >> "$work/apt.log"
case "\$1" in update) exit $3;; install) exit $4;; esac
exit 0
F
  cat > "$work/bin/systemctl" <<F
#!/bin/sh
echo "systemctl \$*" >> "$work/apt.log"
exit 0
F
  chmod +x "$work/bin"/*
}

run_case() { # name, expected rc, expected apt log (one line per call, '|' separated), policy before (yes|no), policy after
  local name=$1 want_rc=$2 want_log=$3 before=$4 after=$5
  rm -f "$work/policy-rc.d"; : > "$work/apt.log"
  [ "$before" = yes ] && printf '#!/bin/sh\nexit 101\n' > "$work/policy-rc.d"
  PATH="$work/bin:$PATH" DPTUN_POLICY_RC="$work/policy-rc.d" DPTUN_SYSTEMD_DIR="$systemd_dir" \
    bash "$here/scripts/install-deps.sh" > "$work/out" 2>&1
  local rc=$? log now=no
  log=$(paste -sd'|' "$work/apt.log")
  [ -e "$work/policy-rc.d" ] && now=yes
  if [ "$rc" != "$want_rc" ] || [ "$log" != "$want_log" ] || [ "$now" != "$after" ]; then
    echo "FAIL $name: rc=$rc (want $want_rc) apt='$log' (want '$want_log') policy after=$now (want $after)"
    sed 's/^/    /' "$work/out"
    fails=$((fails + 1))
  else
    echo "ok   $name"
  fi
}

# A systemd host (its run directory exists): the services of what was installed are disabled at boot.
systemd_dir=$work
disable="systemctl disable --quiet nginx coturn"
make_fakes none 0 0 0
run_case "nothing installed, no policy-rc.d"       0 "update policy|install policy|$disable" no no
run_case "nothing installed, policy-rc.d present"  0 "update policy|install policy|$disable" yes yes
systemd_dir=$work/no-systemd
run_case "nothing installed, no systemd"           0 "update policy|install policy" no no
systemd_dir=$work
make_fakes all 0 0 0
run_case "everything installed"                    0 "" no no
run_case "everything installed, policy present"    0 "" yes yes
make_fakes all 1000 0 0
run_case "everything installed, not root"          0 "" no no
make_fakes none 1000 0 0
run_case "missing packages, not root"              1 "" no no
make_fakes none 0 0 100
run_case "apt-get install fails"                   1 "update policy|install policy" no no
run_case "apt-get install fails, policy present"   1 "update policy|install policy" yes yes
make_fakes none 0 100 0
run_case "apt-get update fails"                    1 "update policy" no no

if grep -q 'run as root' <(make_fakes none 1000 0 0; PATH="$work/bin:$PATH" DPTUN_POLICY_RC="$work/policy-rc.d" \
    DPTUN_SYSTEMD_DIR="$work" bash "$here/scripts/install-deps.sh" 2>&1); then
  echo "ok   non-root message names what to do"
else
  echo "FAIL non-root message"; fails=$((fails + 1))
fi
[ "$fails" = 0 ] || { echo "test_install_deps: $fails case(s) failed"; exit 1; }
echo "test_install_deps: all cases pass"
