// The daemons (dpgw, dpctld, dpagent in all its roles) ignore SIGPIPE before they start anything (dpgw once it
// knows it is the daemon, not `dpgw stats` or `dpgw trace`). A write to a socket or pipe whose other end has gone
// (dpctld closing an agent's control connection as the agent sends, a Prometheus or DPDK telemetry client leaving
// mid-answer, nft failing to start) then fails with EPIPE, which the caller handles as the lost connection or failed
// request it is, instead of SIGPIPE's default action ending the whole process without a word. The one-shot commands
// (dpctl, dpgw stats, dpgw trace) keep the default, so `dpctl ... | head` ends them; their requests use
// send(MSG_NOSIGNAL) (unix_request, common/unix_socket.cpp). The disposition is process-wide and survives exec: a
// child a daemon starts gets the default back (restore_broken_pipes(), between fork and exec).
#pragma once
#include <csignal>

namespace dptun {

inline void ignore_broken_pipes() { std::signal(SIGPIPE, SIG_IGN); }
inline void restore_broken_pipes() { std::signal(SIGPIPE, SIG_DFL); }

}  // namespace dptun
