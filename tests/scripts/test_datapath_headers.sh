#!/usr/bin/env bash
# No JSON on the data path: no header of dataplane/{loop,relay,entry,hostname,masque,edge,tables}/ includes
# nlohmann/json, directly or through any header it includes. The compiler's own include tree decides (g++ -E -H with the
# build's flags), so a chain through proto/ or common/ counts as well; a failure prints the chain. JSON lives on
# the main lcore (dataplane/main_lcore/) and in proto/gateway_messages.hpp; the data path includes the plain
# values of proto/gateway_specs.hpp and the names of proto/control_names.hpp.
# Also: one place knows the tunnel frame layout. dpgw, dpagent and dpctld reach a frame's parts only through a
# codec (proto/frame_codec.hpp, proto/relay_frame.hpp); none of their sources names the inner header's encoder,
# decoder or length.
set -uo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
cxx=${CXX:-g++}
# shellcheck disable=SC2207
flags=(-std=c++20 -DALLOW_EXPERIMENTAL_API -march=corei7 -I"$here" $(pkg-config --cflags libdpdk))
fails=0

# chain HEADER: the include chain from HEADER to the first nlohmann header it reaches ("" when none); exit
# status 2 when the header does not preprocess.
chain() {
  local tree
  tree=$("$cxx" "${flags[@]}" -x c++ -E -H -o /dev/null "$1" 2>&1 >/dev/null) || { echo "$tree" | head -5; return 2; }
  awk -v top="${1#"$here/"}" -v root="$here/" '
    /^\.+ / {
      depth = length($1); path = $2
      if (index(path, root) == 1) path = substr(path, length(root) + 1)
      sub(".*/include/", "", path)
      stack[depth] = path
      if (path ~ /nlohmann\//) {
        out = top
        for (i = 1; i <= depth; i++) out = out " -> " stack[i]
        print out; exit
      }
    }' <<< "$tree"
}

# The check itself must see JSON where it is: through proto/gateway_messages.hpp.
seen=$(chain "$here/proto/gateway_messages.hpp")
if [[ "$seen" != *nlohmann/* ]]; then
  echo "FAIL the check does not see nlohmann in proto/gateway_messages.hpp (g++ -H output changed?)"
  fails=$((fails + 1))
fi

n=0
for h in "$here"/dataplane/{loop,relay,entry,hostname,masque,edge,tables}/*.hpp; do
  n=$((n + 1))
  found=$(chain "$h")
  case $? in
    0) [ -z "$found" ] || { echo "FAIL JSON on the data path: $found"; fails=$((fails + 1)); } ;;
    *) echo "FAIL ${h#"$here/"} does not preprocess on its own: $found"; fails=$((fails + 1)) ;;
  esac
done
if [ "$n" -lt 10 ]; then echo "FAIL found only $n data-path headers"; fails=$((fails + 1));
elif [ "$fails" = 0 ]; then echo "ok   no JSON in the $n headers of dataplane/{loop,relay,entry,hostname,masque,edge,tables}/"; fi

layout=$(grep -rnwE 'encode_inner_header|decode_inner_header|kInnerHeaderLen' "$here"/dataplane "$here"/agent \
  "$here"/control "$here"/common --include='*.cpp' --include='*.hpp' | sed "s|^$here/||")
if [ -n "$layout" ]; then
  echo "FAIL the frame layout outside the codec (use RelayCodec / FrameLayout):"
  echo "$layout"
  fails=$((fails + 1))
elif ! grep -qw encode_inner_header "$here/proto/relay_frame.hpp"; then
  echo "FAIL the check does not see the codec's own use of encode_inner_header (renamed?)"
  fails=$((fails + 1))
else
  echo "ok   the frame layout is known only to the codecs in proto/"
fi
[ "$fails" = 0 ] || exit 1
