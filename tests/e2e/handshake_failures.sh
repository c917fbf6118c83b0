# The mTLS failure matrix's checks, shared by test_mtls.sh (TLS over TCP) and test_quic_mtls.sh (QUIC): sourced
# after lib.sh by a test whose dpctld runs in namespace $NS with metrics on 127.0.0.1:9108, its PID in $DPCTLD_PID,
# failure log $WORK/failures.jsonl, tunnel id $TUNNEL, and $registered sessions expected in dpctld's gauge.

metric() {  # metric NAME [LABELS] -> value
  local want=$1
  [ -n "${2:-}" ] && want="$1{$2}"
  ip netns exec "$NS" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9108; printf "GET /metrics HTTP/1.0\r\n\r\n" >&3; cat <&3' |
    W="$want" awk '$1 == ENVIRON["W"] { print $2 }'
}
# handshake failure lines (refused registrations have lines of their own: agent_registration_refused)
lines() { local n; n=$(grep -c '"event":"agent_tls_handshake_failed"' "$WORK/failures.jsonl" 2>/dev/null); echo "${n:-0}"; }
# the handshake failure lines after the first N, for failure messages
lines_after() { grep '"event":"agent_tls_handshake_failed"' "$WORK/failures.jsonl" 2>/dev/null | tail -n +$(($1 + 1)); }

# check_failure TRANSPORT CASE REASON COMMAND...: COMMAND makes exactly one new failure line with REASON (and, for
# TRANSPORT quic, "transport":"quic"), the counter +1, no session, and dpctld stays up
check_failure() {
  local transport=$1 name=$2 reason=$3; shift 3
  local before after count_before count_after
  before=$(lines)
  count_before=$(metric dptun_agent_handshake_failures_total "reason=\"$reason\"")
  "$@"
  more_lines() { [ "$(lines)" -gt "$before" ]; }
  wait_for 10 "$name: a failure line" more_lines
  sleep 0.5
  after=$(lines)
  [ "$after" -eq $((before + 1)) ] || fail "$name: $((after - before)) failure lines, expected exactly 1: $(lines_after "$before")"
  grep agent_tls_handshake_failed "$WORK/failures.jsonl" | tail -n 1 > "$WORK/last.json"
  jq -e --arg r "$reason" '.reason == $r' "$WORK/last.json" > /dev/null ||
    fail "$name: reason $(jq -r .reason "$WORK/last.json"), expected $reason: $(cat "$WORK/last.json")"
  if [ "$transport" = quic ]; then
    jq -e '.transport == "quic"' "$WORK/last.json" > /dev/null || fail "$name: not over quic: $(cat "$WORK/last.json")"
  fi
  jq -e '.event == "agent_tls_handshake_failed" and (.time | test("^20[0-9]{2}-")) and (.client | test("^127\\.0\\.0\\.1:[0-9]+$"))
         and (.openssl_reason | length > 0)' "$WORK/last.json" > /dev/null || fail "$name: fields missing: $(cat "$WORK/last.json")"
  count_after=$(metric dptun_agent_handshake_failures_total "reason=\"$reason\"")
  [ "$count_after" -eq $((count_before + 1)) ] || fail "$name: counter $count_before -> $count_after"
  [ "$(metric dptun_sessions "tunnel=\"$TUNNEL\",name=\"iperf\"")" = "$registered" ] || fail "$name: a session was registered"
  kill -0 "$DPCTLD_PID" 2>/dev/null || fail "$name: dpctld died"
  log "  $name -> $reason: $(jq -c '{sni, tunnel, offered_versions, offered_alpn, certificate: (.certificate.subject // null), verify_error, openssl_reason}' "$WORK/last.json")"
}
